"""constraints.txt records the versions the tests run with (tools/lock.py, `make lock`; `make install` uses it)."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _lock_module():
    spec = importlib.util.spec_from_file_location("lock", ROOT / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_the_tests_run_with_the_locked_versions():
    """Every package the project needs here is pinned, at the version installed: a drift means either an install
    that did not use constraints.txt or new versions that were never recorded."""
    needed = _lock_module().closure()
    pins = _pins()
    missing = sorted(set(needed) - set(pins))
    assert missing == [], f"not in constraints.txt: {missing}; after `make test` passes, run `make lock`"
    drift = {name: (pins[name], Version(dist.version).public) for name, dist in needed.items()
             if Version(dist.version).public != Version(pins[name]).public}
    assert drift == {}, (f"installed versions differ from constraints.txt (pinned, installed): {drift}; run "
                         "`make install` to get the locked ones, or `make lock` to record these after `make test`")


def test_the_lock_follows_the_dev_extra_not_the_gpu_one_and_leaves_out_the_project_and_pip():
    lock = _lock_module()
    needed = lock.closure()
    assert "pytest" in needed and "ruff" in needed  # the dev extra
    assert "unsloth" not in needed  # the gpu extra: not installed here, and not followed (it would stop the lock)
    assert "alpha-gate" not in needed and "pip" not in needed
    assert "torch" in needed and "numpy" in needed  # a dependency of a dependency too
    assert canonicalize_name("llama_cpp_python") in needed


def test_the_lock_writes_public_versions_that_pypi_can_serve():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "lock.py")], capture_output=True, text=True,
                         check=True).stdout
    pins = dict(line.split("==") for line in out.splitlines() if line and not line.startswith("#"))
    assert pins["torch"] == Version(md.version("torch")).public  # "2.13.0+cpu" installed: "2.13.0" written
    assert all("+" not in version for version in pins.values())
    assert pins == _pins()  # the committed file is what `make lock` writes now
