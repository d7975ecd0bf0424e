"""The comparison flow: wiring only (no maths, no I/O, no torch).

data -> the two trainings in parallel -> export (and the untouched base model) -> one evaluation task per
(model, format, suite) -> degradation, an isolated speed benchmark, decision -> conditional upload (a dry run
unless enabled) -> report. The config is read and validated once, here (flows/setup.py); the stages are handed the
validated settings they need and the refs of what they consume.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.params import DEFAULT_PARAMS, SUITES, CompareParams, NightlyParams  # noqa: F401 - the run forms
from flows.stages import (
    base_model_task,
    decide_task,
    degrade_task,
    details_task,
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
from tasks.config import PipelineConfig
from tasks.export.formats import SOURCE_FORMAT
from tasks.store import Ref
from tasks.train.variant import VARIANTS, tuned


@flow(name="alphagate-compare", log_prints=True)
def compare(params: CompareParams = DEFAULT_PARAMS) -> dict:
    """Validate the config (a bad one fails here, naming the field, before any work), then run the pipeline with the
    config's orchestration: result storage, evaluation task runner, training deployment."""
    from flows.run_results import finish_run, publish_results, start_run_progress
    from flows.setup import checked_params

    # every field and file the run reads, before any work (a run started from the UI gets the same checks)
    params, config = checked_params(params.model_dump())
    start_run_progress("running: data, trainings, exports, evaluations, decision, report")
    result = configured_pipeline(config)(params, config)
    publish_results(result["decision_record"], result["report"])  # on this run, cached or not
    return finish_run(result)


def configured_pipeline(config: PipelineConfig):
    """The pipeline flow with the config's result storage and enough threads for every training slot to be used
    while the base model's export and the data run beside them (a thread waiting for a slot costs nothing)."""
    from flows.stages import result_storage
    from tasks.model_slots import train_slots

    orch = config.orchestration
    options = {"task_runner": ThreadPoolTaskRunner(max_workers=train_slots(orch.train_slots) + 2)}
    if storage := result_storage(orch.result_storage):
        options["result_storage"] = storage
    return pipeline.with_options(**options)


def _trainings(params: CompareParams, config: PipelineConfig, data, base, seeds: list[int], labels, tuner_trials,
               after_base: list) -> dict:
    """One training per (variant, seed). The tuner runs once per experiment: a variant's later seeds wait for its
    first, then reuse its trials (same fingerprint)."""
    deployment, trains = config.orchestration.train_deployment, {}
    for v in VARIANTS:
        first = None
        for seed, label in zip(seeds, labels[v], strict=True):
            wait = [first] if first is not None and tuned(v) else after_base or None
            if deployment:  # on a (GPU) work pool, several at once
                trains[label] = remote_train_task.submit(deployment, config, v, data, base, params.out, seed,
                                                         tuner_trials, wait_for=wait)
            else:
                trains[label] = train_task.submit(config, v, data, base, params.out, None, seed, tuner_trials,
                                                  wait_for=wait)
            first = first or trains[label]
    return trains


def _models(params: CompareParams, config: PipelineConfig, seeds: list[int], replicated: bool,
            tuner_trials: int | None):
    """Data, base model, one training per (variant, seed) and every export (the base model's too)."""
    from tasks.model_slots import train_slots
    from tasks.train.variant import replicate_label

    root, orch, slots = params.out, config.orchestration, config.orchestration.train_slots

    def export(model, label):
        return export_task.submit(config.export, config.name, slots, model, root, params.formats, label)

    data = prepare_data_task.submit(config.data, root)
    base = base_model_task.submit(config.base_model, params.cache)
    base_export = export(base, "base")  # first: it needs no training, so its evaluations run while the arms train
    labels = {v: [replicate_label(v, seed, replicated) for seed in seeds] for v in VARIANTS}
    # with one model slot the stages run one at a time anyway: the base model's export goes first (with more slots
    # the trainings start beside it)
    after_base = [base_export] if train_slots(orch.train_slots) == 1 and not orch.train_deployment else []
    trains = _trainings(params, config, data, base, seeds, labels, tuner_trials, after_base)
    exports = {m: export(trains[m], m) for m in list(trains)}
    if config.dpo.enabled:  # the optional preference stage: "<model>+dpo", sampled from the parent's BF16 GGUF
        for m in [m for v in VARIANTS for m in labels[v]]:
            parent_gguf = str(exports[m].result().file(SOURCE_FORMAT))
            trains[f"{m}+dpo"] = dpo_task.submit(config.dpo, slots, trains[m], parent_gguf, root, [])
            exports[f"{m}+dpo"] = export(trains[f"{m}+dpo"], f"{m}+dpo")
    exports["base"] = base_export
    return data, labels, trains, exports


def _evaluate_all(params: CompareParams, config: PipelineConfig, exporting: dict) -> tuple[dict, dict]:
    """Each model's evaluations start as soon as its export is done (the base model's while the arms still train),
    in the order the exports finish; the other trainings and exports go on meanwhile. Returns the models' files
    (model -> format -> GGUF) and "model/format/suite" -> its result's ref (None: it failed for good)."""
    from flows.run_results import run_progress
    from flows.stages import eval_task_runner
    from tasks.model_slots import eval_threads

    orch, vision = config.orchestration, config.vision  # ScienceQA's image items: the base model's projector
    evaluate_flow = evaluate.with_options(task_runner=eval_task_runner(orch))
    model_of = {future: m for m, future in exporting.items()}
    files, done = {}, {}
    for future in as_completed(list(exporting.values())):
        m = model_of[future]
        files[m] = {f: str(future.result().file(f)) for f in params.formats}
        evaluate_model = evaluate_flow.with_options(flow_run_name=f"evaluate-{m}")
        done |= evaluate_model({m: files[m]}, params.suites, params.out, params.data, params.limit, params.judge,
                               *(str(p) if p else None for p in (vision.mmproj, vision.image_root)),
                               eval_threads(orch))
        run_progress(80.0 * len(files) / len(exporting),
                     f"{len(files)} of {len(exporting)} models exported and evaluated ({m} last)")
    files = {m: files[m] for m in exporting}  # the models' order, not the exports' finishing order
    return files, {f"{m}/{f}/{s}": done[f"{m}/{f}/{s}"] for m in files for f in params.formats for s in params.suites}


def _result_sets(params: CompareParams, files: dict, done: dict) -> dict[str, Ref]:
    """"model/format" -> the result set of its completed suites."""
    futures = {f"{m}/{f}": results_task.submit({s: done[f"{m}/{f}/{s}"] for s in params.suites
                                                if done[f"{m}/{f}/{s}"] is not None}, params.out)
               for m in files for f in params.formats}
    return {k: future.result() for k, future in futures.items()}


def _ship(params: CompareParams, config: PipelineConfig, decision: dict, members: list[str], exports, runs, results,
          names: dict) -> dict | None:
    """Upload the winner (a dry run unless --upload), or stage the evidence of a decision that uploads nothing."""
    root = params.out
    if decision["upload"]:
        upload = upload_task(config, decision["ref"], {m: exports[m] for m in members}, {m: runs[m] for m in members},
                             root, not params.upload, {k: r for k, r in results.items() if k.split("/")[0] in members})
        names["upload"] = upload["ref"]
        return upload
    if (details := details_task(config.upload, config.name, decision["ref"], root)) is not None:
        names["details"] = details
    return None


@flow(name="alphagate-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2))
def pipeline(params: CompareParams, config: PipelineConfig, seeds: list[int] | None = None,
             tuner_trials: int | None = None, earlier: dict | None = None, look: dict | None = None,
             make_report: bool = True) -> dict:
    """Every stage output is found by the key of its inputs under <out>/store/ (tasks/keyed.py); stages hand each
    other refs, so a changed input reruns exactly what depends on it. ``config``: validated once by the caller.

    ``seeds``: the training seeds of each arm (default: the config's train.seeds, else train.seed); several make seed
    replicates (models "<variant>-s<seed>"). The nightly study passes one new seed a night, the tuner budget
    (``tuner_trials``), the ``earlier`` nights' replicates (arm -> [{label, results, export, run}] refs) and the
    ``look``; it writes the report itself (``make_report`` False) once tonight is recorded."""
    from flows.run_results import run_progress

    root = params.out
    seeds = list(seeds or config.train.replicate_seeds)
    earlier = {arm: [{k: v if k == "label" else Ref.model_validate(v) for k, v in rep.items()} for rep in reps]
               for arm, reps in (earlier or {}).items()}
    replicated = len(seeds) > 1 or bool(earlier) or look is not None
    if params.upload:  # a real upload: token, write access and namespace checked before any training
        preflight_task(config.upload, params.config)
    data, labels, trainings, exporting = _models(params, config, seeds, replicated, tuner_trials)
    files, done = _evaluate_all(params, config, exporting)
    runs = {m: future.result() for m, future in trainings.items()}
    exports = {m: future.result() for m, future in exporting.items()}
    run_progress(80.0, f"{sum(r is not None for r in done.values())} of {len(done)} evaluations done; deciding")
    results = _result_sets(params, files, done)
    _join_earlier(earlier, len(seeds), labels, results, exports, runs)
    degradation = degrade_task(config.decision, results, root)  # reads the suites that completed
    members = [m for v in VARIANTS for m in labels[v]]
    # every replicate is timed (earlier nights' too): an arm's speed is not one replicate's
    speed = speed_task({m: str(exports[m].file(SOURCE_FORMAT)) for m in members}, root)
    arms = {v: [results[f"{m}/{SOURCE_FORMAT}"] for m in labels[v]] for v in VARIANTS}
    decision = decide_task(config.decision, arms, {m: exports[m] for m in members}, {m: runs[m] for m in members},
                           degradation, speed, list(params.suites), root, labels if replicated else None, look)
    names: dict[str, Ref] = {"data": data.result(), **runs, "degradation": degradation, "speed": speed,
                             "decision": decision["ref"]}
    names |= {f"export-{m}": ref for m, ref in exports.items()}
    names |= {f"eval/{k.replace('/', '-')}": ref for k, ref in results.items()}
    upload = _ship(params, config, decision, members, exports, runs, results, names)
    report_inputs = (results, decision["ref"], degradation, {m: runs[m] for m in members}, root)
    report_md = None
    if make_report:
        names["report"] = report_task(*report_inputs)
        report_md = Path(names["report"].path) / "report.md"
    publish_names_task(root, params.config, names)
    new = {v: [{"label": m, "results": results[f"{m}/{SOURCE_FORMAT}"], "export": exports[m], "run": runs[m]}
               for m in labels[v][len(labels[v]) - len(seeds):]] for v in VARIANTS}
    return _outcome(decision, report_md, upload, done, new, names, report_inputs)


def _join_earlier(earlier: dict, tonight: int, labels: dict, results: dict, exports: dict, runs: dict) -> None:
    """Earlier nights' replicates join the pooled decision (not retrained): their labels go before tonight's
    ``tonight`` ones, their result sets, exports and trainings beside tonight's."""
    for arm, reps in earlier.items():
        for rep in reps:
            labels[arm].insert(len(labels[arm]) - tonight, rep["label"])
            results[f"{rep['label']}/{SOURCE_FORMAT}"], exports[rep["label"]], runs[rep["label"]] = (
                rep["results"], rep["export"], rep["run"])


def _outcome(decision: dict, report_md: Path | None, upload, done: dict, new: dict, names: dict,
             report_inputs: tuple) -> dict:
    """Print where the answer is (and which evaluations failed for good), and return the pipeline's result."""
    failed = sorted(k for k, ref in done.items() if ref is None)
    decision_json = Path(decision["ref"].path) / "decision.json"
    print(f"decision: {decision['reason']}\nreport: {report_md or '(written by the calling flow)'}\n"
          f"decision record: {decision_json}"
          + (f"\nfailed evaluations (rerun the flow to retry only these): {', '.join(failed)}" if failed else ""))
    return {"decision": decision["reason"], "report": str(report_md) if report_md else None,
            "decision_record": str(decision_json), "upload": upload, "evaluations": len(done),
            "failed_evaluations": failed, "replicates": new, "names": names, "report_inputs": report_inputs,
            "record": {k: v for k, v in decision.items() if k != "ref"}}


@flow(name="alphagate-evaluate", validate_parameters=False)
def evaluate(files: dict[str, dict[str, str]], suites: list[str], root: str, data: str, limit: int | None,
             judge: str | None, mmproj: str | None = None, image_root: str | None = None,
             threads: int | None = None) -> dict[str, Ref | None]:
    """The benchmark fan-out: one task per (model, format, suite); the task runner is the config's (threads, or a
    Dask cluster), each task's models at ``threads`` llama.cpp threads (tasks.model_slots.eval_threads). Returns
    "model/format/suite" -> its result's ref, or None when it failed for good (a suite that failed does not stop the
    others)."""
    futures = {f"{m}/{f}/{s}": eval_task.submit(gguf, s, root, data, limit, judge, mmproj, image_root, threads)
               for m, by_format in files.items() for f, gguf in by_format.items() for s in suites}
    for future in futures.values():
        future.wait()
    return {key: future.result() if future.state.is_completed() else None for key, future in futures.items()}


@flow(name="alphagate-train", log_prints=True)
def train(config: PipelineConfig, variant: str, data: Ref, base: Ref, root: str, expected_key: str | None = None,
          seed: int | None = None, tuner_trials: int | None = None) -> Ref:
    """One variant's training (one seed replicate): what the comparison sends to a GPU work pool
    (orchestration.train_deployment), with the comparison's validated config."""
    return train_task(config, variant, data, base, root, expected_key, seed, tuner_trials)

