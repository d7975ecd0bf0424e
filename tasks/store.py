"""Artifact helpers: content hashes and atomic files and folders.

A stage writes into a hidden staging folder beside its target and renames it into place when complete,
so a killed run never leaves a half-written result under the final name; a rerun finds either nothing
or a finished result (marked by its manifest file) and resumes from there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alpha_gate._io import atomic_write_json, atomic_write_text

__all__ = ["atomic_write_json", "atomic_write_text", "sha256_file", "sha256_bytes", "staging_dir",
           "is_complete", "read_json"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def is_complete(folder: Path, marker: str) -> bool:
    """A stage's folder counts as finished only when its marker (manifest) file is inside."""
    return (folder / marker).is_file()


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``final`` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # what a killed earlier attempt left behind (one writer per target: the flow runs a stage once at a time)
    for stale in [*final.parent.glob(f".{final.name}.partial-*"), *final.parent.glob(f".{final.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
