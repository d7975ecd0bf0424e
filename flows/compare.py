"""The comparison flow: wiring only (no maths, no I/O, no torch).

data -> the two trainings in parallel -> export (and the untouched base model) -> one evaluation task per
(model, format, suite) -> degradation, an isolated speed benchmark, decision -> conditional upload (a dry run
unless enabled) -> report.
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
from tasks.store import Ref

VARIANTS = ("linear", "sigmoid-bayes")


@flow(name="alphagate-compare", log_prints=True)
def compare(params: CompareParams = DEFAULT_PARAMS) -> dict:
    """Validate the config (a bad one fails here, naming the field, before any work), then run the pipeline
    with the config's orchestration: result storage, evaluation task runner, training deployment."""
    from flows.run_results import finish_run, publish_results, start_run_progress
    from flows.stages import result_storage
    from tasks.config import load_config
    from tasks.validate import validate_run

    if params.formats is None:
        params = params.model_copy(update={"formats": list(load_config(params.config).export.formats)})
    # every field and file the run reads, before any work (a run started from the UI gets the same checks)
    config = validate_run(params.config, params.suites, params.formats, params.data, params.limit, params.judge,
                          out=params.out, cache=params.cache)
    orch = config.orchestration
    storage = result_storage(orch.result_storage)
    flow_ = _configured_pipeline(orch, storage)
    start_run_progress("running: data, trainings, exports, evaluations, decision, report")
    result = flow_(params, orch.model_dump(mode="json"), str(storage) if storage else None, config.dpo.enabled)
    publish_results(result["decision_record"], result["report"])  # on this run, cached or not
    return finish_run(result)


def _configured_pipeline(orch, storage):
    """The pipeline flow with the config's result storage and enough threads for every training slot to be used
    while the base model's export and the data run beside them (a thread waiting for a slot costs nothing)."""
    from flows.slots import train_slots

    options = {"task_runner": ThreadPoolTaskRunner(max_workers=train_slots(orch.train_slots) + 2)}
    if storage:
        options["result_storage"] = storage
    return pipeline.with_options(**options)


def _models(params: CompareParams, orch, seeds: list[int], replicated: bool, tuner_trials: int | None, dpo: bool):
    """Data, base model, one training per (variant, seed) and every export (the base model's too). The tuner runs
    once per experiment: a variant's later seeds wait for its first, then reuse its trials (same fingerprint)."""
    from flows.slots import train_slots
    from tasks.train.variant import replicate_label

    root, config = params.out, params.config
    data = prepare_data_task.submit(config, root)
    base = base_model_task.submit(config, params.cache)
    # the base model's export first: it needs no training, so its evaluations can run while the arms train
    base_export = export_task.submit(config, base, root, params.formats, "base")
    labels = {v: [replicate_label(v, seed, replicated) for seed in seeds] for v in VARIANTS}
    trains = {}
    # with one model slot the stages run one at a time anyway: the base model's export goes first, so that its
    # evaluations run while the arms train (with more slots the trainings start beside it)
    after_base = [base_export] if train_slots(orch.train_slots) == 1 and not orch.train_deployment else []
    for v in VARIANTS:
        first = None
        for seed, label in zip(seeds, labels[v], strict=True):
            wait = [first] if first is not None and v == "sigmoid-bayes" else after_base or None
            if orch.train_deployment:  # on a (GPU) work pool, several at once
                trains[label] = remote_train_task.submit(orch.train_deployment, config, v, data, base, root, seed,
                                                         tuner_trials, wait_for=wait)
            else:
                trains[label] = train_task.submit(config, v, data, base, root, None, seed, tuner_trials,
                                                  wait_for=wait)
            first = first or trains[label]
    exports = {m: export_task.submit(config, trains[m], root, params.formats, m) for m in list(trains)}
    if dpo:  # the optional preference stage: "<model>+dpo", sampled from the parent's BF16 GGUF
        for m in [m for v in VARIANTS for m in labels[v]]:
            tuned = f"{m}+dpo"
            parent_gguf = exports[m].result().file("bf16")
            trains[tuned] = dpo_task.submit(config, trains[m], str(parent_gguf), root, [])
            exports[tuned] = export_task.submit(config, trains[tuned], root, params.formats, tuned)
    exports["base"] = base_export
    return data, base, labels, trains, exports


@flow(name="alphagate-pipeline", task_runner=ThreadPoolTaskRunner(max_workers=2))
def pipeline(params: CompareParams, orchestration: dict, storage: str | None = None, dpo: bool = False,
             seeds: list[int] | None = None, tuner_trials: int | None = None, earlier: dict | None = None,
             look: dict | None = None, study: str | None = None, make_report: bool = True) -> dict:
    """Every stage output is found by the key of its inputs under <out>/store/ (flows/stages.py); stages hand each
    other refs, so a changed input reruns exactly what depends on it.

    ``seeds``: the training seeds of each arm (default: the config's train.seeds, else train.seed); several make
    seed replicates (models "<variant>-s<seed>"). The nightly study passes one new seed a night, the tuner budget
    (``tuner_trials``), the ``earlier`` nights' replicates (arm -> [{label, results, export, run}] refs), the
    ``look`` and its ``study`` record; it writes the report itself (``make_report`` False) once tonight is recorded."""
    from flows.run_results import run_progress
    from flows.stages import eval_task_runner, eval_threads
    from tasks.config import OrchestrationSpec, load_config

    orch = OrchestrationSpec.model_validate(orchestration)
    evaluate_flow = evaluate.with_options(task_runner=eval_task_runner(orch))
    if storage:  # a local folder (absolute path) or a saved block's slug
        evaluate_flow = evaluate_flow.with_options(result_storage=Path(storage) if storage.startswith("/") else storage)
    root, config = params.out, params.config
    seeds = list(seeds or load_config(config).train.replicate_seeds)
    earlier = {arm: [{k: v if k == "label" else Ref.model_validate(v) for k, v in rep.items()} for rep in reps]
               for arm, reps in (earlier or {}).items()}
    replicated = len(seeds) > 1 or bool(earlier) or look is not None
    if params.upload:  # a real upload: token, write access and namespace checked before any training
        preflight_task(config)
    data, _, labels, trainings, exporting = _models(params, orch, seeds, replicated, tuner_trials, dpo)
    # each model's evaluations start as soon as its export is done (the base model's while the arms still train),
    # in the order the exports finish; the other trainings and exports go on meanwhile
    model_of = {future: m for m, future in exporting.items()}
    files, done = {}, {}
    vision = load_config(config).vision  # ScienceQA's image items: the base model's projector, when configured
    for future in as_completed(list(exporting.values())):
        m = model_of[future]
        files[m] = {f: str(future.result().file(f)) for f in params.formats}
        evaluate_model = evaluate_flow.with_options(flow_run_name=f"evaluate-{m}")
        done |= evaluate_model({m: files[m]}, params.suites, root, params.data, params.limit, params.judge,
                               *(str(p) if p else None for p in (vision.mmproj, vision.image_root)),
                               eval_threads(orch))
        run_progress(80.0 * len(files) / len(exporting),
                     f"{len(files)} of {len(exporting)} models exported and evaluated ({m} last)")
    files = {m: files[m] for m in exporting}  # the models' order, not the exports' finishing order
    done = {f"{m}/{f}/{s}": done[f"{m}/{f}/{s}"] for m in files for f in params.formats for s in params.suites}
    runs = {m: future.result() for m, future in trainings.items()}
    exports = {m: future.result() for m, future in exporting.items()}
    run_progress(80.0, f"{sum(r is not None for r in done.values())} of {len(done)} evaluations done; deciding")
    results = {f"{m}/{f}": results_task.submit({s: done[f"{m}/{f}/{s}"] for s in params.suites
                                                if done[f"{m}/{f}/{s}"] is not None}, root)
               for m in files for f in params.formats}
    results = {k: ref.result() for k, ref in results.items()}
    for arm, reps in earlier.items():  # earlier nights' replicates join the pooled decision (not retrained)
        for rep in reps:
            labels[arm].insert(len(labels[arm]) - len(seeds), rep["label"])
            results[f"{rep['label']}/bf16"], exports[rep["label"]], runs[rep["label"]] = (
                rep["results"], rep["export"], rep["run"])
    degradation = degrade_task(config, results, root)  # reads the suites that completed
    members = [m for v in VARIANTS for m in labels[v]]
    # every replicate is timed (earlier nights' too): an arm's speed is not one replicate's
    speed = speed_task({m: str(exports[m].file("bf16")) for m in members}, root)
    decision = decide_task(config, {v: [results[f"{m}/bf16"] for m in labels[v]] for v in VARIANTS},
                           {m: exports[m] for m in members}, {m: runs[m] for m in members}, degradation, speed,
                           list(params.suites), root, labels if replicated else None, look)
    names: dict[str, Ref] = {"data": data.result(), **runs, "degradation": degradation, "speed": speed,
                             "decision": decision["ref"]}
    names |= {f"export-{m}": ref for m, ref in exports.items()}
    names |= {f"eval/{k.replace('/', '-')}": ref for k, ref in results.items()}
    upload = None
    if decision["upload"]:
        upload = upload_task(config, decision["ref"], {m: exports[m] for m in members}, {m: runs[m] for m in members},
                             root, not params.upload, {k: r for k, r in results.items() if k.split("/")[0] in members})
        names["upload"] = upload["ref"]
    elif (details := details_task(config, decision["ref"], root)) is not None:  # the evidence, staged locally
        names["details"] = details
    report_inputs = (results, decision["ref"], degradation, {m: runs[m] for m in members},
                     str(Path(root) / "tuner_history.json"), root)
    report_md = None
    if make_report:
        report = report_task(*report_inputs, study)
        names["report"] = report
        report_md = Path(report.path) / "report.md"
    publish_names_task(root, config, names)
    failed = sorted(k for k, ref in done.items() if ref is None)
    decision_json = Path(decision["ref"].path) / "decision.json"
    print(f"decision: {decision['reason']}\nreport: {report_md or '(written by the calling flow)'}\n"
          f"decision record: {decision_json}"
          + (f"\nfailed evaluations (rerun the flow to retry only these): {', '.join(failed)}" if failed else ""))
    new = {v: [{"label": m, "results": results[f"{m}/bf16"], "export": exports[m], "run": runs[m]}
               for m in labels[v][len(labels[v]) - len(seeds):]] for v in VARIANTS}
    return {"decision": decision["reason"], "report": str(report_md) if report_md else None,
            "decision_record": str(decision_json), "upload": upload, "evaluations": len(done),
            "failed_evaluations": failed, "replicates": new, "names": names, "report_inputs": report_inputs,
            "record": {k: v for k, v in decision.items() if k != "ref"}}


@flow(name="alphagate-nightly", log_prints=True)
def nightly(params: NightlyParams = NightlyParams()) -> dict:  # noqa: B008 - pydantic defaults are immutable here
    """One night of the accumulating study (tasks/decide/study.py): one new seed replicate per arm, tuned the same
    way as every night before (nightly.tuning: a frozen schedule or a per-seed tuner, one budget), evaluation on
    real items, and a decision on every replicate so far at this night's look of the alpha-spending boundary. A
    decided (or ended) study trains nothing and says so."""
    import datetime

    from flows.run_results import _artifact, publish_results, run_progress, start_run_progress
    from flows.stages import result_storage
    from tasks.config import load_config
    from tasks.decide.replicates import look_alpha
    from tasks.decide.study import closed, earlier_replicates, next_night, open_study, record_night, study_path
    from tasks.validate import validate_run

    spec = load_config(params.config).nightly
    config = validate_run(params.config, spec.suites, spec.formats, spec.data, spec.limit, spec.judge)
    study = open_study(params.out, config, params.config)
    if (why := closed(study)) is not None:
        print(why)
        _artifact("markdown", "alphagate-study", f"# Nightly study\n\n{why}\n", "the study is closed")
        return {"closed": why, "nights": len(study["nights"])}
    tonight = next_night(study, config)
    date = params.date or datetime.date.today().isoformat()
    look = look_alpha(tonight["night"], spec.max_looks, config.decision.alpha, spec.spending)
    print(f"night {tonight['night']} of {spec.max_looks}: seed {tonight['seed']}, {tonight['tuning']}, "
          f"testing at alpha {look['alpha_this_look']:.3g} ({spec.spending})")
    cparams = CompareParams(config=params.config, out=params.out, cache=params.cache, suites=list(spec.suites),
                            formats=list(spec.formats), data=spec.data, limit=spec.limit, judge=spec.judge,
                            upload=params.upload)
    orch = config.orchestration
    storage = result_storage(orch.result_storage)
    flow_ = _configured_pipeline(orch, storage)
    start_run_progress(f"night {tonight['night']}: data, trainings, exports, evaluations, decision, report")
    result = flow_(cparams, orch.model_dump(mode="json"), str(storage) if storage else None, False,
                   [tonight["seed"]], tonight["tuner_trials"], earlier_replicates(study), look, None, False)
    if result["failed_evaluations"]:  # a replicate missing a suite would drop that suite for the rest of the study
        failed = ", ".join(result["failed_evaluations"])
        raise RuntimeError(f"Night {tonight['night']}: evaluations failed for good ({failed}), so the night is not "
                           "recorded and no look is spent. Its seed and finished stages are kept: rerun the nightly "
                           "flow (or wait for the next night) to retry only what failed.")
    decision_dir = Path(result["decision_record"]).parent
    study = record_night(params.out, study, tonight, date, result["replicates"], result["record"], decision_dir)
    report = report_task(*result["report_inputs"], str(study_path(params.out)))
    publish_names_task(params.out, params.config, {**result["names"], "report": report})
    report_md = Path(report.path) / "report.md"
    publish_results(result["decision_record"], report_md)
    state = closed(study) or f"open: {len(study['nights'])} of {spec.max_looks} looks"
    run_progress(100.0, f"night {tonight['night']} recorded; study {state}")
    print(f"study: {state}\nreport: {report_md}")
    return {"night": tonight["night"], "decision": result["decision"], "study": state, "report": str(report_md),
            "decision_record": result["decision_record"]}


@flow(name="alphagate-evaluate", validate_parameters=False)
def evaluate(files: dict[str, dict[str, str]], suites: list[str], root: str, data: str, limit: int | None,
             judge: str | None, mmproj: str | None = None, image_root: str | None = None,
             threads: int | None = None) -> dict[str, Ref | None]:
    """The benchmark fan-out: one task per (model, format, suite); the task runner is the config's (threads,
    or a Dask cluster), each task's models at ``threads`` llama.cpp threads (flows.stages.eval_threads). Returns
    "model/format/suite" -> its result's ref, or None when it failed for good (a suite that failed does not stop the
    others)."""
    futures = {f"{m}/{f}/{s}": eval_task.submit(gguf, s, root, data, limit, judge, mmproj, image_root, threads)
               for m, by_format in files.items() for f, gguf in by_format.items() for s in suites}
    for future in futures.values():
        future.wait()
    return {key: future.result() if future.state.is_completed() else None for key, future in futures.items()}


@flow(name="alphagate-train", log_prints=True)
def train(config_path: str, variant: str, data: Ref, base: Ref, root: str, expected_key: str | None = None,
          seed: int | None = None, tuner_trials: int | None = None) -> Ref:
    """One variant's training (one seed replicate): what the comparison sends to a GPU work pool
    (orchestration.train_deployment)."""
    return train_task(config_path, variant, data, base, root, expected_key, seed, tuner_trials)
