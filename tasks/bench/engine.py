"""In-process GGUF engine on llama-cpp-python: log-likelihoods with KV reuse, and greedy generation.

Scoring drives ``llama_decode`` directly so that (1) logits are computed only where they are read (the
last context token and the continuation tokens; the 49k-262k-wide output head is most of the cost of a
token otherwise), and (2) the KV cache is rolled back to the longest common prefix of what it holds and
what comes next: an item's context is evaluated once and reused for every choice, and a few-shot prefix
shared by consecutive items is evaluated once for all of them.

Log-probabilities are read from the logits after decode, never from ``echo=True`` (whose prompt
log-probs are shifted by one token for models without BOS, e.g. SmolLM2).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tasks.bench.batched import check_parallel, one_at_a_time, per_prompt
from tasks.bench.scored import Scored, check_pair, common_prefix

__all__ = ["Engine", "Scored", "engine_threads"]

_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar("alphagate_engine_threads", default=None)


@contextlib.contextmanager
def engine_threads(threads: int | None) -> Iterator[None]:
    """Engines opened inside (in this thread or task context) use ``threads`` llama.cpp threads unless told
    otherwise: an evaluation's share of the cores when several run side by side (None: every core). On 2 cores, two
    evaluations of 2 threads each (and a training beside them) spin-wait for each other's cores; each at 1 runs
    without waiting. The count changes no result (llama.cpp splits each product by rows), so no key holds it."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1 or None, got {threads!r}")
    token = _THREADS.set(threads)
    try:
        yield
    finally:
        _THREADS.reset(token)


class Engine:
    """One GGUF loaded once; ``loglikelihood`` for multiple choice, ``generate``/``chat`` for generation."""

    def __init__(self, path: str | Path, n_ctx: int = 2048, n_threads: int | None = None, n_batch: int = 512,
                 seed: int = 0):
        import llama_cpp._logger

        from tasks.llama_load import open_llama

        llama_cpp._logger.logger.setLevel(logging.ERROR)
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF {self.path} does not exist.")
        from tasks.environment import cpu_cores

        threads = n_threads or _THREADS.get() or cpu_cores()  # llama-cpp-python defaults to half the cores
        self.llm = open_llama(self.path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=n_batch,
                              logits_all=False, verbose=False, seed=seed)
        self.n_ctx, self.n_batch, self.n_vocab = n_ctx, n_batch, self.llm.n_vocab()
        self.add_bos = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self._kv: list[int] = []  # tokens whose KV entries are in the cache, position by position
        self._rows: dict[int, np.ndarray] = {}  # log-softmax rows of positions in _kv, where computed
        self.decoded_tokens = 0  # tokens actually run through the model by loglikelihood()
        self._formatter = False  # the chat template's formatter, built by the first chat_prompt() (None: no template)
        self._batched = None  # tasks.bench.batched.BatchedDecoder of generate_many/chat_many, built on first use
        self._packed = None  # tasks.bench.packed.PackedScorer of loglikelihood_many, built on first use

    # -- tokens ----------------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos and self.add_bos, special=False)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: whitespace moves to the continuation; whole = tok(ctx + cont); the continuation
        is whole[len(tok(ctx)):], so a merge across the boundary is scored as lm-eval scores it."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        whole = self.tokenize(context + continuation, add_bos=True)
        n_ctx = len(self.tokenize(context, add_bos=True))
        return whole[:n_ctx], whole[n_ctx:]

    # -- decoding --------------------------------------------------------------------------------
    def _decode(self, tokens: list[int], start: int, want_from: int) -> None:
        """Decode tokens[start:] at positions start..; keep log-softmax rows for positions >= want_from."""
        import llama_cpp

        ctx, batch = self.llm._ctx, self.llm._batch
        ctx.kv_cache_seq_rm(-1, start, -1)
        rows = {p: r for p, r in self._rows.items() if p < start}
        for lo in range(start, len(tokens), self.n_batch):
            chunk = tokens[lo: lo + self.n_batch]
            b = batch.batch
            b.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i] = tok, lo + i, 1
                b.seq_id[i][0] = 0
                b.logits[i] = lo + i >= want_from
            ctx.decode(batch)
            for i in range(len(chunk)):
                if lo + i >= want_from:
                    ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, i)
                    logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
                    logits -= logits.max()
                    rows[lo + i] = logits - np.log(np.exp(logits).sum())
        self.decoded_tokens += len(tokens) - start
        self._kv, self._rows = list(tokens), rows

    def loglikelihood(self, context_tokens: list[int], continuation_tokens: list[int]) -> Scored:
        """log p(continuation | context), reusing whatever prefix of it the KV cache already holds."""
        check_pair(context_tokens, continuation_tokens)
        tokens = context_tokens + continuation_tokens
        if len(tokens) > self.n_ctx:
            raise ValueError(f"{len(tokens)} tokens exceed the engine's n_ctx={self.n_ctx}; raise n_ctx.")
        first = len(context_tokens) - 1  # logits at this position predict the first continuation token
        last = len(tokens) - 2  # the last token predicts nothing we score: it need not be decoded at all
        lcp = common_prefix(self._kv, tokens)
        missing = [p for p in range(first, last + 1) if p >= lcp or p not in self._rows]
        if missing:  # decode from the first position whose KV or logits we lack
            self._decode(tokens[: last + 1], min(lcp, missing[0]), first)
        total, greedy = 0.0, True
        for j, tok in enumerate(continuation_tokens):
            row = self._rows[first + j]
            total += float(row[tok])
            greedy = greedy and int(row.argmax()) == tok
        return Scored(total, greedy, len(continuation_tokens))

    def loglikelihood_many(self, items: list[list[tuple[list[int], list[int]]]], packed: bool = False,
                           on_done=None) -> list[list[Scored]]:
        """``loglikelihood`` of every (context, continuation) pair of every item (an item: its choices), in order.
        ``packed``: several choices and items per ``llama_decode`` (tasks.bench.packed: equal to the single-item path
        in the last bits on an F32 model, within ~1 nat on a quantized one); False: one pair at a time, as
        ``loglikelihood``.
        ``on_done(i)`` is called as item i is scored."""
        for item in items:
            for ctx, cont in item:
                check_pair(ctx, cont)
                if len(ctx) + len(cont) > self.n_ctx:
                    raise ValueError(f"{len(ctx) + len(cont)} tokens exceed the engine's n_ctx={self.n_ctx}; "
                                     "raise n_ctx.")
        if not packed:
            out = []
            for i, item in enumerate(items):
                out.append([self.loglikelihood(ctx, cont) for ctx, cont in item])
                if on_done is not None:
                    on_done(i)
            return out
        if self._packed is None:
            from tasks.bench.packed import PackedScorer

            self._packed = PackedScorer(self.llm, n_ctx=self.n_ctx, n_batch=self.n_batch)
        return self._packed.score(items, fallback=self.loglikelihood, on_done=on_done)

    def reset(self) -> None:
        self.llm._ctx.kv_cache_clear()
        self.llm.reset()
        self._kv, self._rows = [], {}

    def close(self) -> None:
        """Free the model now (llama-cpp-python's __del__ at interpreter exit can fail noisily)."""
        for name in ("_batched", "_packed"):
            if getattr(self, name, None) is not None:
                getattr(self, name).close()
                setattr(self, name, None)
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- generation ------------------------------------------------------------------------------
    def generate(self, prompt: str, max_tokens: int, stop: list[str]) -> str:
        self.reset()  # llama-cpp-python's own prefix cache must not see our hand-made KV state
        out = self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=stop or None)
        return out["choices"][0]["text"]

    def chat(self, messages: list[dict], max_tokens: int, stop: list[str] | None = None,
             grammar: str | None = None) -> str:
        """Greedy chat completion through the GGUF's chat template; ``grammar`` (GBNF) constrains the output."""
        from llama_cpp import LlamaGrammar

        self.reset()
        constraint = LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
        out = self.llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.0, stop=stop,
                                              grammar=constraint)
        return out["choices"][0]["message"]["content"] or ""

    # -- many generations at once ----------------------------------------------------------------
    def generate_many(self, prompts: list[str], max_tokens: int | list[int], stop: list[str] | list[list[str]],
                      parallel: int, on_done=None) -> list[str]:
        """``generate`` of every prompt (in order), ``parallel`` sequences decoding together (continuous batching,
        tasks.bench.batched). ``parallel=1`` is ``generate`` itself, one prompt after another. ``max_tokens`` and
        ``stop`` are one value for all prompts or one per prompt; ``on_done(i)`` is called as prompt i finishes."""
        from tasks.bench.batched import completion_request

        max_list, stop_list = per_prompt(prompts, max_tokens, stop)
        if check_parallel(parallel) == 1:
            return one_at_a_time(lambda i: self.generate(prompts[i], max_list[i], stop_list[i]), len(prompts), on_done)
        requests = [completion_request(self.llm, p, m, s) for p, m, s in zip(prompts, max_list, stop_list,
                                                                            strict=True)]
        return self._decoder(parallel).run(requests, on_done)

    def chat_many(self, conversations: list[list[dict]], max_tokens: int | list[int],
                  stop: list[str] | list[list[str]] | None, parallel: int, on_done=None) -> list[str]:
        """``chat`` (without grammar) of every conversation, ``parallel`` at a time; see ``generate_many``."""
        from tasks.bench.batched import chat_request
        from tasks.llama_load import chat_formatter

        max_list, stop_list = per_prompt(conversations, max_tokens, stop)
        # the batched path renders the GGUF's own template, as the "chat_template.default" handler does; a model that
        # llama-cpp-python serves with another chat format stays on the one-at-a-time path
        default = self.llm.chat_handler is None and self.llm.chat_format == "chat_template.default"
        if check_parallel(parallel) == 1 or not default:
            return one_at_a_time(lambda i: self.chat(conversations[i], max_list[i], stop_list[i]) or "",
                                 len(conversations), on_done)
        if self._formatter is False:
            self._formatter = chat_formatter(self.llm)
        requests = [chat_request(self.llm, self._formatter, m, n, s)
                    for m, n, s in zip(conversations, max_list, stop_list, strict=True)]
        return self._decoder(parallel).run(requests, on_done)

    def _decoder(self, parallel: int):
        from tasks.bench.batched import BatchedDecoder

        if self._batched is None or self._batched.n_seq != parallel:
            if self._batched is not None:
                self._batched.close()
            self._batched = BatchedDecoder(self.llm, parallel)
        return self._batched

    def chat_prompt(self, messages: list[dict]) -> str:
        """The prompt text ``chat`` sends for ``messages`` (the GGUF's chat template with its generation prompt;
        "" when the GGUF has none): whether it ends inside an open reasoning section decides how the answer is
        read (tasks.final_section.opens_reasoning)."""
        from tasks.llama_load import chat_formatter

        if self._formatter is False:
            self._formatter = chat_formatter(self.llm)
        return self._formatter(messages=messages).prompt if self._formatter is not None else ""

    # -- timings ---------------------------------------------------------------------------------
    def reset_timings(self) -> None:
        import llama_cpp

        llama_cpp.llama_perf_context_reset(self.llm._ctx.ctx)
        if self._packed is not None:
            llama_cpp.llama_perf_context_reset(self._packed._ctx.ctx)
        if self._batched is not None:
            self._batched.stats = dict.fromkeys(self._batched.stats, 0)

    def _batched_timings(self, t) -> dict[str, float]:
        """timings() after batched generation: its counters plus the main context's; a decode step that carried any
        prompt token counts as prompt time, so generation tokens/s is of steps that decoded generated tokens only."""
        s = self._batched.stats
        p_n, p_ms = int(t.n_p_eval) + s["prompt_tokens"], float(t.t_p_eval_ms) + s["prompt_ms"]
        g_n, g_ms = int(t.n_eval) + s["generated_tokens"], float(t.t_eval_ms) + s["generation_ms"]
        return {"prompt_tokens": p_n, "prompt_ms": p_ms, "prompt_tokens_per_s": p_n / (p_ms / 1e3) if p_ms > 0 else 0.0,
                "generated_tokens": g_n, "generation_ms": g_ms,
                "generation_tokens_per_s": g_n / (g_ms / 1e3) if g_ms > 0 else 0.0,
                "parallel": self._batched.n_seq, "batched_steps": s["steps"]}

    def timings(self) -> dict[str, float]:
        """Prompt and generation throughput from llama.cpp's own counters since reset_timings()."""
        import llama_cpp

        t = llama_cpp.llama_perf_context(self.llm._ctx.ctx)
        if self._batched is not None and self._batched.stats["steps"]:
            return self._batched_timings(t)
        p_n, p_ms, g_n, g_ms = int(t.n_p_eval), float(t.t_p_eval_ms), int(t.n_eval), float(t.t_eval_ms)
        if self._packed is not None:  # packed scoring decodes on its own context
            pt = llama_cpp.llama_perf_context(self._packed._ctx.ctx)
            p_n, p_ms = p_n + int(pt.n_p_eval), p_ms + float(pt.t_p_eval_ms)
            g_n, g_ms = g_n + int(pt.n_eval), g_ms + float(pt.t_eval_ms)
        return {"prompt_tokens": p_n, "prompt_ms": p_ms,
                "prompt_tokens_per_s": p_n / (p_ms / 1e3) if p_ms > 0 else 0.0,
                "generated_tokens": g_n, "generation_ms": g_ms,
                "generation_tokens_per_s": g_n / (g_ms / 1e3) if g_ms > 0 else 0.0}
