"""The ``alphagate`` command line. Thin: parse, call the library, print. Heavy imports stay lazy."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path


def _base(text: str) -> float:
    """'phi' -> Phi(-2), 'zero' -> 0, or a number in [0, 1)."""
    from alpha_gate.schedules import PHI_MINUS_2

    named = {"phi": PHI_MINUS_2, "phi-2": PHI_MINUS_2, "zero": 0.0}
    if text.lower() in named:
        return named[text.lower()]
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--base expects 'phi', 'zero' or a number in [0, 1); got {text!r}") from None


def _at_least(minimum: int, hint: str = ""):
    """An argparse type: an integer >= ``minimum``, rejected while parsing (before any work); argparse prefixes the
    message with the flag ("argument --limit: must be >= 1, got 0")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}{hint}")
        return value

    parse.__name__ = "int"  # argparse names the type in its own messages
    return parse


def _date(text: str) -> str:
    """An argparse type: a calendar date YYYY-MM-DD."""
    import datetime

    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a date YYYY-MM-DD, got {text!r}") from None


def _check_gguf(path: Path | None, flag: str, shown: str | None = None) -> None:
    """Before any work: ``path`` is an existing GGUF file (checked by its magic bytes, not its name)."""
    if path is None:
        return
    path = Path(path)
    shown = shown or f"{flag} {path}"
    if not path.exists():
        raise FileNotFoundError(f"{shown} does not exist; pass a GGUF model file (e.g. an export's *-BF16.gguf).")
    if not path.is_file():
        raise IsADirectoryError(f"{shown} is a folder; pass the GGUF file inside it.")
    from tasks.gguf_check import check_gguf_file

    check_gguf_file(path, shown)  # magic, header and length: a truncated file is named before llama.cpp sees it


def _cmd_schedule(args: argparse.Namespace) -> int:
    from alpha_gate.schedules import LinearSchedule, SigmoidSchedule

    if args.kind == "linear":
        schedule = LinearSchedule(args.start)
    else:
        schedule = SigmoidSchedule(args.k, args.midpoint, args.base)
    n = args.points
    rows = [{"progress": i / (n - 1), "blend_alpha": schedule(i / (n - 1))} for i in range(n)]
    if args.json:
        print(json.dumps({"schedule": schedule.to_dict(), "points": rows}, indent=2))
    else:
        print(f"# {schedule}")
        print("progress\tblend_alpha")
        for row in rows:
            print(f"{row['progress']:.4f}\t{row['blend_alpha']:.6f}")
    return 0


def _tuner(args: argparse.Namespace):
    from alpha_gate.tuning import SigmoidBayesTuner

    return SigmoidBayesTuner(tuple(args.k_bounds), tuple(args.midpoint_bounds), args.history,
                             args.seed, base=args.base, n_initial_points=args.n_initial_points)


def _cmd_tune(args: argparse.Namespace) -> int:
    from alpha_gate.schedules import SigmoidSchedule

    tuner = _tuner(args)
    if args.action == "ask":
        print(json.dumps(tuner.ask().to_dict()))
    elif args.action == "tell":
        trial = tuner.tell(SigmoidSchedule(args.k, args.midpoint, args.base), args.value)
        print(f"recorded trial {len(tuner.trials)} (k={trial.k:.6g}, midpoint={trial.midpoint:.6g}, "
              f"value={trial.value:.6g}) in {args.history}")
    else:
        for i, t in enumerate(tuner.trials, 1):
            print(f"{i:3d}  k={t.k:10.5g}  midpoint={t.midpoint:.5f}  base={t.base:.5f}  value={t.value:.6g}")
        if tuner.trials:
            print(f"best: {json.dumps(tuner.best().to_dict())}")
        else:
            print("no trials yet")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from tasks.config import cache_root, load_config
    from tasks.train.variant import train_variant

    config = load_config(args.config)
    record = train_variant(config, args.variant, args.out, cache_dir=args.cache or cache_root())
    print(f"{args.variant}: validation loss {record['final_eval_loss']:.4f} after {record['steps']} steps "
          f"({record['seconds_per_step']:.2f} s/step, {record['backend']}) -> {args.out}")
    return 0


def _cmd_dpo(args: argparse.Namespace) -> int:
    from tasks.train.dpo import train_dpo

    spec = None
    if args.config:
        from tasks.config import load_config

        spec = load_config(args.config).dpo
    record = train_dpo(args.run, args.out, spec=spec, gguf=args.gguf, extra_benchmark_dirs=args.exclude_benchmarks)
    d = record["dpo"]
    print(f"{record['variant']}: {d['pairs']['pairs']} pairs from {d['pairs']['questions']} training questions "
          f"({d['pairs']}), final DPO loss {d['final_loss']}, reward accuracy {d['final_reward_accuracy']} -> "
          f"{args.out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from tasks.serve.server import ServeSettings, serve

    key = os.environ.get(args.api_key_env or "ALPHAGATE_API_KEY") or None
    if args.api_key_env and not key:
        raise SystemExit(f"--api-key-env {args.api_key_env}: that environment variable is not set.")
    from tasks.store import check_writable_file

    _check_gguf(args.gguf, "--gguf")
    check_writable_file(args.audit_log, "--audit-log")
    serve(ServeSettings(gguf=args.gguf, host=args.host, port=args.port, api_key=key, audit_log=args.audit_log,
                        audit_include_text=args.audit_include_text, max_tokens_limit=args.max_tokens_limit,
                        default_max_tokens=min(256, args.max_tokens_limit), n_ctx=args.n_ctx,
                        max_body_bytes=args.max_body_bytes, prefill_think=args.prefill_think,
                        model_name=args.model_name))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tasks.export.gguf import export_model

    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    spec = None
    if args.config:
        from tasks.config import load_config

        spec = load_config(args.config).export
    manifest = export_model(args.model, args.out, formats, name=args.name, spec=spec)
    for f in manifest["files"]:
        v = f["verification"]
        print(f"{f['path']}: {f['bytes'] / 2**20:.1f} MiB sha256 {f['sha256'][:16]}… "
              f"parity {v['parity']['mean_abs_logprob_diff']:.4f} nats/token, answer {v['answer'][:40]!r}")
    print(f"manifest: {Path(args.out) / 'manifest.json'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from tasks.bench.runner import RunOptions, run_suite
    from tasks.bench.suites import load_docs, load_suite, resolve_data
    from tasks.store import check_writable_dir

    # every flag and file, before the model is hashed or loaded: a bad one fails here, naming it
    _check_gguf(args.gguf, "--gguf")
    _check_gguf(args.mmproj, "--mmproj")
    suite = load_suite(args.suite)
    if resolve_data(suite, args.data) != "hub":  # unknown suite, missing --data file
        docs = load_docs(suite, args.data, args.limit)  # every item against the suite's declaration (Hub: later)
        if args.num_fewshot and args.num_fewshot >= len(docs):
            raise ValueError(f"--num-fewshot {args.num_fewshot}: the items give each question at most {len(docs) - 1} "
                             "others to show as examples; lower --num-fewshot (or raise --limit).")
    check_writable_dir(args.out, "--out")
    judge = None
    if args.judge:
        from tasks.bench.judge import load_judge_spec

        judge = load_judge_spec(args.judge)
    opts = RunOptions(data=args.data, limit=args.limit, num_fewshot=args.num_fewshot, judge=judge,
                      mmproj=args.mmproj, image_root=args.image_root, keep_reasoning=args.keep_reasoning,
                      n_ctx=args.n_ctx, parallel=args.parallel, packed_mc=args.packed_mc)
    from tasks.outdir import exclusive

    with exclusive(args.out, "eval"):  # the check of what --out holds and the writes, under one lock
        summary = run_suite(args.gguf, args.suite, args.out, opts, replace=args.replace)
    metrics = ", ".join(f"{k} {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
                        for k, v in summary["metrics"].items() if v["mean"] is not None)
    t = summary["timings"]
    for note in summary.get("notes", []):
        print(f"alphagate: note: {note}", file=sys.stderr)
    print(f"{summary['suite']}: {summary['scored']} scored, {summary['skipped']} skipped; {metrics}; "
          f"prompt {t['prompt_tokens_per_s']:.0f} tok/s, generation {t['generation_tokens_per_s']:.1f} tok/s")
    stem = Path(args.out) / summary["suite"]
    print(f"-> {stem}.jsonl, {stem}.summary.json")
    return 0


def _check_results_dir(folder: Path, shown: str) -> None:
    if not Path(folder).exists():
        raise FileNotFoundError(f"{shown}: that folder does not exist; pass a folder written by `alphagate eval "
                                "--out`.")
    if not Path(folder).is_dir():
        raise NotADirectoryError(f"{shown} is a file; pass the folder that holds the results "
                                 "(NAME.jsonl + NAME.summary.json).")


def _labelled(items: list[str], flag: str, require_label: bool = False) -> dict[str, Path]:
    out = {}
    for item in items or []:
        label, sep, folder = item.partition("=")
        if not sep and require_label:
            raise ValueError(f"{flag} expects LABEL=DIR (e.g. linear=runs/eval/linear); got {item!r}")
        if not sep:  # a bare folder: its name is its label
            label, folder = Path(item).name, item
        if not label or not folder:
            raise ValueError(f"{flag} expects LABEL=DIR or DIR; got {item!r}")
        out[label] = Path(folder)
    return out


def _replicated(items: list[str]) -> dict[str, list[Path]]:
    """LABEL=DIR[,DIR...] -> label: folders (several folders: seed replicates of that arm)."""
    out: dict[str, list[Path]] = {}
    for item in items:
        label, sep, folders = item.partition("=")
        parts = [p for p in folders.split(",")] if sep else []
        if not sep or not label or not parts or any(not p for p in parts):
            raise ValueError(f"--results expects LABEL=DIR or LABEL=DIR,DIR,... (seed replicates of one arm, e.g. "
                             f"linear=runs/a/eval,runs/b/eval); got {item!r}")
        if label in out:
            raise ValueError(f"--results names {label!r} twice; list an arm's replicates in one LABEL=DIR,DIR,...")
        out[label] = [Path(p) for p in parts]
    return out


def _cmd_plan(args: argparse.Namespace) -> int:
    from tasks.bench.suites import DEFAULT_SUITES as SUITES  # no Prefect import: plan is instant
    from tasks.config import load_config
    from tasks.decide.planning import plan_for, plan_text
    from tasks.validate import validate_run

    config = load_config(args.config)
    suites = args.suites or list(config.nightly.suites if args.nightly else SUITES)
    data = args.data or (config.nightly.data if args.nightly else "sample")
    limit = args.limit if args.limit is not None else (config.nightly.limit if args.nightly else None)
    validate_run(args.config, suites, ["bf16"], data, limit, None)
    result = plan_for(config, suites, data, limit, args.history)
    print(json.dumps(result, indent=2) if args.json else plan_text(result))
    return 0


def _cmd_nightly(args: argparse.Namespace) -> int:
    return _guarded(Path(args.out), lambda: _nightly(args))


def _nightly(args: argparse.Namespace) -> int:
    from flows.ephemeral import TemporaryServer

    server = TemporaryServer().start()  # boots while the flow is imported and the study checked
    try:
        result = _checked_nightly(args, server)
    except BaseException:
        server.stop()
        raise
    print(result.get("closed") or f"study: {result['study']}\nreport: {result['report']}")
    return 0


def _checked_nightly(args: argparse.Namespace, server) -> dict:
    from flows.compare import NightlyParams, nightly
    from tasks.config import load_config
    from tasks.decide.study import open_study
    from tasks.layout import sweep_staging
    from tasks.validate import validate_run

    params = NightlyParams(config=args.config, out=args.out, cache=args.cache, date=args.date,
                           upload=bool(args.upload))
    # before any work (the flow checks again): the config, tonight's items and the study's design
    spec = load_config(params.config).nightly
    config = validate_run(params.config, spec.suites, spec.formats, spec.data, spec.limit, spec.judge,
                          out=params.out, cache=params.cache)
    open_study(params.out, config, params.config)
    sweep_staging(Path(params.out))
    with server.api():
        return nightly(params)


def _cmd_decide(args: argparse.Namespace) -> int:
    from tasks.config import DecisionSpec, load_config
    from tasks.decide.decision import decide
    from tasks.outdir import exclusive
    from tasks.owned import check_decision_out, check_distinct_arms
    from tasks.store import check_writable_dir, read_json_object

    spec = load_config(args.config).decision if args.config else DecisionSpec()
    results = _replicated(args.results)
    for label, folders in results.items():
        for folder in folders:
            _check_results_dir(folder, f"--results {label}={folder}")
    # files decide reads (or records for the upload) are checked here, before any statistics
    if args.speed is not None:
        speed = read_json_object(args.speed, "speed.json of `alphagate speed`", ("models",),
                                 "Pass the --out file of `alphagate speed`, or leave --speed out.")
        if not isinstance(speed["models"], dict) or not all(
                isinstance(m, dict) and "tokens_per_s" in m for m in speed["models"].values()):
            raise ValueError(f"--speed {args.speed}: 'models' must map each label to its 'tokens_per_s'; rerun "
                             "`alphagate speed`.")
    if args.degradation is not None:
        read_json_object(args.degradation, "degradation.json of `alphagate degrade`", ("gates",),
                         "Pass the degradation.json that `alphagate degrade` wrote, or leave --degradation out.")
    check_distinct_arms(results)
    check_writable_dir(args.out, "--out")
    replicated = any(len(v) > 1 for v in results.values())
    with exclusive(args.out, "decide"):
        check_decision_out(Path(args.out), results, args.replace)
        record = decide({k: v if replicated else v[0] for k, v in results.items()}, spec, args.out,
                        exports=_labelled(args.exports, "--exports"),
                        runs=_labelled(args.runs, "--runs"), degradation=args.degradation, speed=args.speed)
    print(record["reason"])
    print(f"-> {Path(args.out) / 'decision.json'}, {Path(args.out) / 'decision.md'}")
    return 0


def _cmd_speed(args: argparse.Namespace) -> int:
    from tasks.bench.speed import measure_speed
    from tasks.outdir import exclusive
    from tasks.owned import check_speed_out
    from tasks.store import check_writable_file

    models = _labelled(args.gguf, "--gguf", require_label=True)
    for label, path in models.items():
        _check_gguf(path, "--gguf", f"--gguf {label}={path}")
    check_writable_file(args.out, "--out")
    with exclusive(args.out, "speed", file=True):
        check_speed_out(Path(args.out), args.replace)
        record = measure_speed(models, repeats=args.repeats, max_tokens=args.max_tokens, out=args.out)
    for label, m in record["models"].items():
        print(f"{label}: median {m['median']:.1f} tokens/s over {len(m['tokens_per_s'])} runs")
    print(f"-> {args.out}")
    return 0


def _cmd_degrade(args: argparse.Namespace) -> int:
    from tasks.config import DecisionSpec, load_config
    from tasks.decide.degrade import write_analysis
    from tasks.outdir import exclusive
    from tasks.store import check_writable_dir

    spec = load_config(args.config).decision if args.config else DecisionSpec()
    results = _labelled(args.results, "--results")
    for label, folder in results.items():
        _check_results_dir(folder, f"--results {label}={folder}")
    check_writable_dir(args.out, "--out")
    with exclusive(args.out, "degrade"):
        report = write_analysis(results, spec, args.out)
    for label, gate in report["gates"].items():
        print(f"{label}: " + ("gates passed" if gate["upload"] else "gates failed: " + "; ".join(gate["reasons"])))
    print(f"-> {Path(args.out) / 'degradation.json'}")
    return 0


def _cmd_upload(args: argparse.Namespace) -> int:
    from tasks.config import load_config
    from tasks.outdir import exclusive
    from tasks.publish.upload import upload
    from tasks.store import check_writable_dir, read_json_object

    out = args.out or Path(args.decision).parent / "upload"
    config = load_config(args.config)
    read_json_object(args.decision, "decision.json of `alphagate decide`", ("upload", "reason", "models"),
                     "Pass the decision.json that `alphagate decide` wrote.")
    check_writable_dir(out, "--out")
    with exclusive(out, "upload"):
        result = upload(args.decision, out, config, dry_run=True if args.dry_run else None)
    if result["dry_run"]:
        print(result["message"])
    else:
        for repo in result["repos"]:
            print(f"{repo['repo_id']}: commit {repo['commit'] or 'unchanged'}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return _guarded(Path(args.out), lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from flows.ephemeral import TemporaryServer

    server = TemporaryServer().start()  # boots while the flow is imported and the run checked
    try:
        result, out = _checked_compare(args, server)
    except BaseException:
        server.stop()
        raise
    # after a run the server stops at exit, after Prefect has sent it the run's last logs and events (its own
    # exit handlers run first: they were registered later)
    print(f"report:   {result['report']}")
    print(f"decision: {result['decision_record']}  ({result['decision']})")
    if (logs := out / "logs" / "llama.cpp").is_dir():
        print(f"logs:     {logs}  (llama.cpp's own output, one file per task)")
    return 0


def _checked_compare(args: argparse.Namespace, server) -> tuple[dict, Path]:
    from flows.compare import CompareParams, compare
    from tasks.layout import sweep_staging
    from tasks.validate import validate_run

    fields = {k: v for k, v in vars(args).items() if k in CompareParams.model_fields and v is not None}
    # unchecked until validate_run, whose errors name the flag; no --formats: the config's export.formats
    params = CompareParams.model_construct(**{"formats": None, **fields})
    if params.formats is None:
        from tasks.config import load_config

        params = params.model_copy(update={"formats": list(load_config(params.config).export.formats)})
    # every flag and file the run reads, before any work: a bad one fails here, naming it
    validate_run(params.config, params.suites, params.formats, params.data, params.limit, params.judge,
                 out=params.out, cache=params.cache)
    params = CompareParams.model_validate(params.model_dump())
    sweep_staging(Path(params.out))  # what killed runs left behind
    with server.api():
        return compare(params), Path(params.out)


def _guarded(out: Path, body):
    """Run a flow so that nothing it starts outlives it. SIGINT/SIGTERM, at any stage (a slot wait, a training, an
    evaluation), end the run within seconds: its stage processes and Prefect's temporary server are ended, staging
    folders removed, and the exit status is 130/143 with a line saying how to resume. A SIGKILL, which nothing here
    sees, is the reaper's (tasks.guard): it ends what the run had started."""
    from tasks.guard import descendants, end_processes, say, start_reaper, stop_on_signals
    from tasks.layout import sweep_staging

    reaper = start_reaper()

    def on_stop(signum: int) -> None:  # tasks.guard exits with 128 + signum after it, whatever happens here
        name = signal.Signals(signum).name
        say(f"alphagate: {name} received: stopping the run's processes ...")
        with contextlib.suppress(Exception):
            end_processes(descendants(exclude=(reaper.pid,)))
        with contextlib.suppress(Exception):
            # stage outputs are renamed into place only when complete: what was being written goes, the rest stays
            sweep_staging(out, pid=os.getpid())
        # the flow's threads still run until the exit: what they would log now (a stage "failing" because its process
        # was ended) must not come after the line that says what to do
        terminal = 2
        with contextlib.suppress(OSError):
            terminal = os.dup(2)
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
        say(f"alphagate: stopped ({name}); finished stages are kept under {out / 'store'}. Rerun the same command to "
            "resume.", terminal)

    restore = stop_on_signals(on_stop)
    try:
        return body()
    finally:
        restore()
        reaper.terminate()  # a normal end: Prefect stops its own server; nothing left for the reaper


def _cmd_slots(args: argparse.Namespace) -> int:
    from flows.slots import train_slots
    from tasks.config import load_config, slots_root
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


def _cmd_report(args: argparse.Namespace) -> int:
    from tasks.outdir import exclusive
    from tasks.owned import check_decision_matches, check_out_not_input, write_report_only
    from tasks.publish.report import write_report
    from tasks.store import check_writable_dir

    results = _labelled(args.results, "--results")
    for label, folder in results.items():
        _check_results_dir(folder, f"--results {label}={folder}")
    check_out_not_input(args.out, results)
    if args.decision is not None:
        check_decision_matches(args.decision, results)
    check_writable_dir(args.out, "--out")
    runs = _labelled(args.runs, "--runs")
    with exclusive(args.out, "report"):  # the folder ends up holding this report only
        path = write_report_only(Path(args.out), lambda folder: write_report(
            results, folder, decision=args.decision, degradation=args.degradation, runs=runs, tuner=args.tuner,
            trend=args.trend, study=args.study), args.replace)
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tasks.bench.batched import DEFAULT_PARALLEL

    parser = argparse.ArgumentParser(prog="alphagate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sch = sub.add_parser("schedule", help="print blend_alpha over training progress for a schedule")
    sch.add_argument("kind", choices=["linear", "sigmoid"])
    sch.add_argument("--start", type=float, default=0.0, help="linear: blend_alpha at progress 0")
    sch.add_argument("--k", type=float, default=10.0, help="sigmoid: steepness (> 0)")
    sch.add_argument("--midpoint", type=float, default=0.5, help="sigmoid: centre in (0, 1)")
    sch.add_argument("--base", type=_base, default="phi", help="sigmoid: 'phi' (Phi(-2)), 'zero' or a number")
    sch.add_argument("--points", type=int, default=11, help="how many evenly spaced progress values (>= 2)")
    sch.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sch.set_defaults(func=_cmd_schedule)

    tune = sub.add_parser("tune", help="ask/tell the Bayesian sigmoid tuner by hand, or show its history")
    tune.add_argument("action", choices=["ask", "tell", "show"])
    tune.add_argument("--history", required=True, help="tuner history JSON (created on first tell)")
    tune.add_argument("--k-bounds", type=float, nargs=2, default=[1.0, 30.0], metavar=("LOW", "HIGH"))
    tune.add_argument("--midpoint-bounds", type=float, nargs=2, default=[0.1, 0.9], metavar=("LOW", "HIGH"))
    tune.add_argument("--base", type=_base, default="phi")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--n-initial-points", type=int, default=5)
    tune.add_argument("--k", type=float, help="tell: the schedule's k")
    tune.add_argument("--midpoint", type=float, help="tell: the schedule's midpoint")
    tune.add_argument("--value", type=float, help="tell: the measured objective (lower is better)")
    tune.set_defaults(func=_cmd_tune)

    train = sub.add_parser("train", help="train one variant (LoRA + SO(8) gates) from a pipeline config")
    train.add_argument("--config", required=True, type=Path)
    train.add_argument("--variant", required=True, choices=["linear", "sigmoid-bayes"])
    train.add_argument("--out", required=True, type=Path, help="the variant's run folder (written atomically)")
    train.add_argument("--cache", type=Path, help="base-model cache (default: $ALPHAGATE_CACHE or ~/.cache/alphagate)")
    train.set_defaults(func=_cmd_train)

    dpo = sub.add_parser("dpo", help="optional DPO stage on a finished SFT run, on pairs of its own answers")
    dpo.add_argument("--run", required=True, type=Path, help="the SFT run folder (alphagate train --out)")
    dpo.add_argument("--out", required=True, type=Path, help="the new run folder, e.g. runs/x/linear+dpo")
    dpo.add_argument("--config", help="take the dpo section from this config (default: the run's own config)")
    dpo.add_argument("--gguf", type=Path, help="sample with llama.cpp from the run's exported BF16 GGUF (much faster "
                                               "on CPU); default: transformers generate on the SFT model")
    dpo.add_argument("--exclude-benchmarks", nargs="*", type=Path, default=[], metavar="DIR",
                     help="folders of benchmark JSONL whose questions must never become training pairs "
                          "(the bundled samples always are)")
    dpo.set_defaults(func=_cmd_dpo)

    srv = sub.add_parser("serve", help="OpenAI-compatible /v1/chat/completions and /think on a GGUF; only the final "
                                       "section of a thinking answer leaves the process")
    srv.add_argument("--gguf", required=True, type=Path)
    srv.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; others need an API key)")
    srv.add_argument("--port", type=int, default=8080, help="TCP port, 1-65535 (checked before the model loads)")
    srv.add_argument("--api-key-env", help="environment variable holding the API key (default ALPHAGATE_API_KEY; "
                                           "required off loopback, enforced whenever set)")
    srv.add_argument("--audit-log", type=Path, default=Path("runs/serve/audit.jsonl"))
    srv.add_argument("--audit-include-text", action="store_true",
                     help="also record the request messages in the audit log (never the reasoning)")
    srv.add_argument("--max-tokens-limit", type=_at_least(1), default=1024,
                     help="largest max_tokens a request may ask for")
    srv.add_argument("--max-body-bytes", type=_at_least(1), default=64 * 1024, help="largest request body accepted")
    srv.add_argument("--n-ctx", type=_at_least(16), default=4096, help="the model's context, in tokens")
    srv.add_argument("--prefill-think", action="store_true",
                     help="open the assistant turn with the reasoning tag (for thinking-format models)")
    srv.add_argument("--model-name", help="the model id reported to clients (default: the file name)")
    srv.set_defaults(func=_cmd_serve)

    export = sub.add_parser("export", help="merge + fold + GGUF (BF16, Q8_0, Q4_K_M), verified")
    export.add_argument("--model", required=True, type=Path, help="a training run folder or a transformers folder")
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--formats", default="bf16,q8_0,q4_k_m", help="comma-separated: bf16,q8_0,q4_k_m")
    export.add_argument("--name", help="file-name stem (default: <config name>-<variant> or the folder name)")
    export.add_argument("--config", type=Path, help="take the export section (parity texts, tolerance, answer prompt) "
                                                    "from this config (default: the built-in defaults)")
    export.set_defaults(func=_cmd_export)

    ev = sub.add_parser("eval", help="run one benchmark suite on a GGUF (in-process llama-cpp-python)")
    ev.add_argument("--gguf", required=True, type=Path)
    ev.add_argument("--suite", required=True, help="mmlu, arc_challenge, hellaswag, gsm8k, elyza_tasks_100, scienceqa")
    ev.add_argument("--data", help="FILE.jsonl (or .json), 'sample' (bundled, default), 'shared' or 'hub'")
    ev.add_argument("--limit", type=_at_least(1, " (items; omit --limit to evaluate every item)"),
                    help="evaluate only the first N items (>= 1)")
    ev.add_argument("--num-fewshot", type=_at_least(0, " (omit --num-fewshot to use the suite's own count)"),
                    help="examples shown before each question (>= 0; default: the suite's own)")
    ev.add_argument("--judge", type=Path, help="judge YAML (kind: gguf|openai) for ELYZA-tasks-100")
    ev.add_argument("--mmproj", type=Path, help="vision projector GGUF for ScienceQA image items")
    ev.add_argument("--image-root", type=Path, help="ScienceQA images folder (<root>/<pid>/image.png)")
    ev.add_argument("--keep-reasoning", action="store_true", help="debug: keep reasoning text in the records")
    ev.add_argument("--n-ctx", type=_at_least(16), default=2048, help="the model's context, in tokens")
    ev.add_argument("--parallel", type=_at_least(1, " (items generated together; 1: one at a time)"),
                    default=DEFAULT_PARALLEL, help="generation suites: decode this many items together (continuous "
                    f"batching; default {DEFAULT_PARALLEL}); 1 reproduces the one-at-a-time path exactly")
    ev.add_argument("--packed-mc", action="store_true", help="multiple-choice suites: score several choices and items "
                    "per llama_decode (not the default: quantized models' log-likelihoods move with the batch layout, "
                    "see benchmarks/bench_engine.py; a packed result has its own key)")
    ev.add_argument("--replace", action="store_true", help="overwrite results of other inputs (another model, suite "
                                                           "version or data) found for this suite in --out")
    ev.add_argument("--out", required=True, type=Path)
    ev.set_defaults(func=_cmd_eval)

    from flows.rescore import add_parser as add_rescore  # `alphagate rescore` (flows/rescore.py)
    add_rescore(sub)

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
    dec.set_defaults(func=_cmd_decide)

    spd = sub.add_parser("speed", help="isolated, interleaved generation-speed benchmark of labelled GGUFs")
    spd.add_argument("--gguf", nargs="+", required=True, metavar="LABEL=FILE")
    spd.add_argument("--repeats", type=_at_least(1), default=5)
    spd.add_argument("--max-tokens", type=_at_least(1), default=64)
    spd.add_argument("--out", required=True, type=Path, help="speed.json to write")
    spd.add_argument("--replace", action="store_true", help="overwrite --out even when speed did not write it")
    spd.set_defaults(func=_cmd_speed)

    deg = sub.add_parser("degrade", help="each variant vs the base model, each quantization vs its BF16; gates")
    deg.add_argument("--results", nargs="+", required=True, metavar="MODEL/FORMAT=DIR",
                     help="eval folders labelled e.g. base/bf16=... linear/q4_k_m=...")
    deg.add_argument("--config", type=Path)
    deg.add_argument("--out", required=True, type=Path)
    deg.set_defaults(func=_cmd_degrade)

    up = sub.add_parser("upload", help="upload the decided winner (BF16, Q8_0, Q4_K_M) to the Hub, or stage it")
    up.add_argument("--decision", required=True, type=Path)
    up.add_argument("--config", required=True, type=Path, help="this run's config: its upload section (org, name, "
                                                                "formats) and names are used, never a recorded one")
    up.add_argument("--dry-run", action="store_true", help="stage exactly what would be uploaded; send nothing")
    up.add_argument("--out", type=Path, help="staging folder (default: beside the decision, upload/)")
    up.set_defaults(func=_cmd_upload)

    run = sub.add_parser("run", help="the whole comparison as a Prefect flow (data, trainings, export, benchmarks, "
                                     "decision, upload or dry run, report)")
    run.add_argument("--config", default="configs/demo.yaml", help="pipeline config YAML (default: %(default)s)")
    run.add_argument("--out", default="runs/demo", help="artifact root: the keyed store, links to this run's outputs "
                                                        "and index.json (default: %(default)s)")
    run.add_argument("--cache", default="runs/cache", help="folder for the downloaded or unpacked base model "
                                                           "(default: %(default)s)")
    run.add_argument("--suites", nargs="+", metavar="SUITE", help="benchmark suites to evaluate (default: all six)")
    run.add_argument("--formats", nargs="+", metavar="FORMAT", help="GGUF formats to export and evaluate, bf16 "
                                                                    "among them (default: the config's export.formats)")
    run.add_argument("--data", help="benchmark items: 'sample' (default), 'shared', 'hub' or a file")
    run.add_argument("--limit", type=_at_least(1, " (items per suite; omit --limit to use every item)"),
                     help="evaluate only the first N items of each suite (>= 1; default: every item)")
    run.add_argument("--judge", help="judge YAML (kind: gguf|openai) grading ELYZA-tasks-100 (default: no judge)")
    run.add_argument("--upload", action="store_true", default=None, help="really upload (else a dry run)")
    run.set_defaults(func=_cmd_run)

    pln = sub.add_parser("plan", help="before training: the minimum detectable difference, and the items and seeds "
                                      "that would detect decision.target_effect")
    pln.add_argument("--config", required=True, type=Path)
    pln.add_argument("--suites", nargs="+", help="default: every suite (with --nightly: the nightly section's)")
    pln.add_argument("--data", help="'sample' (default), 'shared', 'hub' (the published split sizes) or a file")
    pln.add_argument("--limit", type=_at_least(1, " (items per suite; omit --limit to use every item)"))
    pln.add_argument("--nightly", action="store_true", help="plan the config's nightly study (its suites, data, limit)")
    pln.add_argument("--history", type=Path, help="earlier variances: a decision.json, a run folder or a nightly "
                                                  "study folder (default: priors)")
    pln.add_argument("--json", action="store_true")
    pln.set_defaults(func=_cmd_plan)

    ngt = sub.add_parser("nightly", help="one night of the accumulating study (what the nightly deployment runs): a "
                                         "new seed per arm, a pooled decision with repeated-looks correction")
    ngt.add_argument("--config", default="configs/demo.yaml")
    ngt.add_argument("--out", default="runs/nightly")
    ngt.add_argument("--cache", default="runs/cache")
    ngt.add_argument("--date", help="tonight's date label, YYYY-MM-DD (default: today)",
                     type=_date)
    ngt.add_argument("--upload", action="store_true", default=None, help="really upload a decided winner")
    ngt.set_defaults(func=_cmd_nightly)

    slo = sub.add_parser("slots", help="this machine's model slots: which are free, which stage (pid) holds each")
    slo.add_argument("--config", default="configs/demo.yaml", type=Path,
                     help="whose orchestration.train_slots to show (default: configs/demo.yaml)")
    slo.add_argument("--json", action="store_true")
    slo.set_defaults(func=_cmd_slots)

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
    rep.set_defaults(func=_cmd_report)
    return parser


# Prefect waits 20 s for its ephemeral API server; a first start migrates a new SQLite database, slower on 2 cores
EPHEMERAL_STARTUP_TIMEOUT_S = "300"


# Where the project's own code lives: an error it raises on purpose carries a message meant for the user.
_PROJECT_DIRS = tuple(str(Path(d).resolve()) + os.sep for d in
                      [Path(__file__).parent, *(Path(next(iter(spec.submodule_search_locations)))
                                                for spec in map(importlib.util.find_spec, ("tasks", "alpha_gate"))
                                                if spec and spec.submodule_search_locations)])


def _user_error(exc: BaseException) -> bool:
    """A failure the user can fix (bad input, missing or unwritable file, no network) whose message says what to do,
    as opposed to a bug. Files, permissions and the network (OSError) are always the user's; ValueError/RuntimeError/
    ImportError only when the project's own code raised them (then the message was written for the user). Decoding
    errors never name their file, so they are bugs: the code should have named it."""
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, (ValueError, RuntimeError, ImportError)) or isinstance(exc, (UnicodeError,
                                                                                        json.JSONDecodeError)):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PROJECT_DIRS)


def _crash_log(exc: BaseException, argv: list[str]) -> Path | None:
    """The traceback of an unexpected error, kept in a file for a bug report (the terminal gets one line)."""
    import tempfile
    import time
    import traceback

    from tasks.config import cache_root

    text = f"alphagate {' '.join(argv)}\n\n" + "".join(traceback.format_exception(exc))
    name = f"alphagate-error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    for folder in (cache_root() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return None


def _failed(exc: Exception, argv: list[str]) -> int:
    """One line for the user, never a traceback (ALPHAGATE_DEBUG=1 re-raises before this): what was wrong and what
    to do for their errors (exit 2); for anything else its type, message and where its traceback was kept (exit 1)."""
    if _user_error(exc):
        print(f"alphagate: error: {exc}", file=sys.stderr)
        return 2
    log = _crash_log(exc, argv)
    where = f"the traceback is in {log}" if log else "no log could be written"
    print(f"alphagate: error: unexpected {type(exc).__name__}: {str(exc)[:300] or '(no message)'} ({where}; rerun "
          "with ALPHAGATE_DEBUG=1 to see it here, and report it with that file).", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S)
    # the temporary server Prefect starts for a run (a child process, which reads its settings from this environment)
    # sends no usage analytics: offline its heartbeat logs an ERROR (and a "database is locked" traceback) into an
    # otherwise successful run. A user's own PREFECT_SERVER_ANALYTICS_ENABLED in the environment wins.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "schedule" and args.points < 2:
        parser.error(f"--points must be >= 2; got {args.points}")
    if args.command == "tune" and args.action == "tell" and None in (args.k, args.midpoint, args.value):
        parser.error("tune tell needs --k, --midpoint and --value")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if os.environ.get("ALPHAGATE_DEBUG"):
            raise
        print(f"alphagate: {args.command} interrupted; its outputs are written whole or not at all: rerun the same "
              "command.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line; the traceback only on demand
        if os.environ.get("ALPHAGATE_DEBUG"):
            raise
        return _failed(exc, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    raise SystemExit(main())
