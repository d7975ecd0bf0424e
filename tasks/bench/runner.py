"""Run one suite on one GGUF: generations (tasks/bench/generate.py) found by their key or made, then scored
(tasks/bench/score.py) into per-item JSONL (input order) and a summary, written atomically.

Two keys: the generation key (model, prompts, items, decoding) and the evaluation key (the generation key plus the
scorer's code and settings). A scorer change (an answer filter, a metric, the judge) gives a new evaluation key
over the same generation key: the saved generations are scored again, nothing is generated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.bench.generate import (
    NO_MMPROJ,
    choice_pairs,
    choose_one,
    ensure_generations,
    generate_all,
    generate_one,
    generation_folder,
    generation_key,
)
from tasks.bench.options import RunOptions
from tasks.bench.prompts import build_context, choices_of, render
from tasks.bench.score import (
    flat_inputs,
    metric_rows,
    score_choices,
    score_completion,
    score_key,
    skip_notes,
    summarize_records,
    write_scores,
)
from tasks.bench.suite_spec import SuiteSpec
from tasks.store import (
    STAMP,
    ResultsConflictError,
    check_writable_dir,
    read_json,
    seal,
    sha256_file,
    staging_dir,
    verified,
)

__all__ = ["RunOptions", "eval_key", "run_suite", "render", "build_context", "choices_of", "choice_pairs",
           "generate_all", "score_generation", "score_multiple_choice", "summarize_records", "metric_rows",
           "skip_notes", "NO_MMPROJ"]


def score_multiple_choice(engine, suite: SuiteSpec, doc: dict, context: str, scored=None) -> dict[str, Any]:
    """One multiple-choice item, computed and scored here (``scored``: its choices' scores when already computed)."""
    row = choose_one(engine, suite, doc, context, scored)
    return score_choices(suite, doc, row["loglikelihoods"], row["is_greedy"])


def score_generation(engine, suite: SuiteSpec, doc: dict, context: str, opts: RunOptions, judge,
                     text: str | None = None) -> dict[str, Any]:
    """One generation item, generated (``text``: its completion when already generated) and scored here."""
    record = score_completion(suite, doc, generate_one(engine, suite, context, text), opts)
    if judge is not None and suite.judged:
        verdict = judge.grade(doc["input"], doc["output"], doc["eval_aspect"], record["final_answer"])
        record.update({"judge_grade": verdict.grade, "judge_reason": verdict.reason,
                       "judge_error": verdict.error, "judge_attempts": verdict.attempts})
    return record


def eval_key(gguf: Path, suite_name: str, opts: RunOptions) -> tuple[str, dict[str, Any]]:
    """The evaluation key and its inputs: {generation_key, generation (its inputs), scoring}."""
    gen_key, gen_inputs = generation_key(Path(gguf), suite_name, opts)
    return score_key(gen_key, gen_inputs, suite_name, opts)


def _reusable(out_dir: Path, suite: str, key: str, inputs: dict[str, Any], replace: bool) -> dict[str, Any] | None:
    """An earlier result of this key in ``out_dir`` (intact), or None; results of *other generations*, and files of
    these names that `alphagate eval` did not write, are refused unless ``replace`` (they would be lost). Results
    of the same generations scored otherwise are rescored in place."""
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
    if replace or summary.get("generation_key") == inputs["generation_key"]:
        return None
    theirs = summary.get("inputs")
    found = (f"inputs differ: {differences(theirs, flat_inputs(inputs))}" if isinstance(theirs, dict) else
             f"{summary_path.name} was not written by `alphagate eval`")
    raise ResultsConflictError(
        f"{out_dir} already holds {suite} results of other inputs ({found}); writing here would replace them. Use "
        "another --out, or --replace to overwrite them.")


def run_suite(gguf: Path, suite_name: str, out_dir: Path, opts: RunOptions | None = None, *,
              replace: bool = False, stage_folder: bool = False, store: Path | None = None) -> dict[str, Any]:
    """Evaluate ``gguf`` on a suite; writes OUT/NAME.jsonl and OUT/NAME.summary.json. An intact result of the same
    key is reused; a result of other inputs is refused unless ``replace``. ``stage_folder``: ``out_dir`` belongs to
    this one result (the flow's keyed store): it is written as a whole and sealed with its key. ``store``: the root
    whose store/generate/<key>/ keeps the generations (default: the run root above a stage folder, else OUT)."""
    from tasks.bench.batched import check_parallel

    opts = opts or RunOptions()
    check_parallel(opts.parallel)
    gguf, out_dir = Path(gguf), Path(out_dir)
    key, inputs = eval_key(gguf, suite_name, opts)
    if stage_folder:
        store = Path(store) if store is not None else out_dir.parents[2]  # <root>/store/eval/<key>
        if verified(out_dir, key):
            return read_json(out_dir / f"{suite_name}.summary.json")
        generations = _generations(gguf, suite_name, opts, store, inputs)
        with staging_dir(out_dir) as tmp:
            summary = write_scores(generations, suite_name, opts, tmp, key, inputs, store)
            seal(tmp, "eval", key, inputs)
        return summary
    if (out_dir / STAMP).is_file():
        raise ResultsConflictError(f"--out {out_dir} is a sealed pipeline output (it holds {STAMP}); adding results "
                                   "there would change it. Choose another --out.")
    if (previous := _reusable(out_dir, suite_name, key, inputs, replace)) is not None:
        return previous
    check_writable_dir(out_dir)  # before the evaluation, not after it: an unwritable --out would waste the run
    store = Path(store) if store is not None else out_dir
    generations = _generations(gguf, suite_name, opts, store, inputs)
    return write_scores(generations, suite_name, opts, out_dir, key, inputs, store)


def _generations(gguf: Path, suite_name: str, opts: RunOptions, store: Path, inputs: dict[str, Any]) -> Path:
    gen_key = inputs["generation_key"]
    return ensure_generations(gguf, suite_name, opts, generation_folder(store, gen_key), gen_key,
                              inputs["generation"])

