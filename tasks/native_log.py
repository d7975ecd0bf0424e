"""llama.cpp's own log (model loads, quantization, the GGUF converter) goes to a file per task, not the console.

llama.cpp and ggml report through one process-wide callback. llama-cpp-python installs one that prints to stderr
and reads ggml's levels with an outdated table (it takes WARN for ERROR), so a quantization printed a warning per
tensor, ~1,100 lines of ``make demo``. This module replaces that callback with one that writes each message to the
file of the ``native_log`` block active *in the calling thread* (tasks run in threads side by side, each with its
own file). Outside any block (a thread llama.cpp started itself, a direct library call) only ERROR messages are
passed on, to the Python logger ``llama.cpp``, which is what llama-cpp-python means to do with ``verbose=False``.

Flow tasks wrap their bodies in ``task_native_log`` (flows/stages.py): the file is
``<out>/logs/llama.cpp/<task run name>.log``, its path is written once to the task's log in the Prefect UI, and to
the console only when the task fails (where the details of a failed load are).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("llama.cpp")
_here = logging.getLogger(__name__)

# enum ggml_log_level in the ggml.h that llama-cpp-python ships (include/ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3,
# ERROR 4, CONT 5 (continues the previous message)
GGML_LEVELS = {0: logging.CRITICAL, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
GGML_CONT = 5

_local = threading.local()
_install_lock = threading.Lock()
_installed: set[str] = set()
_callback = None  # the ctypes function object; kept alive for as long as the process (llama.cpp holds a pointer)


def _sinks() -> list[IO[str]]:
    if not hasattr(_local, "sinks"):
        _local.sinks = []
    return _local.sinks


def _on_message(level: int, text: bytes, user_data: Any) -> None:
    message = text.decode("utf-8", errors="replace") if text else ""
    sinks = _sinks()
    if sinks:
        sinks[-1].write(message)
        return
    # no file in this thread: ERROR only, one Python record per line (llama.cpp sends pieces and continuations)
    if level != GGML_CONT:
        _local.level = GGML_LEVELS.get(level, logging.INFO)
    pending = getattr(_local, "pending", "") + message
    *lines, _local.pending = pending.split("\n")
    for line in lines:
        if line.strip() and getattr(_local, "level", logging.INFO) >= logging.ERROR:
            logger.error("%s", line)


def install(mtmd: bool = False) -> None:
    """Route llama.cpp's (and, with ``mtmd``, libmtmd's: the vision projector's) log through this module; idempotent.
    Call it after llama-cpp-python is imported (importing it installs llama-cpp-python's own callback)."""
    global _callback
    import llama_cpp

    with _install_lock:
        if _callback is None:
            _callback = llama_cpp.llama_log_callback(_on_message)
        if "llama" not in _installed:
            llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))  # llama.cpp sets ggml's log to the same
            _installed.add("llama")
        if mtmd and "mtmd" not in _installed:
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_log_set(_callback, ctypes.c_void_p(0))
            mtmd_cpp.mtmd_helper_log_set(_callback, ctypes.c_void_p(0))
            _installed.add("mtmd")


@contextlib.contextmanager
def native_log(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Within the block, this thread's llama.cpp messages (and ``run_logged`` subprocesses' output) are appended to
    ``path``. Blocks nest; the innermost one wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    install()
    with open(path, "a", encoding="utf-8", errors="replace", buffering=1) as sink:
        sinks = _sinks()
        sinks.append(sink)
        try:
            yield path
        finally:
            sinks.pop()


def current() -> Path | None:
    """The file of the innermost ``native_log`` block of this thread, or None."""
    sinks = _sinks()
    return Path(sinks[-1].name) if sinks else None


def run_logged(cmd: list[str], what: str) -> None:
    """Run a command whose output is llama.cpp's (the converter script): into this thread's native log when there is
    one, else captured; either way a failure raises with the output's last lines."""
    target = current()
    if target is None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        output = proc.stderr or proc.stdout
    else:
        _sinks()[-1].flush()
        start = target.stat().st_size
        with open(target, "a", encoding="utf-8") as sink:
            sink.write(f"--- {what}: {' '.join(cmd)}\n")
            sink.flush()
            proc = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True)
        with open(target, encoding="utf-8", errors="replace") as f:
            f.seek(start)
            output = f.read()
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        where = f" (whole output: {target})" if target else ""
        raise RuntimeError(f"{what} failed (exit {proc.returncode}){where}:\n{tail}")


def task_log_path(root: str | os.PathLike[str], name: str) -> Path:
    """<root>/logs/llama.cpp/<the Prefect task run's name>.log (the run's id keeps reruns apart), or, outside a task
    run, <root>/logs/llama.cpp/<name>-<time>-<pid>.log."""
    try:
        from prefect.context import TaskRunContext

        context = TaskRunContext.get()
    except ImportError:  # pragma: no cover - prefect is a dependency
        context = None
    if context is not None and context.task_run is not None:
        stem = f"{context.task_run.name}-{str(context.task_run.id)[:8]}"
    else:
        stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    return Path(root) / "logs" / "llama.cpp" / f"{stem}.log"


def _to_task_log(message: str, *args: Any, console: bool) -> None:
    """One record in the running task's log: the Prefect UI only, or (``console``) the console too."""
    try:
        from prefect import get_run_logger
        from prefect.logging.handlers import APILogHandler

        run_logger = get_run_logger()
    except Exception:  # noqa: BLE001 - not inside a Prefect run (MissingContextError) or no Prefect: plain logging
        (_here.warning if console else _here.info)(message, *args)
        return
    if console:
        run_logger.warning(message, *args)
        return
    ui_only = logging.getLogger("alphagate.native_log")
    if not ui_only.handlers:
        ui_only.addHandler(APILogHandler())
        ui_only.propagate = False  # the console handler sits on the root logger
        ui_only.setLevel(logging.INFO)
    type(run_logger)(ui_only, run_logger.extra).info(message, *args)


def task_native_log(fn):
    """Decorator for a stage task whose body runs llama.cpp: its native log goes to ``task_log_path(root, ...)``,
    ``root`` being the task's parameter of that name. The path is written to the task's log once; a failing task
    also names it on the console."""
    signature = inspect.signature(fn)
    if "root" not in signature.parameters:
        raise TypeError(f"{fn.__name__} has no 'root' parameter; task_native_log needs it to place the log file.")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        root = signature.bind(*args, **kwargs).arguments["root"]
        with native_log(task_log_path(root, fn.__name__)) as path:
            _to_task_log("llama.cpp's own log (model loads, quantization, conversion): %s", path, console=False)
            try:
                return fn(*args, **kwargs)
            except BaseException:
                _to_task_log("llama.cpp's own log of this task, for the details: %s", path, console=True)
                raise

    return wrapper
