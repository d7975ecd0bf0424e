"""Trainings on a real work pool: the README's commands set up a fresh server, the ``alphagate-gpu`` process pool,
its deployment (deployments/prefect-gpu.yaml) and a worker; a smoke comparison with
``orchestration.train_deployment: alphagate-train/gpu`` sends its two trainings there and finishes with a decision.
Process pool and CPU only: what is tested is the route (parameters, paths, the worker's environment), not a GPU."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from tests.prefect_server import Background, command_kind, free_port, fresh_env, readme_commands, run_commands

DEPLOYMENT = "alphagate-train/gpu"


def pool_commands() -> list[str]:
    """The server part of the README's Prefect block, then the "Beyond one machine" block without any global
    concurrency limit line (the flow makes the limit its trainings take)."""
    server = [c for c in readme_commands("## Prefect:") if command_kind(c) in ("server", "export")]
    pool = [c for c in readme_commands("### Beyond one machine") if command_kind(c) != "gcl"]
    assert [command_kind(c) for c in server + pool] == ["server", "export", "work-pool", "deploy", "worker"], pool
    assert "alphagate-gpu" in pool[0] and "deployments/prefect-gpu.yaml" in pool[1] and "alphagate-gpu" in pool[2]
    return server + pool


@pytest.fixture
def gpu_pool(tmp_path):
    port = free_port()
    env = fresh_env(tmp_path / "prefect-home", port)
    background = Background()
    try:
        run_commands(pool_commands(), env, port, background, tmp_path)
        yield f"http://127.0.0.1:{port}", env, background
    finally:
        background.stop()  # server, worker and any flow run the worker started (in its own session)


@pytest.mark.slow
def test_a_comparison_sends_its_trainings_to_a_real_worker_of_the_gpu_pool(gpu_pool, tiny_base_dir, smoke_store,
                                                                           tmp_path):
    """The session's smoke trainings are in the run folder already (seed_store): the worker's training flow runs,
    finds its output by the key the comparison sent and verifies it; what is tested is the sending, the worker and
    the hand-back, not training again what another test trained."""
    import httpx

    from tasks.store import keyed_dir, verified
    from tests.conftest import seed_store
    from tests.test_flow import _config

    url, env, background = gpu_pool
    config = _config(tmp_path, tiny_base_dir)
    config.write_text(config.read_text() + f"orchestration: {{train_deployment: {DEPLOYMENT}}}\n")
    run = tmp_path / "run"
    seed_store(smoke_store, run)
    command = [sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--out", str(run),
               "--cache", str(tmp_path / "cache"), "--suites", "mmlu", "--formats", "bf16", "--limit", "2"]
    log = tmp_path / "compare.log"
    compare = background.start(shlex.join(command), env, log)  # as a user would: another shell, same API URL
    compare.wait(900)
    assert compare.returncode == 0, background.logs()
    assert "decision: " in log.read_text()

    api = httpx.Client(base_url=f"{url}/api", timeout=30)
    deployment = api.get(f"/deployments/name/{DEPLOYMENT}").json()
    runs = api.post("/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}).json()
    assert sorted(r["parameters"]["variant"] for r in runs) == ["linear", "sigmoid-bayes"], runs
    parent = api.post("/flow_runs/filter", json={"flows": {"name": {"any_": ["alphagate-compare"]}}}).json()
    assert len(parent) == 1
    tasks = api.post("/task_runs/filter", json={"task_runs": {"name": {"like_": "train_task"}}}).json()
    trains = [t for t in tasks if t["name"].startswith("train_task")]
    remote = {t["id"] for t in tasks if t["name"].startswith("remote_train_task")}
    assert len(remote) == 2 and len(trains) == 2, [t["name"] for t in tasks]
    worker = (tmp_path / "worker-alphagate-gpu.log").read_text()
    for r in runs:  # each training: a flow run of the deployment, executed by the worker in its own process
        assert r["state"]["type"] == "COMPLETED", f"{r['state']}\n{background.logs()}"
        assert r["work_pool_name"] == "alphagate-gpu" and r["infrastructure_pid"], r
        assert r["id"] in worker  # the worker's log names the runs it submitted
        link = api.get(f"/task_runs/{r['parent_task_run_id']}").json()  # run_deployment's link in the comparison
        assert {i["id"] for inputs in link["task_inputs"].values() for i in inputs} & remote, link
    assert sorted(t["flow_run_id"] for t in trains) == sorted(r["id"] for r in runs)  # no training ran elsewhere
    assert all(t["state"]["type"] == "COMPLETED" for t in trains)

    index = json.loads((run / "index.json").read_text())["outputs"]
    for r in runs:  # the outputs are where the comparison looks for them, intact, of the key it computed
        params = r["parameters"]
        assert Path(params["root"]) == run.resolve()  # absolute
        from tasks.config import load_config  # the worker is handed the validated config, never a path to re-read

        assert params["config"] == load_config(config).model_dump(mode="json")
        out = keyed_dir(run, "train", params["expected_key"])
        ref = verified(out, params["expected_key"])
        assert ref is not None and ref.kind == "train", out
        assert Path(index[params["variant"]]["path"]) == out.resolve()
    decision = json.loads((run / "decision" / "decision.json").read_text())
    assert [s["suite"] for s in decision["suites"]] == ["mmlu"] and decision["missing_suites"] == {}
    assert sorted(decision["models"]) == ["linear", "sigmoid-bayes"] and decision["outcome"]
    assert (run / "report" / "report.md").is_file()


def test_teardown_ends_what_the_background_commands_started_even_outside_their_group(tmp_path):
    """The process worker starts each flow run in its own session, out of reach of a kill of the worker's group: a
    training still running when a test fails must end too (and the test's process is left alone)."""
    import os
    import time

    import psutil

    from tests.prefect_server import wait

    background = Background()
    shell = background.start("setsid sleep 300 & sleep 300", dict(os.environ), tmp_path / "job.log")
    children = wait(lambda: (c := psutil.Process(shell.pid).children(recursive=True)) and len(c) == 2  # one left
                    and len({os.getpgid(p.pid) for p in c}) == 2 and c, "a child in another group", 10, 0.1)
    start = time.monotonic()
    background.stop()
    def alive(process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE  # a zombie has ended (its parent has not reaped it yet)
        except psutil.NoSuchProcess:
            return False

    assert not [c for c in children if alive(c)] and shell.poll() is not None
    assert time.monotonic() - start < 5  # sleep ends on SIGTERM: no wait for the SIGKILL
