"""Training one variant: LoRA on a frozen base, SO(8) gates driven by the variant's schedule, PET.

Variants: ``linear`` (LinearSchedule) and ``sigmoid-bayes`` (SigmoidSchedule whose (k, midpoint) the
Bayesian tuner picks from short proxy runs scored by validation loss; see tasks/train/tune.py). The run itself is
tasks/train/fit.py. A training output is addressed by ``train_key``: the base model's and the data's refs, the config
sections the variant reads, the device kind and the training code; it is reused only under that key.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.store import Ref, atomic_write_json, read_json, seal, staging_dir, verified

logger = logging.getLogger(__name__)

VARIANTS = ("linear", "sigmoid-bayes")
# what every variant reads; each variant adds its own schedule section
COMMON_SECTIONS = ("lora", "gates", "pet", "train")  # the base model is its ref (content + template)
VARIANT_SECTIONS = {"linear": ("linear",), "sigmoid-bayes": ("tuner",)}


def tuned(variant: str) -> bool:
    """Whether ``variant``'s schedule comes from the tuner (its later seeds reuse the first seed's trials)."""
    return "tuner" in VARIANT_SECTIONS[variant]


TUNER_HISTORY = "tuner_history.json"  # a tuned training's copy of its tuner's trials (the report plots them)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")


def train_inputs(config: PipelineConfig, variant: str, base: Ref, data: Ref) -> dict[str, Any]:
    _check_variant(variant)
    dumped = config.model_dump(mode="json")
    # The device is not part of the key (like library versions, it is recorded in run.json: "backend"): a GPU
    # worker must find the folder the orchestrator expects (orchestration.train_deployment).
    dumped["train"].pop("seeds", None)  # one training has one seed (train.seed); the replicate list is the flow's
    return {"variant": variant, "base": base.sha256, "data": data.sha256,
            "config": {k: dumped[k] for k in COMMON_SECTIONS + VARIANT_SECTIONS[variant]}}


def replicate_config(config: PipelineConfig, seed: int | None = None, tuner_trials: int | None = None
                     ) -> PipelineConfig:
    """The config of one replicate: train.seed = ``seed`` (train.seeds dropped), so a replicate's key is that of a
    one-seed run with that seed and adding seeds to the list never retrains the ones already trained.
    ``tuner_trials``: the tuner's trial budget for this training (the nightly study passes the same budget every
    night; trials of the same experiment fingerprint already done count towards it, so a frozen schedule is reused)."""
    train = config.train.model_copy(update={"seed": config.train.seed if seed is None else seed, "seeds": None})
    update: dict[str, Any] = {"train": train}
    if tuner_trials is not None:
        update["tuner"] = config.tuner.model_copy(update={"n_trials": tuner_trials})
    return config.model_copy(update=update)


def replicate_label(variant: str, seed: int, replicated: bool) -> str:
    """A trained model's name: the variant, or ``<variant>-s<seed>`` when an arm has seed replicates."""
    return f"{variant}-s{seed}" if replicated else variant


def train_key(config: PipelineConfig, variant: str, base: Ref, data: Ref) -> tuple[str, dict[str, Any]]:
    from tasks.keys import stage_key

    inputs = train_inputs(config, variant, base, data)
    return stage_key("train", inputs), inputs


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "transformers", "peft", "trl", "alpha-gate")}


def write_run_record(out: Path, config: PipelineConfig, variant: str, summary: dict, extra: dict) -> None:
    atomic_write_json(out / "run.json", {"variant": variant, "name": config.name, "seed": config.train.seed,
                                         **summary, **extra, "versions": _versions(),
                                         "config": config.model_dump(mode="json")})


def compute_record(summary: dict[str, Any], tuner: dict[str, Any] | None) -> dict[str, Any]:
    """What this training cost: its own optimizer steps and seconds, plus the tuner's proxy trainings it ran (a
    replicate reusing an experiment's trials ran none; the experiment's whole tuning cost is listed beside it)."""
    tuner = tuner or {}
    steps, seconds = int(summary["steps"]), float(summary["train_seconds"])
    proxy_steps, proxy_seconds = int(tuner.get("proxy_steps_this_run", 0)), float(tuner.get("seconds_this_run", 0.0))
    return {"train_steps": steps, "train_seconds": seconds, "tuner_trials": int(tuner.get("trials_this_run", 0)),
            "tuner_proxy_steps": proxy_steps, "tuner_seconds": proxy_seconds, "total_steps": steps + proxy_steps,
            "total_seconds": round(seconds + proxy_seconds, 2),
            "experiment_tuner_trials": int(tuner.get("trials_this_experiment", 0)),
            "experiment_tuner_proxy_steps": int(tuner.get("proxy_steps_this_experiment", 0)),
            "experiment_tuner_seconds": float(tuner.get("seconds_this_experiment", 0.0))}


def process_record(started: float) -> dict[str, Any]:
    """When and where a training ran, recorded by the training itself: its process id, start and end (Unix seconds)
    and the process's peak resident memory (a training in its own process, tasks.procs: this training's)."""
    import os
    import time

    from tasks.procs import peak_rss_mib

    return {"pid": os.getpid(), "started": started, "ended": time.time(), "peak_rss_mib": peak_rss_mib()}


def append_journal(journal: Path, record: dict[str, Any]) -> None:
    """One JSON line per training that really ran (reused outputs add none), appended in one write."""
    import json
    import os

    journal.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


def _check_device(config: PipelineConfig) -> None:
    import torch

    if config.requires_gpu and not torch.cuda.is_available():
        raise RuntimeError(f"Config {config.name!r} needs a CUDA GPU (requires_gpu: true) and none is visible; "
                           "run it on a GPU machine or use configs/demo.yaml on CPU.")


def _prepared(config: PipelineConfig, out_dir: Path, base: Ref | None, data: Ref | None, cache_dir: Path | None,
              data_dir: Path | None) -> tuple[Ref, Ref]:
    """The refs ``alphagate train`` was not handed: the base model prepared in ``cache_dir`` (default: the cache
    root), the data in ``data_dir`` (default: beside ``out_dir``)."""
    from tasks.data.base_model import base_ref
    from tasks.data.sft import data_ref
    from tasks.environment import cache_root

    base = base or base_ref(config.base_model, Path(cache_dir) if cache_dir else cache_root())
    data = data or data_ref(config.data, Path(data_dir) if data_dir else out_dir.parent / "data")
    return base, data


def train_variant(config: PipelineConfig, variant: str, out_dir: Path, *, base: Ref | None = None,
                  data: Ref | None = None, cache_dir: Path | None = None, data_dir: Path | None = None,
                  history: Path | None = None, journal: Path | None = None) -> dict[str, Any]:
    """Train one variant into ``out_dir`` (atomically). ``out_dir`` is reused only when it holds an intact output
    of this exact key; otherwise it is trained (again) and replaced in one rename. Without refs (``alphagate
    train``) the base model is prepared in ``cache_dir`` and the data in ``data_dir`` (default: beside out_dir).
    run.json's ``process`` says when, in which process and with what peak memory it ran; ``journal`` (a JSONL file)
    gets the same facts as one line per training that ran."""
    import time

    started = time.time()
    from alpha_gate.schedules import LinearSchedule
    from tasks.data.base_model import base_model_info
    from tasks.train.tune import tune_sigmoid

    _check_variant(variant)
    _check_device(config)
    out_dir = Path(out_dir)
    if base is None or data is None:
        base, data = _prepared(config, out_dir, base, data, cache_dir, data_dir)
    key, inputs = train_key(config, variant, base, data)
    if verified(out_dir, key):
        logger.info("%s: reusing %s (same key %s)", variant, out_dir, key[:12])
        return read_json(out_dir / "run.json")
    base_dir, data_dir = Path(base.path), Path(data.path)
    extra: dict[str, Any] = {"key": key, "base_model": {"dir": str(base_dir), "sha256": base.sha256,
                                                        **base_model_info(base_dir)},
                             "data": {"dir": str(data_dir), "sha256": data.sha256,
                                      "counts": read_json(data_dir / "data_manifest.json")["counts"]}}
    if variant == "linear":
        schedule = LinearSchedule(config.linear.start)
    else:  # trials of this experiment's fingerprint (not the seed) are resumed/reused; other experiments' are ignored
        history = config.tuner.history_path or history or out_dir.parent / "tuner_history.json"
        schedule, extra["tuner"] = tune_sigmoid(config, base_dir, data_dir, history, run_id=key,
                                                base_sha256=base.sha256, data_sha256=data.sha256)
    with staging_dir(out_dir) as tmp:
        from tasks.train.fit import fit

        summary = fit(config, base_dir, data_dir, schedule, config.train.max_steps, tmp / "scratch", out=tmp,
                      label=variant)
        shutil.rmtree(tmp / "scratch", ignore_errors=True)
        if tuned(variant) and Path(history).is_file():  # the trials this schedule came from travel with it
            shutil.copy2(history, tmp / TUNER_HISTORY)
        extra["compute"] = compute_record(summary, extra.get("tuner"))
        extra["process"] = process_record(started)
        write_run_record(tmp, config, variant, summary, extra)
        seal(tmp, "train", key, inputs)
    if journal is not None:
        append_journal(Path(journal), {"stage": "train", "variant": variant, "seed": config.train.seed,
                                       "key": key, **extra["process"]})
    return read_json(out_dir / "run.json")


def train_in_process(config: dict, variant: str, out_dir: str, base: dict, data: dict, history: str,
                     seed: int | None = None, tuner_trials: int | None = None, journal: str | None = None,
                     expected_key: str | None = None) -> None:
    """The child-process entry of a flow training (tasks.procs.run_in_process; JSON arguments): one replicate of
    ``variant`` with the validated ``config`` its caller was handed (dumped) into ``out_dir``, whose key must be
    ``expected_key``."""
    from tasks.keys import check_expected_key

    config = replicate_config(PipelineConfig.model_validate(config), seed, tuner_trials)
    base_ref, data_ref = Ref.model_validate(base), Ref.model_validate(data)
    check_expected_key("training", train_key(config, variant, base_ref, data_ref)[0], expected_key)
    train_variant(config, variant, Path(out_dir), base=base_ref, data=data_ref, history=Path(history),
                  journal=Path(journal) if journal else None)
