"""The stages that measure: one suite on one GGUF (its generations are found by their own key, so a scorer change
only rescores them), a model/format's result set (the completed suites' records together), and the decision's speed
samples, measured on their own."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from tasks.keyed import Plan, at, plan, produce
from tasks.store import Ref, ref_of, sha256_file


def _options(data: str | None, limit: int | None, judge: str | None, mmproj: str | None, image_root: str | None):
    from tasks.bench.judge import load_judge_spec
    from tasks.bench.runner import RunOptions

    return RunOptions(data=data, limit=limit, judge=load_judge_spec(judge) if judge else None,
                      mmproj=Path(mmproj) if mmproj else None, image_root=Path(image_root) if image_root else None)


def eval_plan(gguf: str, suite: str, root: str, data: str | None, limit: int | None, judge: str | None,
              mmproj: str | None = None, image_root: str | None = None, **_: Any) -> Plan:
    from tasks.bench.runner import eval_key

    return at("eval", root, eval_key(Path(gguf), suite, _options(data, limit, judge, mmproj, image_root))[0])


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """One evaluation's output (``ref``) and what a person sees of it: its metric table and a one-line summary."""

    ref: Ref
    table: list[dict[str, Any]]
    description: str


def evaluate(gguf: str, suite: str, root: str, data: str | None, limit: int | None, judge: str | None,
             mmproj: str | None = None, image_root: str | None = None, threads: int | None = None) -> Evaluated:
    """``suite`` on ``gguf``. ``mmproj``/``image_root``: the vision settings (ScienceQA's image items; skipped without
    a projector, which the summary's notes say). ``threads``: llama.cpp threads of its models (None: every core)."""
    from tasks.bench.engine import engine_threads
    from tasks.bench.runner import metric_rows, run_suite

    out = eval_plan(gguf, suite, root, data, limit, judge, mmproj, image_root).out
    with engine_threads(threads):
        summary = run_suite(Path(gguf), suite, out, _options(data, limit, judge, mmproj, image_root),
                            stage_folder=True, store=Path(root))
    description = (f"{suite} on {Path(gguf).name}: {summary['scored']} scored, {summary['skipped']} skipped"
                   + "".join(f". {note}" for note in summary.get("notes", [])))
    return Evaluated(ref_of(out), metric_rows(summary), description)


def result_set(suites: dict[str, Ref], root: str) -> Ref:
    """One model/format's result set: a folder holding the completed suites' records and summaries (what decide,
    degrade and report read), addressed by the suites' refs."""
    def build(tmp: Path) -> None:
        for suite, ref in suites.items():
            for name in (f"{suite}.jsonl", f"{suite}.summary.json"):
                shutil.copy2(Path(ref.path) / name, tmp / name)

    return produce(plan("results", root, {s: r.sha256 for s, r in sorted(suites.items())}), build)


def speed(ggufs: dict[str, str], root: str, repeats: int = 5, max_tokens: int = 64) -> Ref:
    """The decision's speed samples, measured on their own (after the evaluations, nothing in parallel)."""
    from tasks.bench.speed import measure_speed

    inputs = {"models": {k: sha256_file(v) for k, v in sorted(ggufs.items())}, "repeats": repeats,
              "max_tokens": max_tokens}
    return produce(plan("speed", root, inputs), lambda tmp: measure_speed(
        {k: Path(v) for k, v in ggufs.items()}, repeats=repeats, max_tokens=max_tokens, out=tmp / "speed.json"))
