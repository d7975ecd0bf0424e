"""Training one variant: LoRA on a frozen base, SO(8) gates driven by the variant's schedule, PET.

Variants: ``linear`` (LinearSchedule) and ``sigmoid-bayes`` (SigmoidSchedule whose (k, midpoint) the
Bayesian tuner picks from short proxy runs scored by validation loss; see tasks/tune.py).
The CPU path is transformers + peft + trl; with CUDA and the ``gpu`` extra it is Unsloth
(tasks/unsloth_backend.py). Both write the same outputs.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.progress import Progress
from tasks.store import atomic_write_json

logger = logging.getLogger(__name__)

VARIANTS = ("linear", "sigmoid-bayes")
# Logical LoRA target groups per architecture; Phi-3 fuses q/k/v and gate/up.
TARGET_GROUPS = {
    "default": {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"], "mlp": ["gate_proj", "up_proj", "down_proj"]},
    "phi3": {"attention": ["qkv_proj", "o_proj"], "mlp": ["gate_up_proj", "down_proj"]},
}


def resolve_lora_targets(model, targets: list[str]) -> list[str]:
    """Expand groups to module names for this architecture; fail if any name matches no Linear."""
    from torch import nn

    model_type = model.config.model_type
    groups = TARGET_GROUPS.get(model_type, TARGET_GROUPS["default"])
    names: list[str] = []
    for target in targets:
        for name in groups.get(target, [target]):
            if name not in names:
                names.append(name)
    present = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(f"LoRA target(s) {missing} match no Linear module of this {model_type} model; "
                         f"its Linear modules are {sorted(present)}. Fix lora.targets (groups: attention, mlp).")
    return names


def make_trainer_class():
    """SFTTrainer whose loss adds PET (training only) to the LM loss; built lazily (heavy imports)."""
    from transformers import Trainer
    from trl import SFTTrainer

    from alpha_gate.pet import pet_penalty

    class AlphaGateSFTTrainer(SFTTrainer):
        def __init__(self, *args, alpha_callback, pet_scale: str, **kwargs):
            super().__init__(*args, **kwargs)
            self.alpha_callback, self.pet_scale, self._pet_log = alpha_callback, pet_scale, []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weight = self.alpha_callback.pet_weight if model.training else 0.0
            inputs = {**inputs, "use_cache": False, "output_hidden_states": weight > 0}
            # Trainer's own loss (handles num_items_in_batch); trl's fused-head path hides hidden states.
            loss, outputs = Trainer.compute_loss(self, model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            if weight > 0:
                hidden = outputs.hidden_states[-1]
                pet = pet_penalty(hidden, inputs.get("attention_mask"))
                if self.pet_scale == "per_dim":
                    pet = pet / hidden.shape[-1]
                if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
                    pet = pet / self.args.gradient_accumulation_steps  # Trainer will not divide this loss
                self._pet_log.append((loss.detach().item(), pet.detach().item()))
                loss = loss + weight * pet
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, start_time=None):
            if "loss" in logs and self._pet_log:
                logs["lm_loss"] = sum(p[0] for p in self._pet_log) / len(self._pet_log)
                logs["pet"] = sum(p[1] for p in self._pet_log) / len(self._pet_log)
                self._pet_log = []
            super().log(logs, start_time)

    return AlphaGateSFTTrainer


def use_unsloth() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


def _load(config: PipelineConfig, base_dir: Path):
    """(peft model with gates, tokenizer, backend name, resolved targets)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from alpha_gate.so8 import attach_so8_gates
    from tasks.base_model import load_tokenizer

    if use_unsloth():
        from tasks.unsloth_backend import load_unsloth

        model, tokenizer, targets = load_unsloth(config, base_dir, resolve_lora_targets)
        return model, tokenizer, "unsloth", targets
    tokenizer = load_tokenizer(base_dir, config.base_model)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    targets = resolve_lora_targets(model, config.lora.targets)
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.lora_alpha, lora_dropout=config.lora.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)  # freezes every base weight
    attach_so8_gates(model, config.gates.layers)  # after peft: gates stay trainable and cover LoRA's input
    return model, tokenizer, "transformers+peft+trl", targets


def _optimizer(model, config: PipelineConfig):
    import torch

    gate_params = [p for n, p in model.named_parameters() if ".so8_gate." in n]
    lora_params = [p for n, p in model.named_parameters() if p.requires_grad and ".so8_gate." not in n]
    return torch.optim.AdamW([
        {"params": lora_params, "lr": config.train.learning_rate, "weight_decay": config.train.weight_decay},
        {"params": gate_params, "lr": config.gates.learning_rate, "weight_decay": 0.0},
    ])


def _progress_callback(progress):
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            progress.update()

    return StepProgress()


def fit(config: PipelineConfig, base_dir: Path, data_dir: Path, schedule, max_steps: int,
        scratch: Path, out: Path | None = None, label: str = "training") -> dict[str, Any]:
    """One training run; writes the run's artifacts into ``out`` when given. Returns its summary."""
    import torch
    from transformers import set_seed
    from trl import SFTConfig

    from alpha_gate.callback import AlphaGateCallback
    from alpha_gate.pet import PETSchedule
    from alpha_gate.so8 import get_so8_gates
    from tasks.data import load_split

    set_seed(config.train.seed)  # same LoRA init and data order for every variant: a paired comparison
    model, tokenizer, backend, targets = _load(config, base_dir)
    callback = AlphaGateCallback(get_so8_gates(model), schedule, PETSchedule(tuple(config.pet.phases)))
    t = config.train
    cuda = torch.cuda.is_available()
    args = SFTConfig(output_dir=str(scratch), max_steps=max_steps, per_device_train_batch_size=t.batch_size,
                     per_device_eval_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
                     learning_rate=t.learning_rate, warmup_steps=t.warmup_steps, lr_scheduler_type="linear",
                     logging_steps=1, eval_strategy="steps", eval_steps=t.eval_every, save_strategy="no",
                     report_to=[], seed=t.seed, data_seed=t.seed, use_cpu=not cuda, bf16=cuda and t.bf16_on_gpu,
                     max_length=t.max_length, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=True)
    trainer_cls = make_trainer_class()
    progress = Progress(max_steps, f"{label}: steps")
    trainer = trainer_cls(model=model, args=args, train_dataset=load_split(data_dir, "train"),
                          eval_dataset=load_split(data_dir, "validation"), processing_class=tokenizer,
                          callbacks=[callback, _progress_callback(progress)],
                          optimizers=(_optimizer(model, config), None), alpha_callback=callback,
                          pet_scale=config.pet.scale)
    start = time.perf_counter()
    with progress:
        trainer.train()
    seconds = time.perf_counter() - start
    final_eval = trainer.evaluate()["eval_loss"]
    if not math.isfinite(final_eval):
        raise FloatingPointError(f"Validation loss is {final_eval} after {max_steps} steps with {schedule}: the run "
                                 "diverged. Lower train.learning_rate or gates.learning_rate.")
    summary = {"backend": backend, "lora_targets": targets, "schedule": schedule.to_dict(), "steps": max_steps,
               "final_eval_loss": final_eval, "final_blend_alpha": callback.blend_alpha,
               "train_seconds": round(seconds, 2), "seconds_per_step": round(seconds / max_steps, 3)}
    if out is not None:
        from tasks.train_outputs import write_outputs

        write_outputs(out, model, trainer.state.log_history, callback, summary)
    return summary


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "transformers", "peft", "trl", "alpha-gate")}


def write_run_record(out: Path, config: PipelineConfig, variant: str, summary: dict, extra: dict) -> None:
    atomic_write_json(out / "run.json", {"variant": variant, "name": config.name, "seed": config.train.seed,
                                         **summary, **extra, "versions": _versions(),
                                         "config": config.model_dump(mode="json")})


TRAINING_SECTIONS = ("base_model", "data", "lora", "gates", "pet", "train", "tuner", "linear")


def _training_part(config: dict) -> dict:
    """The config sections that change what a training produces (not export, decision, upload, ...)."""
    return {k: config.get(k) for k in TRAINING_SECTIONS}


def train_variant(config: PipelineConfig, variant: str, out_dir: Path, *, cache_dir: Path,
                  data_dir: Path | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Train one variant into ``out_dir`` (atomically). A finished ``out_dir`` is returned as is."""
    from alpha_gate.schedules import LinearSchedule
    from tasks.base_model import base_model_info, prepare_base_model
    from tasks.data import prepare_data
    from tasks.store import is_complete, read_json, staging_dir
    from tasks.tune import tune_sigmoid

    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
    import torch

    if config.requires_gpu and not torch.cuda.is_available():
        raise RuntimeError(f"Config {config.name!r} needs a CUDA GPU (requires_gpu: true) and none is visible; "
                           "run it on a GPU machine or use configs/demo.yaml on CPU.")
    out_dir = Path(out_dir)
    if is_complete(out_dir, "run.json"):
        previous = read_json(out_dir / "run.json")
        if _training_part(previous.get("config", {})) == _training_part(config.model_dump(mode="json")):
            logger.info("%s already trained in %s with this config; reusing it", variant, out_dir)
            return previous
        logger.warning("%s in %s was trained with a different config; training again (replaced atomically)",
                       variant, out_dir)
    base_dir = prepare_base_model(config.base_model, cache_dir)
    data_dir = Path(data_dir) if data_dir is not None else out_dir.parent / "data"
    data = prepare_data(config.data, data_dir)
    extra: dict[str, Any] = {"base_model": {"dir": str(base_dir), **base_model_info(base_dir)},
                             "data": {"dir": str(data_dir), "key": data["key"], "counts": data["counts"]}}
    if variant == "linear":
        schedule = LinearSchedule(config.linear.start)
    else:
        history = config.tuner.history_path or out_dir.parent / "tuner_history.json"
        schedule, extra["tuner"] = tune_sigmoid(config, base_dir, data_dir, history,
                                                run_id or str(out_dir.resolve()))
    with staging_dir(out_dir) as tmp:
        summary = fit(config, base_dir, data_dir, schedule, config.train.max_steps, tmp / "scratch", out=tmp,
                      label=variant)
        shutil.rmtree(tmp / "scratch", ignore_errors=True)
        write_run_record(tmp, config, variant, summary, extra)
    return read_json(out_dir / "run.json")
