"""Greedy generation of many prompts at once on one llama.cpp context: continuous batching.

Up to ``n_seq`` sequences live in the context, each under its own seq_id with its own KV stream
(``kv_unified=False``: every sequence gets the full ``n_ctx`` of the one-at-a-time path, and attention only
reads the sequence's own cells). One ``llama_decode`` per step carries every live sequence's next token, plus
as many prompt tokens of newly admitted sequences as fit in the batch; when a sequence finishes, the next
waiting prompt takes its slot, on a cleared stream.

No KV prefix is reused or copied between prompts. With the llama.cpp of llama-cpp-python 0.3.36, a stream that
keeps a prefix (``llama_memory_seq_rm`` from a position, or ``llama_memory_seq_cp`` from another stream) and is then
decoded in a micro-batch together with another stream gives wrong logits (max |diff| 0.35 against a fresh
stream on SmolLM2; benchmarks/bench_generate.py --check-streams reproduces it), while a cleared stream gives
bit-identical ones. Few-shot prefixes shared by the prompts are therefore decoded once per prompt, as the
one-at-a-time path decodes them.

Each request is read exactly as llama-cpp-python's ``create_completion`` reads it at ``temperature=0``
(argmax; first maximum on ties), so that a sequence yields the same text as the one-at-a-time path given the
same logits: stop at an end-of-generation token, the accumulated bytes searched for the stop strings after
every token (a stop string spanning token boundaries is found; the text is cut where the first listed stop
string found begins), the stop check skipped while the text ends inside a UTF-8 character, ``max_tokens``
clipped to the context. The logits themselves can differ in the last bits: llama.cpp's CPU kernels sum in
another order for a many-row batch than for a single token, so a near tie can break the other way and the
completion diverge from there.
"""

from __future__ import annotations

import ctypes
import time
from collections import deque
from dataclasses import dataclass, field

MAX_SEQUENCES = 256  # llama.cpp's LLAMA_MAX_SEQ
# `alphagate eval --parallel` default: 1, the one-at-a-time reference path, by measurement (bench_generate.py): on
# the 2-core CPU a decode step of 16 sequences runs only 1.9x the tokens/s of one (--ceiling), prompts gain
# nothing: --parallel 16 measured 1.17x the items/s on GSM8K 0-shot (40 items), 1.22x on ELYZA (30 items);
# opt in with --parallel N
DEFAULT_PARALLEL = 1


@dataclass(frozen=True)
class Request:
    tokens: list[int]  # the prompt, special tokens included
    max_tokens: int
    stop: tuple[bytes, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()  # a prompt ending in one of these yields "" (chat handlers)


@dataclass
class _Slot:
    seq: int
    index: int
    request: Request
    pending: list[int]  # tokens to decode next: the rest of the prompt, or the last sampled token
    pos: int = 0  # tokens of this sequence in the KV cache
    completion: list[int] = field(default_factory=list)
    text: bytes = b""
    multibyte_fix: int = 0


def check_parallel(parallel) -> int:
    """``parallel`` (sequences decoded together), checked before any model loads; returned as it was given."""
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= MAX_SEQUENCES:
        raise ValueError(f"parallel must be a whole number from 1 to {MAX_SEQUENCES} (sequences decoded together), "
                         f"got {parallel!r}.")
    return parallel


def per_prompt(items: list, max_tokens, stop) -> tuple[list, list]:
    """max_tokens and stop lists, one entry per item, from one shared value or one value per item."""
    n = len(items)
    max_list = list(max_tokens) if isinstance(max_tokens, list | tuple) else [max_tokens] * n
    shared = stop is None or not stop or all(isinstance(s, str) for s in stop)
    stop_list = [list(stop or [])] * n if shared else [list(s or []) for s in stop]
    for name, values in (("max_tokens", max_list), ("stop", stop_list)):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries for {n} prompts; give one value, or one per prompt.")
    return max_list, stop_list


def one_at_a_time(one, n: int, on_done) -> list[str]:
    """``one(i)`` for i in 0..n-1, in order (the ``parallel=1`` path); ``on_done(i)`` after each."""
    out = []
    for i in range(n):
        out.append(one(i))
        if on_done is not None:
            on_done(i)
    return out


def completion_request(llm, prompt: str, max_tokens: int | None, stop: list[str] | None) -> Request:
    """``llm.create_completion(prompt, ...)``'s prompt tokens and limits (llama-cpp-python 0.3.x)."""
    if not prompt:
        raise ValueError("generate_many got an empty prompt; every prompt needs at least one character.")
    model = llm._model
    cls_id, sep_id = model.token_cls(), model.token_sep()
    bos = [cls_id if cls_id != -1 else llm.token_bos()]
    eos = [sep_id if sep_id != -1 else llm.token_eos()]
    if not model.add_bos_token() or bos[:1] == [-1]:
        bos = []
    if not model.add_eos_token() and sep_id == -1:
        eos = []
    tokens = bos + llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) + eos
    return _request(llm, tokens, max_tokens, stop)


def chat_request(llm, formatter, messages: list[dict], max_tokens: int | None, stop: list[str] | None) -> Request:
    """``llm.create_chat_completion(messages, ...)``'s request through a Jinja2ChatFormatter (the GGUF's template,
    llama-cpp-python's "chat_template.default" handler, whose stop token is the model's EOS)."""
    result = formatter(messages=messages)
    tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
    stops = list(stop or []) + (list(result.stop) if isinstance(result.stop, list) else [result.stop])
    return _request(llm, tokens, max_tokens, stops, frozenset({llm.token_eos()}))


def _request(llm, tokens: list[int], max_tokens: int | None, stop, stop_token_ids=frozenset()) -> Request:
    n_ctx = llm.n_ctx()
    if len(tokens) >= n_ctx:
        raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {n_ctx}")
    if max_tokens is None or max_tokens <= 0:
        max_tokens = n_ctx - len(tokens)
    max_tokens = max_tokens if max_tokens + len(tokens) < n_ctx else n_ctx - len(tokens)
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    return Request(tokens, max_tokens, tuple(s.encode("utf-8") for s in stop), stop_token_ids)


class BatchedDecoder:
    """A second llama.cpp context on ``llm``'s model (same settings) holding ``n_seq`` sequences of up to ``n_ctx``
    tokens each."""

    def __init__(self, llm, n_seq: int, n_ctx: int | None = None, n_batch: int | None = None):
        import llama_cpp
        from llama_cpp import _internals

        if not isinstance(n_seq, int) or isinstance(n_seq, bool) or not 1 <= n_seq <= MAX_SEQUENCES:
            raise ValueError(f"parallel must be a whole number from 1 to {MAX_SEQUENCES}, got {n_seq!r}.")
        self.llm, self.n_seq = llm, n_seq
        self.n_ctx = n_ctx or llm.n_ctx()
        self.n_batch = max(n_batch or llm.n_batch, n_seq)
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx, params.n_seq_max, params.kv_unified = self.n_ctx * n_seq, n_seq, False
        params.n_batch = params.n_ubatch = self.n_batch
        self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._vocab, self.n_vocab = llm._model.vocab, llm.n_vocab()
        self._piece = ctypes.create_string_buffer(32)
        self.stats = {"prompt_tokens": 0, "prompt_ms": 0.0, "generated_tokens": 0, "generation_ms": 0.0,
                      "sampled_tokens": 0, "steps": 0}

    def close(self) -> None:
        if self._ctx is not None:
            self._batch.close()
            self._ctx.close()
            self._ctx = None

    # -- one sequence ----------------------------------------------------------------------------
    def _piece_of(self, token: int) -> bytes:
        import llama_cpp

        n = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, 32, 0, False)
        return self._piece.raw[:n]

    def _accept(self, slot: _Slot, token: int) -> bytes | None:
        """Feed the greedy token to the sequence as create_completion does; its final text once it is done."""
        import llama_cpp

        req = slot.request
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return slot.text
        slot.completion.append(token)
        slot.text += self._piece_of(token)
        for k, char in enumerate(slot.text[-3:]):  # create_completion's test for a cut UTF-8 character, verbatim
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    slot.multibyte_fix = num - k
        if slot.multibyte_fix > 0:
            slot.multibyte_fix -= 1
        else:
            found = [s for s in req.stop if s in slot.text]
            if found:
                return slot.text[: slot.text.index(found[0])]
            if len(slot.completion) >= req.max_tokens:
                return slot.text
        if slot.pos >= self.n_ctx:  # only past max_tokens inside a cut character: the context is full
            return slot.text
        slot.pending = [token]
        return None

    # -- many sequences --------------------------------------------------------------------------
    def run(self, requests: list[Request], on_done=None) -> list[str]:
        """Greedy completions of ``requests``, in their order; ``on_done(index)`` as each one finishes."""
        results: list[str | None] = [None] * len(requests)
        waiting = deque(range(len(requests)))
        free = set(range(self.n_seq))  # the lowest free seq_id is taken first: live seq_ids stay consecutive
        live: list[_Slot] = []

        def finish(index: int, text: bytes) -> None:
            results[index] = text.decode("utf-8", errors="ignore")
            if on_done is not None:
                on_done(index)

        while waiting or live:
            self._admit_waiting(requests, waiting, free, live, finish)
            if not live:
                continue
            outputs, prompt_tokens = self._fill_batch(live)
            self._decode_step(len(outputs), prompt_tokens)
            for slot, row in outputs:
                text = self._accept(slot, self._greedy(row))
                if text is not None:
                    live.remove(slot)
                    free.add(slot.seq)
                    finish(slot.index, text)
        return results  # type: ignore[return-value]

    def _admit_waiting(self, requests: list[Request], waiting: deque, free: set[int], live: list[_Slot],
                       finish) -> None:
        """Waiting requests take the free seq_ids, the lowest first; one whose prompt ends in a stop token finishes
        at once with ""."""
        while waiting and free:
            i = waiting.popleft()
            if requests[i].stop_token_ids and requests[i].tokens[-1] in requests[i].stop_token_ids:
                finish(i, b"")
                continue
            seq = min(free)
            free.remove(seq)
            live.append(self._admit(i, requests[i], seq))

    def _fill_batch(self, live: list[_Slot]) -> tuple[list[tuple[_Slot, int]], int]:
        """One step's batch: (slot, batch row) of each sequence whose logits are read, and the prompt tokens in it."""
        b = self._batch.batch
        # in seq_id order (llama.cpp puts only consecutive seq_ids of a split KV cache in one micro-batch): every
        # generated token (they always fit), prompt tokens as far as the batch holds them
        live.sort(key=lambda s: s.seq)
        room = self.n_batch - sum(1 for s in live if len(s.pending) == 1)
        n, outputs, prompt_tokens = 0, [], 0
        for slot in live:
            take = len(slot.pending) if len(slot.pending) == 1 else min(len(slot.pending), room)
            if take <= 0:
                continue
            if len(slot.pending) > 1:
                room -= take
            last = take == len(slot.pending)
            for j in range(take):
                b.token[n], b.pos[n], b.n_seq_id[n] = slot.pending[j], slot.pos + j, 1
                b.seq_id[n][0] = slot.seq
                b.logits[n] = last and j == take - 1
                n += 1
            if last:
                outputs.append((slot, n - 1))
            if not slot.completion:
                prompt_tokens += take
            slot.pos += take
            slot.pending = slot.pending[take:]
        b.n_tokens = n
        return outputs, prompt_tokens

    def _decode_step(self, n_outputs: int, prompt_tokens: int) -> None:
        """Decode the filled batch; a step that carried any prompt token counts as prompt time."""
        t0 = time.perf_counter()
        self._ctx.decode(self._batch)
        ms = (time.perf_counter() - t0) * 1e3
        self.stats["steps"] += 1
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["sampled_tokens"] += n_outputs
        if prompt_tokens:
            self.stats["prompt_ms"] += ms
        else:
            self.stats["generated_tokens"] += n_outputs
            self.stats["generation_ms"] += ms

    def _greedy(self, row: int) -> int:
        """The argmax of the logits at batch row ``row`` of the last decode (the first maximum on ties)."""
        import llama_cpp
        import numpy as np

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx.ctx, row), shape=(self.n_vocab,))
        return int(logits.argmax())

    def _admit(self, index: int, req: Request, seq: int) -> _Slot:
        """A slot for ``req`` in ``seq``, its KV stream cleared (see the module's note on prefix reuse)."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._ctx.memory, seq, -1, -1)
        return _Slot(seq, index, req, list(req.tokens))
