"""Orchestration beyond the default: progress/table artifacts, result storage, the Dask fan-out, trainings on
a work pool (stopping and resuming a run: test_kill.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("prefect")
ROOT = Path(__file__).resolve().parents[1]


def _artifacts(kind: str):
    import asyncio

    from prefect.client.orchestration import get_client

    async def read():  # the raw filter call: this prefect's read_artifacts sends nulls its own server rejects
        async with get_client() as client:
            response = await client._client.post("/artifacts/filter", json={
                "artifacts": {"type": {"any_": [kind]}}, "limit": 200, "offset": 0, "sort": "CREATED_DESC"})
            return [SimpleNamespace(**a) for a in response.json()]

    return asyncio.run(read())


def test_progress_outside_prefect_counts_and_writes_no_artifact():
    from tasks.progress import Progress

    with Progress(3, "loop", console=False) as progress:
        assert list(progress.iterate("abc")) == ["a", "b", "c"]
    assert progress.done == 3 and progress.artifact_id is None


def test_progress_inside_a_task_run_is_a_prefect_progress_artifact(harness):
    from prefect import flow, task

    from tasks.progress import Progress

    @task
    def loop() -> str:
        with Progress(5, "items of a suite", min_interval=0.0) as progress:
            for _ in progress.iterate(range(5)):
                pass
        return str(progress.artifact_id)

    @flow
    def run() -> str:
        return loop()

    artifact_id = run()
    found = [a for a in _artifacts("progress") if str(a.id) == artifact_id]
    assert found and found[0].data == 100.0 and "5/5" in found[0].description


def test_result_storage_resolution(harness, tmp_path):
    from prefect.filesystems import RemoteFileSystem

    from flows.stages import result_storage

    assert result_storage(None) is None
    assert result_storage(str(tmp_path / "results")) == (tmp_path / "results").resolve()
    slug = result_storage("memory://alphagate-test/results")
    block = RemoteFileSystem.load(slug.split("/", 1)[1])
    assert block.basepath == "memory://alphagate-test/results"


def test_a_flow_with_fsspec_result_storage_persists_results_there(harness, tmp_path):
    import fsspec
    from prefect import flow, task

    from flows.stages import result_storage

    calls = []

    @task(cache_key_fn=lambda ctx, params: f"alphagate-test-{params['x']}", persist_result=True)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    @flow
    def run(x: int) -> int:
        return square(x)

    url = f"memory://alphagate-{tmp_path.name}"
    configured = run.with_options(result_storage=result_storage(url))
    assert configured(7) == 49 and configured(7) == 49
    assert calls == [7]  # the second run was served from the fsspec store
    assert fsspec.filesystem("memory").exists(f"{url}/alphagate-test-7")


def test_orchestration_config_errors_are_clear():
    from pydantic import ValidationError

    from tasks.config import OrchestrationSpec

    with pytest.raises(ValidationError, match="set eval_runner: dask"):
        OrchestrationSpec(dask_address="tcp://127.0.0.1:8786")
    with pytest.raises(ValidationError, match="train_deployment"):
        OrchestrationSpec(train_deployment="no-slash")


def test_eval_task_runner_follows_the_config():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.stages import eval_task_runner
    from tasks.config import OrchestrationSpec

    threads = eval_task_runner(OrchestrationSpec(eval_workers=3))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    dask = eval_task_runner(OrchestrationSpec(eval_runner="dask", dask_address="tcp://127.0.0.1:8786"))
    assert isinstance(dask, DaskTaskRunner) and dask.address == "tcp://127.0.0.1:8786"
    local = eval_task_runner(OrchestrationSpec(eval_runner="dask", eval_workers=2))
    assert local.address is None and local.cluster_kwargs["n_workers"] == 2


@pytest.mark.slow
def test_benchmark_fan_out_on_a_real_local_dask_cluster(harness, tiny_gguf, tmp_path):
    from distributed import LocalCluster

    from flows.compare import evaluate
    from flows.stages import eval_task_runner
    from tasks.config import OrchestrationSpec

    gguf, _ = tiny_gguf
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        runner = eval_task_runner(OrchestrationSpec(eval_runner="dask", dask_address=cluster.scheduler_address))
        done = evaluate.with_options(task_runner=runner)({"tiny": {"bf16": str(gguf)}},
                                                         ["mmlu", "arc_challenge", "hellaswag"],
                                                         str(tmp_path / "eval"), "sample", 2, None)
        from distributed import Client

        with Client(cluster) as client:  # which eval tasks each worker process executed, from its own log: the
            # transitions out of "executing" (a task stolen from a worker's queue is logged there too, never run)
            executed = client.run(lambda dask_worker: sorted({e[0] for e in dask_worker.state.log
                                                              if str(e[0]).startswith("eval_task") and len(e) == 7
                                                              and e[1] == "executing"}))
        workers = {w.pid for w in cluster.scheduler.workers.values()}
    assert set(done) == {"tiny/bf16/mmlu", "tiny/bf16/arc_challenge", "tiny/bf16/hellaswag"}
    for key, ref in done.items():
        suite = key.rsplit("/", 1)[1]
        summary = json.loads((Path(ref.path) / f"{suite}.summary.json").read_text())
        assert summary["scored"] == 2 and Path(ref.path).parent == (tmp_path / "eval" / "store" / "eval").resolve()
    assert len(workers) == 2 and os.getpid() not in workers  # separate worker processes did the work
    assert sum(len(keys) for keys in executed.values()) == 3, executed  # every suite ran on a worker


def test_prefect_yaml_has_a_gpu_training_deployment():
    import yaml

    from flows.compare import train

    spec = yaml.safe_load((ROOT / "deployments/prefect-gpu.yaml").read_text())  # deployed only when asked for
    gpu = {d["name"]: d for d in spec["deployments"]}["gpu"]
    path, func = gpu["entrypoint"].split(":")
    assert (ROOT / path).is_file() and func == train.fn.__name__
    assert gpu["work_pool"]["name"] == "alphagate-gpu"


def _fake_deployment(monkeypatch, outcome: str, write: bool = True):
    import inspect

    import prefect.deployments
    from prefect.states import Completed, Failed

    from flows.compare import train
    from tasks.config import PipelineConfig
    from tasks.stages.models import train_plan
    from tasks.store import Ref, seal, staging_dir

    calls = []

    def run_deployment(name, parameters, timeout=None):
        calls.append((name, parameters))
        assert set(parameters) == set(inspect.signature(train.fn).parameters)  # exactly what the flow takes
        assert Path(parameters["root"]).is_absolute()
        json.dumps(parameters)  # a deployment's parameters travel as JSON: the validated config goes dumped
        if write and outcome == "ok":  # the worker's training writes its keyed output on the shared filesystem
            refs = {k: Ref(**parameters[k]) for k in ("data", "base")}
            config = PipelineConfig.model_validate(parameters["config"])  # what the worker's flow validates
            planned = train_plan(config, parameters["variant"], root=parameters["root"], **refs)
            assert planned.key == parameters["expected_key"]
            with staging_dir(planned.out) as tmp:
                (tmp / "run.json").write_text(json.dumps({"variant": parameters["variant"]}))
                seal(tmp, "train", planned.key, {})
        return SimpleNamespace(id="run-1", state=Completed() if outcome == "ok" else Failed(message="boom"))

    monkeypatch.setattr(prefect.deployments, "run_deployment", run_deployment)
    return calls


def test_remote_training_goes_to_the_deployment_and_checks_its_outcome(monkeypatch, tmp_path, tiny_base_dir):
    from flows.stages import remote_train_task
    from tasks.config import load_config
    from tasks.store import Ref

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\n")
    config = load_config(tmp_path / "c.yaml")
    data, base = Ref(kind="data", key="d", path="/x/d", sha256="d" * 64), Ref(kind="base", key="b", path="/x/b",
                                                                             sha256="b" * 64)
    calls = _fake_deployment(monkeypatch, "ok")
    ref = remote_train_task.fn("alphagate-train/gpu", config, "linear", data, base, "run")
    assert calls[0][0] == "alphagate-train/gpu" and calls[0][1]["variant"] == "linear"
    assert Path(ref.path).parent == (tmp_path / "run" / "store" / "train").resolve() and len(ref.sha256) == 64
    _fake_deployment(monkeypatch, "failed")
    with pytest.raises(RuntimeError, match="alphagate-train/gpu ended Failed"):
        remote_train_task.fn("alphagate-train/gpu", config, "sigmoid-bayes", data, base, "run")
    _fake_deployment(monkeypatch, "ok", write=False)
    with pytest.raises(FileNotFoundError, match="shared mount"):
        remote_train_task.fn("alphagate-train/gpu", config, "sigmoid-bayes", data, base, "run")


def test_a_worker_whose_key_differs_refuses_to_train(tmp_path, tiny_base_dir):
    from flows.stages import train_task
    from tasks.config import load_config
    from tasks.store import Ref

    config = tmp_path / "c.yaml"
    config.write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\n")
    config = load_config(config)
    data, base = Ref(kind="data", key="d", path="/x/d", sha256="d" * 64), Ref(kind="base", key="b", path="/x/b",
                                                                             sha256="b" * 64)
    with pytest.raises(RuntimeError, match="computes the training key .* expects 000000000000"):
        train_task.fn(config, "linear", data, base, str(tmp_path / "run"), expected_key="0" * 64)
    assert not (tmp_path / "run").exists()


