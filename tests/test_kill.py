"""A run can be stopped at any stage and resumed (issue 23): SIGKILL, SIGTERM and SIGINT at each stage — waiting for a
model slot, training, export, evaluation, decision, report — of `alphagate run` on a smoke config, one run after
another in one output folder and one PREFECT_HOME.

- SIGTERM (to the run's pid, as `kill` and `timeout` send it) and SIGINT (to its process group, as Ctrl-C does) end
  every process the run started within 10 s, with status 143/130 and a last line that says how to resume, and leave
  no staging folder behind.
- After a SIGKILL, which the run never sees, what it started (stage processes, Prefect's temporary server) is gone
  within 10 s, and the next run takes a model slot within 5 s of asking: the dead run's slot died with it.
- The last run completes, and what had finished before was not redone.

Where a stage is too short to hit (evaluation, decision, report on two items), a sitecustomize on the run's
PYTHONPATH pauses it (tests/pause_hook/): the run is stopped while that stage is running.
"""

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

ROOT = Path(__file__).resolve().parents[1]
HOOK = Path(__file__).resolve().parent / "pause_hook"
STAGES = ("slot", "export", "train", "eval", "decide", "report")
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


class Run:
    """`alphagate run` in a session of its own, its output collected by a thread."""

    def __init__(self, tmp: Path, config: Path, pause: str | None = None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
                   PYTHONPATH=os.pathsep.join([str(HOOK), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                   ALPHAGATE_TEST_PAUSE=pause or "", ALPHAGATE_TEST_PAUSE_MARKER=str(tmp / "paused"))
        (tmp / "paused").unlink(missing_ok=True)
        self.out = tmp / "run"
        self.leftovers = set(_staging(self.out)) if self.out.is_dir() else set()  # a killed run's, swept at start
        cmd = [sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--out", str(self.out),
               "--cache", str(tmp / "cache"), "--suites", "mmlu", "--formats", "bf16", "--limit", "2"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()
        self.started = time.time()

    def wait_until(self, condition, what: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"the run ended before {what}:\n{''.join(self.lines)[-4000:]}"
            assert time.monotonic() < deadline, f"never reached {what}"
            time.sleep(0.1)

    def processes(self) -> list:
        """Everything this run started (and the reaper, which watches it from a session of its own)."""
        import psutil

        found = psutil.Process(self.proc.pid).children(recursive=True)
        for process in psutil.process_iter(["cmdline"]):
            if "from tasks.guard import reap" in " ".join(process.info["cmdline"] or ()) \
                    and f" {self.proc.pid}" in " " + " ".join(process.info["cmdline"]):
                found.append(process)
        return found


class Held:
    """A process of the test's own that holds a slot (tests/test_slots.py:_holder)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def processes(self) -> list:
        return []


def _staging(out: Path) -> list[Path]:
    return [p for p in (out / "store").glob("*/.*") if ".partial-" in p.name]


def _waiting_for_a_slot(pid: int) -> bool:
    """The kernel's own list: this process sleeps on a flock (a slot, or the queue in front of the slots)."""
    return any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines() if "->" in line)


def _reached(run: Run, stage: str) -> bool:
    if stage == "slot":
        return _waiting_for_a_slot(run.proc.pid)
    if stage in ("export", "train"):  # this run's stage process is writing its output
        return any(p.parent.name == stage and p not in run.leftovers for p in _staging(run.out))
    return (run.out.parent / "paused").is_file()


def _signal(run: Run, sig: int) -> None:
    if sig == signal.SIGINT:
        os.killpg(run.proc.pid, sig)  # Ctrl-C: the whole foreground group
    else:
        os.kill(run.proc.pid, sig)  # kill, timeout, an orchestrator: the run's pid only


def _gone_within(processes: list, seconds: float) -> list:
    import psutil

    deadline = time.monotonic() + seconds
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    return alive


@pytest.fixture
def smoke_config(tmp_path, tiny_base_dir):
    from tests.test_flow import _config

    path = _config(tmp_path, tiny_base_dir)
    path.write_text(path.read_text() + f"orchestration: {{result_storage: {tmp_path / 'results'}}}\n")
    return path


@pytest.fixture
def runs():
    """Every run a test starts; any still alive when the test ends (a failed assertion) is ended with all it
    started, so a failure leaves nothing behind."""
    started: list[Run] = []
    yield started
    import psutil

    from tasks.guard import end_processes

    for run in started:
        if run.proc.poll() is None:
            end_processes([*run.processes(), psutil.Process(run.proc.pid)], grace=2)


@pytest.mark.slow
def test_a_run_stopped_at_any_stage_by_any_signal_ends_at_once_and_resumes(smoke_config, tmp_path, runs):
    from tasks.environment import slots_root
    from tasks.slots import idle_gaps
    from tests.test_slots import _holder

    blocker = _holder(slots_root(), 1, "another run's training")  # for the "slot" stage: every slot is taken
    runs.append(Held(blocker))
    killed = False
    after_kill = 0  # runs after a SIGKILL that took a slot: none waited more than 5 s for one
    report = []
    for stage in STAGES:
        if stage == "export":
            blocker.stdin.close()
            blocker.wait()
        for sig in SIGNALS:
            run = Run(tmp_path, smoke_config, pause=stage if stage in ("eval", "decide", "report") else None)
            runs.append(run)
            run.wait_until(lambda run=run, stage=stage: _reached(run, stage), f"stage {stage}")
            processes = run.processes()
            assert processes, "the run started no process (no temporary server?)"
            sent = time.monotonic()
            _signal(run, sig)
            run.proc.wait(timeout=10 if sig != signal.SIGKILL else 5)
            left = _gone_within(processes, 10 - (time.monotonic() - sent))
            ended = time.monotonic() - sent
            run.reader.join(timeout=5)
            assert not left, (stage, sig.name, [(p.pid, p.cmdline()) for p in left])
            report.append((stage, sig.name, round(ended, 1)))
            # every slot this run took, it took within 5 s of one being free (after a SIGKILL: of the dead run's)
            gaps = idle_gaps(run.out / "logs" / "slots.jsonl", since=run.started)
            if not all(g["gap_s"] <= 5.0 for g in gaps):
                Path("/tmp/kill_journal.txt").write_text((run.out / "logs" / "slots.jsonl").read_text()
                                                         + f"\nstarted {run.started}\n" + "".join(run.lines))
            assert all(g["gap_s"] <= 5.0 for g in gaps), (stage, sig.name, gaps)
            after_kill += bool(gaps) and killed
            killed = sig == signal.SIGKILL
            if killed:
                continue
            output = "".join(run.lines)
            assert run.proc.returncode == 128 + sig, (stage, sig.name, run.proc.returncode, output[-3000:])
            assert output.rstrip().splitlines()[-1].endswith("Rerun the same command to resume."), output[-3000:]
            assert "Traceback" not in output.split("received: stopping")[-1], output[-3000:]
            assert not _staging(run.out), (stage, sig.name, _staging(run.out))
    print("stopped within (s):", report)
    # the temporary servers wrote to their log, not to the terminal: one header per run that started one
    assert (tmp_path / "prefect-home" / "alphagate-temporary-server.log").read_text().count("--- ") >= len(STAGES)
    assert after_kill >= 2  # at least the runs after the SIGKILLs at export and at training took slots

    trained = (tmp_path / "run" / "logs" / "trainings.jsonl").read_text().splitlines()
    run = Run(tmp_path, smoke_config)
    runs.append(run)
    run.proc.wait(timeout=900)
    run.reader.join(timeout=5)
    output = "".join(run.lines)
    assert run.proc.returncode == 0, output[-4000:]
    assert all(g["gap_s"] <= 5.0 for g in idle_gaps(run.out / "logs" / "slots.jsonl", since=run.started))
    # nothing that had finished was redone: both trainings ran exactly once over all these runs
    assert (tmp_path / "run" / "logs" / "trainings.jsonl").read_text().splitlines() == trained
    assert len(trained) == 2
    decision = json.loads((tmp_path / "run" / "decision" / "decision.json").read_text())
    assert [r["suite"] for r in decision["suites"]] == ["mmlu"]
    assert not _staging(tmp_path / "run")
