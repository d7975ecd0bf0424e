from __future__ import annotations

import json

import pytest

from flows.cli import main
from tasks.config import DecisionSpec
from tasks.decide.decision import decide
from tasks.decide.degrade import write_analysis
from tasks.publish.report import import_lm_eval, write_report


def _suite(folder, suite, rows, gen=40.0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{suite}.summary.json").write_text(json.dumps({"timings": {"generation_tokens_per_s": gen}}))


@pytest.fixture
def fixture_results(tmp_path):
    results = {}
    for label, p in (("base/bf16", 0.5), ("linear/bf16", 0.55), ("linear/q4_k_m", 0.45), ("sigmoid-bayes/bf16", 0.6)):
        folder = tmp_path / label.replace("/", "_")
        n = 40
        _suite(folder, "mmlu", [{"index": i, "correct": i < p * n, "correct_norm": i < p * n,
                                 "category": ["algebra", "biology"][i % 2]} for i in range(n)])
        _suite(folder, "elyza_tasks_100", [{"index": i, "judge_grade": 1 + (i + int(p * 10)) % 5, "char_f1": p}
                                           for i in range(20)])
        results[label] = folder
    return results


def test_report_with_every_figure(fixture_results, tmp_path):
    spec = DecisionSpec(bootstrap=200)
    decide({"linear": fixture_results["linear/bf16"], "sigmoid-bayes": fixture_results["sigmoid-bayes/bf16"]},
           spec, tmp_path / "d")
    write_analysis(fixture_results, spec, tmp_path / "d")
    run = tmp_path / "run"
    run.mkdir()
    (run / "alpha_trajectory.json").write_text(json.dumps({"trajectory": [{"step": s, "blend_alpha": s / 4}
                                                                          for s in range(5)]}))
    (run / "loss_curves.json").write_text(json.dumps({"validation": [{"step": 2, "eval_loss": 2.0},
                                                                     {"step": 4, "eval_loss": 1.5}]}))
    tuner = tmp_path / "tuner.json"
    tuner.write_text(json.dumps({"trials": [{"k": 2.0, "midpoint": 0.3, "value": 1.2},
                                            {"k": 9.0, "midpoint": 0.6, "value": 1.1}]}))
    report = write_report(fixture_results, tmp_path / "r", decision=tmp_path / "d/decision.json",
                          degradation=tmp_path / "d/degradation.json", runs={"linear": run}, tuner=tuner, trend=True)
    text = report.read_text()
    for name in ("scores.png", "heatmap_scores.png", "heatmap_degradation.png", "judge_grades.png",
                 "categories_mmlu.png", "training.png", "tuner_trials.png", "trend.png"):
        assert (tmp_path / "r" / name).stat().st_size > 5000, name
        assert f"![{name}]({name})" in text
    assert "## Decision" in text and "## Upload gates" in text and "| linear/bf16 | mmlu | acc |" in text
    assert "reasoning" not in text and "| linear/bf16 | mmlu | algebra |" in text


def test_lm_eval_output_is_read(tmp_path):
    folder = tmp_path / "lm_eval_out" / "model"
    folder.mkdir(parents=True)
    (folder / "results_2026-11-20T00-00-00.json").write_text(json.dumps({"results": {}}))
    (folder / "samples_arc_challenge_2026-11-20T00-00-00.jsonl").write_text(
        "".join(json.dumps({"doc_id": i, "acc": float(i % 2), "acc_norm": 1.0}) + "\n" for i in range(6)))
    (folder / "samples_mmlu_sociology_2026-11-20T00-00-00.jsonl").write_text(
        "".join(json.dumps({"doc_id": i, "acc": 1.0}) + "\n" for i in range(3)))
    data = import_lm_eval(tmp_path / "lm_eval_out")
    assert len(data["arc_challenge"]["records"]) == 6 and data["mmlu"]["records"][0]["category"] == "sociology"
    out = tmp_path / "r"
    assert main(["report", "--results", f"lmeval/gguf={tmp_path / 'lm_eval_out'}", "--out", str(out)]) == 0
    assert "| lmeval/gguf | arc_challenge | acc_norm | 1.00 |" in (out / "report.md").read_text()


def test_report_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report({"x/bf16": tmp_path / "none"}, tmp_path / "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="samples_"):
        write_report({"x/bf16": tmp_path / "empty"}, tmp_path / "r")
