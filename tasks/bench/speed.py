"""Generation speed for the decision's speed term, measured on its own: the models take turns (interleaved
rounds, alternating order) on an otherwise idle process, each round a greedy generation from a fixed prompt,
and llama.cpp's own counters give tokens/s. Speeds read off the evaluation runs are not used for the
decision: those ran in parallel with other evaluations, so their difference is mostly load noise.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from tasks.store import atomic_write_json, sha256_file

PROMPT = "Explain, step by step, how to add two fractions with different denominators."


def measure_speed(ggufs: dict[str, Path], repeats: int = 5, max_tokens: int = 64, threads: int | None = None,
                  out: Path | None = None) -> dict[str, Any]:
    from tasks.bench.engine import Engine

    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 (a spread is needed to compare speeds); got {repeats}.")
    engines = {label: Engine(Path(path), n_threads=threads) for label, path in sorted(ggufs.items())}
    samples: dict[str, list[float]] = {label: [] for label in engines}
    # what the decision needs to know whether a speed difference can be real (tasks/decide/speed.py)
    builds = {label: {k: (getattr(e.llm, "metadata", None) or {}).get(f"general.{k}") for k in ("architecture",
                                                                                                "file_type")}
              for label, e in engines.items()}

    def generate(engine, tokens: int) -> None:
        # the model's own chat template, and end-of-sequence banned: every run generates exactly ``tokens``
        # (a raw prompt made a chat-tuned model stop at once: 0 tokens, 0 tokens/s)
        engine.llm.create_chat_completion([{"role": "user", "content": PROMPT}], max_tokens=tokens,
                                          temperature=0.0, logit_bias={engine.llm.token_eos(): -100.0})

    try:
        for engine in engines.values():  # warm-up: page the weights in
            generate(engine, 8)
        labels = list(engines)
        for r in range(repeats):
            for label in (labels if r % 2 == 0 else labels[::-1]):
                engine = engines[label]
                engine.llm.reset()
                engine.reset_timings()
                generate(engine, max_tokens)
                timings = engine.timings()
                if timings["generated_tokens"] < max_tokens // 2 or timings["generation_tokens_per_s"] <= 0:
                    raise RuntimeError(f"The speed run of {label} generated {timings['generated_tokens']} of "
                                       f"{max_tokens} tokens; its chat template or stop tokens end generation "
                                       "early, so no speed can be measured.")
                samples[label].append(timings["generation_tokens_per_s"])
    finally:
        for engine in engines.values():
            engine.close()
    record = {"prompt": PROMPT, "repeats": repeats, "max_tokens": max_tokens, "threads": threads,
              # round r of every model ran back to back (order alternating), so timings pair by round
              "design": "interleaved",
              "models": {label: {"gguf": str(ggufs[label]), "sha256": sha256_file(ggufs[label]), **builds[label],
                                 "tokens_per_s": values, "median": statistics.median(values),
                                 "mean": statistics.fmean(values)} for label, values in samples.items()}}
    if out is not None:
        atomic_write_json(Path(out), record)
    return record
