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


def write_outputs(out: Path, model, log_history, callback, summary: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from alpha_gate.so8 import gate_state_dict

    model.save_pretrained(out / "adapter")  # peft: the LoRA adapter only
    save_file(gate_state_dict(model), str(out / "gates.safetensors"),
              metadata={"blend_alpha": repr(summary["final_blend_alpha"])})
    callback.save_trajectory(out / "alpha_trajectory.json")
    atomic_write_text(out / "alpha_trajectory.csv",
                      _csv(callback.trajectory, ("step", "progress", "blend_alpha", "pet_weight")))
    curves = loss_curves(log_history)
    atomic_write_json(out / "loss_curves.json", curves)
    atomic_write_text(out / "train_loss.csv", _csv(curves["train"], TRAIN_KEYS))
    atomic_write_text(out / "val_loss.csv", _csv(curves["validation"], ("step", "eval_loss")))
