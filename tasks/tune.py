"""Sigmoid-Bayes: pick (k, midpoint) with the Bayesian tuner from short proxy trainings.

Each proxy run trains ``tuner.proxy_steps`` steps with the proposed schedule (same seed, data and init
as the real run) and is scored by its validation loss (LM loss only, PET excluded). Every trial is
appended to the tuner's JSON history, so a killed tuning resumes where it stopped and the next run (the
nightly re-comparison) warm-starts from all earlier trials.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig

logger = logging.getLogger(__name__)


def make_tuner(config: PipelineConfig, history_path: Path):
    from alpha_gate.schedules import PHI_MINUS_2
    from alpha_gate.tuning import SigmoidBayesTuner

    t = config.tuner
    return SigmoidBayesTuner(t.k_bounds, t.midpoint_bounds, history_path, config.train.seed,
                             base=PHI_MINUS_2 if t.base == "phi" else 0.0, n_initial_points=t.n_initial_points)


def tune_sigmoid(config: PipelineConfig, base_dir: Path, data_dir: Path, history_path: Path,
                 run_id: str) -> tuple[Any, dict[str, Any]]:
    """Run the trials this run still owes (resuming), then return the best schedule and a summary."""
    from tasks.fit import fit

    tuner = make_tuner(config, history_path)
    done = [t for t in tuner.trials if t.meta.get("run_id") == run_id]
    for i in range(len(done), config.tuner.n_trials):
        schedule = tuner.ask()
        with tempfile.TemporaryDirectory(prefix="alphagate-proxy-") as scratch:
            result = fit(config, base_dir, data_dir, schedule, config.tuner.proxy_steps, Path(scratch),
                         label=f"tuner trial {i + 1}/{config.tuner.n_trials}")
        tuner.tell(schedule, result["final_eval_loss"],
                   meta={"run_id": run_id, "trial": i, "proxy_steps": config.tuner.proxy_steps,
                         "seconds": result["train_seconds"]})
        logger.info("tuner trial %d/%d: k=%.4g midpoint=%.4g -> validation loss %.5f", i + 1,
                    config.tuner.n_trials, schedule.k, schedule.midpoint, result["final_eval_loss"])
    # the schedule comes from this experiment's own trials (run_id: the training's key, which covers the base model,
    # data, training settings and tuner bounds); other experiments' trials in a shared history only warm-start the
    # surrogate: their losses were measured on another objective
    own = [t for t in tuner.trials if t.meta.get("run_id") == run_id]
    chosen = min(own, key=lambda t: t.value)
    best = chosen.schedule
    info = {"history_path": str(history_path), "trials_total": len(tuner.trials),
            "trials_this_run": len(own), "usable_trials": len(tuner.usable_trials),
            "best": best.to_dict(), "best_value": chosen.value}
    return best, info
