"""Prefect's temporary API server for one `alphagate run` / `alphagate nightly`, started at once.

Left to itself, Prefect starts its temporary server when the flow begins: it first imports the whole server in this
process (4 s on a 2-core machine) only to start it as a subprocess that imports it again and opens the database
(another 5 s), all before the first task. Started here, at the command's first line, the subprocess boots while this
process imports the flow and checks the run, and this process never imports the server: a cached rerun takes
seconds less. It is the same command Prefect runs (uvicorn with ``prefect.server.api.server:create_app``, the UI
off, the same settings), on 127.0.0.1, and the flow is pointed at it with PREFECT_API_URL for its duration.

Nothing changes where an API URL is already set (a real server), and any failure to start leaves Prefect to start its
own as it would have. The server is this process's child: stopped at the end, ended with it on a signal, and ended
by the reaper after a SIGKILL (tasks.guard).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

STOP_WAIT_S = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - our own loopback server
            return response.status == 200
    except OSError:
        return False


def server_log() -> Path:
    """Where the temporary server's own output goes (appended, one header line per start)."""
    from prefect.settings import PREFECT_HOME

    home = Path(PREFECT_HOME.value()).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home / "alphagate-temporary-server.log"


class TemporaryServer:
    """``start()`` in the background, then ``with server.api(): flow(...)``; ``stop()`` at the end."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._start, name="prefect-server-start", daemon=True)

    def start(self) -> TemporaryServer:
        self._thread.start()
        return self

    def _start(self) -> None:
        with contextlib.suppress(Exception):  # any failure: Prefect starts its own, as it would have
            import prefect
            from prefect.settings import (
                PREFECT_API_URL,
                PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
                get_current_settings,
            )

            if PREFECT_API_URL.value():
                return
            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1",
                   **get_current_settings().to_environment_variables(exclude_unset=True)}
            deadline = time.monotonic() + float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
            while time.monotonic() < deadline:
                port = _free_port()
                # its output goes to a log in PREFECT_HOME, not the terminal: a Ctrl-C reaches the server too (one
                # process group), and its shutdown can log tracebacks of cancelled database flushes after the run's
                # own "stopped ... Rerun the same command to resume." line
                with open(server_log(), "a", encoding="utf-8") as log:
                    log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} alphagate run (pid {os.getpid()}): "
                              f"port {port}\n")
                    log.flush()
                    self.process = subprocess.Popen(
                        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent),
                         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
                         str(port), "--log-level", "error", "--lifespan", "on"], env=env, stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT)
                atexit.register(self.stop)
                url = f"http://127.0.0.1:{port}/api"
                while self.process.poll() is None and time.monotonic() < deadline:
                    if _healthy(url):
                        self.url = url
                        return
                    time.sleep(0.1)
                self.stop()  # exited (3: its port was taken meanwhile) or never answered: another port, or Prefect's

    @contextlib.contextmanager
    def api(self) -> Iterator[None]:
        """Wait for the server; while in the block, Prefect's client talks to it."""
        self._thread.join()
        if self.url is None:
            yield
            return
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}):
            yield

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
