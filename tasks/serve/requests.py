"""What `alphagate serve` accepts: its settings (checked before the model loads: the model file, the bind address
and its API key, the port), the audit log it appends to, and the reading of a request body (a bounded JSON object
naming the served model, if any) into messages and sampling settings, each refusal a 4xx that says what was
expected."""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass
class ServeSettings:
    gguf: Path
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    audit_log: Path = Path("runs/serve/audit.jsonl")
    audit_include_text: bool = False
    max_body_bytes: int = 64 * 1024
    max_tokens_limit: int = 1024
    default_max_tokens: int = 256
    max_messages: int = 64
    n_ctx: int = 4096
    prefill_think: bool = False  # start the assistant turn inside the reasoning section (thinking models)
    think_tags: tuple[str, str] = ("<think>", "</think>")
    final_tags: tuple[str, str] = ("<final>", "</final>")
    model_name: str | None = None
    threads: int | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(s: ServeSettings) -> None:
    if not Path(s.gguf).is_file():
        raise FileNotFoundError(f"--gguf {s.gguf} does not exist; pass a GGUF file (e.g. an export's BF16 file).")
    if not is_loopback(s.host) and not s.api_key:
        raise ValueError(f"Refusing to bind {s.host}: off loopback an API key is required. Set ALPHAGATE_API_KEY "
                         "(or --api-key-env NAME) or bind 127.0.0.1.")
    if isinstance(s.port, bool) or not isinstance(s.port, int) or not 1 <= s.port <= 65535:
        raise ValueError(f"--port {s.port}: expected a port number 1-65535. Choose another --port.")
    if not 1 <= s.default_max_tokens <= s.max_tokens_limit:
        raise ValueError(f"default max_tokens {s.default_max_tokens} must be within 1..{s.max_tokens_limit}.")


def check_port(host: str, port: int) -> None:
    """Before the model loads: ``port`` can be bound on ``host`` (not taken, not privileged for this user)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no block
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or "
                                     "--host, or stop what listens there.") from None


class AuditLog:
    """Append-only JSONL; one write per record, flushed and fsynced, under a lock."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


async def read_body(request, max_bytes: int) -> dict:
    """The request's JSON object, read up to ``max_bytes`` (a body without a content-length is bounded too)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise RequestError(413, f"The request body is larger than {max_bytes} bytes.")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"The body is not valid JSON ({exc.__class__.__name__} at byte "
                                f"{getattr(exc, 'pos', '?')}); send a JSON object.") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"The body must be a JSON object; found {type(body).__name__}.")
    return body


def check_model(body: dict, model_name: str, file_name: str) -> None:
    """A request may name the served model by its name or its GGUF's file name, or not at all."""
    model = body.get("model")
    if model is not None and model not in (model_name, file_name):
        raise RequestError(404, f"The model {model!r} does not exist on this server; it serves "
                                f"{model_name!r} (see /v1/models).", "model", "model_not_found")


def _text_content(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and
                                         isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise RequestError(400, f"messages[{index}].content must be a string or a list of text parts "
                            f"({{'type': 'text', 'text': ...}}); found {type(content).__name__}.",
                       f"messages[{index}].content")


def parse_messages(body: dict, settings: ServeSettings) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects.", "messages")
    if len(messages) > settings.max_messages:
        raise RequestError(400, f"At most {settings.max_messages} messages per request; found {len(messages)}.",
                           "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise RequestError(400, f"messages[{i}] must be an object with role 'system', 'user' or 'assistant'; "
                                    f"found {m.get('role') if isinstance(m, dict) else type(m).__name__!r}.",
                               f"messages[{i}].role")
        out.append({"role": m["role"], "content": _text_content(m.get("content"), i)})
    return out


def parse_sampling(body: dict, settings: ServeSettings) -> dict[str, Any]:
    def number(name, lo, hi, default, kind=float):
        value = body.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise RequestError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}; "
                                    f"found {value!r}.", name)
        if not lo <= value <= hi:
            raise RequestError(400, f"'{name}' must be within [{lo}, {hi}]; found {value}.", name)
        return kind(value)

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and isinstance(max_tokens, int) and max_tokens > settings.max_tokens_limit:
        raise RequestError(400, f"max_tokens {max_tokens} exceeds this server's limit of "
                                f"{settings.max_tokens_limit}.", "max_tokens")
    body = {**body, "max_tokens": max_tokens}
    if body.get("n", 1) != 1:
        raise RequestError(400, "Only n = 1 is supported.", "n")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4 and
                                                           all(isinstance(s, str) for s in stop))):
        raise RequestError(400, "'stop' must be a string or a list of at most 4 strings.", "stop")
    if not isinstance(body.get("stream", False), bool):
        raise RequestError(400, "'stream' must be true or false.", "stream")
    return {"max_tokens": number("max_tokens", 1, settings.max_tokens_limit, settings.default_max_tokens, int),
            "temperature": number("temperature", 0.0, 2.0, 0.0), "top_p": number("top_p", 0.0, 1.0, 1.0),
            "seed": number("seed", -(2**31), 2**31 - 1, None, int) if body.get("seed") is not None else None,
            "stop": [stop] if isinstance(stop, str) else list(stop or [])}
