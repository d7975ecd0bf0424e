"""Optional preference stage after SFT: DPO on pairs the SFT model's own answers provide.

For each *training-split* question whose reference final answer is checkable (exactly one number, GSM8K
style, or a multiple-choice letter) the SFT model (LoRA + gates at their final blend_alpha) samples n answers;
a correct and an incorrect one make a (chosen, rejected) pair. Questions without such a pair, without a
checkable answer, or whose text appears among the benchmark items are skipped and counted.

trl's DPOTrainer then trains the SFT LoRA further (its frozen copy, the "ref" adapter trl adds, is the
reference model), with the base frozen and the gates frozen at the final blend_alpha. The output folder has
the layout of a training run (adapter/, gates.safetensors, run.json with variant "<variant>+dpo"), so export,
evaluation and the report treat it like any other model.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.config import DPOSpec, PipelineConfig
from tasks.store import atomic_write_json, atomic_write_text, read_json, seal, staging_dir, verified
from tasks.train.preferences import benchmark_texts, build_pairs, checkable, is_correct

logger = logging.getLogger(__name__)
# re-exported: the pair-building names are imported from here (tests/test_dpo.py, tests/test_final_section.py)
__all__ = ["benchmark_texts", "build_pairs", "checkable", "dpo_key", "is_correct", "load_sft_model", "make_sampler",
           "make_gguf_sampler", "train_dpo"]


def load_sft_model(run_dir: Path, trainable: bool):
    """The SFT model of a run (tasks.train.outputs.load_trained) with its gates frozen at the final
    blend_alpha, and its tokenizer (a pad token set)."""
    from alpha_gate.so8 import get_so8_gates
    from tasks.data.base_model import load_tokenizer
    from tasks.train.outputs import load_trained

    model, run, config, base_dir = load_trained(run_dir, trainable=trainable)
    for gate in get_so8_gates(model):
        gate.requires_grad_(False)  # kept at the final alpha and rotation
    tokenizer = load_tokenizer(base_dir, config.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, run, config


def make_sampler(model, tokenizer, max_new_tokens: int, temperature: float, top_p: float, seed: int):
    """Real sampling with transformers' generate: n completions of a chat prompt."""
    import torch

    generator_seed = [seed]

    def sample(prompt: list[dict], n: int) -> list[str]:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        torch.manual_seed(generator_seed[0])
        generator_seed[0] += 1
        with torch.no_grad():
            out = model.generate(**ids, do_sample=True, temperature=temperature, top_p=top_p,
                                 max_new_tokens=max_new_tokens, num_return_sequences=n,
                                 pad_token_id=tokenizer.pad_token_id)
        start = ids["input_ids"].shape[1]
        return [tokenizer.decode(row[start:], skip_special_tokens=True) for row in out]

    sample.prompt_text = lambda prompt: tokenizer.apply_chat_template(prompt, add_generation_prompt=True,
                                                                      tokenize=False)
    return sample


def make_gguf_sampler(gguf: Path, max_new_tokens: int, temperature: float, top_p: float, seed: int):
    """Sampling from the SFT model's exported BF16 GGUF (merged, folded, parity-checked against the
    transformers model) with llama.cpp: the same model, several times faster than generate() on a CPU."""
    from tasks.llama_load import chat_formatter, open_llama

    llm = open_llama(gguf, n_ctx=2048, verbose=False, seed=seed)
    counter = [seed]

    def sample(prompt: list[dict], n: int) -> list[str]:
        out = []
        for _ in range(n):
            counter[0] += 1
            r = llm.create_chat_completion(prompt, max_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                           seed=counter[0])
            out.append(r["choices"][0]["message"]["content"] or "")
        return out

    formatter = chat_formatter(llm)
    sample.prompt_text = lambda prompt: formatter(messages=prompt).prompt if formatter is not None else ""
    sample.close = llm.close
    return sample


def train_dpo(parent_dir: Path, out_dir: Path, *, spec=None, sampler: Callable | None = None,
              gguf: Path | None = None, extra_benchmark_dirs: list[Path] | None = None) -> dict[str, Any]:
    """DPO on top of the SFT run in ``parent_dir``; writes a run folder into ``out_dir`` (atomically).
    ``spec``: a DPOSpec (default: the run config's ``dpo`` section). Answers are sampled from ``gguf`` (the
    parent's exported BF16 GGUF) when given, else with transformers from the SFT model itself; ``sampler``
    replaces both (tests)."""
    from transformers import set_seed

    from tasks.data.sft import load_split
    from tasks.train.outputs import loss_curves

    parent_dir, out_dir = Path(parent_dir), Path(out_dir)
    if not (parent_dir / "run.json").is_file():
        raise FileNotFoundError(f"{parent_dir} is not a finished training run (no run.json); train the variant "
                                "first (`alphagate train`).")
    spec = spec or DPOSpec.model_validate(read_json(parent_dir / "run.json")["config"].get("dpo", {}))
    exclude = benchmark_texts(extra_benchmark_dirs)
    key, inputs = dpo_key(parent_dir, spec, gguf, exclude, sampler)
    if verified(out_dir, key):
        return read_json(out_dir / "run.json")
    model, tokenizer, parent, config = load_sft_model(parent_dir, trainable=True)
    set_seed(config.train.seed)
    data_dir = Path(parent["data"]["dir"])
    records = [dict(r) for r in load_split(data_dir, "train")]  # the training split only
    sample, sampled_with = _choose_sampler(sampler, gguf, model, tokenizer, spec, config.train.seed)
    pairs, counts, sampling_seconds = _sample_pairs(model, records, sample, spec, config, exclude)
    logger.info("DPO pairs for %s: %s", parent["variant"], counts)
    _check_enough(pairs, counts, spec)
    model.train()
    with staging_dir(out_dir) as tmp:
        history, train_seconds = _train(model, tokenizer, pairs, spec, config, tmp / "scratch")
        _save(tmp, model, parent, parent_dir, history, pairs)
        last = [row for row in history if "loss" in row]
        summary = {**parent, "variant": f"{parent['variant']}+dpo", "key": key,
                   "parent": {"dir": str(parent_dir.resolve()), "variant": parent["variant"]},
                   "dpo": {**spec.model_dump(mode="json"), "pairs": counts, "sampled_with": sampled_with,
                           "sampling_seconds": round(sampling_seconds, 2), "train_seconds": round(train_seconds, 2),
                           "final_loss": last[-1]["loss"] if last else None,
                           "final_reward_accuracy": last[-1].get("rewards/accuracies") if last else None},
                   "loss_curves": loss_curves(history)}
        atomic_write_json(tmp / "run.json", summary)
        seal(tmp, "dpo", key, inputs)
    return read_json(out_dir / "run.json")


def _choose_sampler(sampler, gguf: Path | None, model, tokenizer, spec: DPOSpec, seed: int) -> tuple[Callable, str]:
    """The sampler of answers and what it samples with: the test double, llama.cpp on the GGUF, or transformers."""
    if sampler is not None:
        return sampler, "test double"
    if gguf is not None:
        return (make_gguf_sampler(Path(gguf), spec.max_new_tokens, spec.temperature, spec.top_p, seed),
                f"llama.cpp: {Path(gguf).name}")
    sample = make_sampler(model, tokenizer, spec.max_new_tokens, spec.temperature, spec.top_p, seed)
    return sample, "transformers generate"


def _sample_pairs(model, records: list[dict], sample, spec: DPOSpec, config: PipelineConfig,
                  exclude: set[str]) -> tuple[list[dict], dict[str, int], float]:
    """The preference pairs, their counts and the seconds sampling took (the model in eval mode; the sampler closed
    however it ends)."""
    start = time.perf_counter()
    model.eval()
    try:
        pairs, counts = build_pairs(records, sample, spec.samples_per_question, config,
                                    exclude, seed=config.train.seed)
    finally:
        getattr(sample, "close", lambda: None)()
    return pairs, counts, time.perf_counter() - start


def _check_enough(pairs: list[dict], counts: dict[str, int], spec: DPOSpec) -> None:
    if len(pairs) < spec.min_pairs:
        raise ValueError(f"Only {len(pairs)} preference pair(s) from {counts['questions']} training questions "
                         f"(needed dpo.min_pairs = {spec.min_pairs}; {counts}). Sample more answers "
                         "(dpo.samples_per_question), raise dpo.temperature, or train the SFT model longer.")


def _train(model, tokenizer, pairs: list[dict], spec: DPOSpec, config: PipelineConfig,
           scratch: Path) -> tuple[list[dict], float]:
    """trl's DPOTrainer on ``pairs`` (its checkpoints in ``scratch``, removed after); returns its log history and
    the seconds it trained. trl's frozen reference copy (the "ref" adapter) is dropped: not part of the result."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    cuda = torch.cuda.is_available()
    args = DPOConfig(output_dir=str(scratch), max_steps=spec.max_steps, beta=spec.beta,
                     per_device_train_batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                     lr_scheduler_type="linear", logging_steps=1, save_strategy="no", report_to=[],
                     seed=config.train.seed, data_seed=config.train.seed, use_cpu=not cuda,
                     bf16=cuda and config.train.bf16_on_gpu, max_length=config.train.max_length,
                     disable_tqdm=True, dataloader_num_workers=0)
    dataset = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    if "ref" in model.peft_config:
        model.delete_adapter("ref")  # trl's frozen reference copy: not part of the result
    shutil.rmtree(scratch, ignore_errors=True)
    return trainer.state.log_history, train_seconds


def _save(tmp: Path, model, parent: dict, parent_dir: Path, history: list[dict], pairs: list[dict]) -> None:
    """The adapter and the (unmoved) gates, the DPO log, the pairs, and the parent's alpha trajectory."""
    from alpha_gate.so8 import get_so8_gates
    from tasks.train.outputs import save_adapter_and_gates

    save_adapter_and_gates(tmp, model, parent["final_blend_alpha"])
    assert all(not g.requires_grad for gate in get_so8_gates(model) for g in gate.parameters())
    atomic_write_json(tmp / "dpo_log.json", history)
    atomic_write_text(tmp / "pairs.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    for name in ("alpha_trajectory.json", "alpha_trajectory.csv"):  # the gates did not move: same trajectory
        if (parent_dir / name).is_file():
            shutil.copy2(parent_dir / name, tmp / name)


def dpo_key(parent_dir: Path, spec: DPOSpec, gguf: Path | None, exclude: set[str],
            sampler=None) -> tuple[str, dict[str, Any]]:
    """The parent's content, where answers are sampled from (the GGUF's content), the dpo section of the *current*
    config and the benchmark texts excluded from the pairs."""
    from tasks.keys import stage_key
    from tasks.store import folder_ref, sha256_bytes, sha256_file

    inputs = {"parent": folder_ref(parent_dir).sha256, "dpo": spec.model_dump(mode="json"),
              "sampler": "test double" if sampler is not None else
              ({"gguf_sha256": sha256_file(gguf)} if gguf is not None else "transformers"),
              "exclude_sha256": sha256_bytes("\n".join(sorted(exclude)).encode())}
    return stage_key("dpo", inputs), inputs

