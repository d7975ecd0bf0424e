"""The comparison of two trained models item by item (one result folder per side): per suite its one declared metric
over the items both sides scored, the paired test (tasks/decide/stats.py) with Holm across suites and a sign-aware
significance flag, the composite of the suite means with its paired-bootstrap CI (tasks/decide/resample.py), and the
power and variance fields (tasks/decide/seeds.py). Items are the replicates: the result speaks for these two models."""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.bench.metrics import METRICS
from tasks.config import DecisionSpec
from tasks.decide import rules
from tasks.decide.scores import item_scores, paired_metric
from tasks.decide.stats import composite, min_attainable_p, paired_test, statistic_direction


def _paired_items(suite: str, entry_a: dict, entry_b: dict, metric: str) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """(A's scores, B's scores on the items both scored, binary, items scored on one side only)."""
    sa, binary, _ = item_scores(entry_a["records"], suite, metric)
    sb, _, _ = item_scores(entry_b["records"], suite, metric)
    common = sorted(set(sa) & set(sb))
    return (np.array([sa[i] for i in common]), np.array([sb[i] for i in common]), binary,
            len(set(sa) | set(sb)) - len(common))


def _suite_row(suite: str, metric: str, a: np.ndarray, b: np.ndarray, binary: bool, dropped: int,
               spec: DecisionSpec) -> dict[str, Any]:
    """One suite's row: means, direction, the paired test and whether it can ever reach significance."""
    test, p = paired_test(a, b, binary)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    differing = int(np.sum(a != b))  # what the exact tests look at: discordant pairs, non-zero differences
    min_p = min_attainable_p(differing)
    return {"suite": suite, "metric": metric, "metric_label": METRICS[metric].label(metric),
            "n_paired": len(a), "n_differing": differing, "dropped": dropped, "a": mean_a, "b": mean_b,
            "direction": "a" if mean_a > mean_b else "b" if mean_b > mean_a else "tie",
            "test_direction": statistic_direction(a, b, binary, test), "test": test, "p_value": p,
            "min_attainable_p": min_p, "can_reach_significance": bool(min_p < spec.alpha)}


def _holm(rows: list[dict[str, Any]], alpha: float) -> None:
    """Holm-adjusted p and the significance flag of each row (in place)."""
    if not rows:
        return
    adjusted = rules.holm([r["p_value"] for r in rows])
    for row, p_adj in zip(rows, adjusted, strict=True):
        row["p_holm"] = float(p_adj)
        # a significant test must point the way the means do (a signed-rank test can favour the side that
        # wins more items while the other side's mean is higher): otherwise it speaks for neither
        row["significant"] = bool(p_adj < alpha and row["direction"] != "tie"
                                  and row["test_direction"] == row["direction"])


def _suites(results_a: dict, results_b: dict, spec: DecisionSpec):
    """(suite -> (A's, B's paired scores), the suites' rows, failed suite -> why)."""
    suites = sorted(set(results_a) & set(results_b))
    if not suites:
        raise ValueError("The two models have no completed suite in common; nothing to compare.")
    paired, rows, failed = {}, [], {}
    for suite in suites:
        metric, failure = paired_metric(suite, results_a[suite], results_b[suite], spec)
        if failure:
            failed[suite] = failure
            continue
        a, b, binary, dropped = _paired_items(suite, results_a[suite], results_b[suite], metric)
        if not len(a):
            failed[suite] = "no item was scored for both sides"
            continue
        paired[suite] = (a, b)
        rows.append(_suite_row(suite, metric, a, b, binary, dropped, spec))
    _holm(rows, spec.alpha)
    return paired, rows, failed


def compare(results_a: dict, results_b: dict, spec: DecisionSpec,
            speed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Paired comparison of model A and B over the suites both completed, each on its one declared metric.
    ``speed``: the two models' timings (tasks/decide/speed.py:read_speed); None leaves the speed term out (it is
    never taken from evaluation timings, which are measured under parallel load)."""
    from tasks.decide.speed import speed_info as speed_record

    paired, rows, failed = _suites(results_a, results_b, spec)
    used = [r["suite"] for r in rows]
    speed_info = speed_record(speed, spec)
    speed_a, speed_b = (speed_info["score_a"], speed_info["score_b"]) if speed_info["in_composite"] else (None, None)
    if not used:
        return {"suites": rows, "failed_suites": failed, "composite_a": None, "composite_b": None, "diff": 0.0,
                "diff_ci95": [0.0, 0.0], "speed_a": speed_a, "speed_b": speed_b, "speed": speed_info}
    comp_a = composite({s: paired[s][0].mean() for s in used}, speed_a, spec)
    comp_b = composite({s: paired[s][1].mean() for s in used}, speed_b, spec)
    from tasks.decide.resample import paired_diff_ci

    lo, hi, per_suite = paired_diff_ci(paired, used, speed_info, spec)
    for row in rows:  # each suite's paired difference a - b and its 95% CI (the report's forest plot reads them)
        row["diff"], row["diff_ci95"] = row["a"] - row["b"], per_suite[row["suite"]]
    from tasks.decide.replicates import analyse
    from tasks.decide.seeds import power_and_variance

    one = analyse({s: (paired[s][0][None, :], paired[s][1][None, :]) for s in used}, spec, spec.alpha,
                  None if speed_a is None else (speed_a, speed_b, speed_info["var"]))["composite"]
    return {"suites": rows, "failed_suites": failed, "composite_a": float(comp_a), "composite_b": float(comp_b),
            "diff": float(comp_a - comp_b), "diff_ci95": [lo, hi], "speed_a": speed_a, "speed_b": speed_b,
            "speed": speed_info, **power_and_variance(one, spec, spec.alpha)}
