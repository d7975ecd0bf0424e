"""The items where the two models differ (tasks/decide/disagree.py): paired by index as the decision pairs them, the
counts each way equal to the paired test's discordant counts, ties and missing items handled, sorted by how much
the models disagree, and shown in the report with the items' prompts."""

from __future__ import annotations

import json
import shutil

import numpy as np

from tasks.bench.suites import SAMPLES_DIR
from tasks.config import DecisionSpec
from tasks.decide.decision import decide
from tasks.decide.disagree import compare_items, gold_margin, markdown_lines
from tasks.publish.report import write_report
from tasks.store import sha256_file

SPEC = DecisionSpec(bootstrap=200)


def _mc(index, lls, gold=0):
    """A multiple-choice record as the runner writes it (raw log-likelihoods; acc picks the largest)."""
    pred = int(np.argmax(lls))
    return {"index": index, "loglikelihoods": lls, "pred": pred, "pred_norm": pred, "gold": gold,
            "acc": pred == gold, "acc_norm": pred == gold}


def test_items_are_paired_by_index_not_by_position():
    a = [_mc(0, [-1, -5, -5, -5]), _mc(1, [-5, -1, -5, -5]), _mc(2, [-1, -5, -5, -5])]
    b = [_mc(2, [-5, -1, -5, -5]), _mc(1, [-5, -1, -5, -5]), _mc(0, [-1, -5, -5, -5])]  # reversed order
    out = compare_items(a, b, "mmlu", "acc")
    # by position, items 0 and 2 would look different; by index only item 2 differs (a right, b wrong)
    assert [x["index"] for x in out["items"]] == [2]
    assert (out["a_better"], out["b_better"], out["n_paired"]) == (1, 0, 3)


def test_both_wrong_with_different_picks_is_listed_after_right_against_wrong():
    a = [_mc(0, [-3, -1, -5, -5]), _mc(1, [-1, -5, -5, -5]), _mc(2, [-5, -1, -5, -5]), _mc(3, [-5, -5, -1, -5])]
    b = [_mc(0, [-3, -5, -1, -5]), _mc(1, [-5, -1, -5, -5]), _mc(2, [-5, -1, -5, -5]), _mc(3, [-1, -5, -5, -5])]
    out = compare_items(a, b, "mmlu", "acc")
    # 1: a right, b wrong; 3: b right, a wrong; 0: both wrong (B vs C): same score, other answer; 2: same pick
    assert [x["index"] for x in out["items"]][2:] == [0] and 2 not in [x["index"] for x in out["items"]]
    assert (out["a_better"], out["b_better"], out["same_score_other_answer"]) == (1, 1, 1)
    assert out["items"][-1]["answer_a"] == "1" and out["items"][-1]["answer_b"] == "2"


def test_sorted_by_how_far_apart_the_gold_margins_are():
    # all three: a right, b wrong; item 5's margins are furthest apart (+4 against -4), item 9's closest
    a = [_mc(9, [-1.0, -1.1]), _mc(5, [-1.0, -5.0]), _mc(7, [-1.0, -2.0])]
    b = [_mc(9, [-1.1, -1.0]), _mc(5, [-5.0, -1.0]), _mc(7, [-2.0, -1.0])]
    out = compare_items(a, b, "mmlu", "acc")
    assert [x["index"] for x in out["items"]] == [5, 7, 9]
    assert out["items"][0]["margin_a"] == 4.0 and out["items"][0]["margin_b"] == -4.0


def test_acc_norm_margin_is_per_character():
    record = _mc(0, [-10.0, -4.0])  # raw: choice 1 is ahead by 6
    assert gold_margin(record, "acc", None) == -6.0
    assert gold_margin(record, "acc_norm", ["a long gold choice", "no"]) == -10.0 / 18 + 2.0  # per character
    assert gold_margin(record, "acc_norm", None) is None  # lengths unknown: no margin, never the raw one


def test_an_item_scored_for_one_side_only_is_counted_never_listed():
    a = [_mc(0, [-1, -5]), _mc(1, [-1, -5]), {"index": 2, "skipped": True}]
    b = [_mc(0, [-5, -1]), _mc(2, [-5, -1])]
    out = compare_items(a, b, "mmlu", "acc")
    assert [x["index"] for x in out["items"]] == [0]
    assert (out["missing_in_a"], out["missing_in_b"]) == (1, 1)  # 2 scored for b only, 1 for a only


def test_free_text_counts_only_score_differences():
    a = [{"index": i, "final_answer": f"answer {i} from a", "judge_grade": g} for i, g in enumerate([5, 3, 2])]
    b = [{"index": i, "final_answer": f"answer {i} from b", "judge_grade": g} for i, g in enumerate([5, 4, 1])]
    out = compare_items(a, b, "elyza_tasks_100", "judge_grade")
    assert [x["index"] for x in out["items"]] == [1, 2]  # item 0: same grade, different words: agreement
    assert out["items"][0]["diff"] == -0.25 and (out["a_better"], out["b_better"]) == (1, 1)


def _folder(path, suite, records, data=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"timings": {}} | ({"data": str(data), "data_sha256": sha256_file(data)} if data else {})
    (path / f"{suite}.summary.json").write_text(json.dumps(summary))
    return path


def test_counts_each_way_are_the_paired_tests_and_the_report_shows_the_prompts(tmp_path):
    data = tmp_path / "mmlu.jsonl"
    shutil.copy(SAMPLES_DIR / "mmlu.sample.jsonl", data)
    gold = [1, 2, 0, 3, 1, 2]  # the sample's answers (B C A D B C)
    picks = {"a": [1, 2, 0, 3, 1, 0], "b": [0, 3, 0, 3, 1, 2]}  # a wins items 0 and 1, b wins item 5
    recs = {m: [_mc(i, [-1.0 if j == picks[m][i] else -4.0 for j in range(4)], gold[i]) for i in range(6)]
            for m in picks}
    folders = {"linear": _folder(tmp_path / "lin", "mmlu", recs["a"], data),
               "sigmoid-bayes": _folder(tmp_path / "sig", "mmlu", recs["b"][::-1], data)}
    record = decide(folders, SPEC, tmp_path / "d")
    report = write_report({"linear/bf16": folders["linear"], "sigmoid-bayes/bf16": folders["sigmoid-bayes"]},
                          tmp_path / "r", decision=tmp_path / "d" / "decision.json").read_text()
    wins = sum(p == g != q for p, q, g in zip(picks["a"], picks["b"], gold, strict=True))
    losses = sum(q == g != p for p, q, g in zip(picks["a"], picks["b"], gold, strict=True))
    assert wins + losses == record["suites"][0]["n_differing"]  # McNemar's discordant pairs
    assert f"6 paired items: linear scored higher on {wins}, sigmoid-bayes on {losses}" in report
    assert (wins, losses) == (2, 1)
    assert "| 0 | What is 7 x 8? A. 54 B. 56 C. 64 D. 48 Answer: | B | A | B | +1" in report
    assert "| # | prompt (start) | linear | sigmoid-bayes | gold |" in report

    data.write_text(data.read_text().replace("What is 7 x 8?", "What is 7 x 9?"))  # the items changed since
    again = write_report({"linear/bf16": folders["linear"]}, tmp_path / "r2",
                         decision=tmp_path / "d" / "decision.json").read_text()
    assert "changed after the evaluation; prompts not shown" in again and "7 x 9" not in again


def test_the_listing_stops_at_the_limit_and_escapes_table_cells():
    items = [{"index": i, "score_a": 1.0, "score_b": 0.0, "diff": 1.0, "answer_a": "x|y", "answer_b": "line\nbreak",
              "gold": "g", "prompt": "p" * 200} for i in range(25)]
    result = {"models": ["linear", "sigmoid-bayes"], "folders": {"linear": "A", "sigmoid-bayes": "B"},
              "suites": [{"suite": "gsm8k", "metric": "exact_match_flexible", "n_paired": 30, "a_better": 25,
                          "b_better": 0, "same_score_other_answer": 0, "missing_in_a": 0, "missing_in_b": 0,
                          "items": items, "prompt_note": None}], "skipped": {"mmlu": "no item was scored"}}
    lines = markdown_lines(result)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| #")]
    assert len(rows) == 20 and "5 more disagreeing items are not listed." in "\n".join(lines)
    assert "x\\|y" in rows[0] and "line break" in rows[0] and "p" * 69 + "…" in rows[0]
    assert "Not listed: no item was scored." in lines
