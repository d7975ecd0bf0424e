"""What both log-likelihood paths share: the engine's one pair at a time (tasks/bench/engine.py) and packed scoring
(tasks/bench/packed.py). The record of a scored (context, continuation) pair, the check every pair passes, and the
common prefix of two token lists: how much of what the KV cache holds a new sequence can reuse."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    loglikelihood: float
    is_greedy: bool
    n_tokens: int


def check_pair(context: list[int], continuation: list[int]) -> None:
    if not context or not continuation:
        raise ValueError("loglikelihood needs a non-empty context and continuation (got "
                         f"{len(context)} and {len(continuation)} tokens).")


def common_prefix(a: list[int], b: list[int]) -> int:
    """The number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
