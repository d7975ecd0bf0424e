from __future__ import annotations

import json

import pytest
import torch

from alpha_gate.callback import AlphaGateCallback, training_progress
from alpha_gate.pet import PETSchedule, pet_penalty
from alpha_gate.schedules import LinearSchedule, SigmoidSchedule
from alpha_gate.so8 import attach_so8_gates
from tests.conftest import tiny_model, tokens


def test_training_progress():
    assert [training_progress(s, 5) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert training_progress(0, 1) == 1.0
    assert training_progress(9, 5) == 1.0
    with pytest.raises(ValueError, match="max_steps"):
        training_progress(0, 0)


def test_needs_gates():
    with pytest.raises(ValueError, match="attach_so8_gates first"):
        AlphaGateCallback(tiny_model("llama"), LinearSchedule())


def test_drives_gates_and_pet_weight_through_a_real_trainer(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = tiny_model("llama").train()
    gates = attach_so8_gates(model)
    before = [g.A.detach().clone() for g in gates]
    pet_schedule = PETSchedule(((0.5, 0.2), (1.0, 0.7)))
    callback = AlphaGateCallback(gates, LinearSchedule(), pet_schedule, trajectory_path=tmp_path / "traj.json")
    seen_weights = []

    class PETTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = model(**inputs, output_hidden_states=True)
            seen_weights.append(callback.pet_weight)
            loss = out.loss + callback.pet_weight * pet_penalty(out.hidden_states[-1], inputs["attention_mask"])
            return (loss, out) if return_outputs else loss

    ids = tokens(batch=8, seq=16)
    data = [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": i} for i in ids]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=5, per_device_train_batch_size=2,
                             learning_rate=5e-2, logging_steps=1, report_to=[], save_strategy="no",
                             use_cpu=True, disable_tqdm=True)
    PETTrainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()

    assert [r["step"] for r in callback.trajectory] == [0, 1, 2, 3, 4]
    assert [r["blend_alpha"] for r in callback.trajectory] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [r["pet_weight"] for r in callback.trajectory] == [0.2, 0.2, 0.7, 0.7, 0.7]
    assert seen_weights == [0.2, 0.2, 0.7, 0.7, 0.7]
    assert all(g.blend_alpha == 1.0 for g in gates)
    # gate parameters were trained (alpha > 0 from step 1 on, so A received gradients)
    assert any(not torch.equal(b, g.A.detach()) for b, g in zip(before, gates, strict=True))
    saved = json.loads((tmp_path / "traj.json").read_text())
    assert saved["schedule"] == {"kind": "linear", "start": 0.0}
    assert saved["trajectory"] == callback.trajectory


def test_log_history_carries_blend_alpha(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = tiny_model("qwen3").train()
    callback = AlphaGateCallback(model if attach_so8_gates(model) else None, SigmoidSchedule(6.0, 0.5))
    ids = tokens(batch=6, seq=8)
    data = [{"input_ids": i, "labels": i} for i in ids]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2,
                             logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    rows = [h for h in trainer.state.log_history if "loss" in h]
    assert len(rows) == 3
    expected = [SigmoidSchedule(6.0, 0.5)(p) for p in (0.0, 0.5, 1.0)]
    assert [r["blend_alpha"] for r in rows] == pytest.approx(expected)
