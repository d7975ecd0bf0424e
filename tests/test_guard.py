"""Nothing a process starts outlives it (tasks/guard.py): signals obeyed whatever the main thread is blocked in, and
a SIGKILLed process's children ended by its reaper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]

# a process that starts a grandchild-holding child (a session of its own, like a stage process) and a plain child
# (like Prefect's server), then blocks its main thread in a kernel lock wait, where Python runs no signal handler
_SCRIPT = """
import fcntl, os, subprocess, sys, threading
from tasks.guard import descendants, end_processes, start_reaper, stop_on_signals
reaper = start_reaper()
def on_stop(signum):
    end_processes(descendants(exclude=(reaper.pid,)))
    print('stopped', signum, flush=True)
    os._exit(128 + signum)
stop_on_signals(on_stop)
stage = subprocess.Popen(['sh', '-c', 'sleep 600 & sleep 600'], start_new_session=True)
server = subprocess.Popen(['sleep', '600'])
lock = sys.argv[1]
held = os.open(lock, os.O_RDWR | os.O_CREAT)
print('pids', reaper.pid, stage.pid, server.pid, flush=True)
fd = os.open(lock, os.O_RDWR)
fcntl.flock(held, fcntl.LOCK_EX)
fcntl.flock(fd, fcntl.LOCK_EX)  # another description of the same file: waits forever, in the kernel
"""


def _start(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(tmp_path / "lock")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    words = proc.stdout.readline().split()
    assert words[0] == "pids", words
    reaper, stage, server = (int(w) for w in words[1:])
    time.sleep(0.3)
    family = [psutil.Process(pid) for pid in (stage, server)] + psutil.Process(stage).children(recursive=True)
    assert len(family) == 4  # the stage process's own child (the second sleep) included
    return proc, psutil.Process(reaper), family


def _all_gone(processes, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_process_and_everything_it_started_while_its_main_thread_waits_in_the_kernel(tmp_path,
                                                                                                          sig):
    proc, reaper, family = _start(tmp_path)
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 128 + sig and f"stopped {int(sig)}" in out
    assert _all_gone(family + [reaper], 10 - (time.monotonic() - sent))
    assert time.monotonic() - sent < 10


def test_after_a_sigkill_the_reaper_ends_what_the_process_started(tmp_path):
    proc, reaper, family = _start(tmp_path)
    killed = time.monotonic()
    proc.kill()
    proc.wait()
    assert _all_gone(family, 10), [(p.pid, p.cmdline()) for p in family if p.is_running()]
    assert _all_gone([reaper], 10 - (time.monotonic() - killed))  # and then it ends by itself


def test_end_processes_spares_a_reused_pid(tmp_path):
    """A process that ended is not signalled again, even if its pid now belongs to someone else: psutil compares
    creation times."""
    child = subprocess.Popen(["sleep", "600"])
    process = psutil.Process(child.pid)
    child.kill()
    child.wait()
    from tasks.guard import end_processes

    end_processes([process], grace=0.5)  # no error, nothing else killed
    assert not process.is_running()


def test_a_signal_ends_the_process_even_when_stopping_fails_on_a_terminal_that_is_gone(tmp_path):
    """A run whose terminal (its stdout/stderr pipe) has gone: the first message of the stop raises BrokenPipeError.
    A naive stop dies with that exception in its thread and the process runs on, ignoring every later SIGTERM."""
    script = ("import os, sys, time\nfrom tasks.guard import stop_on_signals\n"
              "def on_stop(signum):\n    print('stopping', flush=True)\n    raise RuntimeError('never reached')\n"
              "stop_on_signals(on_stop)\nprint('ready', flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.stdout.close()  # the reader is gone: the next write raises BrokenPipeError
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
