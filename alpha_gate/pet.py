"""PET ("periodic error term"): a second-difference smoothness penalty on the last hidden states.

    pet_penalty(h, mask) = mean over valid t of || h[t+2] - 2 h[t+1] + h[t] ||^2

A position t is valid when t, t+1 and t+2 are all real tokens under the attention mask (so padding
never enters a difference). The training loss adds lambda(progress) * pet_penalty, with lambda from a
phase schedule (default 0.01 for the first 20 % of steps, 0.05 until 60 %, 0.1 after); lambda = 0
turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def pet_penalty(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared L2 norm of the second difference along the sequence, masked; a scalar tensor."""
    if hidden_states.dim() != 3:
        raise ValueError(f"hidden_states must be [batch, seq, hidden]; got shape {tuple(hidden_states.shape)}.")
    batch, seq, _ = hidden_states.shape
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, seq):
        raise ValueError(f"attention_mask must be [batch, seq] = {(batch, seq)}; got {tuple(attention_mask.shape)}.")
    if seq < 3:
        return hidden_states.sum() * 0.0  # no second difference exists; keep the graph connected
    h = hidden_states.float()  # a bf16 square sum loses too much
    second = h[:, 2:] - 2.0 * h[:, 1:-1] + h[:, :-2]
    sq_norm = second.pow(2).sum(dim=-1)  # [batch, seq - 2]
    if attention_mask is None:
        return sq_norm.mean()
    m = attention_mask.to(torch.bool)
    valid = (m[:, 2:] & m[:, 1:-1] & m[:, :-2]).to(sq_norm.dtype)
    count = valid.sum()
    return (sq_norm * valid).sum() / count.clamp_min(1.0)


@dataclass(frozen=True)
class PETSchedule:
    """Piecewise-constant lambda: ``phases`` are (end_progress, lambda) pairs in increasing order.

    lambda(p) is the weight of the first phase whose end_progress exceeds p (the last phase also
    covers p = 1). ``PETSchedule.off()`` is lambda = 0 throughout.
    """

    phases: tuple[tuple[float, float], ...] = ((0.2, 0.01), (0.6, 0.05), (1.0, 0.1))

    def __post_init__(self) -> None:
        phases = tuple((float(e), float(w)) for e, w in self.phases)
        object.__setattr__(self, "phases", phases)
        ends = [e for e, _ in phases]
        if not phases or ends != sorted(set(ends)) or ends[-1] != 1.0 or ends[0] <= 0.0:
            raise ValueError(f"PET phases need strictly increasing end points in (0, 1] ending at 1.0; got {ends}.")
        if any(not (math.isfinite(w) and w >= 0.0) for _, w in phases):
            raise ValueError(f"PET weights must be finite and >= 0; got {[w for _, w in phases]}.")

    @classmethod
    def off(cls) -> PETSchedule:
        return cls(((1.0, 0.0),))

    @property
    def enabled(self) -> bool:
        return any(w > 0.0 for _, w in self.phases)

    def __call__(self, progress: float) -> float:
        p = float(progress)
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"Training progress must be in [0, 1]; got {progress!r}.")
        for end, weight in self.phases:
            if p < end:
                return weight
        return self.phases[-1][1]
