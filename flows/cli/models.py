"""`alphagate serve`, `export`, `eval`, `speed`: what is done with one model or a few GGUF files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.cli.argtypes import at_least, labelled


def add_parsers(sub) -> None:
    _add_serve(sub)
    _add_export(sub)
    _add_eval(sub)
    _add_speed(sub)


# -- serve ---------------------------------------------------------------------------------------------------------

def _add_serve(sub) -> None:
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
    srv.add_argument("--max-tokens-limit", type=at_least(1), default=1024,
                     help="largest max_tokens a request may ask for")
    srv.add_argument("--max-body-bytes", type=at_least(1), default=64 * 1024, help="largest request body accepted")
    srv.add_argument("--n-ctx", type=at_least(16), default=4096, help="the model's context, in tokens")
    srv.add_argument("--prefill-think", action="store_true",
                     help="open the assistant turn with the reasoning tag (for thinking-format models)")
    srv.add_argument("--model-name", help="the model id reported to clients (default: the file name)")
    srv.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from tasks.environment import api_key
    from tasks.gguf_check import check_gguf
    from tasks.serve.server import ServeSettings, serve
    from tasks.store import check_writable_file

    key = api_key(args.api_key_env)
    if args.api_key_env and not key:
        raise SystemExit(f"--api-key-env {args.api_key_env}: that environment variable is not set.")
    check_gguf(args.gguf, "--gguf")
    check_writable_file(args.audit_log, "--audit-log")
    serve(ServeSettings(gguf=args.gguf, host=args.host, port=args.port, api_key=key, audit_log=args.audit_log,
                        audit_include_text=args.audit_include_text, max_tokens_limit=args.max_tokens_limit,
                        default_max_tokens=min(256, args.max_tokens_limit), n_ctx=args.n_ctx,
                        max_body_bytes=args.max_body_bytes, prefill_think=args.prefill_think,
                        model_name=args.model_name))
    return 0


# -- export --------------------------------------------------------------------------------------------------------

def _add_export(sub) -> None:
    from tasks.export.formats import FORMAT_NAMES, FORMATS

    export = sub.add_parser("export", help=f"merge + fold + GGUF ({', '.join(FORMAT_NAMES.values())}), verified")
    export.add_argument("--model", required=True, type=Path, help="a training run folder or a transformers folder")
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated: {','.join(FORMATS)}")
    export.add_argument("--name", help="file-name stem (default: <config name>-<variant> or the folder name)")
    export.add_argument("--config", type=Path, help="take the export section (parity texts, tolerance, answer prompt) "
                                                    "from this config (default: the built-in defaults)")
    export.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
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


# -- eval ----------------------------------------------------------------------------------------------------------

def _add_eval(sub) -> None:
    from tasks.bench.batched import DEFAULT_PARALLEL
    from tasks.bench.suites import suite_names

    ev = sub.add_parser("eval", help="run one benchmark suite on a GGUF (in-process llama-cpp-python)")
    ev.add_argument("--gguf", required=True, type=Path)
    ev.add_argument("--suite", required=True, help=", ".join(suite_names()))
    ev.add_argument("--data", help="FILE.jsonl (or .json), 'sample' (bundled, default), 'shared' or 'hub'")
    ev.add_argument("--limit", type=at_least(1, " (items; omit --limit to evaluate every item)"),
                    help="evaluate only the first N items (>= 1)")
    ev.add_argument("--num-fewshot", type=at_least(0, " (omit --num-fewshot to use the suite's own count)"),
                    help="examples shown before each question (>= 0; default: the suite's own)")
    ev.add_argument("--judge", type=Path, help="judge YAML (kind: gguf|openai) for ELYZA-tasks-100")
    ev.add_argument("--mmproj", type=Path, help="vision projector GGUF for ScienceQA image items")
    ev.add_argument("--image-root", type=Path, help="ScienceQA images folder (<root>/<pid>/image.png)")
    ev.add_argument("--keep-reasoning", action="store_true", help="debug: keep reasoning text in the records")
    ev.add_argument("--n-ctx", type=at_least(16), default=2048, help="the model's context, in tokens")
    ev.add_argument("--parallel", type=at_least(1, " (items generated together; 1: one at a time)"),
                    default=DEFAULT_PARALLEL, help="generation suites: decode this many items together (continuous "
                    f"batching; default {DEFAULT_PARALLEL}); 1 reproduces the one-at-a-time path exactly")
    ev.add_argument("--packed-mc", action="store_true", help="multiple-choice suites: score several choices and items "
                    "per llama_decode (not the default: quantized models' log-likelihoods move with the batch layout, "
                    "see benchmarks/bench_engine.py; a packed result has its own key)")
    ev.add_argument("--replace", action="store_true", help="overwrite results of other inputs (another model, suite "
                                                           "version or data) found for this suite in --out")
    ev.add_argument("--out", required=True, type=Path)
    ev.set_defaults(func=eval_command)


def _checked_eval(args: argparse.Namespace):
    """Every flag and file, before the model is hashed or loaded: a bad one fails here, naming it. Returns the
    run's options."""
    from tasks.bench.runner import RunOptions
    from tasks.bench.suites import load_docs, load_suite, resolve_data
    from tasks.gguf_check import check_gguf
    from tasks.store import check_writable_dir

    check_gguf(args.gguf, "--gguf")
    check_gguf(args.mmproj, "--mmproj")
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
    return RunOptions(data=args.data, limit=args.limit, num_fewshot=args.num_fewshot, judge=judge,
                      mmproj=args.mmproj, image_root=args.image_root, keep_reasoning=args.keep_reasoning,
                      n_ctx=args.n_ctx, parallel=args.parallel, packed_mc=args.packed_mc)


def eval_command(args: argparse.Namespace) -> int:
    from tasks.bench.runner import run_suite
    from tasks.outdir import exclusive

    opts = _checked_eval(args)
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


# -- speed ---------------------------------------------------------------------------------------------------------

def _add_speed(sub) -> None:
    spd = sub.add_parser("speed", help="isolated, interleaved generation-speed benchmark of labelled GGUFs")
    spd.add_argument("--gguf", nargs="+", required=True, metavar="LABEL=FILE")
    spd.add_argument("--repeats", type=at_least(1), default=5)
    spd.add_argument("--max-tokens", type=at_least(1), default=64)
    spd.add_argument("--out", required=True, type=Path, help="speed.json to write")
    spd.add_argument("--replace", action="store_true", help="overwrite --out even when speed did not write it")
    spd.set_defaults(func=speed_command)


def speed_command(args: argparse.Namespace) -> int:
    from tasks.bench.speed import measure_speed
    from tasks.gguf_check import check_gguf
    from tasks.outdir import exclusive
    from tasks.owned import check_speed_out
    from tasks.store import check_writable_file

    models = labelled(args.gguf, "--gguf", require_label=True)
    for label, path in models.items():
        check_gguf(path, "--gguf", f"--gguf {label}={path}")
    check_writable_file(args.out, "--out")
    with exclusive(args.out, "speed", file=True):
        check_speed_out(Path(args.out), args.replace)
        record = measure_speed(models, repeats=args.repeats, max_tokens=args.max_tokens, out=args.out)
    for label, m in record["models"].items():
        print(f"{label}: median {m['median']:.1f} tokens/s over {len(m['tokens_per_s'])} runs")
    print(f"-> {args.out}")
    return 0
