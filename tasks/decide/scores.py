"""What each side scored: result folders read back, each suite's declared role (configs/suites/<suite>.yaml:
title, composite group, primary metric) and the one metric a suite is scored by, the same for both sides of a
comparison (a judged suite: judge grades, or failed when the judge failed too often; never another metric for
one side). Used by the decision, the degradation gates, the report and the model cards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.bench.metrics import METRICS
from tasks.config import DecisionSpec
from tasks.store import read_json, read_jsonl


def suite_role(suite: str):
    """The suite's declared role (configs/suites/<suite>.yaml): title, group, primary metric."""
    from tasks.bench import suites

    path = suites.suite_path(suite)
    stamp = (str(path), path.stat().st_mtime_ns) if path.is_file() else (str(path), None)
    if stamp not in _ROLES:
        _ROLES[stamp] = suites.load_suite(suite)  # a clear error for an unknown suite
    return _ROLES[stamp]


_ROLES: dict[tuple[str, int | None], Any] = {}


def was_judged(entry: dict[str, Any]) -> bool:
    """Whether a judge was configured for this result (its summary names one, or any item carries a grade or a
    judge error)."""
    return bool(entry.get("summary", {}).get("judge")) or any(
        r.get("judge_grade") is not None or r.get("judge_error") for r in entry["records"])


def metric_for(suite: str, entry: dict[str, Any]) -> str:
    """The metric one side of a suite is scored by (a report, a degradation row): its primary metric, or for a
    judged suite with no judge, its primary_without_judge."""
    role = suite_role(suite)
    if role.judged and role.primary == "judge_grade" and not was_judged(entry) and role.primary_without_judge:
        return role.primary_without_judge
    return role.primary


def item_scores(records: list[dict], suite: str, metric: str | None = None) -> tuple[dict[int, float], bool, str]:
    """index -> score in [0, 1] for the items scored by ``metric`` (default: the suite's metric for these
    records); (scores, binary, metric name)."""
    metric = metric or metric_for(suite, {"records": records})
    spec = METRICS[metric]
    return ({r["index"]: spec.value(v) for r in records if not r.get("skipped") and (v := spec.read(r)) is not None},
            spec.binary, metric)


def paired_metric(suite: str, a: dict[str, Any], b: dict[str, Any], spec: DecisionSpec) -> tuple[str, str | None]:
    """(the one metric both sides of ``suite`` are compared by, or the reason the suite failed)."""
    role = suite_role(suite)
    if not role.judged or role.primary != "judge_grade":
        return role.primary, None
    judged = (was_judged(a), was_judged(b))
    if not any(judged):
        return role.primary_without_judge or role.primary, None
    if not all(judged):
        return role.primary, "judged for one side only (evaluate both with the same --judge)"
    for side, entry in (("A", a), ("B", b)):
        scored = [r for r in entry["records"] if not r.get("skipped")]
        failed = sum(1 for r in scored if r.get("judge_grade") is None)
        if scored and failed / len(scored) > spec.max_judge_failure_share:
            return role.primary, (f"the judge failed on {failed} of {len(scored)} items for side {side} (more than "
                                  f"decision.max_judge_failure_share = {spec.max_judge_failure_share:.0%})")
        if not scored:
            return role.primary, f"side {side} has no scored item"
    return role.primary, None


def load_results(folder: Path) -> dict[str, dict[str, Any]]:
    """suite -> {"records": [...], "summary": {...}} for every complete suite in ``folder``."""
    out = {}
    for summary_path in sorted(Path(folder).glob("*.summary.json")):
        suite = summary_path.name[: -len(".summary.json")]
        records = Path(folder) / f"{suite}.jsonl"
        if not records.is_file():
            raise FileNotFoundError(f"{summary_path} has no per-item records beside it ({records.name}); "
                                    "re-run that evaluation.")
        out[suite] = {"records": read_jsonl(records, hint="Re-run that evaluation."),
                      "summary": read_json(summary_path)}
    return out
