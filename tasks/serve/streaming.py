"""The streamed answer of /v1/chat/completions: OpenAI's server-sent chunks carrying the final section only, a
generation that ends when its client goes away, and its audit line written however the stream ends."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator

import anyio
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tasks.serve.answers import Answers, Call


class GenerationStream(StreamingResponse):
    """A streamed generation that ends when its client goes away. The disconnect is noticed even while
    nothing is being sent (reasoning, or outside text held back): ``cancel`` is set at once and the decoding
    thread stops at its next token; the body's generator is then closed, which releases the model's lock and
    writes the audit line if that has not happened yet."""

    def __init__(self, events: Iterator[str], cancel: threading.Event, **kwargs):
        super().__init__(events, **kwargs)
        self.events, self.cancel = events, cancel

    async def listen_for_disconnect(self, receive) -> None:
        await super().listen_for_disconnect(receive)
        self.cancel.set()

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.cancel.set()
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self.events.close)


def chunk(call: Call, model: str, delta: dict, finish=None) -> str:
    """One server-sent event of OpenAI's chat.completion.chunk."""
    return "data: " + json.dumps({"id": call.request_id, "object": "chat.completion.chunk", "created": call.created,
                                  "model": model, "choices": [{"index": 0, "delta": delta,
                                                               "finish_reason": finish}]},
                                 ensure_ascii=False) + "\n\n"


def chat_events(answers: Answers, call: Call, f, first, pieces, cancel: threading.Event) -> Iterator[str]:
    """The events of one streamed answer: the role, the visible pieces as the filter lets them through, the finish
    reason and [DONE]; the audit line is written once decoding is over (done, cancelled, failed, or closed)."""
    model = answers.gen.model_name
    info, sent, status, tail = {}, [], "ok", ""
    yield chunk(call, model, {"role": "assistant", "content": ""})
    try:
        for piece, meta in itertools.chain([first], pieces):
            info.update(meta)
            visible = f.feed(piece)
            if visible:
                sent.append(visible)
                yield chunk(call, model, {"content": visible})
        tail = f.finish()
        sent.append(tail)
    except Exception:
        status = "error"
        info.setdefault("finish_reason", "error")
        raise
    finally:  # decoding is over (done, cancelled, failed, or this generator closed): the lock is free
        pieces.close()
        if cancel.is_set() and info.get("finish_reason") in (None, "client_disconnected"):
            status = info["finish_reason"] = "client_disconnected"
        answers.record(call, f, "".join(sent).strip(), info, status)
    if tail:
        yield chunk(call, model, {"content": tail})
    yield chunk(call, model, {}, info.get("finish_reason", "stop"))
    yield "data: [DONE]\n\n"


async def stream_chat(answers: Answers, call: Call, sampling: dict) -> GenerationStream:
    cancel = threading.Event()  # set when the client goes away: decoding stops at the next token
    f, pieces = answers.start(call.messages, sampling, cancel)
    # errors (a prompt that is too long) surface as a 4xx before the stream starts; generation runs off the
    # event loop
    first = await run_in_threadpool(next, pieces)
    return GenerationStream(chat_events(answers, call, f, first, pieces, cancel), cancel,
                            media_type="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Request-Id": call.request_id})
