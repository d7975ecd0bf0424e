"""`alphagate decide`, `degrade`, `upload`, `plan`, `report`: what is made of evaluated results (and, for `plan`,
what results a run would need)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.cli.argtypes import at_least, labelled, replicated


def add_parsers(sub) -> None:
    _add_decide(sub)
    _add_degrade(sub)
    _add_upload(sub)
    _add_plan(sub)
    _add_report(sub)


def _check_results(results: dict[str, Path | list[Path]]) -> None:
    from tasks.inputs import check_results_dir

    for label, folders in results.items():
        for folder in folders if isinstance(folders, list) else [folders]:
            check_results_dir(folder, f"--results {label}={folder}")


# -- decide --------------------------------------------------------------------------------------------------------

def _add_decide(sub) -> None:
    dec = sub.add_parser("decide", help="pick the winner of two evaluated models with paired statistics")
    dec.add_argument("--results", nargs=2, required=True, metavar="LABEL=DIR[,DIR...]",
                     help="two arms: result folders of `alphagate eval`, labelled; several comma-separated folders "
                          "are seed replicates of that arm (then seeds, not items, are the replicates)")
    dec.add_argument("--config", type=Path, help="pipeline config whose `decision` section to use")
    dec.add_argument("--exports", nargs="*", metavar="LABEL=DIR", help="export folders (for the upload)")
    dec.add_argument("--runs", nargs="*", metavar="LABEL=DIR", help="training run folders (for the upload)")
    dec.add_argument("--degradation", type=Path, help="degradation.json whose upload gates apply")
    dec.add_argument("--speed", type=Path, help="speed.json of `alphagate speed` for the speed term (default: the "
                                                "evaluations' own timings, which are noisy under parallel load)")
    dec.add_argument("--replace", action="store_true", help="overwrite a decision about other models (or decision "
                                                           "files decide did not write) found in --out")
    dec.add_argument("--out", required=True, type=Path, help="folder for decision.json and decision.md")
    dec.set_defaults(func=decide_command)


def decide_command(args: argparse.Namespace) -> int:
    from tasks.config import DecisionSpec, load_config
    from tasks.decide.decision import decide
    from tasks.inputs import check_degradation_record, check_speed_record
    from tasks.outdir import exclusive
    from tasks.owned import check_decision_out, check_distinct_arms
    from tasks.store import check_writable_dir

    spec = load_config(args.config).decision if args.config else DecisionSpec()
    results = replicated(args.results)
    _check_results(results)
    # files decide reads (or records for the upload) are checked here, before any statistics
    if args.speed is not None:
        check_speed_record(args.speed)
    if args.degradation is not None:
        check_degradation_record(args.degradation)
    check_distinct_arms(results)
    check_writable_dir(args.out, "--out")
    several = any(len(v) > 1 for v in results.values())
    with exclusive(args.out, "decide"):
        check_decision_out(Path(args.out), results, args.replace)
        record = decide({k: v if several else v[0] for k, v in results.items()}, spec, args.out,
                        exports=labelled(args.exports, "--exports"),
                        runs=labelled(args.runs, "--runs"), degradation=args.degradation, speed=args.speed)
    print(record["reason"])
    print(f"-> {Path(args.out) / 'decision.json'}, {Path(args.out) / 'decision.md'}")
    return 0


# -- degrade -------------------------------------------------------------------------------------------------------

def _add_degrade(sub) -> None:
    from tasks.export.formats import FORMATS, SOURCE_FORMAT

    deg = sub.add_parser("degrade", help="each variant vs the base model, each quantization vs its BF16; gates")
    deg.add_argument("--results", nargs="+", required=True, metavar="MODEL/FORMAT=DIR",
                     help=f"eval folders labelled e.g. base/{SOURCE_FORMAT}=... linear/{FORMATS[-1]}=...")
    deg.add_argument("--config", type=Path)
    deg.add_argument("--out", required=True, type=Path)
    deg.set_defaults(func=degrade_command)


def degrade_command(args: argparse.Namespace) -> int:
    from tasks.config import DecisionSpec, load_config
    from tasks.decide.degrade import write_analysis
    from tasks.outdir import exclusive
    from tasks.store import check_writable_dir

    spec = load_config(args.config).decision if args.config else DecisionSpec()
    results = labelled(args.results, "--results")
    _check_results(results)
    check_writable_dir(args.out, "--out")
    with exclusive(args.out, "degrade"):
        report = write_analysis(results, spec, args.out)
    for label, gate in report["gates"].items():
        print(f"{label}: " + ("gates passed" if gate["upload"] else "gates failed: " + "; ".join(gate["reasons"])))
    print(f"-> {Path(args.out) / 'degradation.json'}")
    return 0


# -- upload --------------------------------------------------------------------------------------------------------

def _add_upload(sub) -> None:
    from tasks.export.formats import FORMAT_NAMES

    up = sub.add_parser("upload", help=f"upload the decided winner ({', '.join(FORMAT_NAMES.values())}) to the Hub, "
                                       "or stage it")
    up.add_argument("--decision", required=True, type=Path)
    up.add_argument("--config", required=True, type=Path, help="this run's config: its upload section (org, name, "
                                                                "formats) and names are used, never a recorded one")
    up.add_argument("--dry-run", action="store_true", help="stage exactly what would be uploaded; send nothing")
    up.add_argument("--out", type=Path, help="staging folder (default: beside the decision, upload/)")
    up.set_defaults(func=upload_command)


def upload_command(args: argparse.Namespace) -> int:
    from tasks.config import load_config
    from tasks.inputs import check_decision_record
    from tasks.outdir import exclusive
    from tasks.publish.upload import upload
    from tasks.store import check_writable_dir

    out = args.out or Path(args.decision).parent / "upload"
    config = load_config(args.config)
    check_decision_record(args.decision)
    check_writable_dir(out, "--out")
    with exclusive(out, "upload"):
        result = upload(args.decision, out, config, dry_run=True if args.dry_run else None)
    if result["dry_run"]:
        print(result["message"])
    else:
        for repo in result["repos"]:
            print(f"{repo['repo_id']}: commit {repo['commit'] or 'unchanged'}")
    return 0


# -- plan ----------------------------------------------------------------------------------------------------------

def _add_plan(sub) -> None:
    pln = sub.add_parser("plan", help="before training: the minimum detectable difference, and the items and seeds "
                                      "that would detect decision.target_effect")
    pln.add_argument("--config", required=True, type=Path)
    pln.add_argument("--suites", nargs="+", help="default: every suite (with --nightly: the nightly section's)")
    pln.add_argument("--data", help="'sample' (default), 'shared', 'hub' (the published split sizes) or a file")
    pln.add_argument("--limit", type=at_least(1, " (items per suite; omit --limit to use every item)"))
    pln.add_argument("--nightly", action="store_true", help="plan the config's nightly study (its suites, data, limit)")
    pln.add_argument("--history", type=Path, help="earlier variances: a decision.json, a run folder or a nightly "
                                                  "study folder (default: priors)")
    pln.add_argument("--json", action="store_true")
    pln.set_defaults(func=plan_command)


def plan_command(args: argparse.Namespace) -> int:
    from tasks.bench.suites import DEFAULT_SUITES  # no Prefect import: plan is instant
    from tasks.config import load_config
    from tasks.decide.planning import plan_for, plan_text
    from tasks.export.formats import SOURCE_FORMAT
    from tasks.validate import validate_run

    config = load_config(args.config)
    suites = args.suites or list(config.nightly.suites if args.nightly else DEFAULT_SUITES)
    data = args.data or (config.nightly.data if args.nightly else "sample")
    limit = args.limit if args.limit is not None else (config.nightly.limit if args.nightly else None)
    validate_run(args.config, suites, [SOURCE_FORMAT], data, limit, None)
    result = plan_for(config, suites, data, limit, args.history)
    print(json.dumps(result, indent=2) if args.json else plan_text(result))
    return 0


# -- report --------------------------------------------------------------------------------------------------------

def _add_report(sub) -> None:
    rep = sub.add_parser("report", help="figures + Markdown report over any set of result folders")
    rep.add_argument("--results", nargs="+", required=True, metavar="[LABEL=]DIR",
                     help="our eval folders or lm-evaluation-harness output (results_*.json + samples_*.jsonl); "
                          "label them model/format; several nightly folders in order give a trend")
    rep.add_argument("--decision", type=Path)
    rep.add_argument("--degradation", type=Path)
    rep.add_argument("--runs", nargs="*", metavar="LABEL=RUN_DIR", help="training runs (alpha and loss curves)")
    rep.add_argument("--tuner", type=Path, help="tuner history JSON")
    rep.add_argument("--trend", action="store_true", help="the results are successive runs: plot a trend")
    rep.add_argument("--study", type=Path, help="a nightly study's study.json: the margin and CI night by night")
    rep.add_argument("--out", required=True, type=Path, help="folder for report.md and its figures; it holds only the "
                                                             "current report (the previous one's files are removed)")
    rep.add_argument("--replace", action="store_true", help="also remove files in --out that report did not write")
    rep.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from tasks.outdir import exclusive
    from tasks.owned import check_decision_matches, check_out_not_input, write_report_only
    from tasks.publish.report import write_report
    from tasks.store import check_writable_dir

    results = labelled(args.results, "--results")
    _check_results(results)
    check_out_not_input(args.out, results)
    if args.decision is not None:
        check_decision_matches(args.decision, results)
    check_writable_dir(args.out, "--out")
    runs = labelled(args.runs, "--runs")
    with exclusive(args.out, "report"):  # the folder ends up holding this report only
        path = write_report_only(Path(args.out), lambda folder: write_report(
            results, folder, decision=args.decision, degradation=args.degradation, runs=runs, tuner=args.tuner,
            trend=args.trend, study=args.study), args.replace)
    print(f"report: {path}")
    return 0
