"""A machine's model slots (tasks/slots.py): flocks the kernel frees when their holder dies, waiters woken by the
release itself, holders visible to people."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.slots import EXPORT, TRAIN, hold, holders, slot_file

ROOT = Path(__file__).resolve().parents[1]

# a process that takes a slot, says so on stdout, then holds it until it is killed or told to release (stdin closes)
_HOLDER = ("import sys, time; from tasks.slots import hold\n"
           "with hold(sys.argv[1], int(sys.argv[2]), sys.argv[3]):\n"
           "    print('held', flush=True); sys.stdin.read()\n"
           "print('released at', time.time(), flush=True)\n")


def _holder(root: Path, slots: int = 1, stage: str = "train linear") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root), str(slots), stage], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("slots", [1, 2])
def test_holders_overlap_only_when_there_are_two_slots(tmp_path, slots):
    together = threading.Barrier(2, timeout=5)  # passed only when both holders are inside at once
    met = []

    def take():
        with hold(tmp_path, slots, "stage"):
            try:
                together.wait()
                met.append(True)
            except threading.BrokenBarrierError:  # the other one never came in while this one held the slot
                met.append(False)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert met == [slots == 2] * 2, met


def test_a_killed_holders_slot_is_free_at_once_for_a_waiter_in_another_process(tmp_path):
    """The lease that lived in a temporary server's memory kept a killed run's slot forever; a flock dies with its
    holder, and the waiter sleeping on it is woken by that death, not by a poll."""
    holder = _holder(tmp_path)
    got = {}

    def wait() -> None:
        with hold(tmp_path, 1, "export base"):
            got["at"] = time.time()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert "at" not in got  # it really waits while the holder lives
    killed = time.time()
    holder.kill()
    holder.wait()
    waiter.join(timeout=5)
    assert "at" in got, "the waiter never got the dead holder's slot"
    assert got["at"] - killed < 0.5, got["at"] - killed


def test_a_waiter_in_another_process_starts_as_soon_as_the_slot_is_released(tmp_path):
    holder = _holder(tmp_path)
    waiter = subprocess.Popen([sys.executable, "-c", "import sys, time; from tasks.slots import hold\n"
                               f"with hold({str(tmp_path)!r}, 1, 'train sigmoid-bayes'):\n"
                               "    print('acquired at', time.time(), flush=True)\n"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    holder.stdin.close()  # release
    released = float(holder.stdout.readline().split()[-1])
    acquired = float(waiter.stdout.readline().split()[-1])
    holder.wait()
    waiter.wait()
    assert 0 <= acquired - released < 0.5, acquired - released  # Prefect's 423 + Retry-After polling: up to 30 s


def test_with_two_slots_a_waiter_takes_whichever_is_released_first(tmp_path):
    first, second = _holder(tmp_path, 2, "a"), _holder(tmp_path, 2, "b")
    got = {}

    def wait() -> None:
        with hold(tmp_path, 2, "c") as slot:
            got["slot"], got["at"] = slot.index, time.time()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert not got
    second.kill()  # slot 1: a naive waiter sleeping on slot 0 would wait for the other holder
    second.wait()
    waiter.join(timeout=5)
    assert got.get("slot") == 1
    first.kill()
    first.wait()


def test_exports_go_before_trainings_waiting_in_the_same_process(tmp_path):
    order = []
    gate = threading.Event()

    def take(name: str, priority: int) -> None:
        with hold(tmp_path, 1, name, priority=priority):
            order.append(name)
            gate.wait(5)

    first = threading.Thread(target=take, args=("train linear", TRAIN))
    first.start()
    time.sleep(0.3)
    later = [threading.Thread(target=take, args=(name, p)) for name, p in
             (("train sigmoid-bayes", TRAIN), ("export base", EXPORT))]
    for t in later:
        t.start()
        time.sleep(0.2)  # the training asked first
    gate.set()
    for t in [first, *later]:
        t.join(timeout=10)
    assert order == ["train linear", "export base", "train sigmoid-bayes"], order


def test_holders_are_named_by_the_kernel_not_by_a_stale_note(tmp_path):
    holder = _holder(tmp_path, 1, "train linear seed 3")
    (listed,) = holders(tmp_path, 1)
    assert (listed.pid, listed.stage) == (holder.pid, "train linear seed 3")
    assert f"pid {holder.pid} (train linear seed 3, since" in listed.describe()
    holder.kill()
    holder.wait()
    # the dead holder's note is still in the file: a reader of the note alone would name a holder that is gone
    assert json.loads(slot_file(tmp_path, 0).read_text())["pid"] == holder.pid
    assert holders(tmp_path, 1)[0].pid is None and holders(tmp_path, 1)[0].describe() == "slot 0: free"


def test_a_waiting_stage_says_whom_it_waits_for_and_journals_its_hold(tmp_path):
    holder = _holder(tmp_path, 1, "train linear")
    lines = []
    journal = tmp_path / "logs" / "slots.jsonl"

    def wait() -> None:
        with hold(tmp_path, 1, "export base", journal=journal, log=lines.append):
            pass

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.2)
    holder.stdin.close()
    waiter.join(timeout=5)
    holder.wait()
    assert lines and f"slot 0: pid {holder.pid} (train linear, since" in lines[0]
    assert "alphagate slots" in lines[0]
    assert any("got model slot 0 after" in line for line in lines)
    taken, released = [json.loads(line) for line in journal.read_text().splitlines()]
    # one line when taken (a run killed while it holds the slot still shows how long it waited), one when released
    assert (taken["event"], released["event"]) == ("acquired", "released")
    assert taken["stage"] == "export base" and taken["acquired"] - taken["requested"] >= 1.0
    assert released["released"] >= released["acquired"] == taken["acquired"]


def test_slot_counts_are_checked(tmp_path):
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="slots must be a whole number"):
            with hold(tmp_path, bad, "x"):
                pass


def test_alphagate_slots_lists_the_holders(tmp_path):
    holder = _holder(tmp_path, 1, "export linear")
    env = {**os.environ, "ALPHAGATE_SLOTS_DIR": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-m", "flows.cli", "slots"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert shown.returncode == 0, shown.stderr
    assert f"slot 0: pid {holder.pid} (export linear, since" in shown.stdout
    assert str(tmp_path) in shown.stdout


def test_the_cores_a_process_may_use_come_from_its_cap_then_its_affinity(monkeypatch):
    """ALPHAGATE_THREADS caps every thread count (a test worker's share, a user's cap); without it, the CPUs the
    process may run on (taskset, a cpuset), not the machine's count; a cap that is not a whole number >= 1 is refused
    with what to do."""
    import os

    from tasks.environment import cpu_cores

    monkeypatch.delenv("ALPHAGATE_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert cpu_cores() == 1  # pinned to one CPU of 64: one thread, not 64 spinning on it
    monkeypatch.setenv("ALPHAGATE_THREADS", "3")
    assert cpu_cores() == 3
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("ALPHAGATE_THREADS", bad)
        with pytest.raises(ValueError, match="ALPHAGATE_THREADS must be a whole number"):
            cpu_cores()
