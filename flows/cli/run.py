"""`alphagate run`, `nightly`, `slots`: the whole comparison and the nightly study as Prefect flows, and this machine's
model slots.

A flow runs under tasks.guard.guarded (nothing it starts outlives it) with a temporary Prefect server that boots while
the run is checked; the run's parameters and config are checked by flows.setup, which the flows share.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from flows.cli.argtypes import at_least, date


def add_parsers(sub) -> None:
    _add_run(sub)
    _add_nightly(sub)
    _add_slots(sub)


def _with_server(check_and_run):
    """``check_and_run(server)`` with a temporary Prefect server started first (it boots while the flow is imported
    and the run checked); stopped here when the checks or the run fail, else at exit, after Prefect has sent it the
    run's last logs and events (its own exit handlers run first: they were registered later)."""
    from tasks.temp_server import TemporaryServer

    server = TemporaryServer().start()
    try:
        return check_and_run(server)
    except BaseException:
        server.stop()
        raise


# -- run -----------------------------------------------------------------------------------------------------------

def _add_run(sub) -> None:
    from tasks.bench.suites import DEFAULT_SUITES

    run = sub.add_parser("run", help="the whole comparison as a Prefect flow (data, trainings, export, benchmarks, "
                                     "decision, upload or dry run, report)")
    run.add_argument("--config", default="configs/demo.yaml", help="pipeline config YAML (default: %(default)s)")
    run.add_argument("--out", default="runs/demo", help="artifact root: the keyed store, links to this run's outputs "
                                                        "and index.json (default: %(default)s)")
    run.add_argument("--cache", default="runs/cache", help="folder for the downloaded or unpacked base model "
                                                           "(default: %(default)s)")
    run.add_argument("--suites", nargs="+", metavar="SUITE", help="benchmark suites to evaluate (default: "
                                                                  f"{' '.join(DEFAULT_SUITES)})")
    run.add_argument("--formats", nargs="+", metavar="FORMAT", help="GGUF formats to export and evaluate, bf16 "
                                                                    "among them (default: the config's export.formats)")
    run.add_argument("--data", help="benchmark items: 'sample' (default), 'shared', 'hub' or a file")
    run.add_argument("--limit", type=at_least(1, " (items per suite; omit --limit to use every item)"),
                     help="evaluate only the first N items of each suite (>= 1; default: every item)")
    run.add_argument("--judge", help="judge YAML (kind: gguf|openai) grading ELYZA-tasks-100 (default: no judge)")
    run.add_argument("--upload", action="store_true", default=None, help="really upload (else a dry run)")
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from tasks.guard import guarded

    return guarded(Path(args.out), lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from tasks.inputs import llama_logs

    result, out = _with_server(lambda server: _checked_compare(args, server))
    print(f"report:   {result['report']}")
    print(f"decision: {result['decision_record']}  ({result['decision']})")
    if logs := llama_logs(out):
        print(f"logs:     {logs}  (llama.cpp's own output, one file per task)")
    return 0


def _checked_compare(args: argparse.Namespace, server) -> tuple[dict, Path]:
    from flows.compare import compare
    from flows.params import CompareParams
    from flows.setup import checked_params
    from tasks.layout import sweep_staging

    # every flag and file the run reads, before any work: a bad one fails here, naming it; no --formats: the
    # config's export.formats
    params, _ = checked_params({k: v for k, v in vars(args).items()
                                if k in CompareParams.model_fields and v is not None})
    sweep_staging(Path(params.out))  # what killed runs left behind
    with server.api():
        return compare(params), Path(params.out)


# -- nightly -------------------------------------------------------------------------------------------------------

def _add_nightly(sub) -> None:
    ngt = sub.add_parser("nightly", help="one night of the accumulating study (what the nightly deployment runs): a "
                                         "new seed per arm, a pooled decision with repeated-looks correction")
    ngt.add_argument("--config", default="configs/demo.yaml")
    ngt.add_argument("--out", default="runs/nightly")
    ngt.add_argument("--cache", default="runs/cache")
    ngt.add_argument("--date", help="tonight's date label, YYYY-MM-DD (default: today)", type=date)
    ngt.add_argument("--upload", action="store_true", default=None, help="really upload a decided winner")
    ngt.set_defaults(func=nightly_command)


def nightly_command(args: argparse.Namespace) -> int:
    from tasks.guard import guarded

    return guarded(Path(args.out), lambda: _nightly(args))


def _nightly(args: argparse.Namespace) -> int:
    result = _with_server(lambda server: _checked_nightly(args, server))
    print(result.get("closed") or f"study: {result['study']}\nreport: {result['report']}")
    return 0


def _checked_nightly(args: argparse.Namespace, server) -> dict:
    from flows.nightly import nightly
    from flows.setup import checked_nightly_params
    from tasks.decide.study import open_study
    from tasks.layout import sweep_staging

    # before any work (the flow checks again): the config, tonight's items and the study's design
    params, config = checked_nightly_params({"config": args.config, "out": args.out, "cache": args.cache,
                                             "date": args.date, "upload": bool(args.upload)})
    open_study(params.out, config, params.config)
    sweep_staging(Path(params.out))
    with server.api():
        return nightly(params)


# -- slots ---------------------------------------------------------------------------------------------------------

def _add_slots(sub) -> None:
    slo = sub.add_parser("slots", help="this machine's model slots: which are free, which stage (pid) holds each")
    slo.add_argument("--config", default="configs/demo.yaml", type=Path,
                     help="whose orchestration.train_slots to show (default: configs/demo.yaml)")
    slo.add_argument("--json", action="store_true")
    slo.set_defaults(func=slots_command)


def slots_command(args: argparse.Namespace) -> int:
    from tasks.config import load_config
    from tasks.environment import slots_root
    from tasks.model_slots import train_slots
    from tasks.slots import holders

    count = train_slots(load_config(args.config).orchestration.train_slots)
    found = holders(slots_root(), count)
    if args.json:
        print(json.dumps({"folder": str(slots_root()), "slots": count,
                          "holders": [dataclasses.asdict(h) for h in found]}, indent=1))
        return 0
    print(f"{count} model slot(s) on this machine ({args.config}: orchestration.train_slots), in {slots_root()}:")
    for holder in found:
        print(f"  {holder.describe()}")
    return 0
