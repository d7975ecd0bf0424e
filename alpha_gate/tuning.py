"""Bayesian tuning of the sigmoid schedule's (k, midpoint) with scikit-optimize (GP + EI).

The caller measures the objective (in the pipeline: the validation loss of a short proxy training
run with the proposed schedule) and reports it back; the tuner never invents observations.

    tuner = SigmoidBayesTuner((1.0, 30.0), (0.1, 0.9), history_path="tuner.json", seed=0)
    for _ in range(n):
        schedule = tuner.ask()
        tuner.tell(schedule, proxy_validation_loss(schedule))
    best = tuner.best()

Every tell is appended to a JSON history (written atomically). A new tuner on the same file
warm-starts from every earlier trial. Each ask rebuilds the optimizer from the history with the same
seed, so a proposal depends only on (history, seed, settings): a resumed or next-night process
proposes exactly what an uninterrupted one would have.

A history may be shared by several experiments (another base model, data, learning rate, proxy length...):
their objectives differ, so a tuner built with ``fingerprint=`` (a digest of everything its objective depends
on) stamps it on every trial it tells and learns from, counts and picks ``best()`` among only the trials with
that fingerprint. Other trials (and old ones without a fingerprint) stay in the file, untouched and unused.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alpha_gate.atomic import atomic_write_json
from alpha_gate.schedules import PHI_MINUS_2, SigmoidSchedule

HISTORY_FORMAT = "alpha-gate-tuner-history/1"


@dataclass(frozen=True)
class Trial:
    k: float
    midpoint: float
    base: float
    value: float
    recorded_at: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def schedule(self) -> SigmoidSchedule:
        return SigmoidSchedule(self.k, self.midpoint, self.base)


def _check_bounds(name: str, bounds, lo_min: float, hi_max: float, open_hi: bool) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high); got {bounds!r}.") from None
    ok_hi = hi < hi_max if open_hi else hi <= hi_max
    if not (math.isfinite(lo) and math.isfinite(hi) and lo_min < lo < hi and ok_hi):
        limit = f"{lo_min} < low < high {'<' if open_hi else '<='} {hi_max}"
        raise ValueError(f"{name} must satisfy {limit}; got ({lo}, {hi}).")
    return lo, hi


def _load_trials(path: Path) -> list[Trial]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"Tuner history {path} is not valid JSON ({exc}). Restore it from the "
                         "artifact store or move it aside to start a fresh history.") from None
    if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
        raise ValueError(f"Tuner history {path}: expected an object with format={HISTORY_FORMAT!r}; "
                         f"found {str(data)[:80]!r}.")
    trials = []
    for i, raw in enumerate(data.get("trials", [])):
        try:
            trial = Trial(**raw)
            _ = trial.schedule  # validates k, midpoint, base
            if not math.isfinite(float(trial.value)):
                raise ValueError(f"value {trial.value!r} is not finite")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Tuner history {path}, trials[{i}]: {exc}. Fix or remove that trial.") from None
        trials.append(trial)
    return trials


class SigmoidBayesTuner:
    """ask/tell tuner over (k, midpoint) of a SigmoidSchedule with a fixed base."""

    def __init__(self, k_bounds=(1.0, 30.0), midpoint_bounds=(0.1, 0.9),
                 history_path: str | Path | None = None, seed: int = 0, *,
                 base: float = PHI_MINUS_2, n_initial_points: int = 5, k_prior: str = "log-uniform",
                 fingerprint: str | None = None):
        self.k_bounds = _check_bounds("k_bounds", k_bounds, 0.0, math.inf, open_hi=True)
        self.midpoint_bounds = _check_bounds("midpoint_bounds", midpoint_bounds, 0.0, 1.0, open_hi=True)
        SigmoidSchedule(1.0, 0.5, base)  # validates base with the schedule's own message
        if n_initial_points < 1:
            raise ValueError(f"n_initial_points must be >= 1; got {n_initial_points}.")
        if k_prior not in ("uniform", "log-uniform"):
            raise ValueError(f"k_prior must be 'uniform' or 'log-uniform'; got {k_prior!r}.")
        if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
            raise ValueError(f"fingerprint must be a non-empty string or None; got {fingerprint!r}.")
        self.base, self.seed, self.n_initial_points, self.k_prior = base, int(seed), n_initial_points, k_prior
        self.fingerprint = fingerprint
        self.history_path = Path(history_path) if history_path is not None else None
        exists = self.history_path is not None and self.history_path.exists()
        self._trials: list[Trial] = _load_trials(self.history_path) if exists else []

    # -- history ---------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """Every trial in the history, including ones this tuner's surrogate does not use."""
        return list(self._trials)

    def _same_base(self, t: Trial) -> bool:
        return math.isclose(t.base, self.base, rel_tol=0.0, abs_tol=1e-12)

    def _in_space(self, t: Trial) -> bool:
        (klo, khi), (mlo, mhi) = self.k_bounds, self.midpoint_bounds
        return self._same_base(t) and klo <= t.k <= khi and mlo <= t.midpoint <= mhi

    def _same_experiment(self, t: Trial) -> bool:
        return self.fingerprint is None or t.meta.get("fingerprint") == self.fingerprint

    @property
    def experiment_trials(self) -> list[Trial]:
        """Trials of this tuner's experiment: all of them without a fingerprint, else those carrying it."""
        return [t for t in self._trials if self._same_experiment(t)]

    @property
    def usable_trials(self) -> list[Trial]:
        """Trials the surrogate learns from: this experiment's, same base and inside the current bounds."""
        return [t for t in self._trials if self._in_space(t) and self._same_experiment(t)]

    def _save(self) -> None:
        if self.history_path is None:
            return
        atomic_write_json(self.history_path, {
            "format": HISTORY_FORMAT,
            "space": {"k_bounds": list(self.k_bounds), "midpoint_bounds": list(self.midpoint_bounds),
                      "base": self.base, "k_prior": self.k_prior},
            "trials": [asdict(t) for t in self._trials],
        })

    # -- optimisation ----------------------------------------------------------------------------
    def _optimizer(self):
        from alpha_gate import skopt_compat

        skopt_compat.apply()
        from skopt import Optimizer
        from skopt.space import Real

        space = [Real(*self.k_bounds, prior=self.k_prior, name="k"),
                 Real(*self.midpoint_bounds, name="midpoint")]
        with warnings.catch_warnings():
            # Sobol's balance notice for n not a power of 2 is informational, not a fault.
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol", category=UserWarning)
            opt = Optimizer(space, base_estimator="GP", acq_func="EI", acq_optimizer="lbfgs",
                            n_initial_points=self.n_initial_points, initial_point_generator="sobol",
                            random_state=self.seed)
        usable = self.usable_trials
        if usable:
            opt.tell([[t.k, t.midpoint] for t in usable], [t.value for t in usable])
        return opt

    def ask(self) -> SigmoidSchedule:
        """Propose the next schedule to measure (the same proposal until something is told)."""
        k, midpoint = self._optimizer().ask()
        return SigmoidSchedule(float(k), float(midpoint), self.base)

    def tell(self, schedule: SigmoidSchedule, value: float, meta: dict[str, Any] | None = None) -> Trial:
        """Record a measured objective (lower is better) for ``schedule``; saved at once."""
        if not isinstance(schedule, SigmoidSchedule):
            raise TypeError(f"tell expects a SigmoidSchedule; got {type(schedule).__name__}.")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"The objective for {schedule} must be a finite number; got {value}. "
                             "If the proxy run diverged, report that run as failed instead of telling it.")
        meta = dict(meta or {})
        if self.fingerprint is not None:
            if meta.setdefault("fingerprint", self.fingerprint) != self.fingerprint:
                raise ValueError(f"meta fingerprint {meta['fingerprint']!r} differs from this tuner's "
                                 f"{self.fingerprint!r}; tell it to a tuner of that experiment.")
        trial = Trial(schedule.k, schedule.midpoint, schedule.base, value,
                      datetime.now(UTC).isoformat(timespec="seconds"), meta)
        if not self._in_space(trial):
            raise ValueError(f"{schedule} lies outside this tuner's space (k in {self.k_bounds}, "
                             f"midpoint in {self.midpoint_bounds}, base {self.base}).")
        self._trials.append(trial)
        self._save()
        return trial

    def best(self) -> SigmoidSchedule:
        """The measured schedule with the lowest objective among this experiment's trials with this tuner's base."""
        candidates = [t for t in self._trials if self._same_base(t) and self._same_experiment(t)]
        if not candidates:
            scope = "" if self.fingerprint is None else f" and fingerprint {self.fingerprint[:12]}"
            raise RuntimeError(f"No trials with this base{scope} have been told yet; ask, measure and tell first.")
        return min(candidates, key=lambda t: t.value).schedule
