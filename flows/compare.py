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

from flows.stages import (
    base_model_task,
    decide_task,
    degrade_task,
    dpo_task,
    eval_task,
    export_task,
    preflight_task,
    prepare_data_task,
    publish_names_task,
    remote_train_task,
    report_task,
    results_task,
    speed_task,
    train_task,
    upload_task,
)
from tasks.store import Ref

VARIANTS = ("linear", "sigmoid-bayes")
SUITES = ["mmlu", "arc_challenge", "hellaswag", "gsm8k", "elyza_tasks_100", "scienceqa"]


class CompareParams(BaseModel):
    """The run form in the Prefect UI."""

    config: str = Field("configs/demo.yaml", description="pipeline config (validated before any work)")
    out: str = Field("runs/demo", description="artifact root: outputs under store/<stage>/<key>/, names beside them")
    cache: str = Field("runs/cache", description="base-model cache")
    suites: list[str] = Field(default_factory=lambda: list(SUITES))
    formats: list[str] | None = Field(None, description="GGUF formats (bf16 always among them); None: the config's "
                                                          "export.formats")
    data: str = Field("sample", description="'sample' (bundled), 'shared', 'hub' or a file")
    limit: int | None = Field(None, description="items per suite (None: all)")
    judge: str | None = Field(None, description="judge YAML for ELYZA-tasks-100")
    upload: bool = Field(False, description="really upload (needs upload.enabled and a token); else a dry run")


DEFAULT_PARAMS = CompareParams()


@flow(name="alphagate-compare", log_prints=True)
def compare(params: CompareParams = DEFAULT_PARAMS) -> dict:
    """Validate the config (a bad one fails here, naming the field, before any work), then run the pipeline
    with the config's orchestration: result storage, evaluation task runner, training deployment."""
    from flows.stages import result_storage
    from tasks.config import load_config
    from tasks.validate import validate_run

    if params.formats is None:
        params = params.model_copy(update={"formats": list(load_config(params.config).export.formats)})
    # every field and file the run reads, before any work (a run started from the UI gets the same checks)
    config = validate_run(params.config, params.suites, params.formats, params.data, params.limit, params.judge)
    orch = config.orchestration
    storage = result_storage(orch.result_storage)
    flow_ = pipeline.with_options(result_storage=storage) if storage else pipeline
    return flow_(params, orch.model_dump(mode="json"), str(storage) if storage else None, config.dpo.enabled)


@flow(name="alphagate-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2))
def pipeline(params: CompareParams, orchestration: dict, storage: str | None = None, dpo: bool = False) -> dict:
    """Every stage output is found by the key of its inputs under <out>/store/ (flows/stages.py); stages hand each
    other refs, so a changed input reruns exactly what depends on it."""
    from flows.stages import eval_task_runner
    from tasks.config import OrchestrationSpec

    orch = OrchestrationSpec.model_validate(orchestration)
    evaluate_flow = evaluate.with_options(task_runner=eval_task_runner(orch))
    if storage:  # a local folder (absolute path) or a saved block's slug
        evaluate_flow = evaluate_flow.with_options(result_storage=Path(storage) if storage.startswith("/") else storage)
    root, config = params.out, params.config
    if params.upload:  # a real upload: token, write access and namespace checked before any training
        preflight_task(config)
    data = prepare_data_task.submit(config, root)
    base = base_model_task.submit(config, params.cache)
    if orch.train_deployment:  # on a (GPU) work pool, both at once
        trains = {v: remote_train_task.submit(orch.train_deployment, config, v, data, base, root) for v in VARIANTS}
    else:
        trains = {v: train_task.submit(config, v, data, base, root) for v in VARIANTS}
    exports = {m: export_task.submit(config, trains[m], root, params.formats, m) for m in VARIANTS}
    if dpo:  # the optional preference stage: "<variant>+dpo", sampled from the parent's BF16 GGUF
        for v in VARIANTS:
            tuned = f"{v}+dpo"
            parent_gguf = exports[v].result().file("bf16")
            trains[tuned] = dpo_task.submit(config, trains[v], str(parent_gguf), root, [])
            exports[tuned] = export_task.submit(config, trains[tuned], root, params.formats, tuned)
    exports["base"] = export_task.submit(config, base, root, params.formats, "base")
    exports = {m: ref.result() for m, ref in exports.items()}
    runs = {m: ref.result() for m, ref in trains.items()}
    files = {m: {f: str(ref.file(f)) for f in params.formats} for m, ref in exports.items()}
    done = evaluate_flow(files, params.suites, root, params.data, params.limit, params.judge)
    results = {f"{m}/{f}": results_task.submit({s: done[f"{m}/{f}/{s}"] for s in params.suites
                                                if done[f"{m}/{f}/{s}"] is not None}, root)
               for m in files for f in params.formats}
    results = {k: ref.result() for k, ref in results.items()}
    degradation = degrade_task(config, results, root)  # reads the suites that completed
    speed = speed_task({v: files[v]["bf16"] for v in VARIANTS}, root)
    decision = decide_task(config, {v: results[f"{v}/bf16"] for v in VARIANTS}, {v: exports[v] for v in VARIANTS},
                           {v: runs[v] for v in VARIANTS}, degradation, speed, list(params.suites), root)
    names: dict[str, Ref] = {"data": data.result(), **runs, "degradation": degradation, "speed": speed,
                             "decision": decision["ref"]}
    names |= {f"export-{m}": ref for m, ref in exports.items()}
    names |= {f"eval/{k.replace('/', '-')}": ref for k, ref in results.items()}
    upload = None
    if decision["upload"]:
        upload = upload_task(config, decision["ref"], {v: exports[v] for v in VARIANTS}, {v: runs[v] for v in VARIANTS},
                             root, not params.upload)
        names["upload"] = upload["ref"]
    report = report_task(results, decision["ref"], degradation, {v: runs[v] for v in VARIANTS},
                         str(Path(root) / "tuner_history.json"), root)
    names["report"] = report
    publish_names_task(root, config, names)
    failed = sorted(k for k, ref in done.items() if ref is None)
    report_md = Path(report.path) / "report.md"
    decision_json = Path(decision["ref"].path) / "decision.json"
    print(f"decision: {decision['reason']}\nreport: {report_md}\ndecision record: {decision_json}"
          + (f"\nfailed evaluations (rerun the flow to retry only these): {', '.join(failed)}" if failed else ""))
    return {"decision": decision["reason"], "report": str(report_md), "decision_record": str(decision_json),
            "upload": upload, "evaluations": len(done), "failed_evaluations": failed}


@flow(name="alphagate-evaluate", validate_parameters=False)
def evaluate(files: dict[str, dict[str, str]], suites: list[str], root: str, data: str, limit: int | None,
             judge: str | None) -> dict[str, Ref | None]:
    """The benchmark fan-out: one task per (model, format, suite); the task runner is the config's (threads,
    or a Dask cluster). Returns "model/format/suite" -> its result's ref, or None when it failed for good (a suite
    that failed does not stop the others)."""
    futures = {f"{m}/{f}/{s}": eval_task.submit(gguf, s, root, data, limit, judge)
               for m, by_format in files.items() for f, gguf in by_format.items() for s in suites}
    for future in futures.values():
        future.wait()
    return {key: future.result() if future.state.is_completed() else None for key, future in futures.items()}


@flow(name="alphagate-train", log_prints=True)
def train(config_path: str, variant: str, data: Ref, base: Ref, root: str, expected_key: str | None = None) -> Ref:
    """One variant's training: what the comparison sends to a GPU work pool (orchestration.train_deployment)."""
    return train_task(config_path, variant, data, base, root, expected_key)
