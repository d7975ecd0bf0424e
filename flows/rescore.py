"""`alphagate rescore`: score a run's saved generations again with the current scorer code and settings.

Wiring only: tasks/bench/rescore.py finds the generations (refusing, before any work, when one is missing) and
scores them; the result sets are made by the flow's own results stage, so a rerun of the flow finds them by key.
The decision and report are not redone here: a rerun of `alphagate run` does that, generating and scoring nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    cmd = sub.add_parser("rescore", help="score a run's saved generations again with the current scorers (answer "
                         "filters, metrics, judge); generates nothing")
    cmd.add_argument("--out", required=True, type=Path, help="the run folder (the --out of `alphagate run`)")
    cmd.add_argument("--judge", type=Path, help="judge YAML for ELYZA-tasks-100 (needed when the run was judged; "
                     "the same YAML keeps its verdicts, another grades the saved answers again)")
    cmd.set_defaults(func=rescore_command)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def rescore_command(args: argparse.Namespace) -> int:
    from flows.stages import results_task
    from tasks.bench.options import RunOptions
    from tasks.bench.rescore import RERUN, check_judge, plan, primary, rescore, write_record

    root = Path(args.out)
    if not root.is_dir():
        raise FileNotFoundError(f"--out {root} is not a folder; pass the --out folder of an `alphagate run`.")
    judge = None
    if args.judge:
        from tasks.bench.judge import load_judge_spec

        judge = load_judge_spec(args.judge)
    jobs = plan(root)  # every generation found and verified before anything is scored
    check_judge(jobs, judge)
    opts = RunOptions(judge=judge)
    rows, refs = [], {}
    for job in jobs:
        ref, after, computed = rescore(root, job, opts)
        metric, old = primary(job.before)
        new = primary(after)[1]
        refs.setdefault(job.name, {})[job.suite] = ref
        rows.append({"result_set": job.name, "suite": job.suite, "metric": metric, "before": old, "after": new,
                     "rescored": computed, "eval": ref.path})
        print(f"{job.name.removeprefix('eval/')} {job.suite}: {metric} {_shown(old)} -> {_shown(new)}"
              + ("" if computed else "  (already scored so)"))
    results = {name: results_task.fn(suites, str(root)) for name, suites in refs.items()}
    record = write_record(root, rows, results)
    print(f"rescored {sum(r['rescored'] for r in rows)} of {len(rows)} suite results from saved generations "
          f"(nothing generated); record: {record}")
    print(f"The decision and report still read the earlier scores: to redo them, {RERUN}. It generates and scores "
          "nothing again and decides on these scores.")
    return 0
