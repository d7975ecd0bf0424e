"""Packed multiple-choice scoring: many (context, continuation) pairs in one ``llama_decode``.

The technique of llama.cpp's perplexity tool (its HellaSwag/Winogrande/multiple-choice scores), generalised to a
prefix tree: every scored pair is one *sequence* (its own seq_id) whose tokens are ``context + continuation``
without the last token (nothing reads the logits after it). The sequences of a group of consecutive items are
merged into a trie; each trie node (a token at a position) is decoded ONCE, as one batch token carrying the
seq_ids of every sequence that passes through it. An item's context is thus evaluated once for all its choices,
choices that share leading tokens share them, and a few-shot prefix shared by the items of a group is evaluated
once for the group. Logits are requested only where they are read: the last context token of each sequence and
its continuation tokens but the last.

Between groups the cache keeps the context of the group's last sequence (as the single-item path keeps what it
decoded last): the next group's sequences get the cells of their common prefix with it (``llama_memory_seq_cp``,
which in a unified cache only adds seq_ids to cells), so a few-shot prefix shared by consecutive items is not
evaluated again when a group ends.

The context is a separate llama.cpp context on the same model with a **unified** KV cache (``kv_unified=True``:
one stream, every cell carrying a set of seq_ids). Split streams are not used: with the llama.cpp of
llama-cpp-python 0.3.36 a stream that holds a kept or copied prefix decoded beside another stream gives wrong logits
(tasks/bench/batched.py; ``benchmarks/bench_generate.py --check-streams``).

How close the scores are to the single-item path (tasks/bench/engine.py) depends on the model's arithmetic. The
first sequence of a fresh decode is bit-identical; every other sequence sits in other KV cells, and llama.cpp's CPU
attention sums in blocks of cells (16 with AVX-512: the softmax sums per block, the KQ*V product per lane), so
its sums round differently. On an F32 GGUF that stays in the last bits (max |delta| 7e-6 on the test items,
tests/test_packed.py). On a quantized GGUF llama.cpp rounds every matrix product's input activations to 8 bits
(q8), and a last-bit change that moves one of those roundings propagates: the shipped SmolLM2 Q4_1 moves by up to
~1 nat per choice (benchmarks/bench_engine.py); its logits move as much (~0.6) when the single-item path's own
tokens are decoded one at a time instead of in one batch. Packed scoring is therefore opt-in
(``alphagate eval --packed-mc``), and a packed result has its own evaluation key.
"""

from __future__ import annotations

import numpy as np

from tasks.bench.prefix_tree import Plan, Trie, plan_group
from tasks.bench.scored import Scored

# Plan and plan_group are re-exported: tests/test_packed.py imports them from here
__all__ = ["MAX_SEQUENCES", "PackedScorer", "Plan", "plan_group"]
MAX_SEQUENCES = 256  # llama.cpp's LLAMA_MAX_SEQ


class PackedScorer:
    """A llama.cpp context (unified KV cache, ``n_seq`` sequences) on ``llm``'s model that scores groups of
    multiple-choice items packed into as few ``llama_decode`` calls as their tokens allow.

    ``n_ctx``: the longest context + continuation accepted (as the single-item path's n_ctx); ``tokens``: about how
    many new tokens one group decodes (consecutive items are added while they fit; an item larger than that is a
    group of its own, decoded in ``n_batch`` chunks). The KV cache holds ``n_ctx + tokens`` cells (the kept prefix
    and one group)."""

    def __init__(self, llm, n_seq: int = 64, tokens: int = 512, n_ctx: int | None = None, n_batch: int | None = None):
        import llama_cpp
        from llama_cpp import _internals

        if isinstance(n_seq, bool) or not isinstance(n_seq, int) or not 1 <= n_seq <= MAX_SEQUENCES:
            raise ValueError(f"n_seq must be a whole number from 1 to {MAX_SEQUENCES}, got {n_seq!r}.")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ValueError(f"tokens (new tokens per packed decode) must be a positive whole number, got {tokens!r}.")
        self.llm, self.n_seq, self.tokens = llm, n_seq, tokens
        self.n_ctx = n_ctx or llm.n_ctx()
        self.n_batch = max(n_batch or llm.n_batch, n_seq)  # llama.cpp sizes its output buffer by both
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx, params.n_seq_max, params.kv_unified = self.n_ctx + tokens, n_seq, True
        params.n_batch = params.n_ubatch = self.n_batch
        self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.kv_size = llama_cpp.llama_n_ctx(self._ctx.ctx)
        self._batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=n_seq, verbose=False)
        self.n_vocab = llm.n_vocab()
        self._kept: list[int] = []  # tokens whose cells the cache holds (under seq_id self._kept_seq), from position 0
        self._kept_seq = 0
        self.decoded_tokens = 0
        self.decode_calls = 0
        self.fallback_items = 0  # items scored by the caller's single-item path

    def close(self) -> None:
        if self._ctx is not None:
            self._batch.close()
            self._ctx.close()
            self._ctx = None

    def reset(self) -> None:
        import llama_cpp

        llama_cpp.llama_memory_clear(self._ctx.memory, True)
        self._kept, self._kept_seq = [], 0

    # -- grouping ----------------------------------------------------------------------------------
    def _fits(self, plan: Plan) -> bool:
        return max(plan.reuse, default=0) + len(plan.nodes) <= self.kv_size

    def _plan(self, items, kept: list[int]) -> Plan:
        return plan_group([pair for item in items for pair in item], kept)

    def groups(self, items: list[list[tuple[list[int], list[int]]]]):
        """Yield (first item, end item, plan) for consecutive groups of ``items``; each plan is made against the kept
        prefix as it will be when the group is decoded (the previous group's last context). A plan of None: the
        item does not fit the cache or the sequences even alone (the caller scores its choices one at a time)."""
        kept, i = self._kept, 0
        while i < len(items):
            if len(items[i]) > self.n_seq:
                yield i, i + 1, None
                kept, i = [], i + 1
                continue
            plan = self._plan(items[i: i + 1], kept)
            if not self._fits(plan):
                kept = []  # the group starts from a cleared cache
                plan = self._plan(items[i: i + 1], kept)
                if not self._fits(plan):
                    yield i, i + 1, None
                    i += 1
                    continue
            trie, n_seqs, j = Trie(kept), 0, i
            while j < len(items) and n_seqs + len(items[j]) <= self.n_seq:
                for ctx, cont in items[j]:
                    trie.add(ctx, cont)
                n_seqs, j = n_seqs + len(items[j]), j + 1
                if j > i + 1 and (trie.n_new() > self.tokens or trie.n_nodes > self.kv_size):
                    j -= 1  # the last item did not fit: the group is the ones before it
                    plan = self._plan(items[i:j], kept)
                    break
            else:
                plan = trie.plan()
            yield i, j, plan
            kept, i = list(items[j - 1][-1][0]), j

    # -- decoding ----------------------------------------------------------------------------------
    def _prepare_cache(self, plan: Plan, pairs) -> None:
        """Give each sequence the kept cells it reuses; drop the rest of the cache."""
        import llama_cpp

        mem = self._ctx.memory
        if not any(plan.reuse) or not self._kept:
            llama_cpp.llama_memory_clear(mem, True)
            return
        k = self._kept_seq
        for s, r in enumerate(plan.reuse):
            if s != k and r:
                llama_cpp.llama_memory_seq_cp(mem, k, s, 0, r)
        keep = plan.reuse[k] if k < len(plan.reuse) else 0
        llama_cpp.llama_memory_seq_rm(mem, k, keep, -1)

    def _keep_last_context(self, pairs) -> None:
        """After a group: the cache keeps only the last sequence's context (the next group's kept prefix)."""
        import llama_cpp

        mem, s = self._ctx.memory, len(pairs) - 1
        ctx = pairs[-1][0]
        llama_cpp.llama_memory_seq_keep(mem, s)
        llama_cpp.llama_memory_seq_rm(mem, s, len(ctx), -1)
        self._kept, self._kept_seq = list(ctx), s

    def decode_plan(self, plan: Plan, pairs) -> list[Scored]:
        """Decode ``plan`` (made by plan_group against the current kept prefix) and score its sequences."""
        import llama_cpp

        if not plan.kept and self._kept:
            self.reset()
        if plan.kept != self._kept:
            raise RuntimeError("packed scoring: a plan made against another kept prefix than the cache holds.")
        self._prepare_cache(plan, pairs)
        ctx, b = self._ctx, self._batch.batch
        rows: list[np.ndarray] = []
        for lo in range(0, len(plan.nodes), self.n_batch):
            chunk = plan.nodes[lo: lo + self.n_batch]
            n_out = 0
            for i, node in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i] = node.token, node.depth, len(node.seqs)
                for j, s in enumerate(node.seqs):
                    b.seq_id[i][j] = s
                b.logits[i] = node.output
                n_out += node.output
            b.n_tokens = len(chunk)
            ctx.decode(self._batch)
            self.decode_calls += 1
            if n_out:
                ptr = llama_cpp.llama_get_logits(ctx.ctx)
                rows.append(np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab)).astype(np.float64))
        self.decoded_tokens += len(plan.nodes)
        if rows:
            logits = np.concatenate(rows) if len(rows) > 1 else rows[0]
            logits -= logits.max(axis=1, keepdims=True)
            logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
            greedy = logits.argmax(axis=1)
        row = 0
        for node in plan.nodes:
            if node.output:
                node.row, row = row, row + 1
        out = []
        for s, (ctx_tokens, cont) in enumerate(pairs):
            path, first = plan.paths[s], len(ctx_tokens) - 1
            total, is_greedy = 0.0, True
            for j, tok in enumerate(cont):
                r = path[first + j].row
                total += float(logits[r, tok])
                is_greedy = is_greedy and int(greedy[r]) == tok
            out.append(Scored(total, is_greedy, len(cont)))
        self._keep_last_context(pairs)
        return out

    def score(self, items: list[list[tuple[list[int], list[int]]]], fallback=None, on_done=None) -> list[list[Scored]]:
        """Scores of every (context, continuation) pair of every item, in order. ``fallback(ctx, cont)`` scores a
        pair of an item too large for the packed cache (the engine's single-item path); ``on_done(i)`` as item i is
        scored."""
        results: list[list[Scored] | None] = [None] * len(items)
        for i, j, plan in self.groups(items):
            if plan is None:
                if fallback is None:
                    raise ValueError(f"item {i} needs more than the packed cache's {self.kv_size} cells.")
                self.reset()
                self.fallback_items += 1
                results[i] = [fallback(c, t) for c, t in items[i]]
            else:
                pairs = [p for item in items[i:j] for p in item]
                scored = self.decode_plan(plan, pairs)
                k = 0
                for n in range(i, j):
                    results[n] = scored[k: k + len(items[n])]
                    k += len(items[n])
            if on_done is not None:
                for n in range(i, j):
                    on_done(n)
        return results  # type: ignore[return-value]
