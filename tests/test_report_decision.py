"""What people read: one name per metric, numbers rounded in tables, the report opening with the decision's paired
differences (forest plot) and showing the decision's own composites and upload gates."""

from __future__ import annotations

import json
import re

import pytest

from tasks.bench.metrics import METRICS
from tasks.config import DecisionSpec
from tasks.decide.decision import composite, decide, suite_table
from tasks.numbers import human, interval, rounded
from tasks.publish.report import import_lm_eval, write_report

SPEC = DecisionSpec(bootstrap=300)
LONG_DECIMALS = re.compile(r"\d\.0*[1-9]\d{4,}")  # more than 4 significant digits


def _suite(folder, suite, rows, gen_tok_s=40.0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{suite}.summary.json").write_text(json.dumps({"timings": {"generation_tokens_per_s": gen_tok_s}}))


def _results(tmp_path, *, legacy: bool, gen=(40.0, 40.0)):
    """linear better on mmlu (acc), sigmoid-bayes better on hellaswag (acc_norm); ``legacy``: records with the field
    names of older results (correct / correct_norm)."""
    acc, norm = ("correct", "correct_norm") if legacy else ("acc", "acc_norm")
    folders = {}
    for (label, p_mmlu, p_hella), tok_s in zip((("linear", 0.7, 0.40), ("sigmoid-bayes", 0.5, 0.45)), gen,
                                               strict=True):
        folder = tmp_path / ("old" if legacy else "new") / label
        _suite(folder, "mmlu", [{"index": i, acc: i < p_mmlu * 60, norm: i < p_mmlu * 60, "category": "x"}
                                for i in range(60)], tok_s)
        _suite(folder, "hellaswag", [{"index": i, acc: i < p_hella * 60, norm: i < p_hella * 60} for i in range(60)],
               tok_s)
        folders[label] = folder
    return folders


def test_one_name_per_metric_and_older_records_still_read(tmp_path):
    assert all(m.field == name for name, m in METRICS.items())  # the record field is the metric's name
    new = decide(_results(tmp_path, legacy=False), SPEC, tmp_path / "new-d")
    old = decide(_results(tmp_path, legacy=True), SPEC, tmp_path / "old-d")
    assert [(r["suite"], r["metric"], r["a"], r["b"]) for r in new["suites"]] == \
        [(r["suite"], r["metric"], r["a"], r["b"]) for r in old["suites"]]
    assert {r["metric"] for r in new["suites"]} == {"acc", "acc_norm"}
    for text in ((tmp_path / "new-d" / "decision.md").read_text(), (tmp_path / "old-d" / "decision.md").read_text()):
        assert "correct" not in text and "| hellaswag | acc_norm |" in text


def test_lm_eval_gsm8k_filters_become_our_two_metrics(tmp_path):
    folder = tmp_path / "lm"
    folder.mkdir()
    lines = [{"doc_id": i, "filter": f, "exact_match": float(f == "flexible-extract" or i == 0)}
             for i in range(3) for f in ("strict-match", "flexible-extract")]
    (folder / "samples_gsm8k_2026-01-01T00-00-00.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    records = import_lm_eval(folder)["gsm8k"]["records"]
    assert len(records) == 3  # one record per item, not one per filter
    assert [(r["exact_match_strict"], r["exact_match_flexible"]) for r in records] == \
        [(True, True), (False, True), (False, True)]


def test_numbers_for_people():
    assert human(0.1234567890123456) == "0.123" and human(0.0712) == "0.0712" and human(1.0) == "1.00"
    assert human(0.0008123, signed=True) == "+0.000812" and human(3.2e-07) == "3.20e-07" and human(0) == "0"
    assert human(None) == "n/a" and human(float("-inf")) == "-inf" and human(0.09996) == "0.100"
    assert interval([-0.0123456789, 0.5], signed=True) == "[-0.0123, +0.500]"
    assert rounded(0.1234567890123456) == 0.1235 and rounded(7) == 7 and rounded(None) is None


def test_tables_are_rounded_but_json_keeps_full_precision(tmp_path):
    record = decide(_results(tmp_path, legacy=False), SPEC, tmp_path / "d")
    md = (tmp_path / "d" / "decision.md").read_text()
    assert not LONG_DECIMALS.search(md), LONG_DECIMALS.findall(md)
    row = next(r for r in suite_table(record) if r["suite"] == "mmlu")
    full = next(r for r in record["suites"] if r["suite"] == "mmlu")
    assert row["a"] == rounded(full["a"]) and row["a_minus_b"] == pytest.approx(0.2, abs=1e-9)
    assert len(repr(row["ci95_low"])) <= 8 and len(repr(row["ci95_high"])) <= 8
    saved = json.loads((tmp_path / "d" / "decision.json").read_text())
    assert saved["diff_ci95"] == record["diff_ci95"]  # whole floats in the record


def _speed(tmp_path, fast: str, slow: str):
    path = tmp_path / "speed.json"
    # two builds (another file type): their speeds can really differ, so the speed term is in the composite
    path.write_text(json.dumps({"design": "interleaved", "models": {
        fast: {"tokens_per_s": [90.0, 91.0, 92.0, 90.5, 91.5], "architecture": "llama", "file_type": 15},
        slow: {"tokens_per_s": [20.0, 21.0, 19.5, 20.5, 20.0], "architecture": "llama", "file_type": 32}}}))
    return path


def test_report_opens_with_the_decisions_paired_differences(tmp_path):
    folders = _results(tmp_path, legacy=False)
    record = decide(folders, SPEC, tmp_path / "d", speed=_speed(tmp_path, "linear", "sigmoid-bayes"))
    report = write_report({f"{k}/bf16": v for k, v in folders.items()}, tmp_path / "r",
                          decision=tmp_path / "d" / "decision.json")
    text = report.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images[0] == "paired_difference.png" and (tmp_path / "r" / "paired_difference.png").stat().st_size > 5000
    assert text.index("paired_difference.png") < text.index("## Decision") < text.index("## Scores")
    assert text.index("paired_difference.png") < text.index("scores.png")
    for r in record["suites"]:  # the numbers are the record's, suite by suite, and the composite's
        assert f"| {r['suite']} ({r['metric_label']}) | {human(r['diff'], signed=True)} | " \
               f"{interval(r['diff_ci95'], signed=True)} |" in text
    composite_row = (f"| composite | {human(record['diff'], signed=True)} | "
                     f"{interval(record['diff_ci95'], signed=True)} |")
    assert composite_row in text
    assert not LONG_DECIMALS.search(text)
    # the first paragraph is the claim, with its scope: one seed per arm speaks for two trained models
    first = text.split("\n\n")[1]
    assert first == record["reason"] and first.startswith("The model trained with ")
    assert text.split("\n\n")[2].startswith("Scope: these two trained models (one training seed per arm")
    assert record["settings"] == SPEC.model_dump(mode="json")  # the report's DPO table reuses them


def test_report_takes_the_figures_from_the_record_not_recomputed(tmp_path):
    """Counterexample: a record whose differences are not what the items give (as a decision at a sequential look,
    or one made with other settings, would be): the report shows the record's."""
    folders = _results(tmp_path, legacy=False)
    decide(folders, SPEC, tmp_path / "d")
    path = tmp_path / "d" / "decision.json"
    record = json.loads(path.read_text())
    record["suites"][0]["diff"], record["suites"][0]["diff_ci95"] = 0.3141, [0.2718, 0.3571]
    path.write_text(json.dumps(record))
    text = write_report({f"{k}/bf16": v for k, v in folders.items()}, tmp_path / "r", decision=path).read_text()
    assert "| +0.314 | [+0.272, +0.357] |" in text


def test_report_composites_and_gates_are_the_decisions_even_when_evaluation_speeds_disagree(tmp_path):
    """Counterexample: evaluation-time speeds (summaries' timings) favour sigmoid-bayes 4:1, the isolated benchmark
    the decision used favours linear: a report deriving composites from the timings would contradict the decision."""
    from tasks.decide.degrade import write_analysis

    folders = _results(tmp_path, legacy=False, gen=(10.0, 95.0))
    all_results = {f"{k}/bf16": v for k, v in folders.items()} | {"base/bf16": folders["sigmoid-bayes"]}
    write_analysis(all_results, SPEC, tmp_path / "g")
    record = decide(folders, SPEC, tmp_path / "d", speed=_speed(tmp_path, "linear", "sigmoid-bayes"),
                    degradation=tmp_path / "g" / "degradation.json")
    means = {s: r["a"] for s, r in ((r["suite"], r) for r in record["suites"])}
    from_timings = composite(means, 10.0 / SPEC.speed_reference_tok_s, SPEC)
    assert abs(from_timings - record["composite_a"]) > 0.01  # the two speed sources really differ
    text = write_report(all_results, tmp_path / "r", decision=tmp_path / "d" / "decision.json",
                        degradation=tmp_path / "g" / "degradation.json").read_text()
    assert f"Composite: linear {human(record['composite_a'], 4)}, sigmoid-bayes {human(record['composite_b'], 4)}" \
        in text and "speed term: in the composite" in text and human(from_timings, 4) not in text
    gates = json.loads((tmp_path / "g" / "degradation.json").read_text())["gates"]
    for name, g in gates.items():
        assert f"- {name}: " + ("gates passed" if g["upload"] else "gates failed") in text
    assert not re.search(r"^- [^:]+: upload", text, re.M)  # a gate result never reads as an upload
    # a degradation file other than the one the decision applied is refused: its gates would contradict it
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"vs_base": {}, "vs_bf16": {}, "gates": {"linear/bf16": {"upload": False,
                                                                                          "reasons": ["x"]}}}))
    with pytest.raises(ValueError, match="not the degradation analysis the decision applied"):
        write_report(all_results, tmp_path / "r2", decision=tmp_path / "d" / "decision.json", degradation=other)


def test_gate_results_read_as_gates_never_as_uploads_when_nothing_is_uploaded():
    """Counterexample from the run page: a tie uploads nothing, yet "linear/bf16: upload" was listed below it."""
    from tasks.publish.paired import gate_lines

    record = {"upload": False, "winner": None, "reason": "No significant difference: a tie."}
    deg = {"gates": {"linear/bf16": {"upload": True, "reasons": []},
                     "linear/q4_k_m": {"upload": False, "reasons": ["lost 9% of its BF16 composite"]}}}
    text = "\n".join(gate_lines(record, deg, None))
    assert "Nothing is uploaded: No significant difference: a tie." in text
    assert "- linear/bf16: gates passed" in text and "- linear/q4_k_m: gates failed: lost 9%" in text
    assert not re.search(r"^- [^:]+: upload", text, re.M)
