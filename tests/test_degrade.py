from __future__ import annotations

import json

import pytest

from tasks.config import DecisionSpec
from tasks.decide.degrade import analyze

SPEC = DecisionSpec(bootstrap=300)


def _write(folder, suite, correct):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"index": i, "correct": bool(c), "correct_norm": bool(c)} for i, c in enumerate(correct)]
    (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{suite}.summary.json").write_text(json.dumps({"timings": {}}))


def _setup(tmp_path, variants: dict[str, dict[str, list[int]]]):
    labels = {}
    for label, suites in variants.items():
        for suite, correct in suites.items():
            _write(tmp_path / label.replace("/", "_"), suite, correct)
        labels[label] = tmp_path / label.replace("/", "_")
    return labels


def test_degradation_rates_flags_and_gates(tmp_path):
    good = [1] * 30 + [0] * 10
    results = _setup(tmp_path, {
        "base/bf16": {"mmlu": good, "arc_challenge": good},
        "linear/bf16": {"mmlu": good, "arc_challenge": good},            # no loss
        "linear/q4_k_m": {"mmlu": [0] * 30 + [0] * 10, "arc_challenge": good},  # mmlu collapses
    })
    report = analyze(results, SPEC)
    bf16 = {r["suite"]: r for r in report["vs_base"]["linear/bf16"]["suites"]}
    assert bf16["mmlu"]["degradation_pct"] == 0.0 and not bf16["mmlu"]["flagged"]
    q4 = {r["suite"]: r for r in report["vs_bf16"]["linear/q4_k_m"]["suites"]}
    assert q4["mmlu"]["degradation_pct"] == pytest.approx(100.0) and q4["mmlu"]["flagged"]
    assert q4["mmlu"]["model_ci95"][0] == 0.0
    assert report["gates"]["linear/bf16"] == {"upload": True, "reasons": [], "quantization": None}
    assert not report["gates"]["linear/q4_k_m"]["upload"]
    assert any("lost" in r for r in report["gates"]["linear/q4_k_m"]["reasons"])


def test_one_flipped_item_in_five_is_not_a_quantization_loss(tmp_path):
    """Counterexample: with a point estimate, one item of five flipping by quantization is a 20% loss and blocks
    the upload (limit 5%); its CI says the loss may be anything from none to most, so the gate holds nothing."""
    results = _setup(tmp_path, {"base/bf16": {"mmlu": [1] * 5}, "linear/bf16": {"mmlu": [1] * 5},
                                "linear/q8_0": {"mmlu": [1, 1, 1, 1, 0]}})
    gate = analyze(results, SPEC)["gates"]["linear/q8_0"]
    assert gate["quantization"]["loss_share"] == pytest.approx(0.2) and gate["quantization"]["loss_share_ci95"][0] <= 0
    assert gate["upload"] and gate["reasons"] == []


def test_degradation_is_quality_only(tmp_path):
    """Evaluation timings (a quantized model decodes faster; parallel load adds noise) never enter the gates."""
    results = _setup(tmp_path, {"base/bf16": {"mmlu": [1, 0] * 10}, "linear/bf16": {"mmlu": [1, 0] * 10}})
    for label, rate in (("base_bf16", 500.0), ("linear_bf16", 1.0)):
        (tmp_path / label / "mmlu.summary.json").write_text(json.dumps(
            {"timings": {"generation_tokens_per_s": rate}}))
    vs_base = analyze(results, SPEC)["vs_base"]["linear/bf16"]
    assert vs_base["composite_drop"] == 0 and vs_base["composite_drop_ci95"] == [0.0, 0.0]


def test_bootstrap_ci_for_graded_means(tmp_path):
    import numpy as np

    from tasks.decide.degrade import _ci

    lo, hi = _ci(np.array([0.2, 0.4, 0.6, 0.8, 1.0] * 4), binary=False, seed=0)
    assert lo < 0.6 < hi and 0.3 < lo and hi < 0.9
    assert _ci(np.array([0.5, 0.5]), binary=False, seed=0) == [0.5, 0.5]


def test_zero_base_score_has_no_rate(tmp_path):
    results = _setup(tmp_path, {"base/bf16": {"mmlu": [0] * 10}, "linear/bf16": {"mmlu": [1] * 10}})
    row = analyze(results, SPEC)["vs_base"]["linear/bf16"]["suites"][0]
    assert row["degradation_pct"] is None and not row["flagged"]


def test_base_results_are_required(tmp_path):
    results = _setup(tmp_path, {"linear/bf16": {"mmlu": [1] * 4}})
    with pytest.raises(ValueError, match="base/bf16"):
        analyze(results, SPEC)


def test_a_suite_that_failed_for_a_quantization_holds_it_back(tmp_path):
    """Review counterexample: every judge call failed for the Q4_K_M; the gate computed on MMLU alone passed it."""
    results = _setup(tmp_path, {"base/bf16": {"mmlu": [1, 0] * 20}, "linear/bf16": {"mmlu": [1, 0] * 20},
                                "linear/q4_k_m": {"mmlu": [1, 0] * 20}})
    for label, grade, error in (("base_bf16", 5, None), ("linear_bf16", 5, None), ("linear_q4_k_m", None, "timeout")):
        rows = [{"index": i, "judge_grade": grade, "judge_error": error, "char_f1": 0.5} for i in range(40)]
        (tmp_path / label / "elyza_tasks_100.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / label / "elyza_tasks_100.summary.json").write_text(json.dumps({"timings": {}}))
    gates = analyze(results, SPEC)["gates"]
    assert gates["linear/bf16"]["upload"]
    assert not gates["linear/q4_k_m"]["upload"]
    assert any(r.startswith("elyza_tasks_100 could not be compared with its BF16") for r in
               gates["linear/q4_k_m"]["reasons"])


def test_a_missing_suite_blocks_the_gate_unless_it_is_optional(tmp_path):
    """A naive gate compares the suites both sides have: a Q4 result lacking arc_challenge passed with no reason."""
    good = [1] * 30 + [0] * 10
    results = _setup(tmp_path, {"base/bf16": {"mmlu": good, "arc_challenge": good},
                                "linear/bf16": {"mmlu": good, "arc_challenge": good},
                                "linear/q4_k_m": {"mmlu": good}})
    gate = analyze(results, SPEC)["gates"]["linear/q4_k_m"]
    assert gate["upload"] is False
    assert any(r.startswith("arc_challenge is missing for linear/q4_k_m (evaluated for base/bf16)")
               for r in gate["reasons"])
    relaxed = analyze(results, DecisionSpec(bootstrap=300, optional_suites=["arc_challenge"]))["gates"]
    assert relaxed["linear/q4_k_m"] == {"upload": True, "reasons": [], "quantization": relaxed["linear/q4_k_m"][
        "quantization"]}
