"""llama.cpp's convert_hf_to_gguf.py, taken from the llama-cpp-python sdist of the installed version.

Why this source: llama-cpp-python vendors llama.cpp at a fixed commit, and that same commit is the
runtime that loads and benchmarks our GGUFs. Taking the converter (with its ``conversion/`` package and
``gguf-py``) from the sdist of the pinned llama-cpp-python pins converter and runtime together, from a
package registry, with no git clone. ``make install`` runs ``python -m tasks.export.converter fetch`` once;
afterwards conversion needs no network.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

from tasks.store import atomic_write_json, sha256_file, staging_dir

MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


def llama_cpp_version() -> str:
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError("llama-cpp-python is not installed; run `make install`.") from None


def converter_dir(version: str | None = None) -> Path:
    return Path(sys.prefix) / "llama.cpp" / (version or llama_cpp_version())


def converter_script() -> Path:
    script = converter_dir() / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise FileNotFoundError(f"llama.cpp's converter is not at {script}. Fetch it once (needs PyPI) with: "
                                f"{sys.executable} -m tasks.export.converter fetch   (make install does this).")
    return script


def fetch(version: str | None = None) -> Path:
    """Download the llama-cpp-python sdist of ``version`` and extract the converter next to the venv."""
    version = version or llama_cpp_version()
    target = converter_dir(version)
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    with tempfile.TemporaryDirectory() as download:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "--dest", download, f"llama-cpp-python=={version}"], check=True)
        sdist = next(Path(download).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as archive, staging_dir(target) as tmp:
            prefix = f"{archive.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)
                       and any(m.name[len(prefix):].startswith(x) for x in MEMBERS) and (m.isfile() or m.isdir())]
            for member in members:
                member.name = member.name[len(prefix):]
            archive.extractall(tmp, members=members, filter="data")
            atomic_write_json(tmp / "PROVENANCE.json", {"package": "llama-cpp-python", "version": version,
                                                        "sdist": sdist.name, "sdist_sha256": sha256_file(sdist),
                                                        "path_in_sdist": prefix})
    return target


def convert(model_dir: Path, outfile: Path, outtype: str = "bf16") -> None:
    """Run the converter on ``model_dir``. Its output (a line per tensor) goes to the task's llama.cpp log
    (tasks/native_log.py) when there is one, else it is kept only for the error message.

    In this process where that is safe (``in_process_ok``): the converter is a script whose start-up (torch,
    transformers, its ``conversion`` package) costs a fresh interpreter 4-8 s per export, and an export's own process
    has loaded most of it already. Elsewhere (a process that imported the pip ``gguf`` package, which the converter's
    own ``gguf-py`` would have to replace) it runs as a subprocess, as llama.cpp ships it."""
    from tasks.native_log import run_logged

    what = f"convert_hf_to_gguf on {model_dir}"
    argv = [str(converter_script()), str(model_dir), "--outtype", outtype, "--outfile", str(outfile)]
    if in_process_ok():
        _convert_here(argv, what)
    else:
        run_logged([sys.executable, *argv], what)
    if not outfile.is_file():
        raise RuntimeError(f"{what} exited 0 but wrote no {outfile}.")


_OWN_MODULES = ("gguf", "conversion")  # the converter's packages: imported from its folder, dropped after a run
_LOGGERS = ("hf-to-gguf", "metadata", "gguf", "conversion")  # every logger the converter and its packages use


def in_process_ok() -> bool:
    """True when no ``gguf`` module is loaded in this process, or only the converter's own one."""
    loaded = sys.modules.get("gguf")
    return loaded is None or str(converter_dir()) in str(getattr(loaded, "__file__", ""))


def _convert_here(argv: list[str], what: str) -> None:
    """``python convert_hf_to_gguf.py ...`` inside this process (runpy), its logging and output captured to the task's
    native log (or kept for the error), and the process left as it was: argv, sys.path, the converter's modules."""
    import io
    import runpy

    from tasks.native_log import current

    target = current()
    sink = open(target, "a", encoding="utf-8", buffering=1) if target else io.StringIO()  # noqa: SIM115
    start = sink.tell()
    sink.write(f"--- {what} (in process): {' '.join(argv)}\n")
    saved_argv, saved_path, before = list(sys.argv), list(sys.path), set(sys.modules)
    sys.argv = argv
    sys.path.insert(0, str(Path(argv[0]).parent))  # as `python script.py` does: its `conversion` package
    code: object = 0
    try:
        with _loggers_to(sink), _this_thread_to(sink):
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as stop:  # the script's own error exits
        code = stop.code
    except Exception as error:  # noqa: BLE001 - any failure of the script is the conversion's failure
        code = f"{type(error).__name__}: {error}"
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        for name in set(sys.modules) - before:
            if name.split(".")[0] in _OWN_MODULES:
                del sys.modules[name]
        sink.flush()
        output = _read_back(sink, target, start)
        sink.close()
    if code not in (0, None):
        tail = "\n".join(output.strip().splitlines()[-15:])
        where = f" (whole output: {target})" if target else ""
        raise RuntimeError(f"{what} failed (exit {code}){where}:\n{tail}")


class _Routed:
    """sys.stdout/sys.stderr while the converter runs: this thread's writes go to the sink, every other thread's to
    the stream it replaced. A plain redirect_stdout would swap the stream for the whole process: another thread's
    output would land in the conversion's log, and a handler created meanwhile (Prefect's console handler, set up by
    the first ``import prefect``) would keep the sink and fail on it once closed. After the conversion this object
    forwards everything to the original stream, so whoever kept it still writes where they expect."""

    def __init__(self, original, sink, thread: int):
        self._original, self._sink, self._thread = original, sink, thread

    def _target(self):
        return self._sink if self._sink is not None and threading.get_ident() == self._thread else self._original

    def write(self, text):
        return self._target().write(text)

    def flush(self):
        return self._target().flush()

    def release(self) -> None:
        self._sink = None

    def __getattr__(self, name):  # isatty, fileno, encoding, ...: the original stream's
        return getattr(self._original, name)


@contextlib.contextmanager
def _this_thread_to(sink):
    routed = [_Routed(sys.stdout, sink, threading.get_ident()), _Routed(sys.stderr, sink, threading.get_ident())]
    sys.stdout, sys.stderr = routed
    try:
        yield
    finally:
        for stream in routed:
            stream.release()
        if sys.stdout is routed[0]:
            sys.stdout = routed[0]._original
        if sys.stderr is routed[1]:
            sys.stderr = routed[1]._original


@contextlib.contextmanager
def _loggers_to(sink):
    """The converter's loggers write to ``sink`` only (at INFO, as the script sets up), and are restored after."""
    import logging

    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    saved = {name: (logging.getLogger(name).propagate, logging.getLogger(name).level) for name in _LOGGERS}
    root = logging.getLogger()
    root_state = (list(root.handlers), root.level)  # the script's logging.basicConfig must not outlive it
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for name, (propagate, level) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
        root.handlers[:] = root_state[0]
        root.setLevel(root_state[1])


def _read_back(sink, target: Path | None, start: int) -> str:
    if target is None:
        return sink.getvalue()
    with open(target, encoding="utf-8", errors="replace") as f:
        f.seek(start)
        return f.read()


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m tasks.export.converter fetch")
    print(fetch())
