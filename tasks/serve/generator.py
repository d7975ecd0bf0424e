"""The served model: one GGUF on llama.cpp, its chat template, one generation at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.final_section import opens_reasoning
from tasks.serve.requests import RequestError, ServeSettings


class Generator:
    """One llama.cpp model, one request at a time (llama.cpp contexts are not thread-safe)."""

    def __init__(self, settings: ServeSettings):
        from tasks.environment import cpu_cores
        from tasks.llama_load import chat_formatter, open_llama
        from tasks.store import sha256_file

        self.settings = settings
        threads = settings.threads or cpu_cores()
        self.llm = open_llama(settings.gguf, n_ctx=settings.n_ctx, n_threads=threads, n_threads_batch=threads,
                              verbose=False)
        self.model_sha256 = sha256_file(settings.gguf)
        self.model_name = settings.model_name or Path(settings.gguf).stem
        self.formatter = chat_formatter(self.llm)
        if self.formatter is None:
            raise ValueError(f"{settings.gguf} has no tokenizer.chat_template; serve a GGUF exported by "
                             "`alphagate export` (it embeds the chat template).")
        self.lock = threading.Lock()

    def prompt(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        try:
            rendered = self.formatter(messages=messages)
        except Exception as exc:  # noqa: BLE001 - a template's raise_exception (e.g. role order)
            raise RequestError(400, f"The model's chat template rejected these messages: {exc}", "messages") from None
        prefill = self.settings.think_tags[0] if self.settings.prefill_think else ""
        stops = [rendered.stop] if isinstance(rendered.stop, str) else list(rendered.stop or [])
        return rendered.prompt + prefill, stops

    def opens_reasoning(self, messages: list[dict[str, str]]) -> bool:
        """Whether the prompt for ``messages`` ends inside an open reasoning section, so that the generated text
        starts inside it (a thinking chat template, or ``prefill_think``)."""
        return opens_reasoning(self.prompt(messages)[0], self.settings.think_tags)

    def stream(self, messages, sampling, until: Callable[[], str | None] | None = None) -> Iterator[tuple[str, dict]]:
        """Yields (raw text piece, info); the last info has finish_reason and usage. ``until`` is asked after every
        piece: a reason (e.g. "stop": the final section is complete; "client_disconnected") ends decoding at once,
        with that finish reason. The model's lock is held while decoding and released when decoding ends."""
        prompt, template_stops = self.prompt(messages)
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) + sampling["max_tokens"] > self.settings.n_ctx:
            raise RequestError(400, f"The prompt is {len(tokens)} tokens; with max_tokens {sampling['max_tokens']} "
                                    f"it exceeds the context of {self.settings.n_ctx}. Shorten the conversation.",
                               "messages")
        # no </final> stop string: one inside the reasoning must not end the answer; ``until`` ends it instead
        stop = list(dict.fromkeys(template_stops + sampling["stop"]))
        kwargs = dict(max_tokens=sampling["max_tokens"], temperature=sampling["temperature"],
                      top_p=sampling["top_p"], stop=stop, stream=True)
        if sampling["seed"] is not None:
            kwargs["seed"] = sampling["seed"]
        completion_tokens, finish = 0, None
        with self.lock:
            self.llm.reset()
            completion = self.llm.create_completion(tokens, **kwargs)
            try:
                for chunk in completion:
                    choice = chunk["choices"][0]
                    completion_tokens += 1 if choice["text"] else 0
                    finish = choice.get("finish_reason") or finish
                    if choice["text"]:
                        yield choice["text"], {}
                    if until is not None and (reason := until()):
                        finish = reason
                        break
            finally:
                completion.close()
        yield "", {"finish_reason": finish or "stop",
                   "usage": {"prompt_tokens": len(tokens), "completion_tokens": completion_tokens,
                             "total_tokens": len(tokens) + completion_tokens}}
