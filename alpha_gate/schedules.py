"""Blend-alpha schedules: callables mapping training progress p in [0, 1] to blend_alpha in [0, 1].

LinearSchedule(start):             alpha(p) = start + (1 - start) p
SigmoidSchedule(k, midpoint, base): alpha(p) = base + (1 - base) s(p),
    s(p) = (sigmoid(k (p - midpoint)) - sigmoid(-k midpoint))
           / (sigmoid(k (1 - midpoint)) - sigmoid(-k midpoint)),
so s(0) = 0 and s(1) = 1 exactly and alpha runs from base to 1. base = PHI_MINUS_2 = Phi(-2), the
standard normal CDF at -2 (about 0.02275), starts the rotation slightly open; base = 0 is the plain
[0, 1] interval mode.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

PHI_MINUS_2: float = 0.5 * math.erfc(2.0 / math.sqrt(2.0))  # Phi(-2) = 0.022750131948179...


def _check_progress(progress: float) -> float:
    p = float(progress)
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ValueError(f"Training progress must be a number in [0, 1]; got {progress!r}. "
                         "Compute it as step / (max_steps - 1), clamped to [0, 1].")
    return p


def _sigmoid(z: float) -> float:
    # Split by sign so neither branch overflows math.exp for large |z| (large k).
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class LinearSchedule:
    """alpha rises linearly from ``start`` at p = 0 to 1 at p = 1."""

    start: float = 0.0
    kind = "linear"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and 0.0 <= self.start <= 1.0):
            raise ValueError(f"LinearSchedule start must be in [0, 1]; got {self.start!r}.")

    def __call__(self, progress: float) -> float:
        p = _check_progress(progress)
        return min(1.0, self.start + (1.0 - self.start) * p)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class SigmoidSchedule:
    """Logistic ramp with steepness ``k`` centred at ``midpoint``, rescaled to run base -> 1."""

    k: float
    midpoint: float
    base: float = PHI_MINUS_2
    kind = "sigmoid"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k) and self.k > 0):
            raise ValueError(f"SigmoidSchedule k (steepness) must be a finite number > 0; got {self.k!r}.")
        if not (math.isfinite(self.midpoint) and 0.0 < self.midpoint < 1.0):
            raise ValueError(f"SigmoidSchedule midpoint must lie strictly inside (0, 1); got {self.midpoint!r}.")
        if not (math.isfinite(self.base) and 0.0 <= self.base < 1.0):
            raise ValueError(f"SigmoidSchedule base must be in [0, 1); got {self.base!r}. "
                             f"Use PHI_MINUS_2 ({PHI_MINUS_2:.5f}) or 0.")

    def __call__(self, progress: float) -> float:
        p = _check_progress(progress)
        if p == 0.0:
            return self.base
        if p == 1.0:
            return 1.0
        lo = _sigmoid(-self.k * self.midpoint)
        hi = _sigmoid(self.k * (1.0 - self.midpoint))
        s = (_sigmoid(self.k * (p - self.midpoint)) - lo) / (hi - lo)
        return min(1.0, max(self.base, self.base + (1.0 - self.base) * s))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


Schedule = LinearSchedule | SigmoidSchedule


def schedule_from_dict(data: dict[str, Any]) -> Schedule:
    """Inverse of ``to_dict``: rebuild a schedule from its JSON form."""
    fields = dict(data)
    kind = fields.pop("kind", None)
    if kind == "linear":
        return LinearSchedule(**fields)
    if kind == "sigmoid":
        return SigmoidSchedule(**fields)
    raise ValueError(f"Unknown schedule kind {kind!r}; expected 'linear' or 'sigmoid'.")


def sampled(schedule: Schedule, points: int) -> list[dict[str, float]]:
    """``points`` (>= 2) evenly spaced progress values from 0 to 1 and the schedule's blend_alpha at each."""
    if points < 2:
        raise ValueError(f"points must be >= 2 (both ends of training); got {points}")
    return [{"progress": i / (points - 1), "blend_alpha": schedule(i / (points - 1))} for i in range(points)]
