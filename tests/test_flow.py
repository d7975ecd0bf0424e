from __future__ import annotations

import pytest

pytest.importorskip("prefect")


def _config(tmp_path, tiny_base_dir, required: str = "[]", name: str = "smoke.yaml"):
    path = tmp_path / name
    path.write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\n"
                    "train: {max_steps: 2, batch_size: 2, eval_every: 2, max_length: 96}\n"
                    "tuner: {n_trials: 1, proxy_steps: 1, n_initial_points: 1}\n"
                    f"decision: {{bootstrap: 200, required_suites: {required}}}\n")
    return path


def _runs(kind: str, name: str, since) -> list[dict]:
    """Flow or task runs whose name contains ``name`` that started after ``since`` (the test server is the
    session's: earlier tests' runs are in it too), from its API."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            response = await client._client.post(f"/{kind}/filter", json={
                kind: {"name": {"like_": name}, "start_time": {"after_": since.isoformat()}}, "limit": 200,
                "offset": 0})
            return response.json()

    return asyncio.run(read())


def _time(stamp: str):
    import datetime

    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.slow
def test_flow_end_to_end_then_fully_cached(harness, tiny_base_dir, tmp_path, monkeypatch):
    import datetime
    import json
    import os
    from pathlib import Path

    import tasks.procs
    from flows.compare import CompareParams, compare

    params = CompareParams(config=str(_config(tmp_path, tiny_base_dir)), out=str(tmp_path / "run"),
                           cache=str(tmp_path / "cache"), suites=["mmlu", "gsm8k"], formats=["bf16", "q8_0"],
                           limit=2)
    since = datetime.datetime.now(datetime.UTC)
    result = compare(params)
    run = tmp_path / "run"
    assert (run / "decision" / "decision.json").is_file() and (run / "report" / "report.md").is_file()
    assert (run / "eval" / "base-q8_0" / "gsm8k.summary.json").is_file()  # the untouched base is evaluated too
    assert result["evaluations"] == 3 * 2 * 2 and result["failed_evaluations"] == []
    from tests.test_orchestration import _artifacts

    # a model's evaluations start when its export is done, not after every export: the base model needs no training,
    # so its evaluation flow starts before the arms' last export ends (waiting for all exports cannot pass this)
    evaluations = _runs("flow_runs", "evaluate-", since)
    assert sorted(r["name"] for r in evaluations) == ["evaluate-base", "evaluate-linear", "evaluate-sigmoid-bayes"]
    base_start = min(_time(r["start_time"]) for r in evaluations if r["name"] == "evaluate-base")
    exports = _runs("task_runs", "export_task", since)
    assert len(exports) == 3 and base_start < max(_time(r["end_time"]) for r in exports)
    assert {"alphagate-decision", "alphagate-report"} <= {a.key for a in _artifacts("markdown")}
    tables = {a.key for a in _artifacts("table")}
    assert "eval-base-q8-0-gsm8k" in tables and "alphagate-decision-suites" in tables
    assert len([a for a in _artifacts("progress") if a.data == 100.0]) >= 3 + 3 * 2 * 2  # 3 trainings, 12 suites
    index = json.loads((run / "index.json").read_text())["outputs"]
    assert Path(index["linear"]["path"]).parent == (run / "store" / "train").resolve()  # outputs live by key
    assert (run / "linear").resolve() == Path(index["linear"]["path"])  # the friendly name links to it
    # each training ran in a process of its own and recorded itself in the run's journal (one line per training)
    journal = (run / "logs" / "trainings.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["variant"] for line in journal) == ["linear", "sigmoid-bayes"]
    assert len({json.loads(line)["pid"] for line in journal} | {os.getpid()}) == 3
    bodies = []
    real_run = tasks.procs.run_in_process
    monkeypatch.setattr(tasks.procs, "run_in_process", lambda *a, **k: (bodies.append(a[0]), real_run(*a, **k))[1])
    compare(params)
    # nothing trained again: every output found by its key and verified, so no stage process started (and no slot
    # was taken) even before Prefect's cache held a record of them
    assert (run / "logs" / "trainings.jsonl").read_text().splitlines() == journal
    assert bodies == []
    bodies.clear()
    state = compare(params, return_state=True)
    assert bodies == []  # from then on, plain Prefect cache hits: no stage process starts at all
    assert (run / "logs" / "trainings.jsonl").read_text().splitlines() == journal
    # ... and the run still carries the results (published by the top-level flow, not by the cached tasks)
    mine = {a.key for kind in ("markdown", "table", "progress") for a in _artifacts(kind)
            if a.flow_run_id == str(state.state_details.flow_run_id)}
    assert {"alphagate-decision", "alphagate-decision-suites", "alphagate-report", "alphagate-progress"} <= mine


@pytest.mark.slow
def test_a_failing_suite_is_retried_alone_and_a_dead_one_does_not_stop_the_rest(harness, tiny_base_dir, smoke_store,
                                                                               tmp_path, monkeypatch):
    import json

    import flows.compare
    import tasks.bench.runner as runner
    from flows.compare import CompareParams, compare
    from tests.conftest import seed_store

    seed_store(smoke_store, tmp_path / "run")  # trained and exported once per session: this test is about suites
    # the same retries (what is counted below) without their 5 s pauses: 12 failed tries, 60 s of sleeping
    assert flows.compare.eval_task.retries == 2 and flows.compare.eval_task.retry_delay_seconds == 5
    monkeypatch.setattr(flows.compare, "eval_task", flows.compare.eval_task.with_options(retry_delay_seconds=0))

    real, calls = runner.run_suite, []

    def flaky(gguf, suite, out_dir, opts=None, **kwargs):  # the test double: gsm8k fails once, hellaswag always
        calls.append(suite)
        if suite == "hellaswag" or (suite == "gsm8k" and calls.count("gsm8k") == 1):
            raise RuntimeError(f"injected failure in {suite}")
        return real(gguf, suite, out_dir, opts, **kwargs)

    monkeypatch.setattr(runner, "run_suite", flaky)
    params = CompareParams(config=str(_config(tmp_path, tiny_base_dir)), out=str(tmp_path / "run"),
                           cache=str(tmp_path / "cache"), suites=["mmlu", "gsm8k", "hellaswag"], formats=["bf16"],
                           limit=2)
    state = compare(params, return_state=True)
    assert state.is_completed() and state.name == "Partial"  # not shown as a plain success
    assert "hellaswag (base/bf16, linear/bf16, sigmoid-bayes/bf16)" in state.message, state.message
    assert state.result()["failed_evaluations"]  # the result is still there for callers
    assert calls.count("mmlu") == 3  # once per model: never retried
    assert calls.count("gsm8k") == 3 + 1  # one model's gsm8k failed once and was retried alone
    assert calls.count("hellaswag") == 3 * 3  # retried twice per model, then given up
    decision = json.loads((tmp_path / "run" / "decision" / "decision.json").read_text())
    assert {r["suite"] for r in decision["suites"]} == {"mmlu", "gsm8k"}  # decided on the complete suites
    assert decision["missing_suites"] == {"hellaswag": ["linear", "sigmoid-bayes"]}
    assert "missing: hellaswag" in decision["reason"]

    # the same run with hellaswag required: no winner (only the decision and the dead suite run again)
    strict = params.model_copy(update={"config": str(_config(tmp_path, tiny_base_dir, "[hellaswag]", "strict.yaml"))})
    calls.clear()
    compare(strict)
    decision = json.loads((tmp_path / "run" / "decision" / "decision.json").read_text())
    assert decision["winner"] is None and not decision["upload"] and decision["missing_required"] == ["hellaswag"]
    assert "Required suite(s) ['hellaswag'] are missing" in decision["reason"]


@pytest.mark.slow
def test_flow_with_the_dpo_stage_evaluates_and_reports_it_beside_its_parent(harness, tiny_base_dir, smoke_store,
                                                                            tmp_path, monkeypatch):
    import json
    from pathlib import Path

    import tasks.train.dpo
    from flows.compare import CompareParams, compare
    from tests.conftest import seed_store

    seed_store(smoke_store, tmp_path / "run")  # the SFT parents, trained and exported once per session

    config = tmp_path / "dpo.yaml"
    config.write_text(_config(tmp_path, tiny_base_dir).read_text()
                      + "dpo: {enabled: true, max_steps: 1, batch_size: 2, samples_per_question: 2}\n")
    run = tmp_path / "run"
    sampled_from = []

    def gguf_sampler(gguf, *args):  # the test double at the model boundary: a random tiny model is never right
        sampled_from.append(str(gguf))
        data = next((run / "store" / "data").glob("*/train.jsonl"))
        rows = [json.loads(x) for x in data.read_text().splitlines()]
        gold = {r["prompt"][0]["content"]: r["completion"][0]["content"] for r in rows}
        return lambda prompt, n: [gold[prompt[0]["content"]], "<think>x</think>\n<final>-1</final>"][:n]

    monkeypatch.setattr(tasks.train.dpo, "make_gguf_sampler", gguf_sampler)
    params = CompareParams(config=str(config), out=str(run), cache=str(tmp_path / "cache"), suites=["mmlu"],
                           formats=["bf16"], limit=2)
    result = compare(params)
    assert sorted(str(Path(p).resolve()) for p in sampled_from) == sorted(
        str((run / f"export-{v}" / f"smoke-{v}-BF16.gguf").resolve())
        for v in ("linear", "sigmoid-bayes"))  # each parent's own export
    for v in ("linear", "sigmoid-bayes"):
        assert json.loads((run / f"{v}+dpo" / "run.json").read_text())["parent"]["variant"] == v
        assert (run / "eval" / f"{v}+dpo-bf16" / "mmlu.summary.json").is_file()
    assert result["evaluations"] == 5  # base, two variants, two DPO models
    decision = json.loads((run / "decision" / "decision.json").read_text())
    assert decision["models"] == ["linear", "sigmoid-bayes"]  # the research question is still SFT vs SFT
    assert "DPO beside its SFT parent" in (run / "report" / "report.md").read_text()


@pytest.mark.slow
def test_flow_with_seed_replicates_decides_on_the_arms_and_stages_the_best_replicate(harness, tiny_base_dir,
                                                                                    tmp_path):
    import json

    from flows.compare import CompareParams, compare

    config = tmp_path / "seeds.yaml"
    config.write_text(_config(tmp_path, tiny_base_dir).read_text().replace(
        "decision: {bootstrap: 200", "decision: {on_not_significant: upload_best, bootstrap: 200")
        .replace("max_length: 96}", "max_length: 96, seeds: [5, 6]}"))
    run = tmp_path / "run"
    params = CompareParams(config=str(config), out=str(run), cache=str(tmp_path / "cache"), suites=["mmlu"],
                           formats=["bf16"], limit=3)
    result = compare(params)
    assert result["evaluations"] == 5  # base + two arms x two seeds
    for label, seed in (("linear-s5", 5), ("sigmoid-bayes-s6", 6)):
        assert json.loads((run / label / "run.json").read_text())["seed"] == seed
    decision = json.loads((run / "decision" / "decision.json").read_text())
    assert decision["models"] == ["linear", "sigmoid-bayes"] and decision["seeds"]["a"] == 2
    assert decision["replicates"] == {"linear": ["linear-s5", "linear-s6"],
                                      "sigmoid-bayes": ["sigmoid-bayes-s5", "sigmoid-bayes-s6"]}
    assert set(decision["compute"]) == {"linear", "sigmoid-bayes"}
    assert decision["compute"]["linear"]["replicates"] == 2 and decision["compute"]["linear"]["tuner_proxy_steps"] == 0
    assert decision["compute"]["sigmoid-bayes"]["tuner_proxy_steps"] == 1  # tuned once (seed 5), reused by seed 6
    if decision["winner"]:  # upload_best: the winning arm's best replicate is what is staged
        label = decision["upload_label"]
        assert label in decision["replicates"][decision["winner"]]
        plan = json.loads((run / "upload" / "plan.json").read_text())
        staged = [f for r in plan["repos"] for f in r["files"] if f["path"].endswith("-BF16.gguf")]
        assert staged and all(label in f["path"] for f in staged)
    assert "per-seed composites" in (run / "report" / "report.md").read_text()
