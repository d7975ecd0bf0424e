from __future__ import annotations

import pytest

pytest.importorskip("prefect")


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def _config(tmp_path, tiny_base_dir, required: str = "[]", name: str = "smoke.yaml"):
    path = tmp_path / name
    path.write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\n"
                    "train: {max_steps: 2, batch_size: 2, eval_every: 2, max_length: 96}\n"
                    "tuner: {n_trials: 1, proxy_steps: 1, n_initial_points: 1}\n"
                    f"decision: {{bootstrap: 200, required_suites: {required}}}\n")
    return path


@pytest.mark.slow
def test_flow_end_to_end_then_fully_cached(harness, tiny_base_dir, tmp_path, monkeypatch):
    import tasks.train
    from flows.compare import CompareParams, compare

    params = CompareParams(config=str(_config(tmp_path, tiny_base_dir)), out=str(tmp_path / "run"),
                           cache=str(tmp_path / "cache"), suites=["mmlu", "gsm8k"], formats=["bf16", "q8_0"],
                           limit=2)
    result = compare(params)
    run = tmp_path / "run"
    assert (run / "decision" / "decision.json").is_file() and (run / "report" / "report.md").is_file()
    assert (run / "eval" / "base-q8_0" / "gsm8k.summary.json").is_file()  # the untouched base is evaluated too
    assert result["evaluations"] == 3 * 2 * 2 and result["failed_evaluations"] == []
    from tests.test_orchestration import _artifacts

    assert {"alphagate-decision", "alphagate-report"} <= {a.key for a in _artifacts("markdown")}
    tables = {a.key for a in _artifacts("table")}
    assert "eval-base-q8-0-gsm8k" in tables and "alphagate-decision-suites" in tables
    assert len([a for a in _artifacts("progress") if a.data == 100.0]) >= 3 + 3 * 2 * 2  # 3 trainings, 12 suites
    calls = []
    real = tasks.train.train_variant
    monkeypatch.setattr(tasks.train, "train_variant", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    compare(params)
    assert calls == []  # cached: no training body ran the second time


@pytest.mark.slow
def test_a_failing_suite_is_retried_alone_and_a_dead_one_does_not_stop_the_rest(harness, tiny_base_dir, tmp_path,
                                                                               monkeypatch):
    import json

    import tasks.bench.runner as runner
    from flows.compare import CompareParams, compare

    real, calls = runner.run_suite, []

    def flaky(gguf, suite, out_dir, opts=None):  # the test double: gsm8k fails once, hellaswag always
        calls.append(suite)
        if suite == "hellaswag" or (suite == "gsm8k" and calls.count("gsm8k") == 1):
            raise RuntimeError(f"injected failure in {suite}")
        return real(gguf, suite, out_dir, opts)

    monkeypatch.setattr(runner, "run_suite", flaky)
    params = CompareParams(config=str(_config(tmp_path, tiny_base_dir)), out=str(tmp_path / "run"),
                           cache=str(tmp_path / "cache"), suites=["mmlu", "gsm8k", "hellaswag"], formats=["bf16"],
                           limit=2)
    compare(params)
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
