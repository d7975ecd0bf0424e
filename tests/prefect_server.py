"""A real Prefect server for tests, set up the way the README tells a person to: its command blocks, as written, run
from the repository root on a fresh PREFECT_HOME with the server on a free port of 127.0.0.1. Long-running
commands (server, worker) run in their own process groups, killed at teardown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(heading: str) -> list[str]:
    """The commands of the first ```bash block after the README's ``heading``, comments dropped, in order."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(heading):].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def command_kind(command: str) -> str:
    """``.venv/bin/prefect work-pool create ...`` -> ``work-pool``; ``export X=1`` -> ``export``."""
    return command.split()[1] if command.startswith(".venv/bin/prefect") else command.split()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(check, what: str, timeout: float, every: float = 1.0):
    """``check()``'s first truthy value; an exception counts as "not yet"; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if value := check():
                return value
        except Exception:  # noqa: BLE001,S110 - not up yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Background:
    """The README's long-running commands (server, worker), each in its own process group with its log."""

    def __init__(self):
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, command: str, env: dict, log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(command, shell=True, cwd=ROOT, env=env, stdout=open(log, "wb"),  # noqa: SIM115
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((proc, log))
        return proc

    def stop(self) -> None:
        """SIGTERM every group, then SIGKILL what is left after 30 s; the same for every process they started that
        left their group (the process worker starts each flow run in its own session), found before any exits."""
        import psutil

        strays = [child for proc, _ in self.procs for child in _descendants(proc.pid) if _pgid(child) != proc.pid]
        for proc, _ in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for stray in strays:
            with contextlib.suppress(psutil.NoSuchProcess):
                stray.terminate()
        for proc, _ in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            with contextlib.suppress(ProcessLookupError):  # the group, even when its leader (the shell) is gone
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for stray in psutil.wait_procs(strays, timeout=10)[1]:
            with contextlib.suppress(psutil.NoSuchProcess):
                stray.kill()
        psutil.wait_procs(strays, timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for _, log in self.procs)


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _pgid(process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


def fresh_env(home: Path, port: int) -> dict:
    """This process's environment without any PREFECT_ setting, on a fresh PREFECT_HOME and the given port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return env | {"PREFECT_HOME": str(home), "PREFECT_SERVER_API_PORT": str(port),
                  "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2"}


def run_commands(commands: list[str], env: dict, port: int, background: Background, logs: Path) -> None:
    """Run README commands as a person would in one shell: ``export`` sets ``env``; the server and workers start in
    the background (the server waited for until healthy); the rest run to completion. The only change: 4200 -> the
    port (4200 may be taken)."""
    import httpx

    for command in commands:
        command = command.replace("127.0.0.1:4200", f"127.0.0.1:{port}")
        if command.startswith("export "):
            name, value = command.removeprefix("export ").split("=", 1)
            env[name] = value
        elif " server start" in command:
            background.start(command, env, logs / "server.log")
            wait(lambda: httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200, "the Prefect server",
                 300)
        elif " worker start" in command:
            pool = command.split("--pool", 1)[1].split()[0]
            background.start(command, env, logs / f"worker-{pool}.log")
        else:
            done = subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
