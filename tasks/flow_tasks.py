"""Prefect @task entry points for the pipeline stages (the plain functions live in their own modules).

Caching: a task's cache key hashes its inputs, the content hashes of the files its inputs point at
(run.json / manifest.json / the GGUF / a suite's YAML ...) and the source of the library code the task
calls — not only the task's own body (Prefect's TASK_SOURCE sees just that). Changing one suite's YAML
changes only that suite's evaluation keys. Results persist, so a rerun after success runs no task body.
Tasks pass small references (paths + sha256), never models.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from prefect import task

ROOT = Path(__file__).resolve().parents[1]
# torch/transformers work is not thread-safe within one process: accelerate keeps global state (two Trainers
# in threads corrupt it) and from_pretrained's meta-device initialisation races ("Cannot copy out of meta
# tensor"). Model loading, training and export therefore run one at a time per process; parallel trainings need
# separate processes (Dask workers, work pools). llama.cpp evaluations do not take this lock.
_MODEL_LOCK = threading.Lock()
# stage -> the library code whose change must invalidate the stage's cache
CODE = {
    "data": ["tasks/data.py", "tasks/pii.py", "tasks/config.py", "tasks/resources/sft"],
    "train": ["alpha_gate", "tasks/train.py", "tasks/tune.py", "tasks/train_outputs.py", "tasks/base_model.py",
              "tasks/unsloth_backend.py", "tasks/data.py", "tasks/config.py"],
    "export": ["alpha_gate", "tasks/export.py", "tasks/converter.py", "tasks/gguf_verify.py", "tasks/base_model.py",
               "tasks/train_outputs.py", "tasks/llama_load.py"],
    "eval": ["tasks/llama_load.py", "tasks/bench/engine.py", "tasks/bench/runner.py", "tasks/bench/metrics.py",
             "tasks/bench/suites.py", "tasks/bench/judge.py", "tasks/bench/vision.py"],
    "dpo": ["alpha_gate", "tasks/dpo.py", "tasks/export.py", "tasks/base_model.py", "tasks/data.py",
            "tasks/config.py", "tasks/train_outputs.py", "tasks/bench/metrics.py", "tasks/bench/samples"],
    "speed": ["tasks/bench/speed.py", "tasks/bench/engine.py", "tasks/llama_load.py"],
    "decide": ["tasks/decide.py", "tasks/degrade.py", "tasks/config.py"],
    "report": ["tasks/report.py", "tasks/decide.py", "tasks/bench/metrics.py"],
}


def code_version(stage: str) -> str:
    digest = hashlib.sha256()
    for entry in CODE[stage]:
        path = ROOT / entry
        for f in sorted(path.rglob("*") if path.is_dir() else [path]):
            if f.is_file() and f.suffix in (".py", ".jsonl", ".jinja", ".yaml"):
                digest.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    return digest.hexdigest()


def _file_digest(value: str) -> str | None:
    """Content hash of what an *input* path points at: a file, or a finished stage folder's marker(s)."""
    path = Path(value)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    markers = [path / m for m in ("run.json", "manifest.json", "data_manifest.json", "config.json")]
    markers += sorted(path.glob("*.summary.json")) if path.is_dir() else []
    found = [m for m in markers if m.is_file()]
    return hashlib.sha256(b"".join(m.read_bytes() for m in found)).hexdigest() if found else None


def cache_key(stage: str, inputs: tuple[str, ...] = ()):
    """``inputs``: the parameters that are input paths (or dicts of them) whose content the key hashes.
    Output folders are deliberately not hashed: their content is what the task produces."""

    def key(context, parameters: dict[str, Any]) -> str:
        payload = json.dumps(parameters, sort_keys=True, default=str)
        files = {}
        for name in inputs:
            value = parameters.get(name)
            if isinstance(value, dict):
                files[name] = {k: _file_digest(v) for k, v in sorted(value.items())}
            elif value is not None:
                files[name] = _file_digest(str(value))
        extra = ""
        if stage == "eval":  # only this suite's definition, so editing one suite reruns only that suite
            extra = hashlib.sha256((ROOT / "configs/suites" / f"{parameters['suite']}.yaml").read_bytes()).hexdigest()
        return hashlib.sha256(f"{stage}|{payload}|{json.dumps(files, sort_keys=True)}|{code_version(stage)}|{extra}"
                              .encode()).hexdigest()

    return key


def _artifact(kind: str, key: str, payload, description: str) -> None:
    """A table/markdown artifact for the UI; an artifact that cannot be written never fails the task."""
    import re

    from prefect import artifacts

    key = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")[:100]  # Prefect: lowercase letters, digits, dashes
    try:
        if kind == "table":
            artifacts.create_table_artifact(payload, key=key, description=description)
        else:
            artifacts.create_markdown_artifact(payload, key=key, description=description)
    except Exception as exc:  # noqa: BLE001
        from prefect import get_run_logger

        get_run_logger().warning("could not write the %s artifact %s: %s", kind, key, exc)


def _ref(path: Path, marker: str) -> dict[str, str]:
    return {"path": str(path), "sha256": hashlib.sha256((path / marker).read_bytes()).hexdigest()}


@task(cache_key_fn=cache_key("data", ("config_path",)), persist_result=True, retries=1)
def prepare_data_task(config_path: str, out_dir: str) -> dict[str, str]:
    from tasks.config import load_config
    from tasks.data import prepare_data

    prepare_data(load_config(config_path).data, Path(out_dir))
    return _ref(Path(out_dir), "data_manifest.json")


@task(cache_key_fn=cache_key("train", ("config_path",)), persist_result=True, retries=1)
def base_model_task(config_path: str, cache_dir: str) -> dict[str, str]:
    from tasks.base_model import prepare_base_model
    from tasks.config import load_config

    with _MODEL_LOCK:
        path = prepare_base_model(load_config(config_path).base_model, Path(cache_dir))
    return _ref(path, "config.json")



@task(cache_key_fn=cache_key("train", ("config_path", "data_dir")), persist_result=True, retries=1, log_prints=False)
def train_task(config_path: str, variant: str, out_dir: str, data_dir: str, cache_dir: str) -> dict[str, str]:
    from prefect.concurrency.sync import concurrency

    from tasks.config import load_config
    from tasks.train import train_variant

    with _MODEL_LOCK, concurrency("gpu", occupy=1, strict=False):  # a "gpu" global limit, where one exists
        train_variant(load_config(config_path), variant, Path(out_dir), cache_dir=Path(cache_dir),
                      data_dir=Path(data_dir))
    return _ref(Path(out_dir), "run.json")


@task(cache_key_fn=cache_key("dpo", ("parent_dir", "gguf")), persist_result=True, retries=1, log_prints=False)
def dpo_task(parent_dir: str, out_dir: str, gguf: str | None = None) -> dict[str, str]:
    """The optional preference stage on top of a finished SFT run (config.dpo.enabled); answers are sampled
    from the parent's exported BF16 GGUF."""
    from tasks.dpo import train_dpo

    with _MODEL_LOCK:
        train_dpo(Path(parent_dir), Path(out_dir), gguf=Path(gguf) if gguf else None)
    return _ref(Path(out_dir), "run.json")


@task(cache_key_fn=cache_key("export", ("model_dir",)), persist_result=True, retries=1)
def export_task(model_dir: str, out_dir: str, formats: list[str], name: str | None = None) -> dict[str, Any]:
    from tasks.export import export_model

    with _MODEL_LOCK:
        manifest = export_model(Path(model_dir), Path(out_dir), formats, name=name)
    return {**_ref(Path(out_dir), "manifest.json"),
            "files": {f["format"]: str(Path(out_dir) / f["path"]) for f in manifest["files"]}}


@task(cache_key_fn=cache_key("eval", ("gguf", "judge", "data")), persist_result=True, retries=2,
      retry_delay_seconds=[2, 10])
def eval_task(gguf: str, suite: str, out_dir: str, data: str | None, limit: int | None,
              judge: str | None) -> dict[str, str]:
    from tasks.bench.runner import RunOptions, run_suite

    judge_spec = None
    if judge:
        from tasks.bench.judge import load_judge_spec

        judge_spec = load_judge_spec(judge)
    summary = run_suite(Path(gguf), suite, Path(out_dir), RunOptions(data=data, limit=limit, judge=judge_spec))
    rows = [{"metric": name, "mean": m["mean"], "ci95_low": (m["ci95"] or [None, None])[0],
             "ci95_high": (m["ci95"] or [None, None])[1], "n": m["n"]} for name, m in summary["metrics"].items()]
    _artifact("table", f"eval-{Path(out_dir).name}-{suite}", rows,
              f"{suite} on {Path(gguf).name}: {summary['scored']} scored, {summary['skipped']} skipped")
    return {"path": str(out_dir), "suite": suite,
            "sha256": hashlib.sha256((Path(out_dir) / f"{suite}.summary.json").read_bytes()).hexdigest()}


@task(cache_key_fn=cache_key("speed", ("ggufs",)), persist_result=True, retries=1)
def speed_task(ggufs: dict[str, str], out: str) -> str:
    """The decision's speed samples, measured on their own (after the evaluations, nothing in parallel)."""
    from tasks.bench.speed import measure_speed

    measure_speed({k: Path(v) for k, v in ggufs.items()}, out=Path(out))
    return out


@task(cache_key_fn=cache_key("decide", ("config_path", "results", "exports", "runs", "degradation", "speed")),
      persist_result=True)
def decide_task(config_path: str, results: dict[str, str], exports: dict[str, str], runs: dict[str, str],
                degradation: str | None, out_dir: str, expected_suites: list[str] | None = None,
                speed: str | None = None) -> dict[str, Any]:
    from tasks.config import load_config
    from tasks.decide import decide, decision_markdown

    spec = load_config(config_path).decision
    record = decide({k: Path(v) for k, v in results.items()}, spec, Path(out_dir),
                    exports={k: Path(v) for k, v in exports.items()}, runs={k: Path(v) for k, v in runs.items()},
                    degradation=Path(degradation) if degradation else None, expected_suites=expected_suites,
                    speed=Path(speed) if speed else None)
    _artifact("markdown", "alphagate-decision", decision_markdown(record), "the winner, or why there is none")
    if record.get("suites"):
        _artifact("table", "alphagate-decision-suites",
                  [{k: r[k] for k in ("suite", "metric", "n_paired", "a", "b", "test", "p_value", "p_holm",
                                      "significant")} for r in record["suites"]],
                  f"paired tests per suite: a = {record['models'][0]}, b = {record['models'][1]}")
    return record


@task(cache_key_fn=cache_key("decide", ("config_path", "results")), persist_result=True)
def degrade_task(config_path: str, results: dict[str, str], out_dir: str) -> str:
    from tasks.config import load_config
    from tasks.degrade import write_analysis

    write_analysis({k: Path(v) for k, v in results.items()}, load_config(config_path).decision, Path(out_dir))
    return str(Path(out_dir) / "degradation.json")


@task(cache_key_fn=cache_key("report", ("results", "decision", "degradation", "runs", "tuner")),
      persist_result=True)
def report_task(results: dict[str, str], out_dir: str, decision: str, degradation: str,
                runs: dict[str, str], tuner: str | None) -> str:
    from tasks.report import write_report

    path = write_report({k: Path(v) for k, v in results.items()}, Path(out_dir), decision=Path(decision),
                        degradation=Path(degradation), runs={k: Path(v) for k, v in runs.items()},
                        tuner=Path(tuner) if tuner and Path(tuner).is_file() else None)
    _artifact("markdown", "alphagate-report", f"Report: `{Path(path).resolve()}`\n\n"
              + Path(path).read_text(encoding="utf-8"), "the comparison report (figures beside it on disk)")
    return str(path)


@task(cache_key_fn=cache_key("train", ("config_path", "data_dir")), persist_result=True)
def remote_train_task(deployment: str, config_path: str, variant: str, out_dir: str, data_dir: str,
                      cache_dir: str) -> dict[str, str]:
    """Train on a work pool (a GPU one): run the alphagate-train deployment and wait for it. The worker writes
    into ``out_dir``, so it must see the same filesystem; paths are passed absolute."""
    from prefect.deployments import run_deployment

    absolute = {"config_path": str(Path(config_path).resolve()), "variant": variant,
                "out_dir": str(Path(out_dir).resolve()), "data_dir": str(Path(data_dir).resolve()),
                "cache_dir": str(Path(cache_dir).resolve())}
    run = run_deployment(deployment, parameters=absolute, timeout=None)
    if run.state is None or not run.state.is_completed():
        raise RuntimeError(f"Training {variant} on deployment {deployment} ended {run.state and run.state.name}: "
                           f"see flow run {run.id} in the UI; rerun the comparison to retry it.")
    if not (Path(out_dir) / "run.json").is_file():
        raise FileNotFoundError(f"Deployment {deployment} finished but {Path(out_dir).resolve()}/run.json is not "
                                "here: the worker must write to a filesystem this process sees (a shared mount).")
    return _ref(Path(out_dir), "run.json")


def result_storage(spec: str | None):
    """orchestration.result_storage -> what Flow.with_options(result_storage=...) takes: None (Prefect's
    default folder), a local Path, or the slug of a saved RemoteFileSystem block for an fsspec URL."""
    if spec is None:
        return None
    if "://" not in spec:
        return Path(spec).expanduser().resolve()
    from prefect.filesystems import RemoteFileSystem

    name = "alphagate-results-" + hashlib.sha256(spec.encode()).hexdigest()[:12]
    RemoteFileSystem(basepath=spec.rstrip("/")).save(name, overwrite=True)  # remote workers load it by slug
    return f"remote-file-system/{name}"


def eval_task_runner(orchestration):
    """The task runner of the benchmark fan-out: threads here, or Dask (a scheduler address, or a LocalCluster
    of ``eval_workers`` single-threaded processes started for the run)."""
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


@task
def upload_task(decision: str, out_dir: str, dry_run: bool) -> dict[str, Any]:
    from tasks.upload import upload

    return upload(Path(decision), Path(out_dir), dry_run=True if dry_run else None)
