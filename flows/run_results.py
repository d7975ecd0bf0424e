"""What a Prefect run shows a user: table/markdown artifacts, the decision and report published on the run a user
started (figures embedded), its progress, and its final state (Partial when suites failed for good)."""

from __future__ import annotations

import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any


def artifact(kind: str, key: str, payload, description: str) -> None:
    """A table/markdown artifact for the UI; an artifact that cannot be written never fails the task."""
    from prefect import artifacts

    key = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")[:100]  # Prefect: lowercase letters, digits, dashes
    try:
        replace_earlier(key)
        if kind == "table":
            artifacts.create_table_artifact(payload, key=key, description=description)
        else:
            artifacts.create_markdown_artifact(payload, key=key, description=description)
    except Exception as exc:  # noqa: BLE001
        from prefect import get_run_logger

        get_run_logger().warning("could not write the %s artifact %s: %s", kind, key, exc)


def replace_earlier(key: str) -> int:
    """Delete this flow run's earlier artifacts under ``key`` (a retry's first attempt made them), so that the run's
    page shows one current card per key, never two from different attempts in mixed order (the page lists every
    version of a key; a key's history across runs is kept: only this run's are replaced). How many went."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return 0
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # limit/offset/sort given: the server refuses them as null
        earlier = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[ctx.flow_run.id])),
            limit=200, offset=0, sort=ArtifactSort.CREATED_DESC)
        for artifact in earlier:
            client.delete_artifact(artifact.id)
    return len(earlier)


# --- what the run a user started shows ----------------------------------------------------------------------------
# The stage tasks run two subflows down (alphagate-pipeline, alphagate-evaluate) and are cache hits on a rerun, so
# the results are published by the top-level flow (compare, nightly) from the records on disk (read by
# tasks.publish.run_view): the run a user triggers from the UI carries them, and so does a rerun that recomputed
# nothing.

_RUN_PROGRESS: ContextVar[Any] = ContextVar("alphagate_run_progress", default=None)


def publish_results(decision_json: str | Path | None, report_md: str | Path | None) -> None:
    """Decision (Markdown + per-suite table) and report (figures embedded) as artifacts of the calling flow run."""
    from tasks.publish.run_view import decision_cards, report_card

    cards = decision_cards(decision_json) if decision_json is not None else []
    cards += [report_card(report_md)] if report_md is not None else []
    for card in cards:
        artifact(*card)


def run_progress(percent: float, what: str) -> None:
    """The top-level run's progress artifact (created by ``start_run_progress``): ``percent`` done, ``what`` now.
    A no-op outside such a run; a failed update never fails the run."""
    from prefect.context import FlowRunContext

    state = _RUN_PROGRESS.get()
    if state is None or FlowRunContext.get() is None:  # outside a flow run the artifact is an earlier run's
        return
    try:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(state, percent, description=what)
    except Exception as exc:  # noqa: BLE001
        from prefect import get_run_logger

        get_run_logger().warning("could not update the run's progress artifact: %s", exc)


def failed_suites(failed: list[str]) -> dict[str, list[str]]:
    """"model/format/suite" keys of evaluations that failed for good -> suite: ["model/format", ...]."""
    out: dict[str, list[str]] = {}
    for key in failed:
        where, _, suite = key.rpartition("/")
        out.setdefault(suite, []).append(where)
    return out


def finish_run(result: dict[str, Any]):
    """What the top-level comparison returns: its result, or, when evaluations failed for good, a Completed state
    named "Partial" whose message names the missing suites (the UI shows the name and the message; calling the flow
    still returns the result)."""
    failed = result.get("failed_evaluations") or []
    if not failed:
        run_progress(100.0, f"done: {result['decision']}")
        return result
    from prefect.states import Completed

    missing = "; ".join(f"{suite} ({', '.join(where)})" for suite, where in failed_suites(failed).items())
    message = (f"Partial: evaluations failed for good, so these suites are missing: {missing}. The decision used the "
               "complete suites; rerun the flow to retry only what failed.")
    run_progress(100.0, message)
    return Completed(data=result, name="Partial", message=message)


def start_run_progress(what: str) -> None:
    try:
        from prefect.artifacts import create_progress_artifact

        replace_earlier("alphagate-progress")
        _RUN_PROGRESS.set(create_progress_artifact(0.0, key="alphagate-progress", description=what))
    except Exception as exc:  # noqa: BLE001
        from prefect import get_run_logger

        get_run_logger().warning("could not create the run's progress artifact: %s", exc)
