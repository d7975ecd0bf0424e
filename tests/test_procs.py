"""Stages in child processes (tasks/procs.py) and the machine's training slots (tasks/model_slots.py; the slots
themselves: test_slots.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.procs import StageProcessError, run_in_process

ROOT = Path(__file__).resolve().parents[1]


def test_the_child_returns_its_value_and_its_output_reaches_the_log(monkeypatch):
    import logging

    import tasks.procs

    records = []
    collector = logging.getLogger("test-procs-collector")
    collector.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})())
    collector.setLevel(logging.INFO)
    monkeypatch.setattr(tasks.procs, "output_sink", lambda: collector)
    value = run_in_process("tests.proc_targets:echo", {"value": [1, "a"], "lines": 3}, label="echo")
    assert value["value"] == [1, "a"] and value["pid"] != os.getpid()
    logged = [r.getMessage() for r in records]
    assert "[echo] line 2" in logged
    assert "[echo] progress 100%" in logged  # a redrawn progress line: what it finally showed, not every frame
    assert "[echo] progress 10%" not in logged
    assert any(m.startswith("echo: done in") and "peak RSS" in m for m in logged)


def test_an_error_in_the_child_reaches_the_caller_with_its_message_and_traceback():
    with pytest.raises(StageProcessError, match=r"train linear failed in its process .*ValueError: no data") as err:
        run_in_process("tests.proc_targets:fail", {"message": "no data"}, label="train linear")
    assert "proc_targets.py" in str(err.value)  # the child's traceback, not only its last line


def test_a_killed_child_is_named_with_its_signal_and_last_output():
    with pytest.raises(StageProcessError, match="killed by SIGKILL.*out-of-memory") as err:
        run_in_process("tests.proc_targets:killed", {}, label="train sigmoid-bayes")
    assert "allocating a lot" in str(err.value)


def test_one_dying_stage_does_not_take_the_other_down():
    results = {}

    def run(name, target, kwargs):
        try:
            results[name] = run_in_process(target, kwargs, label=name)
        except StageProcessError as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=("a", "tests.proc_targets:sleep", {"seconds": 3})),
               threading.Thread(target=run, args=("b", "tests.proc_targets:killed", {}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results["b"], StageProcessError)
    assert isinstance(results["a"], int)  # the other one finished and returned


def test_bad_targets_and_threads_are_refused_clearly():
    with pytest.raises(StageProcessError, match="target must be 'package.module:function'"):
        run_in_process("tests.proc_targets.echo", {}, label="x")
    with pytest.raises(ValueError, match="threads must be a whole number"):
        run_in_process("tests.proc_targets:echo", {"value": 1}, label="x", threads=0)


def test_threads_cap_the_childs_torch_threads():
    assert run_in_process("tests.proc_targets:torch_threads", {}, label="threads", threads=1) == 1


def test_a_child_whose_caller_is_killed_exits_instead_of_holding_memory(tmp_path):
    marker, scratch = tmp_path / "child.pid", tmp_path / "tmp"
    scratch.mkdir()
    caller = subprocess.Popen([sys.executable, "-c", "from tasks.procs import run_in_process; "
                               f"run_in_process('tests.proc_targets:sleep', {{'seconds': 120, 'marker': '{marker}'}}, "
                               "label='orphan')"], cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.time() + 60
    while not marker.is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert marker.is_file(), "the child never started"
    child = int(marker.read_text())
    caller.kill()
    caller.wait()
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(child, 9)
        pytest.fail("the child outlived its killed caller")
    assert list(scratch.iterdir()) == []  # the spec folder the killed caller could not remove is gone too
    # a caller and its stage process both killed outright leave their folder: the next stage process sweeps it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left, alive = scratch / f"alphagate-proc-{dead.pid}-x", scratch / f"alphagate-proc-{os.getpid()}-y"
    for folder in (left, alive):
        folder.mkdir()
        (folder / "spec.json").write_text("{}")
    import tempfile

    from tasks import procs

    saved, tempfile.tempdir = tempfile.tempdir, str(scratch)
    try:
        assert procs.run_in_process("tests.proc_targets:echo", {"value": 1}, label="sweep")["value"] == 1
    finally:
        tempfile.tempdir = saved
    assert not left.exists() and alive.is_dir()  # the dead caller's folder is swept, a living one's kept


# --- slots -----------------------------------------------------------------------------------------------------

def test_the_machine_default_is_one_slot_on_small_cpus_and_on_gpus():
    from tasks.model_slots import machine_train_slots, threads_per_slot

    # cores // 8 alone would give 0 slots on this 2-core machine: every training would wait forever
    assert machine_train_slots(cores=2, cuda=False) == 1
    assert machine_train_slots(cores=15, cuda=False) == 1
    assert machine_train_slots(cores=16, cuda=False) == 2
    assert machine_train_slots(cores=128, cuda=False) == 4
    assert machine_train_slots(cores=128, cuda=True) == 1
    assert threads_per_slot(2, cores=2, cuda=False) == 1 and threads_per_slot(4, cores=2, cuda=False) == 1
    assert threads_per_slot(1, cores=2, cuda=False) == 2 and threads_per_slot(2, cores=16, cuda=True) is None


def test_train_slots_is_validated():
    from pydantic import ValidationError

    from tasks.config import OrchestrationSpec

    assert OrchestrationSpec().train_slots is None
    for bad in (0, -1, 65, "two"):
        with pytest.raises(ValidationError, match="train_slots"):
            OrchestrationSpec(train_slots=bad)


@pytest.mark.slow
def test_two_trainings_run_side_by_side_with_two_slots_and_give_the_serial_results(harness, tiny_base_dir,
                                                                                  smoke_store, tmp_path):
    """Real smoke trainings through train_task with train_slots 2: the intervals the trainings record themselves
    overlap; the trained weights are the same bytes as the session's smoke run trained with one slot, one after the
    other (its journal says so), not trained again here."""
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.stages import train_task
    from tasks.config import load_config
    from tasks.data.base_model import base_ref
    from tasks.data.sft import data_ref

    config = tmp_path / "slots2.yaml"
    config.write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\n"
                      "train: {max_steps: 2, batch_size: 2, eval_every: 2, max_length: 96}\n"
                      "tuner: {n_trials: 1, proxy_steps: 1, n_initial_points: 1}\n"
                      "orchestration: {train_slots: 2}\n")
    spec, root = load_config(config), tmp_path / "run2"
    base, data = base_ref(spec.base_model, tmp_path / "cache"), data_ref(spec.data, root / "data")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def both():
        futures = [train_task.submit(spec, v, data, base, str(root)) for v in ("linear", "sigmoid-bayes")]
        return [f.result() for f in futures]

    def journal(folder: Path) -> list[dict]:
        lines = (folder / "logs" / "trainings.jsonl").read_text().splitlines()
        return sorted((json.loads(line) for line in lines), key=lambda r: r["started"])

    parallel_out = {Path(ref.path).name: Path(ref.path) for ref in both()}
    serial, parallel = journal(smoke_store), journal(root)
    serial_out = {p.name: p for p in (smoke_store / "store" / "train").iterdir() if not p.name.startswith(".")}
    assert len(serial) == len(parallel) == 2 and len({r["pid"] for r in serial + parallel}) == 4
    assert serial[1]["started"] >= serial[0]["ended"]  # one slot (the default here): the second waited
    assert parallel[1]["started"] < parallel[0]["ended"]  # two slots: both ran at once
    assert serial_out.keys() == parallel_out.keys()  # the same keys (train_slots is not a training input) ...
    for key, folder in serial_out.items():  # ... and the same trained weights
        for name in ("gates.safetensors", "adapter/adapter_model.safetensors"):
            assert (folder / name).read_bytes() == (parallel_out[key] / name).read_bytes(), (key, name)
        run_json = json.loads((parallel_out[key] / "run.json").read_text())
        assert run_json["process"]["pid"] in {r["pid"] for r in parallel}  # run.json records its own process


def test_the_childs_progress_becomes_an_artifact_of_the_task_that_started_it(harness):
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterTaskRunId, ArtifactFilterType

    @task
    def stage():
        from prefect.context import TaskRunContext

        run_in_process("tests.proc_targets:with_progress", {"steps": 3}, label="steps")
        return str(TaskRunContext.get().task_run.id)

    @flow
    def parent():
        return stage()

    task_run = parent()
    with get_client(sync_client=True) as client:
        mine = client.read_artifacts(artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"]),
                                                                    task_run_id=ArtifactFilterTaskRunId(any_=[task_run])))
    assert {str(a.task_run_id) for a in mine} <= {task_run}
    assert mine and (100.0, "child steps: 3/3") in [(a.data, a.description) for a in mine]


def test_a_stage_process_refuses_a_key_other_than_the_one_the_flow_addressed():
    from tasks.keys import check_expected_key

    check_expected_key("export", "a" * 64, "a" * 64)
    check_expected_key("export", "a" * 64, None)  # outside the flow (CLI): nothing to compare with
    # the code changed between the flow's plan and the child's start: same stage, same inputs, another key
    with pytest.raises(RuntimeError, match="computes the key aaaaaaaaaaaa… but the flow addressed bbbbbbbbbbbb"):
        check_expected_key("training", "a" * 64, "b" * 64)
