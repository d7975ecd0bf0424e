"""Progress of a long loop (training steps, suite items): a Prefect progress artifact when the loop runs
inside a Prefect task run, a console progress bar (tqdm, on a terminal) otherwise.

Prefect is never imported here: inside a task run it is already loaded, and outside one there is nothing
to report to. Artifact updates are throttled (at most one per ``min_interval`` seconds, plus the last),
and a failing update never fails the loop it reports on.
"""

from __future__ import annotations

import logging
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


class Progress:
    def __init__(self, total: int, description: str, *, min_interval: float = 2.0, console: bool | None = None):
        self.total, self.done, self.description = max(int(total), 1), 0, description
        self.min_interval, self._last = min_interval, 0.0
        self._artifact = self._bar = None
        if _task_run_active():
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
        if self._artifact is not None:
            now = time.monotonic()
            if self.done >= self.total or now - self._last >= self.min_interval:
                self._last = now
                self._push()

    def iterate(self, items):
        """Yield each item; count it done when the loop body comes back for the next one."""
        for item in items:
            yield item
            self.update()

    def _push(self) -> None:
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
