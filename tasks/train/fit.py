"""One training run: LoRA on a frozen base, SO(8) gates driven by a schedule, PET (the training-loss term).

Used by the variants' trainings (tasks/train/variant.py) and the sigmoid tuner's proxy runs
(tasks/train/tune.py); it imports neither, so the two do not import each other. The CPU path is transformers +
peft + trl; with CUDA and the ``gpu`` extra it is Unsloth (tasks/train/unsloth_backend.py). Both write the same
outputs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.progress import Progress

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
    from tasks.data.base_model import load_tokenizer

    if use_unsloth():
        from tasks.train.unsloth_backend import load_unsloth

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
    from tasks.data.sft import load_split

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
        from tasks.train.outputs import write_outputs

        write_outputs(out, model, trainer.state.log_history, callback, summary)
    return summary
