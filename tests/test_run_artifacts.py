"""The run's page after a retry: one current card per artifact, never one per attempt in mixed order."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("prefect")


def _run_artifacts(run_id: str) -> list[dict]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # what the run page asks: every artifact of the run
        response = client.request("POST", "/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": 0, "sort": "CREATED_DESC"})
        return response.json()


def test_a_retried_run_shows_one_current_set_of_artifacts(harness, tmp_path):
    from prefect import flow
    from prefect.context import get_run_context

    from flows.run_results import publish_results, run_progress, start_run_progress

    decision = tmp_path / "decision.json"
    report = tmp_path / "report.md"
    attempts = []

    @flow(retries=1, retry_delay_seconds=0)
    def flaky() -> str:
        attempts.append(len(attempts) + 1)
        decision.write_text(json.dumps({"reason": f"attempt {len(attempts)}", "upload": False, "models": ["a", "b"],
                                        "suites": []}))
        report.write_text(f"# report of attempt {len(attempts)}\n")
        start_run_progress("running")
        publish_results(decision, report)
        run_progress(50.0, "half")
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails after publishing")
        return str(get_run_context().flow_run.id)

    run_id = flaky()
    assert attempts == [1, 2]
    artifacts = _run_artifacts(run_id)
    keys = [a["key"] for a in artifacts if a["type"]]  # untyped: the flow's persisted result, not a card
    assert sorted(keys) == ["alphagate-decision", "alphagate-progress", "alphagate-report"], keys  # once each
    shown = {a["key"]: a["data"] for a in artifacts}
    assert "attempt 2" in shown["alphagate-decision"] and "attempt 2" in shown["alphagate-report"]
