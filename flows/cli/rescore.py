"""`alphagate rescore`: score a run's saved generations again with the current scorer code and settings.

Wiring only: tasks/bench/rescore.py finds the generations (refusing, before any work, when one is missing) and
scores them; the result sets are made by the results stage (tasks/stages/evaluation.py), so a rerun of the flow
finds them by key.
The decision and report are not redone here: a rerun of `alphagate run` does that, generating and scoring nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub) -> None:
    cmd = sub.add_parser("rescore", help="score a run's saved generations again with the current scorers (answer "
                         "filters, metrics, judge); generates nothing")
    cmd.add_argument("--out", required=True, type=Path, help="the run folder (the --out of `alphagate run`)")
    cmd.add_argument("--judge", type=Path, help="judge YAML for ELYZA-tasks-100 (needed when the run was judged; "
                     "the same YAML keeps its verdicts, another grades the saved answers again)")
    cmd.set_defaults(func=rescore_command)


def rescore_command(args: argparse.Namespace) -> int:
    from tasks.bench.rescore import RERUN, rescore_run
    from tasks.inputs import check_run_dir

    root = Path(args.out)
    check_run_dir(root)
    judge = None
    if args.judge:
        from tasks.bench.judge import load_judge_spec

        judge = load_judge_spec(args.judge)
    rescored, total, record = rescore_run(root, judge)
    print(f"rescored {rescored} of {total} suite results from saved generations (nothing generated); record: {record}")
    print(f"The decision and report still read the earlier scores: to redo them, {RERUN}. It generates and scores "
          "nothing again and decides on these scores.")
    return 0
