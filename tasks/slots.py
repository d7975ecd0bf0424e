"""A machine's model slots: how many model-loading stages (trainings, exports, DPO) hold memory at once.

A slot is an exclusive ``fcntl.flock`` on one file, ``<slots dir>/slot-<i>.lock`` (tasks.environment.slots_root: a
folder on this machine, shared by every run of this user on it). The kernel releases a flock the instant its holder's
process dies, however it dies (SIGKILL, the out-of-memory killer): a killed run never keeps a slot, and nothing has
to notice it, renew it or reclaim it. A waiter sleeps in the kernel on the lock and is woken by the release itself:
no polling interval between one stage's end and the next one's start.

Order. Inside one process, requests queue by (priority, arrival): exports (priority 0, short, they unblock
evaluations) before trainings. Across processes, waiters queue on ``gate.lock``; the one holding the gate is the
next to take a free slot. With one slot it sleeps on that slot's lock; with several, one thread per slot sleeps on
each and the first woken takes its slot (the others let theirs go as soon as they get it).

Who holds what. The holder writes ``{pid, stage, since, host}`` into its slot file; the kernel's own record of
the lock (/proc/locks) says whether it is really held, so a dead holder's note is never shown as a holder.
``alphagate slots`` lists them; a stage that has to wait logs the holders it waits for. Each hold is journalled
(``journal``: one JSON line with requested, acquired and released times) so idle gaps can be measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import heapq
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

EXPORT, TRAIN = 0, 1  # priorities inside one process: lower first


@dataclasses.dataclass(frozen=True)
class Holder:
    slot: int
    pid: int | None  # None: free
    stage: str | None = None
    since: float | None = None

    def describe(self) -> str:
        if self.pid is None:
            return f"slot {self.slot}: free"
        since = time.strftime("%H:%M:%S", time.localtime(self.since)) if self.since else "?"
        return f"slot {self.slot}: pid {self.pid} ({self.stage or 'unknown stage'}, since {since})"


def slot_file(root: Path, index: int) -> Path:
    return Path(root) / f"slot-{index}.lock"


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _kernel_holders() -> dict[tuple[int, int, int], int] | None:
    """(major, minor, inode) -> pid of every FLOCK write lock the kernel holds (/proc/locks); None where that file
    is missing."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    held = {}
    for line in text.splitlines():
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE":
            major, minor, inode = parts[5].split(":")
            held[(int(major, 16), int(minor, 16), int(inode))] = int(parts[4])
    return held


def holders(root: Path, slots: int) -> list[Holder]:
    """Who holds each of the first ``slots`` slots (and any other slot file that is held), as the kernel says."""
    root = Path(root)
    kernel = _kernel_holders()
    found = {int(p.stem.split("-")[1]) for p in root.glob("slot-*.lock") if p.stem.split("-")[1].isdigit()}
    out = []
    for index in sorted(found | set(range(slots))):
        path = slot_file(root, index)
        pid = None
        if path.exists():
            if kernel is not None:
                stat = path.stat()
                pid = kernel.get((os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino))
            else:  # no /proc/locks: probe (a held slot refuses a shared lock)
                fd = _open(path)
                try:
                    pid = None if _try(fd) else -1
                finally:
                    os.close(fd)
        if pid is None:
            if index < slots:
                out.append(Holder(index, None))
            continue
        try:
            note = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            note = {}
        pid = note.get("pid", pid) if pid == -1 else pid
        out.append(Holder(index, pid, note.get("stage") if note.get("pid") == pid else None,
                          note.get("since") if note.get("pid") == pid else None))
    return out


# --- taking a slot -----------------------------------------------------------------------------------------------

def _free_slot(root: Path, slots: int) -> tuple[int, int] | None:
    """(index, fd) of a slot taken without waiting; None when every one is held."""
    for index in range(slots):
        fd = _open(slot_file(root, index))
        if _try(fd):
            return index, fd
        os.close(fd)
    return None


def _first_released(root: Path, slots: int) -> tuple[int, int]:
    """Sleep until one of the slots is released; returns (index, fd) of the one taken."""
    if slots == 1:
        fd = _open(slot_file(root, 0))
        fcntl.flock(fd, fcntl.LOCK_EX)
        return 0, fd
    won: list[tuple[int, int]] = []
    decided = threading.Lock()
    done = threading.Event()

    def sleep_on(index: int) -> None:
        fd = _open(slot_file(root, index))
        fcntl.flock(fd, fcntl.LOCK_EX)
        with decided:
            if not won:
                won.append((index, fd))
                done.set()
                return
        os.close(fd)  # another slot was taken first: let this one go at once

    for index in range(slots):
        threading.Thread(target=sleep_on, args=(index,), daemon=True, name=f"slot-{index}-waiter").start()
    done.wait()
    return won[0]


def _note(fd: int, stage: str) -> None:
    payload = json.dumps({"pid": os.getpid(), "stage": stage, "since": time.time(), "host": socket.gethostname()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, payload.encode(), 0)


def _journal(journal: Path | None, record: dict) -> None:
    if journal is None:
        return
    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "a", encoding="utf-8") as f:  # one short write per line: appends do not interleave
        f.write(json.dumps(record) + "\n")


def _waiting_line(root: Path, slots: int, stage: str) -> str:
    return (f"{stage}: waiting for a model slot ({slots} on this machine, all taken: "
            + "; ".join(h.describe() for h in holders(root, slots)) + "). `alphagate slots` lists them.")


def _acquire(root: Path, slots: int, stage: str, log: Callable[[str], None] | None) -> tuple[int, int]:
    """Take a free slot, or sleep in the kernel until one is released (``log``: told whom we wait for)."""
    if (free := _free_slot(root, slots)) is not None:
        return free
    if log is not None:
        log(_waiting_line(root, slots, stage))
    gate = _open(Path(root) / "gate.lock")
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)  # the other processes' waiters queue here
        return _free_slot(root, slots) or _first_released(root, slots)
    finally:
        os.close(gate)  # closing the descriptor releases the gate


# --- the queue inside this process ------------------------------------------------------------------------------
# One thread of a process sleeps in the kernel at a time; the slot it gets goes to the first of the process's
# waiting requests by (priority, arrival), which need not be its own (a lock belongs to the open file, not the
# thread): an export that asks while a training already sleeps on the lock still goes first.

_TURN = threading.Condition()
_QUEUE: list[tuple[int, int]] = []
_GRANTED: dict[tuple[int, int], tuple[int, int]] = {}
_SEQ = itertools.count()
_AT_KERNEL: list[tuple[int, int]] = []  # the request whose thread sleeps on the lock (at most one)


def _take(root: Path, slots: int, stage: str, priority: int, log: Callable[[str], None]) -> tuple[int, int]:
    entry = (priority, next(_SEQ))
    with _TURN:
        heapq.heappush(_QUEUE, entry)
    told = False
    try:
        while True:
            with _TURN:
                queued = bool(_AT_KERNEL) and entry not in _GRANTED
            if queued and not told:  # another stage of this process is already waiting for the slot
                log(_waiting_line(root, slots, stage))
                told = True
            with _TURN:
                while entry not in _GRANTED and _AT_KERNEL:
                    _TURN.wait()
                if entry in _GRANTED:
                    return _GRANTED.pop(entry)
                _AT_KERNEL.append(entry)
            try:
                got = _acquire(root, slots, stage, None if told else log)
            except BaseException:
                with _TURN:
                    _AT_KERNEL.clear()
                    _TURN.notify_all()
                raise
            told = True
            with _TURN:
                _AT_KERNEL.clear()
                _GRANTED[min(e for e in _QUEUE if e not in _GRANTED)] = got
                _TURN.notify_all()
    finally:
        with _TURN:
            _QUEUE.remove(entry)
            heapq.heapify(_QUEUE)
            if entry in _GRANTED:  # granted, but this thread was interrupted before taking it: let it go
                os.close(_GRANTED.pop(entry)[1])
            _TURN.notify_all()


@dataclasses.dataclass(frozen=True)
class Slot:
    """A held slot: its index and the descriptor whose lock holds it. A child process given ``fd`` (tasks.procs'
    ``keep_fds``) shares the lock: the slot is free only once the holder *and* that child are gone."""

    index: int
    fd: int


@contextlib.contextmanager
def hold(root: Path, slots: int, stage: str, *, priority: int = TRAIN, journal: Path | None = None,
         log: Callable[[str], None] | None = None) -> Iterator[Slot]:
    """Hold one of ``slots`` slots under ``root`` for the block (waiting for one when all are taken). ``stage``
    names the holder for people (``train linear``); ``journal``: where the hold is recorded (one line when it is
    taken, one when it is released)."""
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots must be a whole number >= 1, got {slots!r}")
    log = log or logger.info
    requested = time.time()
    index, fd = _take(Path(root), slots, stage, priority, log)
    acquired = time.time()
    if acquired - requested > 1.0:
        log(f"{stage}: got model slot {index} after {acquired - requested:.1f} s")
    record = {"stage": stage, "pid": os.getpid(), "slot": index, "requested": requested, "acquired": acquired}
    try:
        _note(fd, stage)
        _journal(journal, {"event": "acquired", **record})
        yield Slot(index, fd)
    finally:
        released = time.time()  # before the release: the next holder's "acquired" never precedes it
        os.close(fd)  # releases the slot; a killed process's descriptors are closed by the kernel
        _journal(journal, {"event": "released", **record, "released": released})


def idle_gaps(journal: Path, since: float = 0.0) -> list[dict]:
    """From a slot journal: for every hold asked for at or after ``since`` that had to wait, how long after a slot
    became free it started (acquired - max(requested, the latest release before it)). A waiter woken by the release
    itself starts within milliseconds; a polling one, or one whose slot a dead holder kept, does not."""
    journal = Path(journal)
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line] if journal.is_file() else []
    released = sorted(r["released"] for r in rows if r["event"] == "released")
    out = []
    for r in sorted((r for r in rows if r["event"] == "acquired" and r["requested"] >= since),
                    key=lambda r: r["acquired"]):
        before = [t for t in released if t <= r["acquired"] + 1e-6]
        start = max([r["requested"], *before[-1:]])
        out.append({"stage": r["stage"], "pid": r["pid"], "waited_s": round(r["acquired"] - r["requested"], 3),
                    "gap_s": round(r["acquired"] - start, 3)})
    return out
