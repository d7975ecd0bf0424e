"""The artifact store: content hashes, atomic files and folders, and stage outputs addressed by key.

A stage writes into a hidden staging folder beside its target and renames it into place when complete,
so a killed run never leaves a half-written result under the final name. Every stage output carries a stamp
(``_stage.json``, written last) naming its stage, the key of all its inputs and the sha256 of every file in it.
An output is reused only when its stamp's key is the key asked for and every file still matches its sha256
(``verified``); anything else is recomputed. Folder names never decide reuse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from alpha_gate.atomic import atomic_write_json, atomic_write_text

__all__ = ["atomic_write_json", "atomic_write_text", "sha256_file", "sha256_bytes", "staging_dir",
           "read_json", "Ref", "STAMP", "seal", "verified", "keyed_dir", "folder_ref", "ref_of",
           "ResultsConflictError", "staging_owner", "owner_alive", "read_json_object", "read_jsonl",
           "check_writable_dir", "check_writable_file"]

STAMP = "_stage.json"
_MEMO: dict[tuple[str, int, int, int, int], str] = {}
_MEMO_LOCK = threading.Lock()


class Ref(BaseModel):
    """What stages hand each other: which stage made it, the key of its inputs, where it is, and the sha256 of its
    stamp (which lists the sha256 of every file in it). ``files``: named files inside (e.g. format -> GGUF)."""

    model_config = ConfigDict(frozen=True)
    kind: str
    key: str
    path: str
    sha256: str
    files: dict[str, str] = {}

    def file(self, name: str) -> Path:
        return Path(self.path) / self.files[name]


class ResultsConflictError(ValueError):
    """A folder holds results whose key differs from the ones being written there."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Streamed (never the whole file in memory); memoised per (path, size, mtime) within the process."""
    stat = os.stat(path)
    memo_key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)
    with _MEMO_LOCK:
        if memo_key in _MEMO:
            return _MEMO[memo_key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    with _MEMO_LOCK:
        _MEMO[memo_key] = digest.hexdigest()
    return digest.hexdigest()


def read_json(path: str | os.PathLike[str], hint: str = "delete it and rerun the step that wrote it.") -> Any:
    """A JSON file's content; a corrupt or undecodable file is an error naming it and saying what to do (``hint``:
    for a file the project wrote, rerun its step; for a file the user passed, which file was expected)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid UTF-8 JSON ({exc}); {hint}") from None


def read_json_object(path: str | os.PathLike[str], what: str, required: tuple[str, ...] = (),
                     hint: str = "") -> dict[str, Any]:
    """A JSON file that must hold an object with ``required`` fields (``what`` names the kind of file, e.g.
    "decision.json of `alphagate decide`"); an error naming the file, the missing fields and ``hint`` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder (expected a {what} file). {hint}".rstrip())
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a {what}). {hint}".rstrip())
    data = read_json(path, f"expected a {what}, or, if it is one, rerun the step that wrote it. {hint}".rstrip())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a {what}: expected a JSON object, found a {type(data).__name__}. "
                         f"{hint}".rstrip())
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path} is not a {what}: it lacks {', '.join(repr(k) for k in missing)} (found: "
                         f"{sorted(data)[:12]}). {hint}".rstrip())
    return data


def read_jsonl(path: str | os.PathLike[str], hint: str = "") -> list[Any]:
    """The rows of a JSON-lines file; an undecodable file or a bad line is an error naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}). {hint}".rstrip()) from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno}). "
                                 f"{hint}".rstrip()) from None
    return rows


def _unwritable(path: Path) -> str | None:
    """Why files cannot be written into folder ``path`` (made if missing), or None when they can. Folders made
    only for the check are removed again."""
    blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    first_new = next((p for p in [path, *path.parents][::-1] if not p.exists()), None)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        if first_new is not None and first_new.is_dir():
            for folder in [path, *path.parents]:  # only the (empty) folders made here
                try:
                    folder.rmdir()
                except OSError:
                    break
                if folder == first_new:
                    break
    return None


def check_writable_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Before any work: ``path`` is (or can be made) a folder this process can write into; an error naming
    ``flag`` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{flag} {path} is a file, but a folder is needed there. Choose another {flag} "
                                 "(or move that file away).")
    if (why := _unwritable(path)) is not None:
        raise PermissionError(f"{flag} {path} is not writable ({why}). Choose a folder you can write to.")
    return path


def check_writable_file(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Before any work: ``path`` names a file (not a folder) in a folder this process can write into."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder, but a file name is needed (e.g. {path / 'out.json'}).")
    if (why := _unwritable(path.parent)) is not None:
        raise PermissionError(f"{flag} {path} cannot be written ({why}). Choose a file in a folder you can "
                              "write to.")
    return path


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != STAMP}


def seal(folder: Path, stage: str, key: str, inputs: dict[str, Any]) -> None:
    """Write the stamp of a finished output (last, inside its staging folder)."""
    atomic_write_json(Path(folder) / STAMP, {"stage": stage, "key": key, "inputs": inputs, "files": _files(folder)})


def verified(folder: str | os.PathLike[str], key: str | None = None) -> Ref | None:
    """The folder's Ref when it holds a complete output (of ``key``, when given) whose every file still matches its
    stamp; None otherwise (missing, another key, a file changed or gone, or a file added: readers glob folders)."""
    folder = Path(folder)
    stamp_path = folder / STAMP
    if not stamp_path.is_file():
        return None
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        if key is not None and stamp.get("key") != key:
            return None
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != STAMP}
        if present != set(stamp["files"]):
            return None
        for rel, digest in stamp["files"].items():
            if sha256_file(folder / rel) != digest:
                return None
    except (ValueError, KeyError, TypeError, OSError):
        return None
    return Ref(kind=stamp["stage"], key=stamp["key"], path=str(folder.resolve()),
               sha256=sha256_file(stamp_path))


def ref_of(folder: str | os.PathLike[str], **files: str) -> Ref:
    """The Ref of a just-written output; an error if it is not complete and intact."""
    ref = verified(folder)
    if ref is None:
        raise FileNotFoundError(f"{folder} is not a complete stage output (no intact {STAMP}).")
    return ref.model_copy(update={"files": files}) if files else ref


def folder_ref(folder: str | os.PathLike[str], kind: str = "folder") -> Ref:
    """A Ref for any folder: its stamp when it is a stage output, else a content hash of every file in it (for a
    user's own model folder, say)."""
    folder = Path(folder)
    ref = verified(folder)
    if ref is not None:
        return ref
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist or is not a folder.")
    content = sha256_bytes(json.dumps(_files(folder), sort_keys=True).encode())
    return Ref(kind=kind, key=content, path=str(folder.resolve()), sha256=content)


def keyed_dir(root: str | os.PathLike[str], stage: str, key: str) -> Path:
    """Where the output of ``stage`` with ``key`` lives under an artifact root: <root>/store/<stage>/<key[:24]>."""
    return Path(root) / "store" / stage / key[:24]


def staging_owner() -> str:
    return f"{socket.gethostname().replace('-', '_').replace('.', '_')}_{os.getpid()}"


def owner_alive(name: str, pid: int | None = None) -> bool:
    """Whether the process that made staging folder ``name`` may still be writing it: on another host we cannot
    tell, so yes; here, whether its pid is alive (and is not ``pid``, a process cleaning up after itself)."""
    try:
        owner = name.split(".partial-" if ".partial-" in name else ".old-", 1)[1].rsplit("-", 1)[0]
        host, number = owner.rsplit("_", 1)
        owner_pid = int(number)
    except (IndexError, ValueError):
        return False  # not a name this code makes: an old layout's leftover
    if host != staging_owner().rsplit("_", 1)[0]:
        return True
    if owner_pid == pid:
        return False
    try:
        os.kill(owner_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``final`` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # what a killed earlier attempt left behind; another live writer's staging (two runs may share one --out) stays
    for stale in [*final.parent.glob(f".{final.name}.partial-*"), *final.parent.glob(f".{final.name}.old-*")]:
        if not owner_alive(stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    # owner (host and pid) in the name: a later run removes staging folders of processes that are gone
    tmp = final.parent / f".{final.name}.partial-{staging_owner()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists() or final.is_symlink():
        old = final.parent / f".{final.name}.old-{staging_owner()}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
