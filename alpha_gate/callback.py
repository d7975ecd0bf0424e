"""A transformers TrainerCallback that drives blend_alpha and the PET weight from their schedules.

Progress at optimizer step s (0-based, ``state.global_step`` before the step runs) of N steps is
p = s / (N - 1), so the first step trains at schedule(0) and the last at schedule(1) = 1: the model
that is folded at export is the one the final step trained, not an extrapolation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn
from transformers import TrainerCallback

from alpha_gate.atomic import atomic_write_json
from alpha_gate.pet import PETSchedule
from alpha_gate.so8 import SO8Gate, get_so8_gates

logger = logging.getLogger(__name__)


def training_progress(step: int, max_steps: int) -> float:
    """p = step / (max_steps - 1) clamped to [0, 1]; a one-step run is at p = 1."""
    if max_steps is None or max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 to compute training progress; got {max_steps!r}. "
                         "Set TrainingArguments.max_steps (or a finite num_train_epochs).")
    if max_steps == 1:
        return 1.0
    return min(1.0, max(0.0, step / (max_steps - 1)))


class AlphaGateCallback(TrainerCallback):
    """Sets blend_alpha on every gate at each optimizer step; exposes and records the PET weight.

    ``pet_weight`` is read by the training loss (loss + pet_weight * pet_penalty). ``trajectory``
    holds one {"step", "progress", "blend_alpha", "pet_weight"} row per optimizer step.
    """

    def __init__(self, gates: nn.Module | list[SO8Gate], schedule, pet_schedule: PETSchedule | None = None,
                 trajectory_path: str | Path | None = None):
        self.gates = list(gates) if isinstance(gates, list) else get_so8_gates(gates)
        if not self.gates:
            raise ValueError("AlphaGateCallback needs SO(8) gates; call attach_so8_gates first.")
        self.schedule = schedule
        self.pet_schedule = pet_schedule if pet_schedule is not None else PETSchedule.off()
        self.trajectory_path = Path(trajectory_path) if trajectory_path is not None else None
        self.trajectory: list[dict[str, float]] = []
        self.blend_alpha = float(schedule(0.0))
        self.pet_weight = float(self.pet_schedule(0.0))

    def _apply(self, step: int, max_steps: int) -> None:
        progress = training_progress(step, max_steps)
        self.blend_alpha = float(self.schedule(progress))
        self.pet_weight = float(self.pet_schedule(progress))
        for gate in self.gates:
            gate.blend_alpha = self.blend_alpha
        if self.trajectory and self.trajectory[-1]["step"] == step:
            return  # on_train_begin and the first on_step_begin both land on step 0
        self.trajectory.append({"step": step, "progress": progress,
                                "blend_alpha": self.blend_alpha, "pet_weight": self.pet_weight})

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step, state.max_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step, state.max_steps)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        extra = {"blend_alpha": self.blend_alpha, "pet_weight": self.pet_weight}
        if logs is not None:
            logs.update(extra)  # seen by callbacks after this one (console, trackers)
        # Trainer.log appends a copy to log_history before on_log runs: add ours to it too.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)
        logger.info("step %d: blend_alpha=%.6f pet_weight=%.4g", state.global_step,
                    self.blend_alpha, self.pet_weight)

    def on_train_end(self, args, state, control, **kwargs):
        if self.trajectory_path is not None:
            self.save_trajectory(self.trajectory_path)

    def save_trajectory(self, path: str | Path) -> Path:
        """Write the trajectory as JSON, atomically."""
        return atomic_write_json(path, {"schedule": _describe(self.schedule),
                                        "pet_phases": [list(p) for p in self.pet_schedule.phases],
                                        "trajectory": self.trajectory})


def _describe(schedule) -> Any:
    to_dict = getattr(schedule, "to_dict", None)
    return to_dict() if callable(to_dict) else repr(schedule)
