"""Progress of a long loop (training steps, suite items): a Prefect progress artifact when the loop runs
inside a Prefect task run, a console progress bar (tqdm, on a terminal) otherwise.

Prefect is never imported here: inside a task run it is already loaded, and outside one there is nothing
to report to. Artifact updates are throttled (at most one per ``min_interval`` seconds, plus the last),
and a failing update never fails the loop it reports on.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

log = logging.getLogger(__name__)


def _task_run_active() -> bool:
    if "prefect" not in sys.modules:
        return False
    try:
        from prefect.context import TaskRunContext

        return TaskRunContext.get() is not None
    except Exception:  # noqa: BLE001 - a broken context means: no artifact
        return False


# In a stage's child process (tasks.procs), progress goes to the parent as lines on stdout that start with this
# marker; the parent turns them into its own Progress, in the task run that started the child.
RELAY_ENV = "ALPHAGATE_PROGRESS_RELAY"
RELAY_MARK = "\x1ealphagate-progress "
_relay_ids = iter(range(1, 1 << 62))


def relay_line(record: dict) -> str:
    return RELAY_MARK + json.dumps(record)


def parse_relay(line: str) -> dict | None:
    """The record of a relayed progress line, or None for any other line."""
    if not line.startswith(RELAY_MARK):
        return None
    try:
        return json.loads(line[len(RELAY_MARK):])
    except ValueError:
        return None


class Progress:
    def __init__(self, total: int, description: str, *, min_interval: float = 2.0, console: bool | None = None):
        self.total, self.done, self.description = max(int(total), 1), 0, description
        self.min_interval, self._last = min_interval, 0.0
        self._artifact = self._bar = self._relay = None
        if os.environ.get(RELAY_ENV) and not _task_run_active():  # a child process whose parent reports it
            self._relay = next(_relay_ids)
            self._send()
        elif _task_run_active():
            try:
                from prefect.artifacts import create_progress_artifact

                self._artifact = create_progress_artifact(0.0, description=description)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not create a progress artifact for %s: %s", description, exc)
        elif console is not False:
            from tqdm.auto import tqdm

            # console=None: a bar on a terminal only (no noise in logs and test output)
            self._bar = tqdm(total=self.total, desc=description, disable=None if console is None else False,
                             file=sys.stderr, leave=False)

    @property
    def artifact_id(self):
        return self._artifact

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        if self._bar is not None:
            self._bar.update(n)
        if self._artifact is not None or self._relay is not None:
            now = time.monotonic()
            if self.done >= self.total or now - self._last >= self.min_interval:
                self._last = now
                self._push()

    def iterate(self, items):
        """Yield each item; count it done when the loop body comes back for the next one."""
        for item in items:
            yield item
            self.update()

    def _send(self) -> None:
        print(relay_line({"id": self._relay, "total": self.total, "done": self.done,
                          "description": self.description}), flush=True)

    def _push(self) -> None:
        if self._relay is not None:
            self._send()
            return
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact, 100.0 * self.done / self.total,
                                     description=f"{self.description}: {self.done}/{self.total}")
        except Exception as exc:  # noqa: BLE001
            log.warning("could not update the progress artifact for %s: %s", self.description, exc)
            self._artifact = None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
