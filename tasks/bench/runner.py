"""Run one suite on one GGUF: per-item JSONL (input order) and a summary, written atomically."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from tasks.bench.batched import DEFAULT_PARALLEL
from tasks.bench.metrics import METRICS, char_f1, gsm8k_extract, reasoning_audit, split_thinking, summarize
from tasks.bench.suites import SuiteSpec, load_docs, load_suite, resolve_data, suite_path
from tasks.final_section import opens_reasoning
from tasks.progress import Progress
from tasks.store import (
    STAMP,
    ResultsConflictError,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
    read_json,
    seal,
    sha256_file,
    staging_dir,
    verified,
)

logger = logging.getLogger(__name__)
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass
class RunOptions:
    """How one suite is evaluated. ``parallel``: generation suites decode that many items together (continuous
    batching, tasks.bench.batched); 1 (the default) is the one-item-at-a-time reference path. Greedy decoding of the
    same prompts gives the same completions either way except where llama.cpp's batched arithmetic (another
    summation order) turns a near tie in the logits the other way, so a ``parallel`` above 1 is part of a generation
    suite's evaluation key (eval_inputs); 1 keeps the keys results always had. ``packed_mc``: multiple-choice suites
    score several choices and items per llama_decode (tasks.bench.packed); off by default: on a model whose
    activations llama.cpp rounds to 8 bits (any quantized GGUF) another batch layout moves log-likelihoods by up to
    ~1 nat (benchmarks/bench_engine.py), so a packed result has its own key."""

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
    parallel: int = DEFAULT_PARALLEL
    packed_mc: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=64)
def _compiled(template: str) -> jinja2.Template:
    return _ENV.from_string(template)


def render(template: str, doc: dict) -> str:
    return _compiled(template).render(**doc)  # compiled once per template: every item is rendered before a run


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


def choice_pairs(engine, suite, doc, context: str) -> list[tuple[list[int], list[int]]]:
    return [engine.encode_pair(context, suite.target_delimiter + c) for c in choices_of(suite, doc)]


def score_multiple_choice(engine, suite, doc, context: str, scored=None) -> dict[str, Any]:
    """One multiple-choice item; ``scored``: its choices' scores when already computed (packed), else scored here."""
    choices = choices_of(suite, doc)
    if scored is None:
        scored = [engine.loglikelihood(ctx, cont) for ctx, cont in choice_pairs(engine, suite, doc, context)]
    lls = [s.loglikelihood for s in scored]
    normed = [ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)]  # lm-eval acc_norm: per character
    gold = int(doc[suite.target_field])
    pred, pred_norm = _argmax(lls), _argmax(normed)
    return {"loglikelihoods": lls, "is_greedy": [s.is_greedy for s in scored], "pred": pred,
            "pred_norm": pred_norm, "gold": gold, "acc": pred == gold, "acc_norm": pred_norm == gold}


def generate_all(engine, suite, contexts: list[str], parallel: int, on_done=None) -> list[str]:
    """The completions ``score_generation`` would generate for ``contexts``, ``parallel`` at a time."""
    gen = suite.generation
    if gen.chat:
        return engine.chat_many([[{"role": "user", "content": c}] for c in contexts], gen.max_tokens,
                                gen.until or None, parallel, on_done)
    return engine.generate_many(contexts, gen.max_tokens, gen.until, parallel, on_done)


def score_generation(engine, suite, doc, context: str, opts: RunOptions, judge,
                     text: str | None = None) -> dict[str, Any]:
    """One generation item; ``text``: its completion when already generated (generate_all), else generated here."""
    gen = suite.generation
    if gen.chat:
        messages = [{"role": "user", "content": context}]
        if text is None:
            text = engine.chat(messages, gen.max_tokens, gen.until or None)
        prompt = engine.chat_prompt(messages)
    else:
        if text is None:
            text = engine.generate(context, gen.max_tokens, gen.until)
        prompt = context
    # read as `alphagate serve` reads it: a prompt that opened the reasoning section (a thinking chat template
    # ends with <think>) makes the generated text start inside it
    final, reasoning = split_thinking(text, opts.think_tags, opts.final_tags,
                                      opened=opens_reasoning(prompt, opts.think_tags))
    record: dict[str, Any] = {"final_answer": final, "completion_chars": len(text),
                              **reasoning_audit(reasoning, opts.keep_reasoning)}
    if suite.process_docs == "gsm8k":
        strict, flexible = gsm8k_extract(final)
        record.update({"gold": doc["gold"], "extracted_strict": strict, "extracted_flexible": flexible,
                       "exact_match_strict": strict == doc["gold"],
                       "exact_match_flexible": flexible == doc["gold"]})
    else:
        record.update({"char_f1": char_f1(final, doc["output"]), "judge_grade": None})
        if judge is not None:
            verdict = judge.grade(doc["input"], doc["output"], doc["eval_aspect"], final)
            record.update({"judge_grade": verdict.grade, "judge_reason": verdict.reason,
                           "judge_error": verdict.error, "judge_attempts": verdict.attempts})
    return record


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


NO_MMPROJ = "image item, no mmproj given"


def skip_notes(suite: SuiteSpec, records: list[dict]) -> list[str]:
    """What the user should know about skipped items, once per reason (not once per item)."""
    images = sum(1 for r in records if r.get("skip_reason") == NO_MMPROJ)
    if not images:
        return []
    return [f"{suite.name}: {images} of {len(records)} items have an image and were skipped because no vision "
            "projector (mmproj GGUF) was given; to score them set vision.mmproj (and vision.image_root) in the config, "
            "or pass --mmproj and --image-root to `alphagate eval`."]


def eval_inputs(gguf: Path, suite: SuiteSpec, opts: RunOptions) -> dict[str, Any]:
    """Everything a suite's results depend on: the model file's content, the suite's YAML (version and prompt hash
    beside it, for people), the items' content (bundled, shared or local file sha256; Hub commit), how many items
    and shots, and the judge (its spec and its model file's sha256) or mmproj where the suite uses one."""
    from tasks.bench.suites import hub_commit

    source = resolve_data(suite, opts.data)
    if isinstance(source, Path):
        data = {"kind": "file", "name": source.name, "sha256": sha256_file(source)}
    else:
        data = {"kind": "hub", "hub_id": suite.dataset.hub_id, "config": suite.dataset.hub_config,
                "split": suite.dataset.split,
                "commit": hub_commit(suite)}
    judge = None
    if opts.judge is not None and "judge_grade" in suite.metrics:
        judge = opts.judge.model_dump(mode="json", exclude={"path"})
        if opts.judge.path is not None:
            judge["model_sha256"] = sha256_file(opts.judge.path)
    for flag, path in (("--mmproj", opts.mmproj), ("the judge's model", getattr(opts.judge, "path", None))):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} file {path} does not exist.")
    mmproj = None
    if opts.mmproj is not None and suite.process_docs == "scienceqa":
        mmproj = {"sha256": sha256_file(opts.mmproj), "image_root": str(opts.image_root)}
    return {"model_sha256": sha256_file(gguf), "suite": suite.name, "suite_version": suite.version,
            "suite_yaml_sha256": sha256_file(suite_path(suite.name)), "prompt_sha256": suite.prompt_hash(),
            "num_fewshot": suite.num_fewshot if opts.num_fewshot is None else opts.num_fewshot,
            "limit": opts.limit, "data": data, "judge": judge, "mmproj": mmproj,
            "n_ctx": opts.n_ctx, "keep_reasoning": opts.keep_reasoning,
            "tags": [list(opts.think_tags), list(opts.final_tags)],
            # batched decoding can turn a near tie in the logits the other way: a result made with it is its own
            # (parallel 1, the reference path, keeps the keys it always had)
            **({"parallel": opts.parallel} if opts.parallel > 1 and suite.kind != "multiple_choice" else {}),
            **({"mc_scoring": "packed"} if opts.packed_mc and suite.kind == "multiple_choice" else {})}


def eval_key(gguf: Path, suite_name: str, opts: RunOptions) -> tuple[str, dict[str, Any]]:
    from tasks.keys import stage_key

    if not Path(gguf).is_file():
        raise FileNotFoundError(f"GGUF {gguf} does not exist.")
    inputs = eval_inputs(Path(gguf), load_suite(suite_name), opts)
    return stage_key("eval", inputs), inputs


def _reusable(out_dir: Path, suite: str, key: str, inputs: dict[str, Any], replace: bool) -> dict[str, Any] | None:
    """An earlier result of this key in ``out_dir`` (intact), or None; results of *another* key, and files of these
    names that `alphagate eval` did not write, are refused unless ``replace`` (they would be lost)."""
    from tasks.outdir import differences

    summary_path, records_path = out_dir / f"{suite}.summary.json", out_dir / f"{suite}.jsonl"
    if not summary_path.is_file():
        if records_path.exists() and not replace:
            raise ResultsConflictError(f"{out_dir} holds {records_path.name} but no {summary_path.name}: not a result "
                                       "of `alphagate eval`, and writing here would overwrite it. Use another --out, "
                                       "or --replace to overwrite it.")
        return None
    summary = read_json(summary_path)
    if not isinstance(summary, dict):
        summary = {}
    if summary.get("key") == key:
        if records_path.is_file() and sha256_file(records_path) == summary.get("records_sha256"):
            return summary
        return None  # same inputs, damaged records: recompute
    if replace:
        return None
    theirs = summary.get("inputs")
    found = (f"inputs differ: {differences(theirs, inputs)}" if isinstance(theirs, dict) else
             f"{summary_path.name} was not written by `alphagate eval`")
    raise ResultsConflictError(
        f"{out_dir} already holds {suite} results of other inputs ({found}); writing here would replace them. Use "
        "another --out, or --replace to overwrite them.")


def run_suite(gguf: Path, suite_name: str, out_dir: Path, opts: RunOptions | None = None, *,
              replace: bool = False, stage_folder: bool = False) -> dict[str, Any]:
    """Evaluate ``gguf`` on a suite; writes OUT/NAME.jsonl and OUT/NAME.summary.json. An intact result of the same
    key is reused; a result of other inputs is refused unless ``replace``. ``stage_folder``: ``out_dir`` belongs to
    this one result (the flow's keyed store): it is written as a whole and sealed with its key."""
    from tasks.bench.engine import _check_parallel

    opts = opts or RunOptions()
    _check_parallel(opts.parallel)
    gguf, out_dir = Path(gguf), Path(out_dir)
    key, inputs = eval_key(gguf, suite_name, opts)
    if stage_folder:
        if verified(out_dir, key):
            return read_json(out_dir / f"{suite_name}.summary.json")
        with staging_dir(out_dir) as tmp:
            summary = _evaluate(gguf, suite_name, tmp, opts, key, inputs)
            seal(tmp, "eval", key, inputs)
        return summary
    if (out_dir / STAMP).is_file():
        raise ResultsConflictError(f"--out {out_dir} is a sealed pipeline output (it holds {STAMP}); adding results "
                                   "there would change it. Choose another --out.")
    if (previous := _reusable(out_dir, suite_name, key, inputs, replace)) is not None:
        return previous
    check_writable_dir(out_dir)  # before the evaluation, not after it: an unwritable --out would waste the run
    out_dir.mkdir(parents=True, exist_ok=True)
    return _evaluate(gguf, suite_name, out_dir, opts, key, inputs)


def _evaluate(gguf: Path, suite_name: str, out_dir: Path, opts: RunOptions, key: str,
              inputs: dict[str, Any]) -> dict[str, Any]:
    from tasks.bench.engine import Engine
    from tasks.bench.vision import VisionScorer, image_path

    suite = load_suite(suite_name)
    source = resolve_data(suite, opts.data)
    docs = load_docs(suite, opts.data, opts.limit, commit=inputs["data"].get("commit"))
    num_fewshot = inputs["num_fewshot"]
    judge = vision = None
    if opts.judge is not None and "judge_grade" in suite.metrics:
        from tasks.bench.judge import Judge

        judge = Judge(opts.judge)
    records = []
    with Engine(gguf, n_ctx=opts.n_ctx) as engine, Progress(len(docs), f"{suite.name} on {gguf.name}") as progress:
        engine.reset_timings()
        texts: dict[int, str] = {}
        if suite.kind != "multiple_choice" and opts.parallel > 1:  # generate every item first, then score them
            contexts = [build_context(suite, doc, docs, num_fewshot) for doc in docs]
            done = generate_all(engine, suite, contexts, opts.parallel, lambda i: progress.update())
            texts = {doc["index"]: t for doc, t in zip(docs, done, strict=True)}
        packed: dict[int, list] = {}
        if suite.kind == "multiple_choice" and opts.packed_mc:  # score every text item first, packed
            text_docs = [d for d in docs if not (suite.process_docs == "scienceqa" and d.get("image"))]
            items = [choice_pairs(engine, suite, d, build_context(suite, d, docs, num_fewshot)) for d in text_docs]
            scores = engine.loglikelihood_many(items, packed=True, on_done=lambda i: progress.update())
            packed = {d["index"]: s for d, s in zip(text_docs, scores, strict=True)}
        for doc in (docs if texts or packed else progress.iterate(docs)):
            context = build_context(suite, doc, docs, num_fewshot)
            base = {"index": doc["index"], "prompt_sha256": _sha(context)}
            if suite.category_field:
                base["category"] = doc.get(suite.category_field, "")
            if suite.process_docs == "scienceqa":
                base["modality"] = "image" if doc.get("image") else "text"
                if doc.get("image"):
                    if packed:
                        progress.update()
                    if opts.mmproj is None:
                        records.append({**base, "skipped": True, "skip_reason": NO_MMPROJ})
                        continue
                    vision = vision or VisionScorer(gguf, opts.mmproj)
                    records.append({**base, **vision.score(doc, context, image_path(doc, opts.image_root))})
                    continue
            if suite.kind == "multiple_choice":
                records.append({**base, **score_multiple_choice(engine, suite, doc, context, packed.get(doc["index"]))})
            else:
                records.append({**base, **score_generation(engine, suite, doc, context, opts, judge,
                                                           texts.get(doc["index"]))})
        timings = engine.timings()
    if judge is not None:
        judge.close()
    if vision is not None:
        vision.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = atomic_write_text(out_dir / f"{suite.name}.jsonl",
                                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    notes = skip_notes(suite, records)
    for note in notes:
        logger.info("%s", note)  # the CLI prints the summary's notes; flows read them there too
    summary = {"key": key, "inputs": inputs, "suite": suite.name, "suite_version": suite.version,
               "prompt_sha256": inputs["prompt_sha256"], "model": str(gguf), "model_sha256": inputs["model_sha256"],
               "num_fewshot": num_fewshot, "data": str(source), "data_sha256": inputs["data"].get("sha256"),
               "judge": judge.describe() if judge else None, "timings": timings,
               "parallel": opts.parallel if suite.kind != "multiple_choice" else 1,
               **({"mc_scoring": "packed" if opts.packed_mc else "single"} if suite.kind == "multiple_choice" else {}),
               "records_sha256": sha256_file(records_path), "notes": notes, **summarize_records(suite, records)}
    atomic_write_json(out_dir / f"{suite.name}.summary.json", summary)  # last: its presence marks the suite as done
    return summary
