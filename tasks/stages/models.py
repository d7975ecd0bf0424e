"""The stages that make models: SFT data, the base model, the trainings (one per variant and seed), the optional DPO
stage, and the exports (merge, fold the gates, GGUF BF16, quantize). Each ``*_plan`` is the stage's key and folder;
each stage function finds its output by that key (no slot, no process) or builds it holding one of this machine's
model slots (tasks/model_slots.py), a training or export in a child process of its own (tasks/procs.py)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tasks.config import BaseModelSpec, DataSpec, DPOSpec, ExportSpec, PipelineConfig
from tasks.keyed import Plan, at, found
from tasks.store import Ref, ref_of

# torch/transformers work is not thread-safe within one process: accelerate keeps global state (two Trainers in
# threads corrupt it) and from_pretrained's meta-device initialisation races ("Cannot copy out of meta tensor").
# Trainings and exports therefore run each in a child process of its own, as many at once as this machine's model
# slots allow; the torch steps left in the caller's process (the base model, the optional DPO stage) take this lock.
# llama.cpp evaluations take neither.
MODEL_LOCK = threading.Lock()


def slot_journal(root: str | Path) -> Path:
    """Each hold of a model slot, one JSON line (requested, acquired, released): where idle gaps show."""
    return Path(root) / "logs" / "slots.jsonl"


def tuner_history(config: PipelineConfig, root: str | Path) -> Path:
    """Where the sigmoid tuner keeps its trials: tuner.history_path, else <out>/tuner_history.json."""
    return config.tuner.history_path or Path(root) / "tuner_history.json"


# --- data and base model ----------------------------------------------------------------------------------------

def data_plan(spec: DataSpec, root: str, **_: Any) -> Plan:
    from tasks.data.sft import data_key

    return at("data", root, data_key(spec)[0])


def prepare_data(spec: DataSpec, root: str) -> Ref:
    from tasks.data.sft import data_ref

    return data_ref(spec, data_plan(spec, root).out)


def base_model(spec: BaseModelSpec, cache_dir: str) -> Ref:
    """Found by key in the base-model cache (a hash and a check when it is there)."""
    from tasks.data.base_model import base_ref

    with MODEL_LOCK:
        return base_ref(spec, Path(cache_dir))


# --- trainings ----------------------------------------------------------------------------------------------------

def _replicate(config: PipelineConfig, seed: int | None, tuner_trials: int | None) -> PipelineConfig:
    from tasks.train.variant import replicate_config

    return replicate_config(config, seed, tuner_trials)


def train_plan(config: PipelineConfig, variant: str, data: Ref, base: Ref, root: str, seed: int | None = None,
               tuner_trials: int | None = None, **_: Any) -> Plan:
    from tasks.train.variant import train_key

    return at("train", root, train_key(_replicate(config, seed, tuner_trials), variant, base, data)[0])


def train(config: PipelineConfig, variant: str, data: Ref, base: Ref, root: str, expected_key: str | None = None,
          seed: int | None = None, tuner_trials: int | None = None) -> Ref:
    """One replicate (``seed``; None: train.seed) of ``variant``, with the tuner's budget ``tuner_trials`` (None: the
    config's). ``expected_key``: the key the orchestrator computed (a training sent to a work pool); a worker whose
    code or settings give another key refuses, rather than writing where nobody looks."""
    from tasks.model_slots import model_slot
    from tasks.procs import run_in_process

    planned = train_plan(config, variant, data, base, root, seed, tuner_trials)
    if expected_key is not None and planned.key != expected_key:
        raise RuntimeError(f"This worker computes the training key {planned.key[:12]}… but the comparison expects "
                           f"{expected_key[:12]}…: the worker runs other code or was handed other settings or data. "
                           "Install the same version of the project on both machines and share the run folder.")
    if (ref := found(planned)) is not None:  # found by key: no slot, no process
        return ref
    arguments = {"config": config.model_dump(mode="json"), "variant": variant, "out_dir": str(planned.out),
                 "base": base.model_dump(mode="json"), "data": data.model_dump(mode="json"),
                 "history": str(tuner_history(config, root)), "seed": seed, "tuner_trials": tuner_trials,
                 "journal": str(Path(root) / "logs" / "trainings.jsonl"), "expected_key": planned.key}
    label = f"train {variant}" + (f" seed {seed}" if seed is not None else "")
    with model_slot(config.orchestration.train_slots, label, journal=slot_journal(root)) as slot:
        run_in_process("tasks.train.variant:train_in_process", arguments, threads=slot.threads, label=label,
                       keep_fds=(slot.fd,))
    return ref_of(planned.out)


def dpo_plan(spec: DPOSpec, parent: Ref, gguf: str, root: str, extra_benchmark_dirs: list[str], **_: Any) -> Plan:
    from tasks.train.dpo import dpo_key
    from tasks.train.preferences import benchmark_texts

    exclude = benchmark_texts([Path(d) for d in extra_benchmark_dirs])
    return at("dpo", root, dpo_key(Path(parent.path), spec, Path(gguf), exclude)[0])


def dpo(spec: DPOSpec, slots: int | None, parent: Ref, gguf: str, root: str, extra_benchmark_dirs: list[str]) -> Ref:
    """The optional preference stage on top of a finished SFT run; answers are sampled from the parent's exported
    BF16 GGUF. It stays in this process (its sampler is the test seam at the model boundary), holding a model slot
    (``slots``: orchestration.train_slots) for its memory and the lock against the base-model step."""
    from tasks.model_slots import model_slot
    from tasks.train.dpo import train_dpo

    planned = dpo_plan(spec, parent, gguf, root, extra_benchmark_dirs)
    if (ref := found(planned)) is not None:  # found by key: no slot
        return ref
    with model_slot(slots, f"dpo {Path(parent.path).name[:12]}", journal=slot_journal(root)), MODEL_LOCK:
        train_dpo(Path(parent.path), planned.out, spec=spec, gguf=Path(gguf),
                  extra_benchmark_dirs=[Path(d) for d in extra_benchmark_dirs])
    return ref_of(planned.out)


# --- exports ------------------------------------------------------------------------------------------------------

def export_name(config_name: str, label: str) -> str:
    """The GGUF files' stem: <config name>-<label> (linear, sigmoid-bayes, ...), or "base"."""
    return label if label == "base" else f"{config_name}-{label}"


def export_plan(spec: ExportSpec, config_name: str, model: Ref, root: str, formats: list[str], label: str,
                **_: Any) -> Plan:
    from tasks.export.gguf import export_key

    return at("export", root, export_key(model, formats, spec, export_name(config_name, label))[0])


def export(spec: ExportSpec, config_name: str, slots: int | None, model: Ref, root: str, formats: list[str],
           label: str) -> Ref:
    """``model`` (a training's or the base model's ref) as GGUF ``formats``; the ref names each format's file."""
    from tasks.export.gguf import MARKER
    from tasks.model_slots import model_slot
    from tasks.procs import run_in_process
    from tasks.store import read_json

    planned = export_plan(spec, config_name, model, root, formats, label)
    if found(planned) is None:  # else found by key: no slot, no process
        arguments = {"spec": spec.model_dump(mode="json"), "model_dir": str(model.path), "out_dir": str(planned.out),
                     "formats": list(formats), "name": export_name(config_name, label),
                     "model": model.model_dump(mode="json"), "expected_key": planned.key}
        with model_slot(slots, f"export {label}", export=True, journal=slot_journal(root)) as slot:
            run_in_process("tasks.export.gguf:export_in_process", arguments, label=f"export {label}",
                           threads=slot.threads, keep_fds=(slot.fd,))
    manifest = read_json(planned.out / MARKER)
    return ref_of(planned.out, **{f["format"]: f["path"] for f in manifest["files"]})
