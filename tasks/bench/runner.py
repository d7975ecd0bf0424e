"""Run one suite on one GGUF: per-item JSONL (input order) and a summary, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from tasks.bench.metrics import char_f1, gsm8k_extract, reasoning_audit, split_thinking, summarize
from tasks.bench.suites import SuiteSpec, load_docs, load_suite, resolve_data
from tasks.progress import Progress
from tasks.store import atomic_write_json, atomic_write_text, is_complete, read_json, sha256_file

logger = logging.getLogger(__name__)
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass
class RunOptions:
    data: str | Path | None = None  # None/"sample", "shared", "hub" or a file
    limit: int | None = None
    num_fewshot: int | None = None
    judge: Any = None  # tasks.bench.judge.JudgeSpec
    mmproj: Path | None = None
    image_root: Path | None = None
    think_tags: tuple[str, str] = ("<think>", "</think>")
    final_tags: tuple[str, str] = ("<final>", "</final>")
    keep_reasoning: bool = False  # debug only: store the reasoning text itself
    n_ctx: int = 2048
    extra: dict[str, Any] = field(default_factory=dict)


def render(template: str, doc: dict) -> str:
    return _ENV.from_string(template).render(**doc)


def choices_of(suite: SuiteSpec, doc: dict) -> list[str]:
    return list(suite.doc_to_choice) if suite.doc_to_choice is not None else list(doc[suite.choices_field])


def build_context(suite: SuiteSpec, doc: dict, docs: list[dict], num_fewshot: int) -> str:
    """lm-eval's layout: description + shots (text + delimiter + gold) joined by the fewshot delimiter + doc."""
    shots = []
    if num_fewshot:
        same = [d for d in docs if d["index"] != doc["index"] and (suite.category_field is None or
                d.get(suite.category_field) == doc.get(suite.category_field))]
        for shot in same[:num_fewshot]:
            target = (render(suite.fewshot_target, shot) if suite.fewshot_target else
                      suite.target_delimiter + choices_of(suite, shot)[shot[suite.target_field]])
            shots.append(render(suite.doc_to_text, shot) + target)
    parts = shots + [render(suite.doc_to_text, doc)]
    return render(suite.description, doc) + suite.fewshot_delimiter.join(parts)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def score_multiple_choice(engine, suite, doc, context: str) -> dict[str, Any]:
    choices = choices_of(suite, doc)
    scored = [engine.loglikelihood(*engine.encode_pair(context, suite.target_delimiter + c)) for c in choices]
    lls = [s.loglikelihood for s in scored]
    normed = [ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)]  # lm-eval acc_norm: per character
    gold = int(doc[suite.target_field])
    pred, pred_norm = _argmax(lls), _argmax(normed)
    return {"loglikelihoods": lls, "is_greedy": [s.is_greedy for s in scored], "pred": pred,
            "pred_norm": pred_norm, "gold": gold, "correct": pred == gold, "correct_norm": pred_norm == gold}


def score_generation(engine, suite, doc, context: str, opts: RunOptions, judge) -> dict[str, Any]:
    gen = suite.generation
    if gen.chat:
        text = engine.chat([{"role": "user", "content": context}], gen.max_tokens, gen.until or None)
    else:
        text = engine.generate(context, gen.max_tokens, gen.until)
    final, reasoning = split_thinking(text, opts.think_tags, opts.final_tags)
    record: dict[str, Any] = {"final_answer": final, "completion_chars": len(text),
                              **reasoning_audit(reasoning, opts.keep_reasoning)}
    if suite.process_docs == "gsm8k":
        strict, flexible = gsm8k_extract(final)
        record.update({"gold": doc["gold"], "extracted_strict": strict, "extracted_flexible": flexible,
                       "correct_strict": strict == doc["gold"], "correct_flexible": flexible == doc["gold"]})
    else:
        record.update({"char_f1": char_f1(final, doc["output"]), "judge_grade": None})
        if judge is not None:
            verdict = judge.grade(doc["input"], doc["output"], doc["eval_aspect"], final)
            record.update({"judge_grade": verdict.grade, "judge_reason": verdict.reason,
                           "judge_error": verdict.error, "judge_attempts": verdict.attempts})
    return record


METRIC_FIELDS = {"acc": ("correct", True), "acc_norm": ("correct_norm", True),
                 "exact_match_strict": ("correct_strict", True), "exact_match_flexible": ("correct_flexible", True),
                 "char_f1": ("char_f1", False), "judge_grade": ("judge_grade", False)}


def summarize_records(suite: SuiteSpec, records: list[dict]) -> dict[str, Any]:
    scored = [r for r in records if not r.get("skipped")]
    metrics = {}
    for name in suite.metrics:
        key, binary = METRIC_FIELDS[name]
        values = [float(r[key]) for r in scored if r.get(key) is not None]
        metrics[name] = summarize(values, binary)
    out: dict[str, Any] = {"metrics": metrics, "items": len(records), "scored": len(scored),
                           "skipped": len(records) - len(scored)}
    if "judge_grade" in suite.metrics:
        out["judge_failures"] = sum(1 for r in scored if r.get("judge_error"))
    modalities = {r.get("modality") for r in scored} - {None}
    if modalities:
        out["by_modality"] = {m: summarize([float(r["correct"]) for r in scored if r.get("modality") == m], True)
                              for m in sorted(modalities)}
    if suite.category_field:
        cats = sorted({r["category"] for r in scored})
        out["by_category"] = {c: summarize([float(r["correct"]) for r in scored if r["category"] == c], True)
                              for c in cats}
    return out


def run_suite(gguf: Path, suite_name: str, out_dir: Path, opts: RunOptions | None = None) -> dict[str, Any]:
    """Evaluate ``gguf`` on a suite; writes OUT/NAME.jsonl and OUT/NAME.summary.json; resumes when done."""
    from tasks.bench.engine import Engine
    from tasks.bench.vision import VisionScorer, image_path

    opts = opts or RunOptions()
    suite = load_suite(suite_name)
    gguf, out_dir = Path(gguf), Path(out_dir)
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF {gguf} does not exist.")
    source = resolve_data(suite, opts.data)
    docs = load_docs(suite, opts.data, opts.limit)
    num_fewshot = suite.num_fewshot if opts.num_fewshot is None else opts.num_fewshot
    key = {"model_sha256": sha256_file(gguf), "suite": suite.name, "suite_version": suite.version,
           "prompt_sha256": suite.prompt_hash(), "num_fewshot": num_fewshot, "limit": opts.limit,
           "data": str(source), "data_sha256": sha256_file(source) if isinstance(source, Path) else source,
           # only what can change this suite's results: a judge matters to ELYZA, an mmproj to ScienceQA
           "judge": (opts.judge.model_dump(mode="json") if opts.judge is not None and "judge_grade" in suite.metrics
                     else None),
           "mmproj": str(opts.mmproj) if opts.mmproj and suite.process_docs == "scienceqa" else None}
    summary_path = out_dir / f"{suite.name}.summary.json"
    if is_complete(out_dir, summary_path.name) and read_json(summary_path).get("key") == key:
        return read_json(summary_path)
    judge = vision = None
    if opts.judge is not None and "judge_grade" in suite.metrics:
        from tasks.bench.judge import Judge

        judge = Judge(opts.judge)
    records = []
    with Engine(gguf, n_ctx=opts.n_ctx) as engine, Progress(len(docs), f"{suite.name} on {gguf.name}") as progress:
        engine.reset_timings()
        for doc in progress.iterate(docs):
            context = build_context(suite, doc, docs, num_fewshot)
            base = {"index": doc["index"], "prompt_sha256": _sha(context)}
            if suite.category_field:
                base["category"] = doc.get(suite.category_field, "")
            if suite.process_docs == "scienceqa":
                base["modality"] = "image" if doc.get("image") else "text"
                if doc.get("image"):
                    if opts.mmproj is None:
                        records.append({**base, "skipped": True, "skip_reason": "image item, no mmproj given"})
                        continue
                    vision = vision or VisionScorer(gguf, opts.mmproj)
                    records.append({**base, **vision.score(doc, context, image_path(doc, opts.image_root))})
                    continue
            if suite.kind == "multiple_choice":
                records.append({**base, **score_multiple_choice(engine, suite, doc, context)})
            else:
                records.append({**base, **score_generation(engine, suite, doc, context, opts, judge)})
        timings = engine.timings()
    if judge is not None:
        judge.close()
    if vision is not None:
        vision.close()
    summary = {"key": key, "suite": suite.name, "suite_version": suite.version, "prompt_sha256": key["prompt_sha256"],
               "model": str(gguf), "model_sha256": key["model_sha256"], "num_fewshot": num_fewshot,
               "data": str(source), "judge": judge.describe() if judge else None, "timings": timings,
               **summarize_records(suite, records)}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{suite.name}.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    atomic_write_json(summary_path, summary)  # last: its presence marks the suite as done
    return summary
