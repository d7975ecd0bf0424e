"""The ``alphagate`` command line: parse, check what was handed, call the library, print.

One module per command family, each parser beside its handler (``add_parsers(sub)`` + ``<name>_command(args)``):

- flows/cli/train.py    schedule, tune, train, dpo
- flows/cli/models.py   serve, export, eval, speed
- flows/cli/rescore.py  rescore
- flows/cli/results.py  decide, degrade, upload, plan, report
- flows/cli/run.py      run, nightly, slots (the Prefect flows, set up as the flows set themselves up: flows/setup.py)

Choices come from their single declarations (variants: tasks.train.variant; formats: tasks.export.formats; suites:
tasks.bench.suites). Checks of files, the guarding of a run, failures and the environment are tasks' (tasks.inputs,
tasks.gguf_check, tasks.guard, tasks.failures, tasks.environment). Heavy imports happen inside the handlers, so that
``--help`` and ``import flows.cli`` stay fast.
"""

from __future__ import annotations

import argparse
import sys

from flows.cli import models, rescore, results, run, train
from tasks.environment import debug_requested, prefect_child_defaults

FAMILIES = (train, models, rescore, results, run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alphagate", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for family in FAMILIES:
        family.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    prefect_child_defaults()  # before any flow: Prefect's temporary server reads its settings from the environment
    try:
        parser = build_parser()
    except FileNotFoundError as exc:  # the declarations its choices are drawn from (configs/suites) are not there
        if debug_requested():
            raise
        print(f"alphagate: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if (check := getattr(args, "check", None)) and (problem := check(args)):
        parser.error(problem)  # a combination of flags argparse cannot refuse by itself
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug_requested():
            raise
        print(f"alphagate: {args.command} interrupted; its outputs are written whole or not at all: rerun the same "
              "command.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line; the traceback only on demand
        if debug_requested():
            raise
        from tasks.failures import failure_line

        status, line = failure_line(exc, sys.argv[1:] if argv is None else list(argv))
        print(line, file=sys.stderr)
        return status
