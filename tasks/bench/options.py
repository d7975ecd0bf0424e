"""How one suite is evaluated: the options of generation (tasks/bench/generate.py) and of scoring
(tasks/bench/score.py), in one place for the command line and the flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.bench.batched import DEFAULT_PARALLEL


@dataclass
class RunOptions:
    """How one suite is evaluated. ``parallel``: generation suites decode that many items together (continuous
    batching, tasks.bench.batched); 1 (the default) is the one-item-at-a-time reference path. Greedy decoding of the
    same prompts gives the same completions either way except where llama.cpp's batched arithmetic (another
    summation order) turns a near tie in the logits the other way, so a ``parallel`` above 1 is part of a generation
    suite's generation key; 1 keeps the keys results always had. ``packed_mc``: multiple-choice suites
    score several choices and items per llama_decode (tasks.bench.packed); off by default: on a model whose
    activations llama.cpp rounds to 8 bits (any quantized GGUF) another batch layout moves log-likelihoods by up to
    ~1 nat (benchmarks/bench_engine.py), so a packed result has its own key.

    Generation settings: data, limit, num_fewshot, mmproj, image_root, n_ctx, parallel, packed_mc. Scoring settings
    (a change rescores, never regenerates): judge, think_tags, final_tags, keep_reasoning."""

    data: str | Path | None = None  # None/"sample", "shared", "hub" or a file
    limit: int | None = None
    num_fewshot: int | None = None
    judge: Any = None  # tasks.bench.judge.JudgeSpec
    mmproj: Path | None = None
    image_root: Path | None = None
    think_tags: tuple[str, str] = ("<think>", "</think>")
    final_tags: tuple[str, str] = ("<final>", "</final>")
    keep_reasoning: bool = False  # debug only: store the reasoning text itself
    n_ctx: int = 2048
    parallel: int = DEFAULT_PARALLEL
    packed_mc: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
