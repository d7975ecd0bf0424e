"""alpha_gate: the science of the project (no Prefect, no llama.cpp here).

Public API (torch-dependent names load lazily, so importing the package stays cheap):

    attach_so8_gates(model, layers=None) -> list[SO8Gate]
    set_blend_alpha(model, alpha)
    fold_so8_gates(model) -> model
    detach_so8_gates(model), get_so8_gates(model), gate_state_dict(model), load_gate_state_dict(model, state)
    schedules.PHI_MINUS_2, schedules.LinearSchedule, schedules.SigmoidSchedule
    tuning.SigmoidBayesTuner
    pet.pet_penalty, pet.PETSchedule
    callback.AlphaGateCallback
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SO8Gate": "alpha_gate.so8",
    "attach_so8_gates": "alpha_gate.so8",
    "set_blend_alpha": "alpha_gate.so8",
    "fold_so8_gates": "alpha_gate.so8",
    "detach_so8_gates": "alpha_gate.so8",
    "get_so8_gates": "alpha_gate.so8",
    "gate_state_dict": "alpha_gate.so8",
    "load_gate_state_dict": "alpha_gate.so8",
    "SUPPORTED_MODEL_TYPES": "alpha_gate.so8",
    "PHI_MINUS_2": "alpha_gate.schedules",
    "LinearSchedule": "alpha_gate.schedules",
    "SigmoidSchedule": "alpha_gate.schedules",
    "SigmoidBayesTuner": "alpha_gate.tuning",
    "pet_penalty": "alpha_gate.pet",
    "PETSchedule": "alpha_gate.pet",
    "AlphaGateCallback": "alpha_gate.callback",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alpha_gate' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
