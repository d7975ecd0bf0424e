"""Sigmoid-Bayes: pick (k, midpoint) with the Bayesian tuner from short proxy trainings.

Each proxy run trains ``tuner.proxy_steps`` steps with the proposed schedule (same seed, data and init
as the real run) and is scored by its validation loss (LM loss only, PET excluded). Every trial is
appended to the tuner's JSON history, so a killed tuning resumes where it stopped.

Trials are scoped by an experiment fingerprint (``experiment_fingerprint``): the sha256 of everything the
proxy objective depends on (base model, SFT data, the training settings a proxy run uses, proxy_steps, the
search space and the objective's definition) but deliberately not the training seed. Later runs of the same
experiment (nightly replicates with another seed) count its trials as done and warm-start from them; the
completed-trial count, the surrogate and the chosen schedule use only trials of the same fingerprint, so a
trial measured on another objective (other data, learning rate, proxy length, bounds...) is never picked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig

logger = logging.getLogger(__name__)

# What a trial's value means. Bump the version whenever tasks/train/fit.py (or what tune_sigmoid reports as the
# objective) changes the measured value, so older trials stop counting. "of" keeps the module's old dotted name
# (tasks.fit, now tasks.train.fit): it is part of the fingerprint, and a rename alone changes no measured value.
OBJECTIVE = {"metric": "final_eval_loss", "of": "tasks.fit.fit(max_steps=tuner.proxy_steps)",
             "split": "validation", "loss": "LM loss, PET excluded", "version": 1}
K_PRIOR = "log-uniform"
# config sections a proxy run reads (tasks/train/fit.py); the data section is covered by the data's sha256
PROXY_SECTIONS = ("lora", "gates", "pet", "train")
# train fields left out: the seed on purpose (replicates of one experiment share trials), max_steps because a proxy
# run trains tuner.proxy_steps steps instead (the linear lr decay runs over proxy_steps too)
# (``seeds``, the replicate list, is not one run's setting at all: adding a seed must not orphan earlier trials)
NOT_IN_FINGERPRINT = {"train": ("seed", "seeds", "max_steps")}


def fingerprint_inputs(config: PipelineConfig, base_sha256: str, data_sha256: str) -> dict[str, Any]:
    """Everything a proxy trial's objective depends on, as JSON-ready values."""
    dumped = config.model_dump(mode="json")
    sections = {name: {k: v for k, v in dumped[name].items() if k not in NOT_IN_FINGERPRINT.get(name, ())}
                for name in PROXY_SECTIONS}
    t = config.tuner
    return {"base_model_sha256": base_sha256, "data_sha256": data_sha256, "training": sections,
            "proxy_steps": t.proxy_steps,
            "space": {"k_bounds": list(t.k_bounds), "midpoint_bounds": list(t.midpoint_bounds), "base": t.base,
                      "k_prior": K_PRIOR},
            "objective": OBJECTIVE, **({"seed": config.train.seed} if t.per_seed else {})}


def experiment_fingerprint(config: PipelineConfig, base_sha256: str, data_sha256: str
                           ) -> tuple[str, dict[str, Any]]:
    """(sha256 of the fingerprint inputs, the inputs)."""
    inputs = fingerprint_inputs(config, base_sha256, data_sha256)
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest(), inputs


def make_tuner(config: PipelineConfig, history_path: Path, fingerprint: str | None = None):
    from alpha_gate.schedules import PHI_MINUS_2
    from alpha_gate.tuning import SigmoidBayesTuner

    t = config.tuner
    return SigmoidBayesTuner(t.k_bounds, t.midpoint_bounds, history_path, config.train.seed,
                             base=PHI_MINUS_2 if t.base == "phi" else 0.0, n_initial_points=t.n_initial_points,
                             k_prior=K_PRIOR, fingerprint=fingerprint)


def tune_sigmoid(config: PipelineConfig, base_dir: Path, data_dir: Path, history_path: Path,
                 run_id: str, *, base_sha256: str, data_sha256: str) -> tuple[Any, dict[str, Any]]:
    """Run the trials this experiment still owes (resuming), then return the best schedule and a summary.

    ``run_id`` (the training's key) is recorded on each trial for tracing only; trials are scoped by the experiment
    fingerprint of (config, base model sha256, data sha256)."""
    from tasks.train.fit import fit

    fingerprint, inputs = experiment_fingerprint(config, base_sha256, data_sha256)
    tuner = make_tuner(config, history_path, fingerprint)
    unscoped = sum("fingerprint" not in t.meta for t in tuner.trials)
    others = len(tuner.trials) - unscoped - len(tuner.experiment_trials)
    if unscoped:
        logger.info("tuner history %s: %d trial(s) without an experiment fingerprint (older format) are ignored "
                    "for the best schedule and the completed-trial count", history_path, unscoped)
    if others:
        logger.info("tuner history %s: %d trial(s) of other experiments (fingerprint != %s) are ignored",
                    history_path, others, fingerprint[:12])
    done = len(tuner.experiment_trials)
    if done:
        logger.info("tuner: %d trial(s) of experiment %s already done (resumed or earlier runs)", done,
                    fingerprint[:12])
    for i in range(done, config.tuner.n_trials):
        schedule = tuner.ask()
        with tempfile.TemporaryDirectory(prefix="alphagate-proxy-") as scratch:
            result = fit(config, base_dir, data_dir, schedule, config.tuner.proxy_steps, Path(scratch),
                         label=f"tuner trial {i + 1}/{config.tuner.n_trials}")
        tuner.tell(schedule, result["final_eval_loss"],
                   meta={"fingerprint": fingerprint, "fingerprint_inputs": inputs, "run_id": run_id,
                         "seed": config.train.seed, "trial": i, "proxy_steps": config.tuner.proxy_steps,
                         "seconds": result["train_seconds"]})
        logger.info("tuner trial %d/%d: k=%.4g midpoint=%.4g -> validation loss %.5f", i + 1,
                    config.tuner.n_trials, schedule.k, schedule.midpoint, result["final_eval_loss"])
    own = tuner.experiment_trials
    mine = [t for t in own if t.meta.get("run_id") == run_id]
    chosen = min(own, key=lambda t: t.value)
    best = chosen.schedule
    info = {"history_path": str(history_path), "fingerprint": fingerprint, "trials_total": len(tuner.trials),
            "trials_this_experiment": len(own),
            "trials_this_run": len(mine),
            "proxy_steps_this_run": sum(t.meta.get("proxy_steps", 0) for t in mine),
            "seconds_this_run": round(sum(t.meta.get("seconds", 0.0) for t in mine), 2),
            "proxy_steps_this_experiment": sum(t.meta.get("proxy_steps", 0) for t in own),
            "seconds_this_experiment": round(sum(t.meta.get("seconds", 0.0) for t in own), 2),
            "trials_ignored_no_fingerprint": unscoped, "trials_other_experiments": others,
            "usable_trials": len(tuner.usable_trials), "best": best.to_dict(), "best_value": chosen.value}
    return best, info
