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
import logging
import time
import uuid
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the (string) annotations from these globals
from fastapi.responses import JSONResponse

from tasks.serve.answers import Answers, Call, status_of
from tasks.serve.generator import Generator  # re-exported; create_app looks it up here (tests replace it)
from tasks.serve.requests import (  # re-exported: callers import the server's names from here
    AuditLog,
    RequestError,
    ServeSettings,
    check_model,
    check_port,
    check_settings,
    parse_messages,
    parse_sampling,
    read_body,
)
from tasks.serve.streaming import stream_chat

log = logging.getLogger("alphagate.serve")
__all__ = ["AuditLog", "Generator", "RequestError", "ServeSettings", "check_port", "check_settings", "create_app",
           "parse_messages", "parse_sampling", "serve"]


def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
          code: str | int | None = None):
    """OpenAI's error shape, for every error this server answers (ours, and the router's 404/405)."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code or status}},
                        status_code=status)


def create_app(settings: ServeSettings, generator: Generator | None = None):
    from fastapi import FastAPI

    check_settings(settings)
    gen = generator or Generator(settings)
    answers = Answers(settings, gen, AuditLog(settings.audit_log))
    app = FastAPI(title="alpha-gate serve", docs_url=None, redoc_url=None, openapi_url=None)
    _add_error_handlers(app)
    _add_guard(app, settings)
    _add_routes(app, settings, answers)
    app.state.generator = gen
    return app


def _add_error_handlers(app) -> None:
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        what = {404: f"No such endpoint {request.url.path}; this server has /v1/chat/completions, /v1/models, "
                     "/think and /health.",
                405: f"{request.method} is not allowed on {request.url.path}."}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, what, None, code={404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code))

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.message, exc.param, code=exc.code)


def _add_guard(app, settings: ServeSettings) -> None:
    """Before any route: the API key (when one is set), the declared body size; no stack trace ever leaves."""

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


def _add_routes(app, settings: ServeSettings, answers: Answers) -> None:
    gen = answers.gen

    async def read(request: Request, think: bool = False) -> tuple[dict, list, dict]:
        """The body, its messages and sampling settings; a model it names must be the one served."""
        body = await read_body(request, settings.max_body_bytes)
        if think:
            body = _think_body(body)
        check_model(body, gen.model_name, Path(settings.gguf).name)
        return body, parse_messages(body, settings), parse_sampling(body, settings)

    @app.get("/health")
    def health():
        return {"status": "ok", "model": gen.model_name, "model_sha256": gen.model_sha256}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": gen.model_name, "object": "model", "owned_by": "alphagate"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body, messages, sampling = await read(request)
        call = Call(f"chatcmpl-{uuid.uuid4().hex}", "/v1/chat/completions", messages, time.perf_counter(),
                    int(time.time()))
        if body.get("stream"):
            return await stream_chat(answers, call, sampling)
        answer, f, info = await answers.watched(request, messages, sampling)
        answers.record(call, f, answer, info, status_of(info))
        return {"id": call.request_id, "object": "chat.completion", "created": call.created, "model": gen.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                             "finish_reason": info["finish_reason"]}], "usage": info["usage"]}

    @app.post("/think")
    async def think(request: Request):
        """{"prompt": "..."} or {"messages": [...]} (+ max_tokens, temperature, top_p, seed, stop) ->
        {"id", "answer", "finish_reason", "usage", "reasoning_sha256", "reasoning_chars"}."""
        _, messages, sampling = await read(request, think=True)
        call = Call(f"think-{uuid.uuid4().hex}", "/think", messages, time.perf_counter())
        answer, f, info = await answers.watched(request, messages, sampling)
        answers.record(call, f, answer, info, status_of(info))
        return {"id": call.request_id, "model": gen.model_name, "answer": answer,
                "finish_reason": info["finish_reason"], "usage": info["usage"],
                "reasoning_sha256": f.reasoning_sha256, "reasoning_chars": f.reasoning_chars}


def _think_body(body: dict) -> dict:
    """/think's body as a chat request: it does not stream, and a "prompt" is one user message."""
    if body.get("stream"):
        raise RequestError(400, "/think does not stream; use /v1/chat/completions with stream: true.", "stream")
    if "prompt" in body:
        if not isinstance(body["prompt"], str) or not body["prompt"].strip():
            raise RequestError(400, "'prompt' must be a non-empty string.", "prompt")
        body = {**body, "messages": [{"role": "user", "content": body.pop("prompt")}]}
    return body


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
