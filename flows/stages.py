"""The pipeline's Prefect tasks: each one line around its stage in tasks/stages/ (the stage contract: tasks/keyed.py).

Every stage output lives at ``<out>/store/<stage>/<key>/``, where the key hashes all of the stage's inputs (the
settings it is handed, the sha256 of the artifacts and files it consumes, its code version; tasks/keys.py). Tasks
hand each other ``Ref``s (kind, key, path, sha256) and validated settings, never a config path.

Prefect's cache sits on top of that, never instead of it: a model stage's cache key is its stage key *plus* the sha256
of the intact output found at the key's folder (tasks.keyed.cache_token). When that output is missing or damaged the
cache key is None, so the body runs and rebuilds it (a cache hit can never hand out a reference to a deleted or changed
file); when it is intact, the body only finds and verifies it, and from the next run on the task is a plain cache hit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task

from flows.run_results import artifact
from tasks.config import BaseModelSpec, DataSpec, DecisionSpec, DPOSpec, ExportSpec, PipelineConfig, UploadSpec
from tasks.keyed import Plan, cache_token
from tasks.native_log import task_native_log
from tasks.stages import evaluation, models, verdict
from tasks.store import Ref


def keyed_cache(plan: Callable[..., Plan]):
    """cache_key_fn: the stage's cache token (tasks.keyed.cache_token), or None (no caching) when it has none."""
    def key(context, parameters: dict[str, Any]) -> str | None:
        try:
            return cache_token(plan(**parameters))
        except Exception:  # noqa: BLE001 - no cache then; the task body raises the same error, with its message
            return None

    return key


# --- models: data, base, trainings, DPO, exports ------------------------------------------------------------------

@task(cache_key_fn=keyed_cache(models.data_plan), persist_result=True, retries=1, retry_delay_seconds=5)
def prepare_data_task(spec: DataSpec, root: str) -> Ref:
    return models.prepare_data(spec, root)


@task(retries=1, retry_delay_seconds=5)  # found by key in the base-model cache (a hash and a check when it is there)
def base_model_task(spec: BaseModelSpec, cache_dir: str) -> Ref:
    return models.base_model(spec, cache_dir)


@task(cache_key_fn=keyed_cache(models.train_plan), persist_result=True, retries=1, retry_delay_seconds=10,
      log_prints=False)
def train_task(config: PipelineConfig, variant: str, data: Ref, base: Ref, root: str, expected_key: str | None = None,
               seed: int | None = None, tuner_trials: int | None = None) -> Ref:
    return models.train(config, variant, data, base, root, expected_key, seed, tuner_trials)


@task(cache_key_fn=keyed_cache(models.train_plan), persist_result=True)
def remote_train_task(deployment: str, config: PipelineConfig, variant: str, data: Ref, base: Ref, root: str,
                      seed: int | None = None, tuner_trials: int | None = None) -> Ref:
    """Train on a work pool (a GPU one): run the alphagate-train deployment and wait for it. The worker writes into
    the keyed folder, so it must see the same filesystem; paths are passed absolute."""
    from prefect.deployments import run_deployment

    from tasks.keyed import found

    planned = models.train_plan(config, variant, data, base, root, seed, tuner_trials)
    parameters = {"config": config.model_dump(mode="json"), "variant": variant, "data": data.model_dump(),
                  "base": base.model_dump(), "root": str(Path(root).resolve()), "expected_key": planned.key,
                  "seed": seed, "tuner_trials": tuner_trials}
    run = run_deployment(deployment, parameters=parameters, timeout=None)
    if run.state is None or not run.state.is_completed():
        raise RuntimeError(f"Training {variant} on deployment {deployment} ended {run.state and run.state.name}: "
                           f"see flow run {run.id} in the UI; rerun the comparison to retry it.")
    if (ref := found(planned)) is None:
        raise FileNotFoundError(f"Deployment {deployment} finished but {planned.out.resolve()} holds no intact output "
                                "of this key: the worker must write to a filesystem this process sees (a shared "
                                "mount) and run the same code version.")
    return ref


@task(cache_key_fn=keyed_cache(models.dpo_plan), persist_result=True, retries=1, retry_delay_seconds=10,
      log_prints=False)
@task_native_log
def dpo_task(spec: DPOSpec, slots: int | None, parent: Ref, gguf: str, root: str, extra_benchmark_dirs: list[str]
             ) -> Ref:
    return models.dpo(spec, slots, parent, gguf, root, extra_benchmark_dirs)


@task(cache_key_fn=keyed_cache(models.export_plan), persist_result=True, retries=1, retry_delay_seconds=5)
@task_native_log
def export_task(spec: ExportSpec, config_name: str, slots: int | None, model: Ref, root: str, formats: list[str],
                label: str) -> Ref:
    """``label``: linear, sigmoid-bayes, ... (files <config name>-<label>-BF16.gguf ...) or base."""
    return models.export(spec, config_name, slots, model, root, formats, label)


# --- evaluation ---------------------------------------------------------------------------------------------------

@task(cache_key_fn=keyed_cache(evaluation.eval_plan), persist_result=True, retries=2, retry_delay_seconds=5)
@task_native_log
def eval_task(gguf: str, suite: str, root: str, data: str | None, limit: int | None, judge: str | None,
              mmproj: str | None = None, image_root: str | None = None, threads: int | None = None) -> Ref:
    done = evaluation.evaluate(gguf, suite, root, data, limit, judge, mmproj, image_root, threads)
    artifact("table", f"eval-{Path(gguf).stem}-{suite}", done.table, done.description)
    return done.ref


@task(persist_result=True)
def results_task(suites: dict[str, Ref], root: str) -> Ref:
    return evaluation.result_set(suites, root)


@task(persist_result=True, retries=1, retry_delay_seconds=5)
@task_native_log
def speed_task(ggufs: dict[str, str], root: str, repeats: int = 5, max_tokens: int = 64) -> Ref:
    return evaluation.speed(ggufs, root, repeats, max_tokens)


# --- degradation, decision, report, upload, names ------------------------------------------------------------------

@task(persist_result=True)
def degrade_task(spec: DecisionSpec, results: dict[str, Ref], root: str) -> Ref:
    return verdict.degrade(spec, results, root)


@task(persist_result=True)
def decide_task(spec: DecisionSpec, results: dict[str, list[Ref]], exports: dict[str, Ref], runs: dict[str, Ref],
                degradation: Ref, speed: Ref, expected_suites: list[str], root: str,
                labels: dict[str, list[str]] | None = None, look: dict[str, Any] | None = None) -> dict[str, Any]:
    return verdict.decide(spec, results, exports, runs, degradation, speed, expected_suites, root, labels, look)


@task(persist_result=True)
def report_task(results: dict[str, Ref], decision: Ref, degradation: Ref, runs: dict[str, Ref], root: str,
                study: str | None = None) -> Ref:
    return verdict.report(results, decision, degradation, runs, root, study)  # published by the run a user started


@task
def preflight_task(spec: UploadSpec, config_file: str) -> str | None:
    return verdict.preflight(spec, config_file)


@task
def upload_task(config: PipelineConfig, decision: Ref, exports: dict[str, Ref], runs: dict[str, Ref], root: str,
                dry_run: bool, results: dict[str, Ref] | None = None) -> dict[str, Any]:
    return verdict.upload(config, decision, exports, runs, root, dry_run, results)


@task
def details_task(spec: UploadSpec, config_name: str, decision: Ref, root: str) -> Ref | None:
    return verdict.details(spec, config_name, decision, root)


@task
def publish_names_task(root: str, config_file: str, refs: dict[str, Ref]) -> str:
    return verdict.names(root, config_file, refs)


# --- where results and evaluations run ----------------------------------------------------------------------------

def result_storage(spec: str | None):
    """orchestration.result_storage -> what Flow.with_options(result_storage=...) takes: None (Prefect's default
    folder), a local Path, or the slug of a saved RemoteFileSystem block for an fsspec URL."""
    if spec is None:
        return None
    if "://" not in spec:
        return Path(spec).expanduser().resolve()
    from prefect.filesystems import RemoteFileSystem

    name = "alphagate-results-" + hashlib.sha256(spec.encode()).hexdigest()[:12]
    RemoteFileSystem(basepath=spec.rstrip("/")).save(name, overwrite=True)  # remote workers load it by slug
    return f"remote-file-system/{name}"


def eval_task_runner(orchestration):
    """The task runner of the benchmark fan-out: threads here, or Dask (a scheduler address, or a LocalCluster of
    ``eval_workers`` single-threaded processes started for the run)."""
    if orchestration.eval_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=orchestration.eval_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise ImportError("orchestration.eval_runner is 'dask' but prefect-dask is not installed: "
                          "pip install prefect-dask (it is a dependency of this project).") from exc
    if orchestration.dask_address:
        return DaskTaskRunner(address=orchestration.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": orchestration.eval_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})
