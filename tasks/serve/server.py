"""Serve a chosen GGUF: OpenAI-compatible /v1/chat/completions (streaming and not) and /think, both returning
only the final section of a thinking-format answer. The reasoning never leaves the process.

- The final section is found by one streaming filter for both modes (tasks/final_section.py, the extractor
  evaluation and DPO use too), so a streamed answer is exactly the non-streamed one. When the rendered prompt ends
  inside an open reasoning section (the chat template or --prefill-think appended <think>), the filter starts
  inside it. Generation stops once the final section is closed. Reasoning text is only hashed (SHA-256) and
  counted, for the audit log.
- A client that disconnects, streaming or not, cancels its generation at the next token (the model is free for the
  next request at once); its audit line has status and finish reason "client_disconnected".
- A request for another "model" than the one served gets OpenAI's 404 (code model_not_found); every error, the
  router's 404/405 included, has OpenAI's shape {"error": {message, type, param, code}}.
- The port is checked, and the audit log locked (one server per log, tasks/outdir.py), before the model loads.
- The audit log is append-only JSONL: time, request id, endpoint, model sha256, reasoning SHA-256 and length,
  final-answer length, token counts, finish reason; prompt and reasoning text only when configured.
- Loopback by default; any other bind address needs an API key (Bearer). Request bodies, messages and
  max_tokens are bounded; malformed requests get a 4xx with a message that says what was expected.
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the (string) annotations from these globals

from tasks.final_section import FinalSectionFilter, opens_reasoning
from tasks.serve.requests import (  # re-exported: callers import the server's names from here
    AuditLog,
    RequestError,
    ServeSettings,
    check_port,
    check_settings,
    parse_messages,
    parse_sampling,
)

log = logging.getLogger("alphagate.serve")
__all__ = ["AuditLog", "Generator", "RequestError", "ServeSettings", "check_port", "check_settings", "create_app",
           "parse_messages", "parse_sampling", "serve"]


class Generator:
    """One llama.cpp model, one request at a time (llama.cpp contexts are not thread-safe)."""

    def __init__(self, settings: ServeSettings):
        from tasks.config import cpu_cores
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


def create_app(settings: ServeSettings, generator: Generator | None = None):
    import anyio
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    check_settings(settings)
    gen = generator or Generator(settings)

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
    audit = AuditLog(settings.audit_log)
    app = FastAPI(title="alpha-gate serve", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
              code: str | int | None = None):
        """OpenAI's error shape, for every error this server answers (ours, and the router's 404/405)."""
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code or status}},
                            status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        what = {404: f"No such endpoint {request.url.path}; this server has /v1/chat/completions, /v1/models, "
                     "/think and /health.",
                405: f"{request.method} is not allowed on {request.url.path}."}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, what, None, code={404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code))

    def check_model(body: dict) -> None:
        model = body.get("model")
        if model is not None and model not in (gen.model_name, Path(settings.gguf).name):
            raise RequestError(404, f"The model {model!r} does not exist on this server; it serves "
                                    f"{gen.model_name!r} (see /v1/models).", "model", "model_not_found")

    async def watched(request: Request, messages, sampling):
        """``run`` off the event loop while the client is watched: a client that goes away cancels the generation
        at its next token (the model is free at once), and the finish reason says client_disconnected."""
        cancel = threading.Event()

        async def watch():
            # a waiting receive, not request.is_disconnected(): behind the guard middleware that poll never lets the
            # server read the client's close, so it never saw one
            while (await request.receive())["type"] != "http.disconnect":
                pass
            cancel.set()

        outcome: dict[str, Any] = {}
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            try:
                outcome["result"] = await run_in_threadpool(run, messages, sampling, cancel)
            except Exception as exc:  # noqa: BLE001 - raised below, outside the group (no ExceptionGroup wrapper)
                outcome["error"] = exc
            group.cancel_scope.cancel()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if settings.api_key:
            auth = request.headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
                return error(401, "Missing or wrong API key: send 'Authorization: Bearer <key>'.", None,
                             "authentication_error")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return error(413, f"The request body is larger than {settings.max_body_bytes} bytes.")
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - never a stack trace or generated text in a response
            log.error("request failed: %s", type(exc).__name__)
            return error(500, "Internal error while generating; see the server log.", None, "server_error")

    async def read_body(request: Request) -> dict:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > settings.max_body_bytes:
                raise RequestError(413, f"The request body is larger than {settings.max_body_bytes} bytes.")
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"The body is not valid JSON ({exc.__class__.__name__} at byte "
                                    f"{getattr(exc, 'pos', '?')}); send a JSON object.") from None
        if not isinstance(body, dict):
            raise RequestError(400, f"The body must be a JSON object; found {type(body).__name__}.")
        return body

    def record(request_id: str, endpoint: str, messages, f: FinalSectionFilter, answer: str, info: dict,
               started: float, status: str) -> None:
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "request_id": request_id,
                 "endpoint": endpoint, "model_sha256": gen.model_sha256, "reasoning_sha256": f.reasoning_sha256,
                 "reasoning_chars": f.reasoning_chars, "final_chars": len(answer), "status": status,
                 "finish_reason": info.get("finish_reason"), "usage": info.get("usage"),
                 "seconds": round(time.perf_counter() - started, 4)}
        if settings.audit_include_text:
            entry["prompt"] = messages
        audit.write(entry)

    def start(messages, sampling, cancel: threading.Event | None = None):
        """(the filter, the generation): the filter starts inside the reasoning section when the prompt opened
        it; decoding stops once the final section is closed, or when ``cancel`` is set."""
        f = FinalSectionFilter(settings.think_tags, settings.final_tags, opened=gen.opens_reasoning(messages))

        def until() -> str | None:
            if cancel is not None and cancel.is_set():
                return "client_disconnected"
            return "stop" if f.done else None

        return f, gen.stream(messages, sampling, until)

    def run(messages, sampling, cancel: threading.Event | None = None) -> tuple[str, FinalSectionFilter, dict]:
        f, pieces = start(messages, sampling, cancel)
        shown, info = [], {}
        for piece, meta in pieces:
            shown.append(f.feed(piece))
            info.update(meta)
        shown.append(f.finish())
        return "".join(shown).strip(), f, info

    def status_of(info: dict) -> str:
        return "client_disconnected" if info.get("finish_reason") == "client_disconnected" else "ok"

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.message, exc.param, code=exc.code)

    @app.get("/health")
    def health():
        return {"status": "ok", "model": gen.model_name, "model_sha256": gen.model_sha256}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": gen.model_name, "object": "model", "owned_by": "alphagate"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_body(request)
        check_model(body)
        messages, sampling = parse_messages(body, settings), parse_sampling(body, settings)
        request_id, created, started = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), time.perf_counter()
        if not body.get("stream"):
            answer, f, info = await watched(request, messages, sampling)
            record(request_id, "/v1/chat/completions", messages, f, answer, info, started, status_of(info))
            return {"id": request_id, "object": "chat.completion", "created": created, "model": gen.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                 "finish_reason": info["finish_reason"]}], "usage": info["usage"]}
        cancel = threading.Event()  # set when the client goes away: decoding stops at the next token
        f, pieces = start(messages, sampling, cancel)
        # errors (a prompt that is too long) surface as a 4xx before the stream starts; generation runs off the
        # event loop
        first = await run_in_threadpool(next, pieces)

        def chunk(delta: dict, finish=None) -> str:
            return "data: " + json.dumps({"id": request_id, "object": "chat.completion.chunk", "created": created,
                                          "model": gen.model_name, "choices": [{"index": 0, "delta": delta,
                                                                                "finish_reason": finish}]},
                                         ensure_ascii=False) + "\n\n"

        def events():
            info, sent, status, tail = {}, [], "ok", ""
            yield chunk({"role": "assistant", "content": ""})
            try:
                for piece, meta in itertools.chain([first], pieces):
                    info.update(meta)
                    visible = f.feed(piece)
                    if visible:
                        sent.append(visible)
                        yield chunk({"content": visible})
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
                record(request_id, "/v1/chat/completions", messages, f, "".join(sent).strip(), info, started,
                       status)
            if tail:
                yield chunk({"content": tail})
            yield chunk({}, info.get("finish_reason", "stop"))
            yield "data: [DONE]\n\n"

        return GenerationStream(events(), cancel, media_type="text/event-stream",
                                headers={"Cache-Control": "no-cache", "X-Request-Id": request_id})

    @app.post("/think")
    async def think(request: Request):
        """{"prompt": "..."} or {"messages": [...]} (+ max_tokens, temperature, top_p, seed, stop) ->
        {"id", "answer", "finish_reason", "usage", "reasoning_sha256", "reasoning_chars"}."""
        body = await read_body(request)
        if body.get("stream"):
            raise RequestError(400, "/think does not stream; use /v1/chat/completions with stream: true.", "stream")
        if "prompt" in body:
            if not isinstance(body["prompt"], str) or not body["prompt"].strip():
                raise RequestError(400, "'prompt' must be a non-empty string.", "prompt")
            body = {**body, "messages": [{"role": "user", "content": body.pop("prompt")}]}
        check_model(body)
        messages, sampling = parse_messages(body, settings), parse_sampling(body, settings)
        request_id, started = f"think-{uuid.uuid4().hex}", time.perf_counter()
        answer, f, info = await watched(request, messages, sampling)
        record(request_id, "/think", messages, f, answer, info, started, status_of(info))
        return {"id": request_id, "model": gen.model_name, "answer": answer, "finish_reason": info["finish_reason"],
                "usage": info["usage"], "reasoning_sha256": f.reasoning_sha256, "reasoning_chars": f.reasoning_chars}

    app.state.generator = gen
    return app


def serve(settings: ServeSettings) -> None:
    """Every setting and the port are checked, and the audit log locked (one server per log), before the model
    loads."""
    import uvicorn

    from tasks.outdir import exclusive
    from tasks.owned import check_audit_log

    check_settings(settings)
    check_port(settings.host, settings.port)
    with exclusive(settings.audit_log, "serve", "--audit-log", file=True):
        check_audit_log(Path(settings.audit_log))
        app = create_app(settings)
        log.warning("serving %s on http://%s:%d (audit log %s)", settings.gguf, settings.host, settings.port,
                    settings.audit_log)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
