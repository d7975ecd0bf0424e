"""llama.cpp's convert_hf_to_gguf.py, taken from the llama-cpp-python sdist of the installed version.

Why this source: llama-cpp-python vendors llama.cpp at a fixed commit, and that same commit is the
runtime that loads and benchmarks our GGUFs. Taking the converter (with its ``conversion/`` package and
``gguf-py``) from the sdist of the pinned llama-cpp-python pins converter and runtime together, from a
package registry, with no git clone. ``make install`` runs ``python -m tasks.export.converter fetch`` once;
afterwards conversion needs no network.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
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
    """Run the converter in a subprocess (it is a script, and keeps its own module state). Its output (a line per
    tensor) goes to the task's llama.cpp log (tasks/native_log.py) when there is one, else it is kept only for the
    error message."""
    from tasks.native_log import run_logged

    run_logged([sys.executable, str(converter_script()), str(model_dir), "--outtype", outtype,
                "--outfile", str(outfile)], f"convert_hf_to_gguf on {model_dir}")
    if not outfile.is_file():
        raise RuntimeError(f"convert_hf_to_gguf on {model_dir} exited 0 but wrote no {outfile}.")


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python -m tasks.export.converter fetch")
    print(fetch())
