"""What a finished training run leaves behind (inside its staging folder, renamed into place later)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from tasks.store import atomic_write_json, atomic_write_text

TRAIN_KEYS = ("step", "loss", "lm_loss", "pet", "blend_alpha", "pet_weight", "learning_rate", "grad_norm")


def _csv(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(keys), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def loss_curves(log_history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    train = [{k: row[k] for k in TRAIN_KEYS if k in row} for row in log_history if "loss" in row]
    val = {row["step"]: row["eval_loss"] for row in log_history if "eval_loss" in row}  # last per step wins
    return {"train": train, "validation": [{"step": s, "eval_loss": v} for s, v in sorted(val.items())]}


def save_adapter_and_gates(out: Path, model, blend_alpha: float) -> None:
    """adapter/ (peft: the LoRA adapter only) and gates.safetensors (the SO(8) gates, with their alpha)."""
    from safetensors.torch import save_file

    from alpha_gate.so8 import gate_state_dict

    model.save_pretrained(out / "adapter")
    save_file(gate_state_dict(model), str(out / "gates.safetensors"), metadata={"blend_alpha": repr(blend_alpha)})


def load_trained(run_dir: Path, trainable: bool = False):
    """A finished run's model, unmerged: its fp32 base (never 4-bit) + its LoRA + its gates at the run's final
    blend_alpha. Returns (model, run record, config, base_dir)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from alpha_gate.so8 import attach_so8_gates, load_gate_state_dict, set_blend_alpha
    from tasks.config import PipelineConfig
    from tasks.store import read_json

    run = read_json(run_dir / "run.json")
    config = PipelineConfig.model_validate(run["config"])
    base_dir = Path(run["base_model"]["dir"])
    if not (base_dir / "config.json").is_file():
        raise FileNotFoundError(f"The run's base model {base_dir} is gone; re-run `alphagate train` to rebuild it.")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, run_dir / "adapter", is_trainable=trainable)
    attach_so8_gates(model, config.gates.layers)
    load_gate_state_dict(model, load_file(str(run_dir / "gates.safetensors")))
    set_blend_alpha(model, run["final_blend_alpha"])
    return model, run, config, base_dir


def write_outputs(out: Path, model, log_history, callback, summary: dict[str, Any]) -> None:
    save_adapter_and_gates(out, model, summary["final_blend_alpha"])
    callback.save_trajectory(out / "alpha_trajectory.json")
    atomic_write_text(out / "alpha_trajectory.csv",
                      _csv(callback.trajectory, ("step", "progress", "blend_alpha", "pet_weight")))
    curves = loss_curves(log_history)
    atomic_write_json(out / "loss_curves.json", curves)
    atomic_write_text(out / "train_loss.csv", _csv(curves["train"], TRAIN_KEYS))
    atomic_write_text(out / "val_loss.csv", _csv(curves["validation"], ("step", "eval_loss")))
