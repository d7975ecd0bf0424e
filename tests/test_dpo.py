from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.train.dpo import benchmark_texts, build_pairs, checkable, is_correct
from tests.conftest import tiny_pipeline_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "benchmarks"


def test_checkable_answers():
    assert checkable("105 yen") == ("number", "105")
    assert checkable("1,250") == ("number", "1250")
    assert checkable("(B)") == ("choice", "B")
    assert checkable("12:15") is None and checkable("Paris") is None and checkable("3 and 4") is None
    assert is_correct("number", "105", "It costs 105 yen.") and not is_correct("number", "105", "104")
    assert is_correct("choice", "B", "B") and not is_correct("choice", "B", "C")


def _chat(question: str, answer: str) -> dict:
    return {"prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": f"<think>...</think>\n<final>{answer}</final>"}]}


def test_pairs_come_from_correct_and_incorrect_own_answers_and_skips_are_counted():
    config = tiny_pipeline_config(Path("/nonexistent"))
    records = [_chat("What is 2 + 3?", "5"), _chat("What is 4 + 4?", "8"), _chat("Capital of France?", "Paris"),
               _chat("What is 1 + 1?", "2"), _chat("Copied benchmark question, long enough to match?", "7")]
    answers = {"What is 2 + 3?": ["<final>5</final>", "<final>6</final>", "<final>5</final>"],
               "What is 4 + 4?": ["<final>8</final>"] * 3, "What is 1 + 1?": ["<final>3</final>"] * 3}

    def sample(prompt, n):
        assert n == 3
        return answers[prompt[0]["content"]]

    pairs, counts = build_pairs(records, sample, 3, config, {"copied benchmark question, long enough to match?"})
    assert counts == {"questions": 5, "pairs": 1, "not_checkable": 1, "benchmark_overlap": 1, "all_correct": 1,
                      "none_correct": 1}
    assert pairs[0]["chosen"][0]["content"] == "<final>5</final>"
    assert pairs[0]["rejected"][0]["content"] == "<final>6</final>"


def test_training_data_never_overlaps_benchmark_items():
    """The bundled SFT set (where DPO questions come from) shares no question with any benchmark item we ship
    or the shared dev items."""
    from tasks.config import DataSpec
    from tasks.data.sft import read_records

    records, _, _ = read_records(DataSpec())
    texts = benchmark_texts([SHARED] if SHARED.is_dir() else None)
    assert len(texts) > 50
    overlap = [r.question for r in records if " ".join(r.question.split()).lower() in texts]
    assert overlap == []


@pytest.mark.slow
def test_dpo_stage_on_a_tiny_model_trains_the_sft_lora_and_exports(tiny_base_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from tasks.config import DPOSpec
    from tasks.export.gguf import export_model
    from tasks.train.dpo import load_sft_model, make_sampler, train_dpo
    from tasks.train.variant import train_variant

    config = tiny_pipeline_config(tiny_base_dir, dpo=DPOSpec(enabled=True, max_steps=2, batch_size=2,
                                                             samples_per_question=2, max_new_tokens=8))
    sft = tmp_path / "linear"
    train_variant(config, "linear", sft, cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")

    model, tokenizer, _, _ = load_sft_model(sft, trainable=False)  # real sampling on the tiny SFT model
    samples = make_sampler(model, tokenizer, 8, 0.9, 0.95, seed=0)([{"role": "user", "content": "2+2?"}], 3)
    assert len(samples) == 3 and all(isinstance(s, str) for s in samples)

    seen = []
    rows = [json.loads(x) for x in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    gold = {r["prompt"][0]["content"]: r["completion"][0]["content"] for r in rows}

    def sampler(prompt, n):  # a tiny random model never answers right: the reference and a wrong answer
        seen.append(prompt[0]["content"])
        return [gold[prompt[0]["content"]], "<think>no</think>\n<final>-1</final>"][:n]

    train_questions = set(gold)
    run = train_dpo(sft, tmp_path / "linear+dpo", sampler=sampler)
    assert set(seen) <= train_questions  # only the training split is sampled
    assert run["variant"] == "linear+dpo" and run["dpo"]["pairs"]["pairs"] >= 2
    assert run["final_blend_alpha"] == json.loads((sft / "run.json").read_text())["final_blend_alpha"]
    before = load_file(str(sft / "adapter" / "adapter_model.safetensors"))
    after = load_file(str(tmp_path / "linear+dpo" / "adapter" / "adapter_model.safetensors"))
    assert before.keys() == after.keys()  # the same LoRA, trained further (trl's "ref" copy is not saved)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    gates_before = load_file(str(sft / "gates.safetensors"))
    gates_after = load_file(str(tmp_path / "linear+dpo" / "gates.safetensors"))
    assert all(torch.equal(gates_before[k], gates_after[k]) for k in gates_before)  # gates frozen
    manifest = export_model(tmp_path / "linear+dpo", tmp_path / "export", ["bf16"])
    assert manifest["name"] == "tiny-linear+dpo" and manifest["files"][0]["verification"]["parity"]
