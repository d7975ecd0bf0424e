"""Nothing a run starts outlives it: its stage processes, Prefect's temporary API server, a Dask cluster.

Two mechanisms, one for each way a run ends early:

- A signal it can see (SIGINT, SIGTERM): ``stop_on_signals`` routes them through ``signal.set_wakeup_fd`` to a
  watcher thread, which runs the caller's ``on_stop`` at once, whatever the main thread is blocked in (a Prefect
  future, a thread join, a slot). ``end_processes`` then ends every descendant: SIGTERM to each one's process group,
  SIGKILL to what is left after a short grace.
- A SIGKILL, which no handler sees: ``start_reaper`` starts a small process of its own session that watches the run
  (a pidfd: woken by the death itself) and keeps a list of the run's descendants; when the run is gone it ends them
  the same way. Stage processes also watch their parent themselves (tasks.procs).

``guarded`` runs a flow under both (`alphagate run` and `alphagate nightly`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

GRACE_S = 3.0  # SIGTERM, then this long, then SIGKILL
SNAPSHOT_S = 0.5  # how often the reaper refreshes its list of the run's descendants


def descendants(pid: int | None = None, exclude: tuple[int, ...] = ()) -> list:
    """The live descendants of ``pid`` (default: this process), as psutil processes."""
    import psutil

    try:
        found = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in found if p.pid not in exclude]


def end_processes(processes: list, grace: float = GRACE_S) -> None:
    """SIGTERM each process (its whole group when it leads one of its own: a stage process and what it started),
    then SIGKILL whatever still runs after ``grace`` seconds."""
    import psutil

    own_group = os.getpgrp()

    def send(process, sig: int) -> None:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if not process.is_running():  # gone, or its pid reused by another process: leave that one alone
                return
            group = os.getpgid(process.pid)
            if group == process.pid and group != own_group:
                os.killpg(group, sig)
            else:
                process.send_signal(sig)

    for process in processes:
        send(process, signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        send(process, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=grace)


# --- signals -----------------------------------------------------------------------------------------------------

def _stop(on_stop: Callable[[int], None], signum: int) -> None:
    """``on_stop``, then the exit, whatever ``on_stop`` raised on the way (a closed terminal: BrokenPipeError on
    the first message): a signal that was seen always ends the process."""
    try:
        on_stop(signum)
    finally:
        os._exit(128 + signum)


def say(message: str, fd: int = 2) -> None:
    """One line to ``fd`` that can never raise (the reader may be gone)."""
    with contextlib.suppress(OSError):
        os.write(fd, (message.rstrip("\n") + "\n").encode())


def stop_on_signals(on_stop: Callable[[int], None], signals=(signal.SIGINT, signal.SIGTERM)) -> Callable[[], None]:
    """From now on, SIGINT/SIGTERM call ``on_stop(signum)`` in a watcher thread, after which the process exits with
    128 + signum (also when ``on_stop`` raises; a second signal while it runs ends the process at once). Must be
    called from the main thread. Returns a function that restores the old handlers."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    # a Python-level handler must be installed for the wakeup fd to be written; the work is the watcher's
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in signals}
    stopping = threading.Event()
    wanted = {int(s) for s in signals}

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum not in wanted:
                    continue
                if stopping.is_set():  # asked twice: no more cleaning up
                    os._exit(128 + signum)
                stopping.set()
                threading.Thread(target=_stop, args=(on_stop, signum), name="alphagate-stop", daemon=True).start()

    threading.Thread(target=watch, name="alphagate-signal-watcher", daemon=True).start()

    def restore() -> None:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(write_fd)  # the watcher reads end-of-file and returns

    return restore


# --- a guarded run -----------------------------------------------------------------------------------------------

def guarded(out: Path, body: Callable[[], int]) -> int:
    """``body()`` (a flow run writing under ``out``) so that nothing it starts outlives it. SIGINT/SIGTERM, at any
    stage (a slot wait, a training, an evaluation), end the run within seconds: its stage processes and Prefect's
    temporary server are ended, staging folders removed, and the exit status is 130/143 with a line saying how to
    resume. A SIGKILL, which nothing here sees, is the reaper's: it ends what the run had started."""
    from tasks.layout import sweep_staging  # now: a signal's handler should not import

    reaper = start_reaper()
    restore = stop_on_signals(lambda signum: _stop_run(Path(out), signum, reaper.pid, sweep_staging))
    try:
        return body()
    finally:
        restore()
        reaper.terminate()  # a normal end: Prefect stops its own server; nothing left for the reaper


def _stop_run(out: Path, signum: int, reaper: int, sweep_staging: Callable[..., object]) -> None:
    """A guarded run's ``on_stop`` (the exit with 128 + signum follows, whatever happens here)."""
    name = signal.Signals(signum).name
    say(f"alphagate: {name} received: stopping the run's processes ...")
    with contextlib.suppress(Exception):
        end_processes(descendants(exclude=(reaper,)))
    with contextlib.suppress(Exception):
        # stage outputs are renamed into place only when complete: what was being written goes, the rest stays
        sweep_staging(out, pid=os.getpid())
    # the flow's threads still run until the exit: what they would log now (a stage "failing" because its process was
    # ended) must not come after the line that says what to do
    terminal = 2
    with contextlib.suppress(OSError):
        terminal = os.dup(2)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
    say(f"alphagate: stopped ({name}); finished stages are kept under {out / 'store'}. Rerun the same command to "
        "resume.", terminal)


# --- the reaper --------------------------------------------------------------------------------------------------

_PROJECT = str(Path(__file__).resolve().parents[1])


def start_reaper() -> subprocess.Popen:
    """A process of its own session that ends this process's descendants when this process is gone (SIGKILL
    included). It ends by itself then."""
    code = (f"import sys; sys.path.insert(0, {_PROJECT!r}); from tasks.guard import reap; "
            "reap(int(sys.argv[1]))")
    return subprocess.Popen([sys.executable, "-P", "-c", code, str(os.getpid())], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def reap(parent: int, interval: float = SNAPSHOT_S) -> None:
    """Watch ``parent``; once it has exited, end every descendant it had (as last seen)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the run's terminal is the run's to handle
    try:
        watched = os.pidfd_open(parent)
    except ProcessLookupError:
        return
    known: dict[int, object] = {}
    me = os.getpid()
    while True:
        # merged, never replaced: a list taken just after the parent died would be empty (its children re-parented)
        known = {pid: p for pid, p in known.items() if p.is_running()}
        for process in descendants(parent, exclude=(me,)):
            known.setdefault(process.pid, process)  # psutil keeps its creation time: a reused pid is not it
        ready, _, _ = select.select([watched], [], [], interval)
        if ready:
            break
    end_processes([p for p in known.values() if p.is_running()])
