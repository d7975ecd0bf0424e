"""The items on which the two compared models disagree, per suite, for a person to read: the numbers behind the
paired tests (how many items each side won) and up to ``LIMIT`` items, most disagreeing first.

Items are paired as the decision pairs them (tasks/decide/decision.py:compare): by ``index``, on the suite's one
compared metric (scores.paired_metric), over the items scored for both sides; an item scored for one side only is
counted as missing, never listed.

An item disagrees when its two scores differ, or, for a metric that scores a discrete answer (a multiple-choice pick,
GSM8K's extracted number), when the two answers differ while the scores agree (both wrong, each its own way). Free
text (ELYZA's answers) always differs, so there only the scores count.

How much an item disagrees, in this order: the absolute score difference (a right/wrong item: 1); then, for multiple
choice, how far apart the two models' margins for the gold choice are (the gold choice's log-likelihood, per
character for acc_norm, minus the best other choice's: a confident right answer against a confident wrong one
first); then the item's index. ``a_better`` / ``b_better`` count the items whose score is higher for that side:
for a right/wrong metric these are McNemar's discordant counts, otherwise the non-zero paired differences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.decide.scores import item_scores, paired_metric

LIMIT = 20
# the record field holding the answer a discrete metric scores (free-text metrics: none, the score decides)
ANSWER_FIELD = {"acc": "pred", "acc_norm": "pred_norm", "exact_match_strict": "extracted_strict",
                "exact_match_flexible": "extracted_flexible"}


def gold_margin(record: dict[str, Any], metric: str, choices: list[str] | None) -> float | None:
    """The gold choice's log-likelihood minus the best other choice's (per character for acc_norm, when the choices'
    texts are known); None for an item without choices' log-likelihoods."""
    lls, gold = record.get("loglikelihoods"), record.get("gold")
    if not lls or not isinstance(gold, int) or len(lls) < 2:
        return None
    if metric == "acc_norm":
        if choices is None or len(choices) != len(lls):
            return None
        lls = [ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)]
    return float(lls[gold] - max(ll for j, ll in enumerate(lls) if j != gold))


def compare_items(records_a: list[dict], records_b: list[dict], suite: str, metric: str,
                  choices: dict[int, list[str]] | None = None) -> dict[str, Any]:
    """The disagreement of one suite: counts each way, missing items, and every disagreeing item, sorted (see the
    module's docstring). ``choices``: item index -> its choices' texts, for acc_norm margins and for showing picks."""
    sa, _, _ = item_scores(records_a, suite, metric)
    sb, _, _ = item_scores(records_b, suite, metric)
    by_a = {r["index"]: r for r in records_a}
    by_b = {r["index"]: r for r in records_b}
    common = sorted(set(sa) & set(sb))
    field = ANSWER_FIELD.get(metric)
    items = []
    for i in common:
        ra, rb = by_a[i], by_b[i]
        diff = sa[i] - sb[i]
        answers_differ = field is not None and ra.get(field) != rb.get(field)
        if diff == 0 and not answers_differ:
            continue
        opts = (choices or {}).get(i)
        ma, mb = gold_margin(ra, metric, opts), gold_margin(rb, metric, opts)
        items.append({"index": i, "score_a": sa[i], "score_b": sb[i], "diff": diff,
                      "answer_a": _answer(ra, field, opts), "answer_b": _answer(rb, field, opts),
                      "gold": _gold(ra, opts), "margin_a": ma, "margin_b": mb,
                      "margin_gap": None if ma is None or mb is None else abs(ma - mb)})
    items.sort(key=lambda x: (-abs(x["diff"]), -(x["margin_gap"] or 0.0), x["index"]))
    return {"suite": suite, "metric": metric, "n_paired": len(common),
            "a_better": sum(1 for x in items if x["diff"] > 0), "b_better": sum(1 for x in items if x["diff"] < 0),
            "same_score_other_answer": sum(1 for x in items if x["diff"] == 0),
            "missing_in_a": len(set(sb) - set(sa)), "missing_in_b": len(set(sa) - set(sb)), "items": items}


def _answer(record: dict[str, Any], field: str | None, choices: list[str] | None) -> str:
    if field is None:
        return str(record.get("final_answer", ""))
    value = record.get(field)
    if isinstance(value, int) and choices and 0 <= value < len(choices):
        return choices[value]
    return "(none)" if value is None else str(value)


def _gold(record: dict[str, Any], choices: list[str] | None) -> str:
    gold = record.get("gold")
    if isinstance(gold, int) and not isinstance(gold, bool) and choices and 0 <= gold < len(choices):
        return choices[gold]
    return "" if gold is None else str(gold)


def disagreements(record: dict[str, Any]) -> dict[str, Any]:
    """Per compared suite of a decision record (its two models' result folders, its settings): compare_items with
    the prompts' starts, and the suites left out with why. With seed replicates, each arm's first replicate."""
    from tasks.config import DecisionSpec
    from tasks.decide.scores import load_results

    spec = DecisionSpec(**record.get("settings", {}))
    name_a, name_b = record["models"]
    folders = {arm: (p if isinstance(p, str) else p[0]) for arm, p in record["results"].items()}
    loaded = {arm: load_results(Path(folders[arm])) for arm in (name_a, name_b)}
    out: dict[str, Any] = {"models": [name_a, name_b], "folders": folders, "suites": [], "skipped": {},
                           "replicates": any(not isinstance(p, str) for p in record["results"].values())}
    compared = [r["suite"] for r in record.get("suites") or []]
    for suite in compared:
        a, b = loaded[name_a].get(suite), loaded[name_b].get(suite)
        if a is None or b is None:
            out["skipped"][suite] = "its results are no longer in the decision's result folders"
            continue
        metric, failure = paired_metric(suite, a, b, spec)
        if failure:
            out["skipped"][suite] = failure
            continue
        prompts, choices, note = item_texts(suite, a["summary"])
        entry = compare_items(a["records"], b["records"], suite, metric, choices)
        for item in entry["items"]:
            item["prompt"] = prompts.get(item["index"])
        out["suites"].append({**entry, "prompt_note": note})
    return out


def item_texts(suite: str, summary: dict[str, Any]) -> tuple[dict[int, str], dict[int, list[str]], str | None]:
    """(index -> the item's prompt without few-shot examples, index -> its choices' texts, why there are none): the
    items an evaluation read, from the data it recorded; nothing when they cannot be read back unchanged."""
    from tasks.bench import runner
    from tasks.bench.suites import load_docs, load_suite
    from tasks.store import sha256_file

    spec = load_suite(suite)
    data = summary.get("data")
    inputs = (summary.get("inputs") or {}).get("data") or {}
    if data and data != "hub" and Path(data).is_file() and summary.get("data_sha256") not in (
            None, sha256_file(Path(data))):
        return {}, {}, f"the items file {data} changed after the evaluation; prompts not shown"
    try:
        docs = load_docs(spec, data, summary.get("inputs", {}).get("limit"), commit=inputs.get("commit"))
    except (OSError, ValueError) as exc:  # display only: the listing says why it has no prompts
        return {}, {}, f"the items could not be read back ({exc}); prompts not shown"
    prompts = {d["index"]: runner.render(spec.doc_to_text, d) for d in docs}
    choices = {d["index"]: runner.choices_of(spec, d) for d in docs} if spec.kind == "multiple_choice" else {}
    return prompts, choices, None


def _cell(text: Any, width: int) -> str:
    """One Markdown table cell: on one line, pipes escaped, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    flat = flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'") or " "


def markdown_lines(result: dict[str, Any], limit: int = LIMIT) -> list[str]:
    """The report's section: per suite, the counts each way and up to ``limit`` disagreeing items."""
    from tasks.bench.metrics import METRICS
    from tasks.numbers import human

    a, b = result["models"]
    lines = ["## Where the two models disagree", "",
             f"Items paired by index as the decision pairs them ({a}: `{result['folders'][a]}`, {b}: "
             f"`{result['folders'][b]}`"
             + ("; with seed replicates, each arm's first" if result.get("replicates") else "") + "). "
             "Most disagreeing first: the score difference, then how far apart the models' margins for the gold "
             "choice are.", ""]
    for s in result["suites"]:
        metric = METRICS[s["metric"]].label(s["metric"])
        lines += [f"### {s['suite']} ({metric})", "",
                  f"{s['n_paired']} paired items: {a} scored higher on {s['a_better']}, {b} on {s['b_better']}"
                  + (f"; same score, different answer on {s['same_score_other_answer']}"
                     if s["same_score_other_answer"] else "")
                  + (f"; scored for {b} only: {s['missing_in_a']}" if s["missing_in_a"] else "")
                  + (f"; scored for {a} only: {s['missing_in_b']}" if s["missing_in_b"] else "") + ".", ""]
        if s.get("prompt_note"):
            lines += [f"Prompts: {s['prompt_note']}.", ""]
        shown = s["items"][:limit]
        if not shown:
            lines += ["No item differs.", ""]
            continue
        lines += [f"| # | prompt (start) | {a} | {b} | gold | {a} - {b} |", "|---|---|---|---|---|---|"]
        for x in shown:
            lines.append(f"| {x['index']} | {_cell(x.get('prompt') or '', 70)} | {_cell(x['answer_a'], 28)} | "
                         f"{_cell(x['answer_b'], 28)} | {_cell(x['gold'], 28)} | {human(x['diff'], signed=True)} |")
        if len(s["items"]) > limit:
            lines.append(f"\n{len(s['items']) - limit} more disagreeing items are not listed.")
        lines.append("")
    for suite, why in result["skipped"].items():
        lines += [f"### {suite}", "", f"Not listed: {why}.", ""]
    return lines
