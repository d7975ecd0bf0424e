"""Scores: per-item results and the suite summary, computed from a suite's generation records.

A score is keyed by the generation key plus the scorer's code and settings: the suite YAML (answer filters, metrics),
the reasoning tags, and the judge (its spec, its model file's sha256; the judge's own outputs are kept by their key,
tasks/bench/judge.py ``verdicts``). The files written are the ones downstream stages read (NAME.jsonl, one record per
item in input order, and NAME.summary.json), in the shape they always had.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from tasks.bench.generate import NO_MMPROJ, read_generations
from tasks.bench.metrics import METRICS, char_f1, extract_answer, reasoning_audit, split_thinking, summarize
from tasks.bench.options import RunOptions
from tasks.bench.suites import SuiteSpec, load_suite, suite_path
from tasks.final_section import opens_reasoning
from tasks.store import atomic_write_json, atomic_write_text, sha256_file

logger = logging.getLogger(__name__)
LETTER = re.compile(r"\b([A-E])\b")  # an image item's pick: the first option letter the model writes


def scoring_inputs(suite: SuiteSpec, opts: RunOptions) -> dict[str, Any]:
    """Everything scoring depends on besides the generations (and the code, which stage_key adds)."""
    judge = None
    if opts.judge is not None and suite.judged:
        from tasks.bench.judge import judge_inputs

        judge = judge_inputs(opts.judge)
    return {"suite_yaml_sha256": sha256_file(suite_path(suite.name)), "suite_version": suite.version,
            "judge": judge, "keep_reasoning": opts.keep_reasoning,
            "tags": [list(opts.think_tags), list(opts.final_tags)]}


def score_key(generation_key: str, generation: dict[str, Any], suite_name: str,
              opts: RunOptions) -> tuple[str, dict[str, Any]]:
    from tasks.keys import stage_key

    inputs = {"generation_key": generation_key, "generation": generation,
              "scoring": scoring_inputs(load_suite(suite_name), opts)}
    return stage_key("eval", inputs), inputs


def flat_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """An evaluation key's inputs as one flat record (what a summary's ``inputs`` holds, as it always has: the
    decision compares two models' suites on it, leaving out the model's sha256)."""
    return {**inputs["generation"], **inputs["scoring"]}


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def score_choices(suite: SuiteSpec, doc: dict, lls: list[float], is_greedy: list[bool]) -> dict[str, Any]:
    from tasks.bench.prompts import choices_of

    normed = [ll / max(len(c), 1) for ll, c in zip(lls, choices_of(suite, doc), strict=True)]  # acc_norm: per char
    gold = int(doc[suite.target_field])
    pred, pred_norm = _argmax(lls), _argmax(normed)
    return {"loglikelihoods": lls, "is_greedy": is_greedy, "pred": pred, "pred_norm": pred_norm, "gold": gold,
            "acc": pred == gold, "acc_norm": pred_norm == gold}


def score_vision(doc: dict, text: str) -> dict[str, Any]:
    match = LETTER.search(text)
    pred = "ABCDE".index(match.group(1)) if match and "ABCDE".index(match.group(1)) < len(doc["choices"]) else None
    return {"pred": pred, "gold": doc["answer"], "acc": pred == doc["answer"], "acc_norm": pred == doc["answer"],
            "vision_answer": text[:40]}


def score_completion(suite: SuiteSpec, doc: dict, row: dict[str, Any], opts: RunOptions) -> dict[str, Any]:
    """A generation item's result without the judge: the final answer (read as `alphagate serve` reads it: a prompt
    that opened the reasoning section makes the text start inside it), the reasoning's audit, and the metrics."""
    text = row["completion"]
    final, reasoning = split_thinking(text, opts.think_tags, opts.final_tags,
                                      opened=opens_reasoning(row.get("prompt", ""), opts.think_tags))
    record: dict[str, Any] = {"final_answer": final, "completion_chars": len(text),
                              **reasoning_audit(reasoning, opts.keep_reasoning)}
    if suite.filters:
        record["gold"] = doc["gold"]
        record |= {f"extracted_{n}": extract_answer(final, f.regex, f.take) for n, f in suite.filters.items()}
        record |= {f"exact_match_{n}": record[f"extracted_{n}"] == doc["gold"] for n in suite.filters}
    if "char_f1" in suite.metrics:
        record["char_f1"] = char_f1(final, doc["output"])
    if suite.judged:
        record["judge_grade"] = None
    return record


def score_row(suite: SuiteSpec, row: dict[str, Any], opts: RunOptions) -> dict[str, Any]:
    doc = row["doc"]
    record: dict[str, Any] = {"index": row["index"], "prompt_sha256": row["prompt_sha256"]}
    if suite.category_field:
        record["category"] = doc.get(suite.category_field, "")
    if suite.image_field is not None:
        record["modality"] = "image" if suite.has_image(doc) else "text"
    if row.get("skipped"):
        return {**record, "skipped": True, "skip_reason": row["skip_reason"]}
    if "vision_text" in row:
        return {**record, **score_vision(doc, row["vision_text"])}
    if "loglikelihoods" in row:
        return {**record, **score_choices(suite, doc, row["loglikelihoods"], row["is_greedy"])}
    return {**record, **score_completion(suite, doc, row, opts)}


def judge_records(suite: SuiteSpec, rows: list[dict], records: list[dict], opts: RunOptions,
                  store: Path | None) -> None:
    """Add the judge's verdicts to the scored generation records (in place)."""
    from tasks.bench.judge import judge_prompt, verdicts

    todo = [(row["doc"], rec) for row, rec in zip(rows, records, strict=True) if "final_answer" in rec]
    prompts = [judge_prompt(d["input"], d["output"], d["eval_aspect"], r["final_answer"]) for d, r in todo]
    for (_, record), verdict in zip(todo, verdicts(opts.judge, prompts, store), strict=True):
        record.update({"judge_grade": verdict["grade"], "judge_reason": verdict["reason"],
                       "judge_error": verdict["error"], "judge_attempts": verdict["attempts"]})


def summarize_records(suite: SuiteSpec, records: list[dict]) -> dict[str, Any]:
    scored = [r for r in records if not r.get("skipped")]
    metrics = {}
    for name in suite.metrics:
        metric = METRICS[name]  # summaries keep each metric on its own scale (judge grades 1-5)
        values = [float(v) for r in scored if (v := metric.read(r)) is not None]
        metrics[name] = summarize(values, metric.binary)
    out: dict[str, Any] = {"metrics": metrics, "items": len(records), "scored": len(scored),
                           "skipped": len(records) - len(scored)}
    if "judge_grade" in suite.metrics:
        out["judge_failures"] = sum(1 for r in scored if r.get("judge_error"))
    acc = METRICS["acc"]
    modalities = {r.get("modality") for r in scored} - {None}
    if modalities:
        out["by_modality"] = {m: summarize([float(acc.read(r)) for r in scored if r.get("modality") == m], True)
                              for m in sorted(modalities)}
    if suite.category_field:
        cats = sorted({r["category"] for r in scored})
        out["by_category"] = {c: summarize([float(acc.read(r)) for r in scored if r["category"] == c], True)
                              for c in cats}
    return out


def metric_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A suite summary's metrics for a table artifact: mean, 95% CI and n, rounded to 4 significant digits."""
    from tasks.numbers import rounded

    return [{"metric": name, "mean": rounded(m["mean"]), "ci95_low": rounded((m["ci95"] or [None, None])[0]),
             "ci95_high": rounded((m["ci95"] or [None, None])[1]), "n": m["n"]}
            for name, m in summary["metrics"].items()]


def skip_notes(suite: SuiteSpec, records: list[dict]) -> list[str]:
    """What the user should know about skipped items, once per reason (not once per item)."""
    images = sum(1 for r in records if r.get("skip_reason") == NO_MMPROJ)
    if not images:
        return []
    return [f"{suite.name}: {images} of {len(records)} items have an image and were skipped because no vision "
            "projector (mmproj GGUF) was given; to score them set vision.mmproj (and vision.image_root) in the config, "
            "or pass --mmproj and --image-root to `alphagate eval`."]


def write_scores(generations: Path, suite_name: str, opts: RunOptions, out_dir: Path, key: str,
                 inputs: dict[str, Any], store: Path | None = None) -> dict[str, Any]:
    """Score the generations at ``generations`` (of key ``inputs["generation_key"]``) into OUT/NAME.jsonl and
    OUT/NAME.summary.json (last: its presence marks the suite as done); ``store``: where the judge's verdicts are
    kept by key."""
    from tasks.bench.judge import describe_spec

    suite = load_suite(suite_name)
    meta, rows = read_generations(generations, inputs["generation_key"])
    records = [score_row(suite, row, opts) for row in rows]
    judged = opts.judge is not None and suite.judged
    if judged:
        judge_records(suite, rows, records, opts, store)
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = atomic_write_text(out_dir / f"{suite.name}.jsonl",
                                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    notes = skip_notes(suite, records)
    for note in notes:
        logger.info("%s", note)  # the CLI prints the summary's notes; flows read them there too
    generation = inputs["generation"]
    summary = {"key": key, "inputs": flat_inputs(inputs), "generation_key": inputs["generation_key"],
               "suite": suite.name, "suite_version": suite.version, "prompt_sha256": generation["prompt_sha256"],
               "model": meta["model"],
               "model_sha256": generation["model_sha256"], "num_fewshot": meta["num_fewshot"], "data": meta["data"],
               "data_sha256": generation["data"].get("sha256"),
               "judge": describe_spec(opts.judge) if judged else None, "timings": meta["timings"],
               "parallel": meta["parallel"], **({"mc_scoring": meta["mc_scoring"]} if "mc_scoring" in meta else {}),
               "records_sha256": sha256_file(records_path), "notes": notes, **summarize_records(suite, records)}
    atomic_write_json(out_dir / f"{suite.name}.summary.json", summary)
    return summary
