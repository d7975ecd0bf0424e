"""The comparison flow: wiring only (no maths, no I/O, no torch).

data -> the two trainings in parallel -> export (and the untouched base model) -> one evaluation task per
(model, format, suite) -> degradation, an isolated speed benchmark, decision -> conditional upload (a dry run
unless enabled) -> report.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from tasks.flow_tasks import (
    base_model_task,
    decide_task,
    degrade_task,
    dpo_task,
    eval_task,
    export_task,
    prepare_data_task,
    remote_train_task,
    report_task,
    speed_task,
    train_task,
    upload_task,
)

VARIANTS = ("linear", "sigmoid-bayes")
SUITES = ["mmlu", "arc_challenge", "hellaswag", "gsm8k", "elyza_tasks_100", "scienceqa"]


class CompareParams(BaseModel):
    """The run form in the Prefect UI."""

    config: str = Field("configs/demo.yaml", description="pipeline config (validated before any work)")
    out: str = Field("runs/demo", description="artifact folder for this run")
    cache: str = Field("runs/cache", description="base-model cache")
    suites: list[str] = Field(default_factory=lambda: list(SUITES))
    formats: list[str] = Field(default_factory=lambda: ["bf16", "q8_0", "q4_k_m"])
    data: str = Field("sample", description="'sample' (bundled), 'shared', 'hub' or a file")
    limit: int | None = Field(None, description="items per suite (None: all)")
    judge: str | None = Field(None, description="judge YAML for ELYZA-tasks-100")
    upload: bool = Field(False, description="really upload (needs upload.enabled and a token); else a dry run")


DEFAULT_PARAMS = CompareParams()


@flow(name="alphagate-compare", log_prints=True)
def compare(params: CompareParams = DEFAULT_PARAMS) -> dict:
    """Validate the config (a bad one fails here, naming the field, before any work), then run the pipeline
    with the config's orchestration: result storage, evaluation task runner, training deployment."""
    from tasks.config import load_config
    from tasks.flow_tasks import result_storage

    config = load_config(params.config)
    orch = config.orchestration
    storage = result_storage(orch.result_storage)
    flow_ = pipeline.with_options(result_storage=storage) if storage else pipeline
    return flow_(params, orch.model_dump(mode="json"), str(storage) if storage else None, config.dpo.enabled)


@flow(name="alphagate-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2))
def pipeline(params: CompareParams, orchestration: dict, storage: str | None = None, dpo: bool = False) -> dict:
    from tasks.config import OrchestrationSpec
    from tasks.flow_tasks import eval_task_runner

    orch = OrchestrationSpec.model_validate(orchestration)
    train_deployment = orch.train_deployment
    evaluate_flow = evaluate.with_options(task_runner=eval_task_runner(orch))
    if storage:  # a local folder (absolute path) or a saved block's slug
        evaluate_flow = evaluate_flow.with_options(result_storage=Path(storage) if storage.startswith("/") else storage)
    out = Path(params.out)
    data = prepare_data_task.submit(params.config, str(out / "data"))
    base = base_model_task.submit(params.config, params.cache)
    if train_deployment:  # on a (GPU) work pool, both at once
        trains = {v: remote_train_task.submit(train_deployment, params.config, v, str(out / v), str(out / "data"),
                                              params.cache, wait_for=[data, base]) for v in VARIANTS}
    else:
        trains = {v: train_task.submit(params.config, v, str(out / v), str(out / "data"), params.cache,
                                       wait_for=[data, base]) for v in VARIANTS}
    exports = {m: export_task.submit(str(out / m), str(out / f"export-{m}"), params.formats,
                                     wait_for=[trains[m]]) for m in VARIANTS}
    if dpo:  # the optional preference stage: "<variant>+dpo", sampled from the parent's BF16 GGUF
        for v in VARIANTS:
            tuned = f"{v}+dpo"
            trains[tuned] = dpo_task.submit(str(out / v), str(out / tuned), exports[v].result()["files"]["bf16"])
            exports[tuned] = export_task.submit(str(out / tuned), str(out / f"export-{tuned}"), params.formats,
                                                wait_for=[trains[tuned]])
    exports["base"] = export_task.submit(base.result()["path"], str(out / "export-base"), params.formats,
                                         name="base")
    files = {model: ref.result()["files"] for model, ref in exports.items()}
    done = evaluate_flow(files, params.suites, str(out / "eval"), params.data, params.limit, params.judge)
    results = {f"{m}/{f}": str(out / "eval" / f"{m}-{f}") for m in files for f in params.formats}
    degradation = degrade_task(params.config, results, str(out / "decision"))  # reads the suites that completed
    speed = speed_task({v: files[v]["bf16"] for v in VARIANTS}, str(out / "decision" / "speed.json"))
    decision = decide_task(params.config, {v: results[f"{v}/bf16"] for v in VARIANTS},
                           {v: str(out / f"export-{v}") for v in VARIANTS}, {v: str(out / v) for v in VARIANTS},
                           degradation, str(out / "decision"), expected_suites=list(params.suites), speed=speed)
    upload = None
    if decision["upload"]:
        upload = upload_task(str(out / "decision" / "decision.json"), str(out / "upload"), not params.upload)
    report = report_task(results, str(out / "report"), str(out / "decision" / "decision.json"), degradation,
                         {v: str(out / v) for v in VARIANTS}, str(out / "tuner_history.json"))
    failed = sorted(k for k, ok in done.items() if not ok)
    print(f"decision: {decision['reason']}\nreport: {report}\ndecision record: {out / 'decision' / 'decision.json'}"
          + (f"\nfailed evaluations (rerun the flow to retry only these): {', '.join(failed)}" if failed else ""))
    return {"decision": decision["reason"], "report": report, "upload": upload, "evaluations": len(done),
            "failed_evaluations": failed}


@flow(name="alphagate-evaluate", validate_parameters=False)
def evaluate(files: dict[str, dict[str, str]], suites: list[str], out: str, data: str, limit: int | None,
             judge: str | None) -> dict[str, bool]:
    """The benchmark fan-out: one task per (model, format, suite); the task runner is the config's (threads,
    or a Dask cluster). Returns "model/format/suite" -> completed; a suite that failed for good does not stop
    the others."""
    futures = {f"{m}/{f}/{s}": eval_task.submit(gguf, s, str(Path(out) / f"{m}-{f}"), data, limit, judge)
               for m, by_format in files.items() for f, gguf in by_format.items() for s in suites}
    for future in futures.values():
        future.wait()
    return {key: future.state.is_completed() for key, future in futures.items()}


@flow(name="alphagate-train", log_prints=True)
def train(config_path: str, variant: str, out_dir: str, data_dir: str, cache_dir: str) -> dict:
    """One variant's training: what the comparison sends to a GPU work pool (orchestration.train_deployment)."""
    return train_task(config_path, variant, out_dir, data_dir, cache_dir)
