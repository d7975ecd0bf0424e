"""The nightly study's flow: one night of the accumulating comparison (tasks/decide/study.py), wiring only.

Each night trains one new seed replicate per arm (tuned the same way as every night before: nightly.tuning, a frozen
schedule or a per-seed tuner, one budget), evaluates on real items, and decides on every replicate so far at this
night's look of the alpha-spending boundary. A decided (or ended) study trains nothing and says so.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.compare import configured_pipeline
from flows.params import CompareParams, NightlyParams
from flows.stages import publish_names_task, report_task


@flow(name="alphagate-nightly", log_prints=True)
def nightly(params: NightlyParams = NightlyParams()) -> dict:  # noqa: B008 - pydantic defaults are immutable here
    import datetime

    from flows.run_results import artifact, publish_results, run_progress, start_run_progress
    from flows.setup import checked_nightly_params
    from tasks.decide.replicates import look_alpha
    from tasks.decide.study import closed, earlier_replicates, next_night, open_study, record_night, study_path

    params, config = checked_nightly_params(params.model_dump())
    spec = config.nightly
    study = open_study(params.out, config, params.config)
    if (why := closed(study)) is not None:
        print(why)
        artifact("markdown", "alphagate-study", f"# Nightly study\n\n{why}\n", "the study is closed")
        return {"closed": why, "nights": len(study["nights"])}
    tonight = next_night(study, config)
    date = params.date or datetime.date.today().isoformat()
    look = look_alpha(tonight["night"], spec.max_looks, config.decision.alpha, spec.spending)
    print(f"night {tonight['night']} of {spec.max_looks}: seed {tonight['seed']}, {tonight['tuning']}, "
          f"testing at alpha {look['alpha_this_look']:.3g} ({spec.spending})")
    cparams = CompareParams(config=params.config, out=params.out, cache=params.cache, suites=list(spec.suites),
                            formats=list(spec.formats), data=spec.data, limit=spec.limit, judge=spec.judge,
                            upload=params.upload)
    start_run_progress(f"night {tonight['night']}: data, trainings, exports, evaluations, decision, report")
    nightly_config = config.model_copy(update={"dpo": config.dpo.model_copy(update={"enabled": False})})
    result = configured_pipeline(config)(cparams, nightly_config, [tonight["seed"]], tonight["tuner_trials"],
                                         earlier_replicates(study), look, False)
    if result["failed_evaluations"]:  # a replicate missing a suite would drop that suite for the rest of the study
        failed = ", ".join(result["failed_evaluations"])
        raise RuntimeError(f"Night {tonight['night']}: evaluations failed for good ({failed}), so the night is not "
                           "recorded and no look is spent. Its seed and finished stages are kept: rerun the nightly "
                           "flow (or wait for the next night) to retry only what failed.")
    study = record_night(params.out, study, tonight, date, result["replicates"], result["record"],
                         Path(result["decision_record"]).parent)
    report = report_task(*result["report_inputs"], str(study_path(params.out)))
    publish_names_task(params.out, params.config, {**result["names"], "report": report})
    report_md = Path(report.path) / "report.md"
    publish_results(result["decision_record"], report_md)
    state = closed(study) or f"open: {len(study['nights'])} of {spec.max_looks} looks"
    run_progress(100.0, f"night {tonight['night']} recorded; study {state}")
    print(f"study: {state}\nreport: {report_md}")
    return {"night": tonight["night"], "decision": result["decision"], "study": state, "report": str(report_md),
            "decision_record": result["decision_record"]}
