"""The statistics of a two-model comparison: the composite of suite means over the declared groups, the paired test
of one suite's items (McNemar's exact test for binary items; the exact sign-flip test or Wilcoxon signed-rank for
graded ones), the side its statistic favours, and the smallest p a test can reach on a number of differing items."""

from __future__ import annotations

import numpy as np

from tasks.bench.catalog import groups as declared_groups
from tasks.config import DecisionSpec
from tasks.decide import rules
from tasks.decide.scores import suite_role


def min_attainable_p(n: int) -> float:
    """The smallest two-sided p McNemar's exact test or the exact Wilcoxon signed-rank test can give on ``n``
    paired items (every item differing, all one way): 2 * 0.5**n."""
    return 1.0 if n <= 0 else min(1.0, 2.0 ** (1 - n))


def _groups(suites: list[str]) -> dict[str, list[str]]:
    """The declared composite groups (in groups.yaml's order, which the composite sums in), each with its suites."""
    groups: dict[str, list[str]] = {g: [] for g in declared_groups()}
    for s in suites:
        groups[suite_role(s).group].append(s)
    return groups


def composite(suite_means: dict[str, float], speed: float | None, spec: DecisionSpec) -> float:
    """Weighted sum over the groups present; weights renormalised over what is present. ``speed`` None: no speed
    term (not measured on its own, or a quality-only comparison such as the degradation gates)."""
    parts, weights = {}, {}
    for group, members in _groups(list(suite_means)).items():
        if members:
            parts[group] = sum(suite_means[s] for s in members) / len(members)
            weights[group] = spec.weights[group]
    if speed is not None:
        parts["speed"], weights["speed"] = speed, spec.weights["speed"]
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"decision.weights give every present group weight 0 ({sorted(parts)}); nothing to compare.")
    return sum(weights[g] * parts[g] for g in parts) / total


def paired_test(a: np.ndarray, b: np.ndarray, binary: bool) -> tuple[str, float]:
    """McNemar's exact test for binary items; for graded items the exact sign-flip test of the differences when at
    most rules.EXACT_SIGN_FLIP_MAX differ (exact with ties and zeros, where Wilcoxon falls back to a normal
    approximation that min_attainable_p does not describe), else the Wilcoxon signed-rank test."""
    if binary:
        from statsmodels.stats.contingency_tables import mcnemar

        table = [[int(np.sum((a == 1) & (b == 1))), int(np.sum((a == 1) & (b == 0)))],
                 [int(np.sum((a == 0) & (b == 1))), int(np.sum((a == 0) & (b == 0)))]]
        return "mcnemar_exact", float(mcnemar(table, exact=True).pvalue)
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if np.count_nonzero(d) <= rules.EXACT_SIGN_FLIP_MAX:
        return "sign_flip_exact", rules.sign_flip_p(d)  # no differing pair: p = 1
    from scipy.stats import wilcoxon

    return "wilcoxon_signed_rank", float(wilcoxon(a, b, zero_method="wilcox").pvalue)


def statistic_direction(a: np.ndarray, b: np.ndarray, binary: bool, test: str = "") -> str:
    """Which side the paired test's statistic favours: McNemar, the larger discordant count; the sign-flip test, the
    sign of the summed differences; Wilcoxon, the larger signed-rank sum (zero differences dropped, ties averaged).
    "a", "b" or "tie"."""
    from scipy.stats import rankdata

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if binary:
        score = float(np.sum(d > 0) - np.sum(d < 0))
    elif test == "sign_flip_exact":
        score = float(d.sum())
    else:
        d = d[d != 0]
        ranks = rankdata(np.abs(d)) if len(d) else np.array([])
        score = float(ranks[d > 0].sum() - ranks[d < 0].sum())
    return "a" if score > 0 else "b" if score < 0 else "tie"
