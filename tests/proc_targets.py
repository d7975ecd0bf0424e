"""Targets that tests/test_procs.py runs in child processes (tasks.procs.run_in_process imports them by name)."""

from __future__ import annotations

import os
import signal
import sys
import time


def echo(value, lines: int = 0):
    for i in range(lines):
        print(f"line {i}")
    print("progress 10%\rprogress 100%", file=sys.stderr)
    return {"value": value, "pid": os.getpid()}


def fail(message: str):
    print("about to fail")
    raise ValueError(message)


def killed():
    print("allocating a lot")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def sleep(seconds: float, marker: str | None = None):
    if marker:
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def torch_threads():
    import torch

    return torch.get_num_threads()


def with_progress(steps: int):
    from tasks.progress import Progress

    with Progress(steps, "child steps", min_interval=0.0) as progress:
        for _ in range(steps):
            progress.update()
    return steps
