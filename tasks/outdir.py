"""Output folders and files a user names (``eval``/``decide``/``report --out``, ``speed --out``, ``serve``'s audit
log): one writer at a time, for the whole command.

Checking a folder before the work and writing after it let two ``eval`` processes both pass the check and one
model's results vanish. The lock is an flock on a file inside the folder (``.alphagate.lock``; for a single output
file, ``.<name>.lock`` beside it), taken without waiting: a second writer is refused at once, naming the holder's
pid. The operating system releases it when its holder dies (ARCHITECTURE rule 13); the holder removes the lock
file when it is done, so a folder it found holds nothing new but the command's own outputs.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = ".alphagate.lock"


class FolderBusyError(RuntimeError):
    """Another live process is writing the same output folder or file."""


class ForeignFilesError(ValueError):
    """An output folder holds files this command did not write; they would be overwritten or removed."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']}, `alphagate {info['command']}` since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


def _open_locked(path: Path, shown: str) -> int:
    """An fd holding the exclusive flock of ``path``; FolderBusyError when another process holds it. Retried when
    the file was replaced between open and flock (its holder removed it on exit: a lock on the old file is none)."""
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusyError(f"{shown} is being written by another alphagate process ({_holder(path)}); two "
                                  "writers would replace each other's files. Wait for it to finish, or choose another "
                                  "output.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise FolderBusyError(f"{shown}: its lock file {path} keeps changing; is another process removing it?")


@contextmanager
def exclusive(target: str | os.PathLike[str], command: str, flag: str = "--out", *,
              file: bool = False) -> Iterator[Path]:
    """Hold the write lock of output folder ``target`` (``file``: of the output file ``target``) for the block.
    A folder made here is removed again when nothing but the lock was left in it (a refused command leaves no
    trace)."""
    target = Path(target)
    folder = target.parent if file else target
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f".{target.name}.lock" if file else LOCK)
    fd = _open_locked(path, f"{flag} {target}")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": command,
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        yield target
    finally:
        try:
            path.unlink()  # before the unlock: a process waiting on this file retries on the new one
        except FileNotFoundError:
            pass
        os.close(fd)
        if made:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass


def user_files(folder: Path, ours: set[str]) -> list[str]:
    """Files in ``folder`` (recursively, relative names) that are not in ``ours`` and not the lock."""
    if not folder.is_dir():
        return []
    return sorted(rel for p in folder.rglob("*") if p.is_file() and (rel := p.relative_to(folder).as_posix()) not in
                  ours and not rel.startswith(".alphagate"))  # the lock, a report's manifest and staging folder


def refuse_foreign(folder: Path, names: list[str], what: str, flag: str = "--out") -> None:
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ForeignFilesError(f"{flag} {folder} holds files that {what} did not write ({shown}); they would be "
                                f"replaced or removed. Choose an empty or new {flag}, or pass --replace to "
                                "overwrite them.")


def differences(theirs: dict, ours: dict, limit: int = 4) -> str:
    """The inputs in which a result found on disk differs from the one being made: "limit 5 there, 2 now; ..."."""
    def short(value) -> str:
        if isinstance(value, dict):
            value = value.get("sha256") or value.get("commit") or value.get("name") or value
        text = str(value)
        return text[:12] + "…" if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text[:40]

    keys = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
    parts = [f"{k} {short(theirs.get(k))} there, {short(ours.get(k))} now" for k in keys[:limit]]
    return "; ".join(parts) + (f"; and {len(keys) - limit} more" if len(keys) > limit else "")
