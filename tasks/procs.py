"""Run a stage that loads a model (a training, an export, a DPO stage) in a child process of its own.

torch/transformers work is not safe in threads of one process (accelerate keeps process-global state; two Trainers
in threads corrupt it, and from_pretrained's meta-device initialisation races). A stage in its own process can run
beside another one, its memory is returned when it ends, and a crash or kill of one (the kernel's out-of-memory
killer) takes nothing else down: the caller gets an error naming the stage, the exit signal and the child's last
output.

Parent side: ``run_in_process("tasks.train.variant:train_in_process", {...}, label="linear")`` returns what the
target returned (JSON). Child side: ``main(SPEC, RESULT)`` (``python -P -c``, _CHILD) imports the target, calls it
with the spec's keyword arguments and writes ``{"ok", "value" | "error", "traceback", "pid", "started", "ended",
"peak_rss_mib"}`` to RESULT atomically. The child's stdout and stderr reach the caller's log line by line, prefixed
with the label, and llama.cpp's native log goes to the caller's per-task file (tasks.native_log).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TERMINATE_GRACE_S = 5.0  # after SIGTERM, this long before SIGKILL


class StageProcessError(RuntimeError):
    """A stage's child process raised, or died without a result (killed by a signal, out of memory)."""


def peak_rss_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # ru_maxrss is KiB on Linux


def cuda_available() -> bool:
    """Whether torch sees a GPU. A machine with no GPU driver at all (no /proc/driver/nvidia, no /dev/nvidia*, AMD's
    /dev/kfd or WSL's /dev/dxg) has none, and then torch, seconds to import, is not imported to say so: the flow's
    process asks this for its slot count on every run, cached ones included."""
    import glob

    if not (Path("/proc/driver/nvidia").exists() or glob.glob("/dev/nvidia*") or Path("/dev/kfd").exists()
            or Path("/dev/dxg").exists()):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return torch.cuda.is_available()


def _target(spec: str):
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"target must be 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def output_sink():
    """Where the child's output lines go: the running Prefect task's logger (UI and console) when there is one."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - no Prefect run context (MissingContextError): this module's logger
        return logger


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group (the converter it may run included), then SIGKILL after a grace."""
    for sig, wait in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# The child imports this project from where the parent did, never from its working directory (-P: a user's own
# "tasks" package there must not shadow ours); entries of PYTHONPATH still come first.
_PROJECT = str(Path(__file__).resolve().parents[1])
_CHILD = ("import os, sys; sys.path.insert(len([p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]), "
          f"{_PROJECT!r}); from tasks.procs import main; sys.exit(main(sys.argv[1:]))")


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (SIGKILL: often the kernel's out-of-memory killer; lower orchestration.train_slots)" \
            if -returncode == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {returncode} without a result"


EXCHANGE_PREFIX = "alphagate-proc-"  # + the caller's pid + "-": the spec/result folder of one stage process


def _sweep_exchanges() -> None:
    """Remove the spec/result folders that callers killed outright (SIGKILL: no cleanup ran; their stage processes
    were killed with them) left in the temporary folder: those whose caller's pid is gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{EXCHANGE_PREFIX}*-*"):
        pid = folder.name[len(EXCHANGE_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue


def run_in_process(target: str, kwargs: dict[str, Any], *, label: str, threads: int | None = None,
                   keep_fds: tuple[int, ...] = ()) -> Any:
    """Call ``target`` ("module:function") with ``kwargs`` (JSON values) in a fresh Python process and return its
    (JSON) result; ``threads`` caps its torch/OpenMP threads (None: the library defaults); ``keep_fds``: descriptors
    the child inherits (a model slot's lock: held until the child is gone too). Raises StageProcessError with the
    child's error and last output lines when it raises or dies."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1 or None, got {threads!r}")
    sink = output_sink()
    _sweep_exchanges()
    with tempfile.TemporaryDirectory(prefix=f"{EXCHANGE_PREFIX}{os.getpid()}-") as tmp:
        result_path = Path(tmp) / "result.json"
        proc = _start_child(Path(tmp), target, kwargs, threads, keep_fds)
        sink.info("%s: started in its own process (pid %d)", label, proc.pid)
        tail: collections.deque[str] = collections.deque(maxlen=20)
        returncode = _wait(proc, label, tail, sink)
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
    return _outcome(label, proc.pid, returncode, result, tail, sink)


def _start_child(exchange: Path, target: str, kwargs: dict[str, Any], threads: int | None,
                 keep_fds: tuple[int, ...]) -> subprocess.Popen:
    """The child process, its spec written to ``exchange``/spec.json, its result to come in result.json; stdout and
    stderr in one pipe, in a session (process group) of its own."""
    from tasks.native_log import current
    from tasks.progress import RELAY_ENV

    native = current()
    spec_path, result_path = exchange / "spec.json", exchange / "result.json"
    spec_path.write_text(json.dumps({"target": target, "kwargs": kwargs, "threads": threads,
                                     "native_log": str(native) if native else None, "parent": os.getpid()}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", RELAY_ENV: "1"}
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # bytes, not text: text mode would turn each \r of a progress bar into a line
    return subprocess.Popen([sys.executable, "-P", "-c", _CHILD, str(spec_path), str(result_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True, pass_fds=keep_fds)


def _forward(proc: subprocess.Popen, label: str, tail: collections.deque, sink) -> None:
    """The child's output lines to ``sink`` (the last ones kept in ``tail``), its progress records to progress bars
    of this context."""
    from tasks.progress import Progress, parse_relay

    progress: dict[int, Progress] = {}  # the child's progress, reported in this (the task's) context
    try:
        for line in proc.stdout:  # progress bars redraw with \r: keep what the line finally showed
            text = line.decode("utf-8", errors="replace").rstrip("\n").split("\r")[-1].rstrip()
            if (record := parse_relay(text)) is not None:
                mine = progress.setdefault(record["id"], Progress(record["total"], record["description"],
                                                                  console=False))
                mine.update(record["done"] - mine.done)
            elif text:
                tail.append(text)
                sink.info("[%s] %s", label, text)
    finally:
        for mine in progress.values():
            mine.close()


def _wait(proc: subprocess.Popen, label: str, tail: collections.deque, sink) -> int:
    """The child's exit status, its output forwarded meanwhile; a caller interrupted or cancelled stops the child
    first (it must not outlive the caller)."""
    # the reader runs in a copy of this thread's context: the Prefect task run its progress artifacts belong to
    context = contextvars.copy_context()
    reader = threading.Thread(target=context.run, args=(_forward, proc, label, tail, sink), name=f"output-of-{label}",
                              daemon=True)
    reader.start()
    try:
        return proc.wait()
    except BaseException:  # the task was cancelled or the caller interrupted: the child must not outlive it
        _stop(proc)
        raise
    finally:
        reader.join(timeout=10)


def _outcome(label: str, pid: int, returncode: int, result: dict | None, tail: collections.deque, sink) -> Any:
    """The child's value, or StageProcessError with its error and traceback, or how it died and its last output."""
    if returncode == 0 and result and result.get("ok"):
        sink.info("%s: done in %.0f s, peak RSS %.0f MiB (pid %d)", label, result["ended"] - result["started"],
                  result["peak_rss_mib"], result["pid"])
        return result.get("value")
    last = "\n".join(tail) or "(no output)"
    if result is not None:
        raise StageProcessError(f"{label} failed in its process (pid {pid}): {result['error']}\n"
                                f"{result['traceback'].rstrip()}")
    raise StageProcessError(f"{label}: its process (pid {pid}) {_describe_exit(returncode)}. Its last output:"
                            f"\n{last}")


def _watch_parent(parent: int, exchange: Path) -> None:
    """Exit when the process that started us is gone (killed): an orphaned training would hold memory (and its model
    slot) for nothing. What this stage started itself (the converter, a quantizer) goes with it: its process group.
    The spec/result folder (``exchange``) the dead parent would have removed goes too."""
    while True:
        if os.getppid() != parent:
            shutil.rmtree(exchange, ignore_errors=True)
            if os.getpgrp() == os.getpid():  # started as the leader of its own session (run_in_process)
                with contextlib.suppress(OSError):
                    os.killpg(os.getpgrp(), signal.SIGKILL)
            os._exit(3)
        time.sleep(0.5)


def _atomic_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, default=str))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: main(SPEC.json, RESULT.json), started by tasks.procs.run_in_process",
              file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    threading.Thread(target=_watch_parent, args=(spec["parent"], Path(argv[0]).parent), daemon=True).start()
    started, record = time.time(), {}
    try:
        if spec.get("threads"):
            import torch

            torch.set_num_threads(int(spec["threads"]))
        fn = _target(spec["target"])
        if spec.get("native_log"):
            import llama_cpp  # noqa: F401 - native_log routes llama.cpp's callback, which importing it installs

            from tasks.native_log import native_log

            context = native_log(spec["native_log"])
        else:
            context = contextlib.nullcontext()
        with context:
            record = {"ok": True, "value": fn(**spec["kwargs"])}
    except BaseException as exc:  # noqa: BLE001 - everything reaches the parent, with its traceback
        record = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    record |= {"pid": os.getpid(), "started": started, "ended": time.time(), "peak_rss_mib": peak_rss_mib()}
    _atomic_json(Path(argv[1]), record)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
