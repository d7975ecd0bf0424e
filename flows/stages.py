"""Prefect @task entry points for the pipeline stages: glue only (the stage code lives in tasks/).

Every stage output lives at ``<out>/store/<stage>/<key>/``, where the key hashes all of the stage's inputs (the
config fields it reads, the sha256 of the artifacts and files it consumes, its code version; tasks/keys.py). Tasks
hand each other ``Ref``s (kind, key, path, sha256) and nothing else.

Prefect's cache sits on top of that, never instead of it: a task's cache key is its stage key *plus* the sha256 of
the intact output found at the key's folder. When that output is missing or damaged the cache key is None, so the
body runs and rebuilds it (a cache hit can never hand out a reference to a deleted or changed file); when it is
intact, the body only finds and verifies it, and from the next run on the task is a plain cache hit.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task

from flows.run_results import _artifact
from tasks.native_log import task_native_log
from tasks.store import Ref

# torch/transformers work is not thread-safe within one process: accelerate keeps global state (two Trainers
# in threads corrupt it) and from_pretrained's meta-device initialisation races ("Cannot copy out of meta
# tensor"). Trainings and exports therefore run each in a child process of its own (tasks.procs), as many at once
# as this machine's training slots allow (flows/slots.py); the torch steps left in this process (the base model,
# the optional DPO stage) take this lock. llama.cpp evaluations take neither.
_MODEL_LOCK = threading.Lock()
_PLANS: dict[str, Callable[..., tuple[str, Path]]] = {}


def _plan(stage: str):
    def register(fn):
        _PLANS[stage] = fn
        return fn

    return register


def keyed_cache(stage: str):
    """cache_key_fn: the stage key + the intact output's stamp sha256, or None (no caching) when there is none."""
    from tasks.store import verified

    def key(context, parameters: dict[str, Any]) -> str | None:
        try:
            stage_key, out = _PLANS[stage](**parameters)
        except Exception:  # noqa: BLE001 - no cache then; the task body raises the same error, with its message
            return None
        ref = verified(out, stage_key)
        if ref is None:
            return None
        # the location too: a cached ref carries absolute paths, so a moved --out must not hit the old records
        return hashlib.sha256(f"{stage}|{stage_key}|{ref.sha256}|{ref.path}".encode()).hexdigest()

    return key


def _config(path: str):
    from tasks.config import load_config

    return load_config(path)


def _produce(stage: str, root: str, inputs: dict[str, Any], build: Callable[[Path], None]) -> Ref:
    """The output of ``stage`` for ``inputs`` under ``root``: found by key and verified, or built and sealed."""
    from tasks.keys import stage_key
    from tasks.store import keyed_dir, ref_of, seal, staging_dir, verified

    key = stage_key(stage, inputs)
    out = keyed_dir(root, stage, key)
    if (ref := verified(out, key)) is not None:
        return ref
    with staging_dir(out) as tmp:
        build(tmp)
        seal(tmp, stage, key, inputs)
    return ref_of(out)


def _slot_journal(root: str) -> Path:
    """Each hold of a model slot, one JSON line (requested, acquired, released): where idle gaps show."""
    return Path(root) / "logs" / "slots.jsonl"


# --- data and base model -------------------------------------------------------------------------------------

@_plan("data")
def _data_plan(config_path: str, root: str, **_: Any) -> tuple[str, Path]:
    from tasks.data.sft import data_key
    from tasks.store import keyed_dir

    key = data_key(_config(config_path).data)[0]
    return key, keyed_dir(root, "data", key)


@task(cache_key_fn=keyed_cache("data"), persist_result=True, retries=1, retry_delay_seconds=5)
def prepare_data_task(config_path: str, root: str) -> Ref:
    from tasks.data.sft import data_ref

    return data_ref(_config(config_path).data, _data_plan(config_path, root)[1])


@task(retries=1, retry_delay_seconds=5)  # found by key in the base-model cache (a hash and a check when it is there)
def base_model_task(config_path: str, cache_dir: str) -> Ref:
    from tasks.data.base_model import base_ref

    with _MODEL_LOCK:
        return base_ref(_config(config_path).base_model, Path(cache_dir))


# --- trainings -------------------------------------------------------------------------------------------------

def _replicate(config_path: str, seed: int | None, tuner_trials: int | None):
    from tasks.train.variant import replicate_config

    return replicate_config(_config(config_path), seed, tuner_trials)


@_plan("train")
def _train_plan(config_path: str, variant: str, data: Ref, base: Ref, root: str, seed: int | None = None,
                tuner_trials: int | None = None, **_: Any) -> tuple[str, Path]:
    from tasks.store import keyed_dir
    from tasks.train.variant import train_key

    key = train_key(_replicate(config_path, seed, tuner_trials), variant, base, data)[0]
    return key, keyed_dir(root, "train", key)


@task(cache_key_fn=keyed_cache("train"), persist_result=True, retries=1, retry_delay_seconds=10, log_prints=False)
def train_task(config_path: str, variant: str, data: Ref, base: Ref, root: str, expected_key: str | None = None,
               seed: int | None = None, tuner_trials: int | None = None) -> Ref:
    """``seed``: this replicate's training seed (None: train.seed); ``tuner_trials``: the tuner's budget (None: the
    config's). ``expected_key``: the key the orchestrator computed (a training sent to a work pool); a worker whose
    code or config gives another key refuses, rather than writing where nobody looks."""
    from flows.slots import model_slot
    from tasks.procs import run_in_process
    from tasks.store import ref_of, verified

    key, out = _train_plan(config_path, variant, data, base, root, seed, tuner_trials)
    if expected_key is not None and key != expected_key:
        raise RuntimeError(f"This worker computes the training key {key[:12]}… but the comparison expects "
                           f"{expected_key[:12]}…: the worker runs other code or sees another config/data. Install "
                           "the same version of the project on both machines and share the run folder.")
    if (ref := verified(out, key)) is not None:  # found by key: no slot, no process
        return ref
    # in a process of its own, holding one of this machine's training slots (on a pool's worker: the worker's)
    arguments = {"config_path": str(Path(config_path).resolve()), "variant": variant, "out_dir": str(out),
                 "base": base.model_dump(mode="json"), "data": data.model_dump(mode="json"),
                 "history": str(Path(root) / "tuner_history.json"), "seed": seed, "tuner_trials": tuner_trials,
                 "journal": str(Path(root) / "logs" / "trainings.jsonl"), "expected_key": key}
    label = f"train {variant}" + (f" seed {seed}" if seed is not None else "")
    with model_slot(_config(config_path).orchestration.train_slots, label, journal=_slot_journal(root)) as slot:
        run_in_process("tasks.train.variant:train_in_process", arguments, threads=slot.threads, label=label,
                       keep_fds=(slot.fd,))
    return ref_of(out)


@task(cache_key_fn=keyed_cache("train"), persist_result=True)
def remote_train_task(deployment: str, config_path: str, variant: str, data: Ref, base: Ref, root: str,
                      seed: int | None = None, tuner_trials: int | None = None) -> Ref:
    """Train on a work pool (a GPU one): run the alphagate-train deployment and wait for it. The worker writes
    into the keyed folder, so it must see the same filesystem; paths are passed absolute."""
    from prefect.deployments import run_deployment

    from tasks.store import verified

    key, out = _train_plan(config_path, variant, data, base, root, seed, tuner_trials)
    parameters = {"config_path": str(Path(config_path).resolve()), "variant": variant,
                  "data": data.model_dump(), "base": base.model_dump(), "root": str(Path(root).resolve()),
                  "expected_key": key, "seed": seed, "tuner_trials": tuner_trials}
    run = run_deployment(deployment, parameters=parameters, timeout=None)
    if run.state is None or not run.state.is_completed():
        raise RuntimeError(f"Training {variant} on deployment {deployment} ended {run.state and run.state.name}: "
                           f"see flow run {run.id} in the UI; rerun the comparison to retry it.")
    if (ref := verified(out, key)) is None:
        raise FileNotFoundError(f"Deployment {deployment} finished but {Path(out).resolve()} holds no intact output "
                                "of this key: the worker must write to a filesystem this process sees (a shared "
                                "mount) and run the same code version.")
    return ref


@_plan("dpo")
def _dpo_plan(config_path: str, parent: Ref, gguf: str, root: str, extra_benchmark_dirs: list[str],
              **_: Any) -> tuple[str, Path]:
    from tasks.store import keyed_dir
    from tasks.train.dpo import benchmark_texts, dpo_key

    exclude = benchmark_texts([Path(d) for d in extra_benchmark_dirs])
    key = dpo_key(Path(parent.path), _config(config_path).dpo, Path(gguf), exclude)[0]
    return key, keyed_dir(root, "dpo", key)


@task(cache_key_fn=keyed_cache("dpo"), persist_result=True, retries=1, retry_delay_seconds=10, log_prints=False)
@task_native_log
def dpo_task(config_path: str, parent: Ref, gguf: str, root: str, extra_benchmark_dirs: list[str]) -> Ref:
    """The optional preference stage on top of a finished SFT run (config.dpo.enabled); answers are sampled
    from the parent's exported BF16 GGUF."""
    from flows.slots import model_slot
    from tasks.store import ref_of, verified
    from tasks.train.dpo import train_dpo

    key, out = _dpo_plan(config_path, parent, gguf, root, extra_benchmark_dirs)
    if (ref := verified(out, key)) is not None:  # found by key: no slot
        return ref
    # the optional DPO stage stays in this process (its sampler is the test seam at the model boundary): it holds a
    # training slot for its memory and the lock against the base-model step, the other torch work in this process
    with model_slot(_config(config_path).orchestration.train_slots, f"dpo {Path(parent.path).name[:12]}",
                    journal=_slot_journal(root)), _MODEL_LOCK:
        train_dpo(Path(parent.path), out, spec=_config(config_path).dpo, gguf=Path(gguf),
                  extra_benchmark_dirs=[Path(d) for d in extra_benchmark_dirs])
    return ref_of(out)


# --- export and evaluation -------------------------------------------------------------------------------------

def _export_name(config_path: str, label: str) -> str:
    return label if label == "base" else f"{_config(config_path).name}-{label}"


@_plan("export")
def _export_plan(config_path: str, model: Ref, root: str, formats: list[str], label: str, **_: Any
                 ) -> tuple[str, Path]:
    from tasks.export.gguf import export_key
    from tasks.store import keyed_dir

    key = export_key(model, formats, _config(config_path).export, _export_name(config_path, label))[0]
    return key, keyed_dir(root, "export", key)


@task(cache_key_fn=keyed_cache("export"), persist_result=True, retries=1, retry_delay_seconds=5)
@task_native_log
def export_task(config_path: str, model: Ref, root: str, formats: list[str], label: str) -> Ref:
    """``label``: linear, sigmoid-bayes, ... (files <config name>-<label>-BF16.gguf ...) or base."""
    from flows.slots import model_slot
    from tasks.export.gguf import MARKER
    from tasks.procs import run_in_process
    from tasks.store import read_json, ref_of, verified

    key, out = _export_plan(config_path, model, root, formats, label)
    if verified(out, key) is None:  # else found by key: no slot, no process
        arguments = {"config_path": str(Path(config_path).resolve()), "model_dir": str(model.path),
                     "out_dir": str(out), "formats": list(formats), "name": _export_name(config_path, label),
                     "model": model.model_dump(mode="json"), "expected_key": key}
        with model_slot(_config(config_path).orchestration.train_slots, f"export {label}", export=True,
                        journal=_slot_journal(root)) as slot:
            run_in_process("tasks.export.gguf:export_in_process", arguments, label=f"export {label}",
                           threads=slot.threads, keep_fds=(slot.fd,))
    manifest = read_json(Path(out) / MARKER)
    return ref_of(out, **{f["format"]: f["path"] for f in manifest["files"]})


def _judge(judge: str | None):
    if not judge:
        return None
    from tasks.bench.judge import load_judge_spec

    return load_judge_spec(judge)


def _eval_options(data: str | None, limit: int | None, judge: str | None, mmproj: str | None,
                  image_root: str | None):
    from tasks.bench.runner import RunOptions

    return RunOptions(data=data, limit=limit, judge=_judge(judge), mmproj=Path(mmproj) if mmproj else None,
                      image_root=Path(image_root) if image_root else None)


@_plan("eval")
def _eval_plan(gguf: str, suite: str, root: str, data: str | None, limit: int | None,
               judge: str | None, mmproj: str | None = None, image_root: str | None = None, **_: Any
               ) -> tuple[str, Path]:
    from tasks.bench.runner import eval_key
    from tasks.store import keyed_dir

    key = eval_key(Path(gguf), suite, _eval_options(data, limit, judge, mmproj, image_root))[0]
    return key, keyed_dir(root, "eval", key)


@task(cache_key_fn=keyed_cache("eval"), persist_result=True, retries=2, retry_delay_seconds=5)
@task_native_log
def eval_task(gguf: str, suite: str, root: str, data: str | None, limit: int | None, judge: str | None,
              mmproj: str | None = None, image_root: str | None = None, threads: int | None = None) -> Ref:
    """``mmproj``/``image_root``: the config's vision section (ScienceQA's image items; skipped without a projector,
    which the summary's notes say). ``threads``: llama.cpp threads of its models (eval_threads; None: every core)."""
    from tasks.bench.engine import engine_threads
    from tasks.bench.runner import metric_rows, run_suite
    from tasks.store import ref_of

    out = _eval_plan(gguf, suite, root, data, limit, judge, mmproj, image_root)[1]
    # generations are found by their own key under <root>/store/generate/: a scorer change only rescores them
    with engine_threads(threads):
        summary = run_suite(Path(gguf), suite, out, _eval_options(data, limit, judge, mmproj, image_root),
                            stage_folder=True, store=Path(root))
    _artifact("table", f"eval-{Path(gguf).stem}-{suite}", metric_rows(summary),
              f"{suite} on {Path(gguf).name}: {summary['scored']} scored, {summary['skipped']} skipped"
              + "".join(f". {note}" for note in summary.get("notes", [])))
    return ref_of(out)


@task(persist_result=True)
def results_task(suites: dict[str, Ref], root: str) -> Ref:
    """One model/format's result set: a folder holding the completed suites' records and summaries (what decide,
    degrade and report read), addressed by the suites' refs."""
    import shutil

    def build(tmp: Path) -> None:
        for suite, ref in suites.items():
            for name in (f"{suite}.jsonl", f"{suite}.summary.json"):
                shutil.copy2(Path(ref.path) / name, tmp / name)

    return _produce("results", root, {s: r.sha256 for s, r in sorted(suites.items())}, build)


# --- speed, degradation, decision, report, upload ---------------------------------------------------------------

@task(persist_result=True, retries=1, retry_delay_seconds=5)
@task_native_log
def speed_task(ggufs: dict[str, str], root: str, repeats: int = 5, max_tokens: int = 64) -> Ref:
    """The decision's speed samples, measured on their own (after the evaluations, nothing in parallel)."""
    from tasks.bench.speed import measure_speed
    from tasks.store import sha256_file

    inputs = {"models": {k: sha256_file(v) for k, v in sorted(ggufs.items())}, "repeats": repeats,
              "max_tokens": max_tokens}
    return _produce("speed", root, inputs, lambda tmp: measure_speed(
        {k: Path(v) for k, v in ggufs.items()}, repeats=repeats, max_tokens=max_tokens, out=tmp / "speed.json"))


@task(persist_result=True)
def degrade_task(config_path: str, results: dict[str, Ref], root: str) -> Ref:
    from tasks.decide.degrade import write_analysis

    spec = _config(config_path).decision
    inputs = {"results": {k: r.sha256 for k, r in sorted(results.items())}, "decision": spec.model_dump(mode="json")}
    return _produce("degrade", root, inputs, lambda tmp: write_analysis(
        {k: Path(r.path) for k, r in results.items()}, spec, tmp))


def _compute(runs: dict[str, Ref], labels: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Per arm: what its trainings cost (sums over its replicates' run.json "compute")."""
    from tasks.store import read_json

    out: dict[str, dict[str, Any]] = {}
    for arm, names in labels.items():
        rows = [read_json(Path(runs[n].path) / "run.json").get("compute") for n in names if n in runs]
        rows = [r for r in rows if r]
        if not rows:
            continue
        total = {k: sum(r[k] for r in rows) for k in ("train_steps", "train_seconds", "tuner_trials",
                                                      "tuner_proxy_steps", "tuner_seconds", "total_steps",
                                                      "total_seconds")}
        total["total_seconds"] = round(total["total_seconds"], 2)
        total["replicates"] = len(rows)
        out[arm] = total
    return out


@task(persist_result=True)
def decide_task(config_path: str, results: dict[str, list[Ref]], exports: dict[str, Ref], runs: dict[str, Ref],
                degradation: Ref, speed: Ref, expected_suites: list[str], root: str,
                labels: dict[str, list[str]] | None = None, look: dict[str, Any] | None = None) -> dict[str, Any]:
    """The decision record (with ``ref``: where it is). Inputs: each arm's result sets (one per seed replicate,
    named by ``labels``), the replicates' exports and runs (for the upload and the compute per arm), the
    degradation gates, the isolated speed samples, this run's decision section and, in a sequential study, the
    ``look``."""
    from tasks.decide.decision import decide
    from tasks.store import read_json

    spec = _config(config_path).decision
    labels = labels or {arm: [arm] for arm in results}
    inputs = {"results": {k: [r.sha256 for r in v] for k, v in sorted(results.items())}, "labels": labels,
              "exports": {k: r.sha256 for k, r in sorted(exports.items())},
              "runs": {k: r.sha256 for k, r in sorted(runs.items())}, "degradation": degradation.sha256,
              "speed": speed.sha256, "expected_suites": sorted(expected_suites),
              "decision": spec.model_dump(mode="json"), "look": look}
    single = look is None and all(len(v) == 1 for v in results.values())
    ref = _produce("decide", root, inputs, lambda tmp: decide(
        {k: Path(v[0].path) if single else [Path(r.path) for r in v] for k, v in results.items()}, spec, tmp,
        exports={k: Path(r.path) for k, r in exports.items()}, runs={k: Path(r.path) for k, r in runs.items()},
        degradation=Path(degradation.path) / "degradation.json", expected_suites=expected_suites,
        speed=Path(speed.path) / "speed.json", labels=labels, look=look, compute=_compute(runs, labels)))
    return {**read_json(Path(ref.path) / "decision.json"), "ref": ref}  # its artifacts: publish_results


@task(persist_result=True)
def report_task(results: dict[str, Ref], decision: Ref, degradation: Ref, runs: dict[str, Ref],
                tuner: str | None, root: str, study: str | None = None) -> Ref:
    """``study``: a nightly study's study.json (its night-by-night margin and CI become the trend figure)."""
    from tasks.publish.report import write_report
    from tasks.store import sha256_file

    tuner_path = Path(tuner) if tuner and Path(tuner).is_file() else None
    study_path = Path(study) if study else None
    inputs = {"results": {k: r.sha256 for k, r in sorted(results.items())}, "decision": decision.sha256,
              "degradation": degradation.sha256, "runs": {k: r.sha256 for k, r in sorted(runs.items())},
              "tuner": sha256_file(tuner_path) if tuner_path else None,
              "study": sha256_file(study_path) if study_path else None}
    ref = _produce("report", root, inputs, lambda tmp: write_report(
        {k: Path(r.path) for k, r in results.items()}, tmp, decision=Path(decision.path) / "decision.json",
        degradation=Path(degradation.path) / "degradation.json", runs={k: Path(r.path) for k, r in runs.items()},
        tuner=tuner_path, study=study_path))
    return ref  # its artifact: publish_results, on the run the user started


@task
def preflight_task(config_path: str) -> str | None:
    """Before the first training of a run that really uploads: token, write access, namespace."""
    from tasks.publish.upload import preflight

    spec = _config(config_path).upload
    if not spec.enabled:
        raise ValueError(f"A real upload was asked for but upload.enabled is false in {config_path}; set it to "
                         "true (with upload.org) or run without --upload for a dry run.")
    return preflight(spec)


@task
def upload_task(config_path: str, decision: Ref, exports: dict[str, Ref], runs: dict[str, Ref], root: str,
                dry_run: bool, results: dict[str, Ref] | None = None) -> dict[str, Any]:
    """Stage (dry run) or publish the winner, with the *current* config's upload section and names, from the refs of
    this run's exports and trainings (not paths read back from the decision record); ``results`` ("label/format"
    -> result set): the published quantizations' per-item records for the details dataset."""
    from tasks.publish.upload import upload

    config = _config(config_path)
    card_config = config.model_dump(mode="json", include={"name", "base_model", "data", "export", "upload"})
    inputs = {"decision": decision.sha256, "config": card_config, "dry_run": dry_run,
              "exports": {k: r.sha256 for k, r in sorted(exports.items())},
              "runs": {k: r.sha256 for k, r in sorted(runs.items())}}
    if results:  # (absent from the key when not given: the keys of earlier uploads stay valid)
        inputs["results"] = {k: r.sha256 for k, r in sorted(results.items())}
    outcome: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        outcome.update(upload(Path(decision.path) / "decision.json", tmp, config, dry_run=dry_run,
                              exports={k: Path(r.path) for k, r in exports.items()},
                              runs={k: Path(r.path) for k, r in runs.items()},
                              results={k: Path(r.path) for k, r in (results or {}).items()}))

    ref = _produce("upload", root, inputs, build)
    if not outcome:  # found by key: what it staged (and, for a real upload, sent) is recorded beside it
        from tasks.store import read_json

        plan = read_json(Path(ref.path) / "plan.json")
        outcome = {"dry_run": dry_run, "staged": ref.path, "repos": [r["repo_id"] for r in plan["repos"]]}
    return {**outcome, "ref": ref}


@task
def details_task(config_path: str, decision: Ref, root: str) -> Ref | None:
    """A decision that uploads nothing still has its evidence: the per-item details dataset, staged locally as the
    upload's dry run stages it (<out>/details/<org>__<name>-details; nothing is sent). Keyed with the upload stage's
    code. None when the decision compared no suite (no per-item record to show)."""
    from tasks.publish.details import details_repo_id, write_details
    from tasks.store import read_json

    if not read_json(Path(decision.path) / "decision.json").get("suites"):
        return None
    config = _config(config_path)
    repo = details_repo_id(config.upload.org, config.upload.name or config.name)
    return _produce("upload", root, {"decision": decision.sha256, "details_only": repo}, lambda tmp: write_details(
        Path(decision.path) / "decision.json", tmp / repo.replace("/", "__"), repo))


@task
def publish_names_task(root: str, config_path: str, refs: dict[str, Ref]) -> str:
    """Human-friendly names beside the store (<out>/linear, <out>/export-base, <out>/eval/linear-bf16,
    <out>/decision, ...: links to this run's keyed outputs) and this run's index (<out>/index.json, and a dated
    copy under <out>/index/)."""
    from tasks.layout import publish

    return str(publish(Path(root), Path(config_path), refs))


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


def eval_threads(orchestration) -> int | None:
    """Each evaluation's llama.cpp threads: this machine's cores shared by the ``eval_workers`` that run side by side
    (threads or a local Dask cluster); None for a remote Dask cluster, whose workers know their own cores."""
    from tasks.config import cpu_cores

    if orchestration.eval_runner != "threads" and orchestration.dask_address:
        return None
    return max(1, cpu_cores() // orchestration.eval_workers)


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
