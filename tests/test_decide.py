from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.config import DecisionSpec
from tasks.decide.decision import composite, decide, paired_test

SPEC = DecisionSpec(bootstrap=500)


def _write(folder, suite, records, gen_tok_s=50.0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / f"{suite}.summary.json").write_text(json.dumps(
        {"suite": suite, "timings": {"generation_tokens_per_s": gen_tok_s, "prompt_tokens_per_s": 300.0}}))


def _mc(correct: list[int]) -> list[dict]:
    return [{"index": i, "correct": bool(c), "correct_norm": bool(c), "correct_flexible": bool(c)}
            for i, c in enumerate(correct)]


def test_mcnemar_exact_known_answer():
    # b = 5 (A right, B wrong), c = 1: two-sided exact binomial p = 2 * P(X <= 1 | 6, 1/2) = 14/64
    a = np.array([1] * 10 + [1] * 5 + [0] * 1 + [0] * 10)
    b = np.array([1] * 10 + [0] * 5 + [1] * 1 + [0] * 10)
    assert paired_test(a, b, binary=True) == ("mcnemar_exact", pytest.approx(0.21875))


def test_wilcoxon_for_graded_items_and_no_difference():
    a, b = np.array([1, 2, 3, 4, 5, 2, 3.0]), np.array([2, 2, 4, 5, 5, 3, 5.0])
    test, p = paired_test(a, b, binary=False)
    # 5 differing pairs, all one way, with ties and zeros: the exact sign-flip test gives 2 * 0.5**5
    assert test == "sign_flip_exact" and p == pytest.approx(0.0625)
    many = np.arange(40.0)
    assert paired_test(many + np.tile([1, 2], 20), many, binary=False)[0] == "wilcoxon_signed_rank"
    assert paired_test(a, a, binary=False)[1] == 1.0


def test_composite_weights_and_speed_cap():
    means = {"elyza_tasks_100": 0.5, "mmlu": 0.4, "gsm8k": 0.2, "hellaswag": 0.6, "arc_challenge": 0.4,
             "scienceqa": 0.8}
    assert composite(means, 1.0, SPEC) == pytest.approx(0.4 * 0.5 + 0.4 * 0.4 + 0.1 * 0.8 + 0.1 * 1.0)
    # a group that is absent does not count as zero: the weights are renormalised
    assert composite({"mmlu": 0.5}, 0.0, SPEC) == pytest.approx(0.4 * 0.5 / 0.5)


def test_a_tie_picks_no_winner_and_uploads_nothing(tmp_path):
    for name in ("linear", "sigmoid-bayes"):
        _write(tmp_path / name, "mmlu", _mc([1, 0] * 20))
    record = decide({"linear": tmp_path / "linear", "sigmoid-bayes": tmp_path / "sigmoid-bayes"}, SPEC, tmp_path)
    assert record["winner"] is None and record["upload"] is False and "tie" in record["reason"]
    assert (tmp_path / "decision.json").is_file() and "Upload: no" in (tmp_path / "decision.md").read_text()


def test_a_clear_winner_is_significant(tmp_path):
    _write(tmp_path / "linear", "mmlu", _mc([0] * 30 + [1] * 10))
    _write(tmp_path / "sigmoid-bayes", "mmlu", _mc([1] * 35 + [0] * 5))
    _write(tmp_path / "linear", "arc_challenge", _mc([0, 1] * 20))
    _write(tmp_path / "sigmoid-bayes", "arc_challenge", _mc([1, 1] * 20))
    record = decide({"linear": tmp_path / "linear", "sigmoid-bayes": tmp_path / "sigmoid-bayes"}, SPEC)
    assert record["winner"] == "sigmoid-bayes" and record["significant"] and record["upload"]
    assert record["margin_ci95"][0] > 0
    rows = {r["suite"]: r for r in record["suites"]}
    assert rows["mmlu"]["test"] == "mcnemar_exact" and rows["mmlu"]["p_holm"] < 0.05
    assert rows["mmlu"]["p_holm"] >= rows["mmlu"]["p_value"]  # Holm never lowers a p-value


def test_not_significant_follows_the_configured_rule(tmp_path):
    _write(tmp_path / "a", "mmlu", _mc([1, 0, 0, 1, 0] * 4))
    _write(tmp_path / "b", "mmlu", _mc([1, 0, 1, 1, 0] * 4))
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)
    assert record["winner"] == "b" and not record["significant"] and not record["upload"]
    assert "no upload" in record["reason"]
    lenient = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC.model_copy(update={"on_not_significant":
                                                                                            "upload_best"}))
    assert lenient["upload"] and "anyway" in lenient["reason"]


def test_missing_required_suite_refuses(tmp_path):
    _write(tmp_path / "a", "mmlu", _mc([1] * 5))
    _write(tmp_path / "b", "mmlu", _mc([0] * 5))
    spec = SPEC.model_copy(update={"required_suites": ["mmlu", "elyza_tasks_100"]})
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, spec)
    assert record["winner"] is None and record["missing_required"] == ["elyza_tasks_100"]
    assert record["missing_suites"] == {"elyza_tasks_100": ["a", "b"]}


def test_missing_optional_suites_are_named_and_the_rest_decides(tmp_path):
    _write(tmp_path / "a", "mmlu", _mc([1] * 30))
    _write(tmp_path / "b", "mmlu", _mc([0] * 30))
    _write(tmp_path / "a", "gsm8k", _mc([1] * 5))  # b's gsm8k failed for good
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC, tmp_path / "out",
                    expected_suites=["mmlu", "gsm8k", "hellaswag"])
    assert record["winner"] == "a" and [r["suite"] for r in record["suites"]] == ["mmlu"]
    assert record["missing_suites"] == {"gsm8k": ["b"], "hellaswag": ["a", "b"]}
    assert "missing: gsm8k (for b); hellaswag (for a, b)" in record["reason"]
    assert "Missing suites" in (tmp_path / "out" / "decision.md").read_text()


def test_judge_failures_drop_out_of_the_pair(tmp_path):
    grades_a = [{"index": i, "judge_grade": g, "char_f1": 0.5} for i, g in enumerate([5, 4, None, 5, 4, 5])]
    grades_b = [{"index": i, "judge_grade": g, "char_f1": 0.5} for i, g in enumerate([2, 1, 3, 1, 2, 1])]
    _write(tmp_path / "a", "elyza_tasks_100", grades_a)
    _write(tmp_path / "b", "elyza_tasks_100", grades_b)
    row = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)["suites"][0]  # 1 failure in 6: under 20%
    assert row["metric"] == "judge_grade" and row["n_paired"] == 5 and row["dropped"] == 1
    assert row["test"] == "sign_flip_exact"  # five graded differences: exact


def test_a_side_whose_judge_failed_is_not_scored_by_another_metric(tmp_path):
    """Counterexample: A's ELYZA items carry judge grades, B's judge failed on every item. A naive rule scores B by
    char-F1 under the same label and compares two metrics; here the suite fails, named, and the rest decides."""
    _write(tmp_path / "a", "elyza_tasks_100", [{"index": i, "judge_grade": 2, "char_f1": 0.1} for i in range(40)])
    _write(tmp_path / "b", "elyza_tasks_100", [{"index": i, "judge_grade": None, "judge_error": "timeout",
                                                "char_f1": 0.9} for i in range(40)])
    _write(tmp_path / "a", "mmlu", _mc([1, 0] * 20))
    _write(tmp_path / "b", "mmlu", _mc([1, 0] * 20))
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC, tmp_path / "out")
    assert "elyza_tasks_100" in record["failed_suites"] and "40 of 40" in record["failed_suites"]["elyza_tasks_100"]
    assert [r["suite"] for r in record["suites"]] == ["mmlu"] and record["winner"] is None
    assert "Failed suites" in (tmp_path / "out" / "decision.md").read_text()
    required = decide({"a": tmp_path / "a", "b": tmp_path / "b"},
                      SPEC.model_copy(update={"required_suites": ["elyza_tasks_100"]}))
    assert required["winner"] is None and required["outcome"] == "no winner" and "failed" in required["reason"]


def test_unjudged_elyza_uses_char_f1_for_both_sides(tmp_path):
    _write(tmp_path / "a", "elyza_tasks_100", [{"index": i, "judge_grade": None, "char_f1": 0.9} for i in range(30)])
    _write(tmp_path / "b", "elyza_tasks_100", [{"index": i, "judge_grade": None, "char_f1": 0.2} for i in range(30)])
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)
    assert record["suites"][0]["metric"] == "char_f1" and record["winner"] == "a" and record["significant"]


def test_a_significant_suite_against_the_composite_makes_it_mixed(tmp_path):
    """Counterexample 1 of issue 13: A wins 5 ELYZA items by a wide judge margin (Wilcoxon p = 0.0625: cannot be
    significant), B wins MMLU on 200 items (McNemar p < 0.001). The composite favours A (ELYZA weighs 0.4, and a
    bootstrap over 5 identical differences has no width), so a rule of `CI excludes 0 and any suite significant`
    says "A, significant"; the sign-aware rule says mixed, and no upload."""
    _write(tmp_path / "a", "elyza_tasks_100", [{"index": i, "judge_grade": 5, "char_f1": 0.5} for i in range(5)])
    _write(tmp_path / "b", "elyza_tasks_100", [{"index": i, "judge_grade": 1, "char_f1": 0.5} for i in range(5)])
    _write(tmp_path / "a", "mmlu", _mc([1] * 100 + [0] * 100))
    _write(tmp_path / "b", "mmlu", _mc([1] * 100 + [1] * 30 + [0] * 70))
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC, tmp_path / "out")
    rows = {r["suite"]: r for r in record["suites"]}
    assert record["winner"] == "a" and record["margin_ci95"][0] > 0  # what fooled the old rule
    assert rows["mmlu"]["significant"] and rows["mmlu"]["direction"] == "b" and rows["mmlu"]["p_holm"] < 0.001
    assert rows["elyza_tasks_100"]["p_value"] == pytest.approx(0.0625)
    assert not rows["elyza_tasks_100"]["can_reach_significance"]
    assert rows["elyza_tasks_100"]["verdict"] == "cannot reach significance"
    assert rows["mmlu"]["verdict"] == "against a"
    assert record["outcome"] == "mixed" and not record["significant"] and not record["upload"]
    assert "mmlu significantly favours b" in record["reason"]
    md = (tmp_path / "out" / "decision.md").read_text()
    assert "Outcome: mixed" in md and "| mmlu | acc | 200 |" in md and "against a" in md


def test_significant_needs_a_suite_in_the_composites_direction(tmp_path):
    # many items, all tiny one-way differences in graded ELYZA: the CI excludes 0 but Wilcoxon cannot on 5 items
    _write(tmp_path / "a", "elyza_tasks_100", [{"index": i, "judge_grade": 5, "char_f1": 0.5} for i in range(5)])
    _write(tmp_path / "b", "elyza_tasks_100", [{"index": i, "judge_grade": 4, "char_f1": 0.5} for i in range(5)])
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)
    assert record["winner"] == "a" and record["margin_ci95"][0] > 0
    assert record["outcome"] == "not significant" and not record["upload"]
    assert "too few paired items" in record["reason"]
    # the same direction with enough items: significant
    _write(tmp_path / "c", "elyza_tasks_100", [{"index": i, "judge_grade": 5, "char_f1": 0.5} for i in range(30)])
    _write(tmp_path / "d", "elyza_tasks_100", [{"index": i, "judge_grade": 4 - i % 2, "char_f1": 0.5}
                                               for i in range(30)])
    record = decide({"c": tmp_path / "c", "d": tmp_path / "d"}, SPEC)
    assert record["outcome"] == "significant" and record["significant"] and record["upload"]
    assert record["suites"][0]["verdict"] == "supports c"


def test_min_attainable_p():
    from tasks.decide.decision import min_attainable_p

    assert min_attainable_p(5) == 0.0625 and min_attainable_p(6) == 0.03125 and min_attainable_p(0) == 1.0
    # what the tests really give when every pair differs one way
    a, b = np.ones(6), np.zeros(6)
    assert paired_test(a, b, binary=True)[1] == pytest.approx(min_attainable_p(6))
    assert paired_test(a + 1, b, binary=False)[1] == pytest.approx(min_attainable_p(6))


def test_evaluation_timings_never_move_the_composite(tmp_path):
    """Without isolated speed samples there is no speed term: timings measured under parallel load do not count."""
    _write(tmp_path / "a", "mmlu", _mc([1, 0] * 20), gen_tok_s=500.0)
    _write(tmp_path / "b", "mmlu", _mc([1, 0] * 20), gen_tok_s=5.0)
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)
    assert record["diff"] == 0 and record["winner"] is None and record["speed_a"] is None
    assert "left out" in record["speed"]["source"]


def test_bad_weights_are_an_error():
    with pytest.raises(ValueError, match="decision.weights"):
        DecisionSpec(weights={"elyza": 1.0})


def _speed_json(path, a, b, builds=(("llama", 32), ("llama", 32)), design="interleaved"):
    models = {name: {"tokens_per_s": t, "architecture": arch, "file_type": ft}
              for name, t, (arch, ft) in zip(("a", "b"), (a, b), builds, strict=True)}
    path.write_text(json.dumps({"design": design, "models": models}))
    return path


def test_timing_noise_names_no_winner_when_every_quality_suite_ties(tmp_path):
    """The demo's headline: two models of one architecture and format, every suite tied, the second timed slower.
    A naive decision lets the speed term pick "a beats b"; here the speed figures stand beside a decision that names
    no winner."""
    _write(tmp_path / "a", "mmlu", _mc([1, 0] * 10))
    _write(tmp_path / "b", "mmlu", _mc([1, 0] * 10))
    fast, slow = [97.0, 97.8, 96.9, 97.5, 97.6], [90.4, 91.0, 90.2, 91.3, 90.8]
    speed = _speed_json(tmp_path / "speed.json", fast, slow)
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC, speed=speed)
    assert record["winner"] is None and record["upload"] is False and record["outcome"] == "no quality difference"
    assert record["reason"].startswith("No quality difference between the two trained models")
    assert "a 97.4 tok/s, b 90.7 tok/s" in record["reason"] and "not in the composite" in record["reason"]
    assert record["speed"]["in_composite"] is False and record["diff"] == 0
    # asked to score speed, it enters with its uncertainty, and still no quality difference names a winner
    always = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, DecisionSpec(bootstrap=500,
                                                                          speed_in_composite="always"), speed=speed)
    assert always["diff"] > 0 and always["winner"] is None and always["speed"]["paired"] is True
    _speed_json(tmp_path / "speed.json", fast, fast[::-1])
    with pytest.raises(ValueError, match="not both"):
        decide({"a": tmp_path / "a", "c": tmp_path / "b"}, SPEC, speed=speed)


def test_speed_comes_from_every_replicate_paired_by_round(tmp_path):
    """A naive decision timed the last replicate of each arm only; every replicate is timed, and an arm's round r is
    the mean of its replicates' round r."""
    from tasks.decide.speed import read_speed

    path = tmp_path / "speed.json"
    build = {"architecture": "llama", "file_type": 32}
    path.write_text(json.dumps({"design": "interleaved", "models": {
        "a-s1": {"tokens_per_s": [90.0, 80.0], **build}, "a-s2": {"tokens_per_s": [100.0, 70.0], **build},
        "b-s1": {"tokens_per_s": [85.0, 75.0], **build}, "b-s2": {"tokens_per_s": [95.0, 85.0], **build}}}))
    speed = read_speed(path, ("a", "b"), {"a": ["a-s1", "a-s2"], "b": ["b-s1", "b-s2"]})
    assert speed["samples"] == ([95.0, 75.0], [90.0, 80.0]) and speed["paired"] and speed["same_build"]
    with pytest.raises(ValueError, match="every replicate"):
        read_speed(path, ("a", "b"), {"a": ["a-s1", "a-s3"], "b": ["b-s1"]})


def test_speed_between_different_builds_enters_the_composite_with_its_uncertainty(tmp_path):
    """A Q4 build against a BF16 one can really be faster: auto puts the speed in, and its CI is wider than the
    quality CI alone (noise in the timings is not certainty)."""
    _write(tmp_path / "a", "mmlu", _mc([1] * 12 + [0] * 8))
    _write(tmp_path / "b", "mmlu", _mc([1] * 10 + [0] * 10))
    quality = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)
    speed = _speed_json(tmp_path / "speed.json", [60.0, 85.0, 55.0, 84.0], [50.0, 51.0, 49.0, 52.0],
                        builds=(("llama", 15), ("llama", 32)), design="all runs of one model, then the other")
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC, speed=speed)
    info = record["speed"]
    assert info["in_composite"] is True and info["paired"] is False and info["var"] > 0
    width = lambda r: r["diff_ci95"][1] - r["diff_ci95"][0]  # noqa: E731
    # quality now weighs 0.4 / 0.5 of the composite: the speed's own uncertainty is what widens the CI beyond that
    assert width(record) > 0.8 * width(quality) + 0.02 and record["scope"] == "models"
    assert record["reason"].startswith("The model trained with a scored higher than the one trained with b")


def test_a_signed_rank_test_that_disagrees_with_the_means_counts_for_neither_side(tmp_path):
    """Review counterexample: A is better on 79 judged items by 1 grade, B better on 20 items by 4 grades. B's mean
    is (slightly) higher, the signed-rank test significantly favours A: the suite must not count against A."""
    ga, gb = [3] * 79 + [1] * 20, [2] * 79 + [5] * 20
    _write(tmp_path / "a", "elyza_tasks_100", [{"index": i, "judge_grade": g, "char_f1": .5} for i, g in enumerate(ga)])
    _write(tmp_path / "b", "elyza_tasks_100", [{"index": i, "judge_grade": g, "char_f1": .5} for i, g in enumerate(gb)])
    _write(tmp_path / "a", "mmlu", _mc([1] * 30 + [0] * 10))
    _write(tmp_path / "b", "mmlu", _mc([0] * 40))
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)
    elyza = next(r for r in record["suites"] if r["suite"] == "elyza_tasks_100")
    assert elyza["direction"] == "b" and elyza["test_direction"] == "a" and elyza["p_holm"] < 0.05
    assert not elyza["significant"] and record["outcome"] == "significant" and record["winner"] == "a"


def test_an_exact_tie_with_suites_significant_both_ways_is_mixed(tmp_path):
    _write(tmp_path / "a", "mmlu", _mc([1] * 30 + [0] * 10))
    _write(tmp_path / "b", "mmlu", _mc([0] * 40))
    _write(tmp_path / "a", "arc_challenge", _mc([0] * 40))
    _write(tmp_path / "b", "arc_challenge", _mc([1] * 30 + [0] * 10))
    record = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)
    assert record["diff"] == 0 and record["winner"] is None and record["outcome"] == "mixed"
    assert {r["suite"]: r["verdict"] for r in record["suites"]} == {"mmlu": "favours a", "arc_challenge": "favours b"}


def test_items_lost_by_either_side_count_as_dropped_and_only_differing_items_can_reach_significance(tmp_path):
    _write(tmp_path / "a", "elyza_tasks_100", [{"index": i, "judge_grade": None if i < 5 else 4, "char_f1": .5}
                                               for i in range(40)])
    _write(tmp_path / "b", "elyza_tasks_100", [{"index": i, "judge_grade": None if 5 <= i < 10 else 4, "char_f1": .5}
                                               for i in range(40)])
    row = decide({"a": tmp_path / "a", "b": tmp_path / "b"}, SPEC)["suites"][0]
    assert row["dropped"] == 10 and row["n_paired"] == 30
    assert row["n_differing"] == 0 and not row["can_reach_significance"]  # 30 identical pairs: nothing to test
