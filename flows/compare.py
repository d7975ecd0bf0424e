"""The comparison flow: wiring only (no maths, no I/O, no torch).

data -> the two trainings in parallel -> export (and the untouched base model) -> one evaluation task per
(model, format, suite) -> degradation + decision -> conditional upload (a dry run unless enabled) -> report.
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
    eval_task,
    export_task,
    prepare_data_task,
    report_task,
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


@flow(name="alphagate-compare", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def compare(params: CompareParams = DEFAULT_PARAMS) -> dict:
    out = Path(params.out)
    data = prepare_data_task.submit(params.config, str(out / "data"))
    base = base_model_task.submit(params.config, params.cache)
    trains = {v: train_task.submit(params.config, v, str(out / v), str(out / "data"), params.cache,
                                   wait_for=[data, base]) for v in VARIANTS}
    exports = {v: export_task.submit(str(out / v), str(out / f"export-{v}"), params.formats,
                                     wait_for=[trains[v]]) for v in VARIANTS}
    exports["base"] = export_task.submit(base.result()["path"], str(out / "export-base"), params.formats,
                                         name="base")
    files = {model: ref.result()["files"] for model, ref in exports.items()}
    labels = [(model, fmt) for model in files for fmt in params.formats]
    evals = {(m, f, s): eval_task.submit(files[m][f], s, str(out / "eval" / f"{m}-{f}"), params.data, params.limit,
                                         params.judge) for m, f in labels for s in params.suites}
    results = {f"{m}/{f}": str(out / "eval" / f"{m}-{f}") for m, f in labels}
    settled = [e.wait() for e in evals.values()]  # a suite that failed for good does not stop the others
    degradation = degrade_task(params.config, results, str(out / "decision"))  # reads the suites that completed
    decision = decide_task(params.config, {v: results[f"{v}/bf16"] for v in VARIANTS},
                           {v: str(out / f"export-{v}") for v in VARIANTS}, {v: str(out / v) for v in VARIANTS},
                           degradation, str(out / "decision"))
    upload = None
    if decision["upload"]:
        upload = upload_task(str(out / "decision" / "decision.json"), str(out / "upload"), not params.upload)
    report = report_task(results, str(out / "report"), str(out / "decision" / "decision.json"), degradation,
                         {v: str(out / v) for v in VARIANTS}, str(out / "tuner_history.json"))
    print(f"decision: {decision['reason']}\nreport: {report}\ndecision record: {out / 'decision' / 'decision.json'}")
    return {"decision": decision["reason"], "report": report, "upload": upload, "evaluations": len(settled)}
