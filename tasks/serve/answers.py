"""One request's answer: a generation read through the final-section filter (tasks/final_section.py), stopped once
the final section is closed or the client is gone, and its line in the audit log."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks.final_section import FinalSectionFilter
from tasks.serve.requests import AuditLog, ServeSettings


@dataclass(frozen=True)
class Call:
    """One request, as its response and its audit line name it."""

    request_id: str
    endpoint: str
    messages: list[dict[str, str]]
    started: float  # time.perf_counter() when it arrived
    created: int = 0  # Unix time, OpenAI's "created"


def status_of(info: dict) -> str:
    return "client_disconnected" if info.get("finish_reason") == "client_disconnected" else "ok"


class Answers:
    """The served model's answers (``gen``: a tasks.serve.generator.Generator), each recorded in ``audit``."""

    def __init__(self, settings: ServeSettings, gen, audit: AuditLog):
        self.settings, self.gen, self.audit = settings, gen, audit

    def start(self, messages, sampling, cancel: threading.Event | None = None):
        """(the filter, the generation): the filter starts inside the reasoning section when the prompt opened
        it; decoding stops once the final section is closed, or when ``cancel`` is set."""
        s = self.settings
        f = FinalSectionFilter(s.think_tags, s.final_tags, opened=self.gen.opens_reasoning(messages))

        def until() -> str | None:
            if cancel is not None and cancel.is_set():
                return "client_disconnected"
            return "stop" if f.done else None

        return f, self.gen.stream(messages, sampling, until)

    def run(self, messages, sampling, cancel: threading.Event | None = None) -> tuple[str, FinalSectionFilter, dict]:
        f, pieces = self.start(messages, sampling, cancel)
        shown, info = [], {}
        for piece, meta in pieces:
            shown.append(f.feed(piece))
            info.update(meta)
        shown.append(f.finish())
        return "".join(shown).strip(), f, info

    async def watched(self, request, messages, sampling):
        """``run`` off the event loop while the client is watched: a client that goes away cancels the generation
        at its next token (the model is free at once), and the finish reason says client_disconnected."""
        import anyio
        from starlette.concurrency import run_in_threadpool

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
                outcome["result"] = await run_in_threadpool(self.run, messages, sampling, cancel)
            except Exception as exc:  # noqa: BLE001 - raised below, outside the group (no ExceptionGroup wrapper)
                outcome["error"] = exc
            group.cancel_scope.cancel()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    def record(self, call: Call, f: FinalSectionFilter, answer: str, info: dict, status: str) -> None:
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "request_id": call.request_id,
                 "endpoint": call.endpoint, "model_sha256": self.gen.model_sha256,
                 "reasoning_sha256": f.reasoning_sha256, "reasoning_chars": f.reasoning_chars,
                 "final_chars": len(answer), "status": status, "finish_reason": info.get("finish_reason"),
                 "usage": info.get("usage"), "seconds": round(time.perf_counter() - call.started, 4)}
        if self.settings.audit_include_text:
            entry["prompt"] = call.messages
        self.audit.write(entry)
