"""The statistical rules of the decision, one function each, so that every caller uses the same one and a test can
replace each in turn by its naive version and watch the statistical tests fail (tests/test_statistical_rules.py).
Callers reach them as ``rules.<name>`` (never ``from rules import name``), so a replacement is seen everywhere.

- ``holm``: Holm's step-down adjustment across suites (not the raw p-values: with six suites a raw p < 0.05 is
  expected by chance far more often than 5%).
- ``variance_of_difference``: the two-level variance of an arm difference, seeds plus items (not items alone:
  with several seeds, the seed-to-seed spread is the replicate of a schedule).
- ``sides``: the sign-aware rule, which significant suites support the winner and which go against it (a rule
  that asks "is any suite significant?" without asking in which direction calls a winner on evidence against it).
- ``mdd``: the minimum detectable difference from the noncentral t (not z * SE, and not t quantiles added: at
  df 2 those give 5.36 SE where the exact figure is 5.65 SE).
- ``effective_df``: Welch-Satterthwaite degrees of freedom of the two-level variance.
- ``speed_terms``: the speed difference with its uncertainty (not the point estimate of two means).
- ``sign_flip_p``: the exact sign-flip (permutation) test of paired differences, for few items or tied differences,
  where the Wilcoxon test falls back to a normal approximation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# up to this many non-zero paired differences the sign-flip test enumerates all 2**n sign patterns
EXACT_SIGN_FLIP_MAX = 16


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: the k-th smallest times (m - k + 1), made monotone, capped at 1
    (the same figures as statsmodels' multipletests(method="holm"), without its per-call garbage collection)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    out = np.empty_like(p)
    out[order] = scaled
    return [float(x) for x in out]


def variance_of_difference(seed_part, item_part):
    """Var(D) of a difference of arm means in the two-level design: the seed part (between-seed variance of the
    per-seed scores times 1/n_A + 1/n_B) plus the item part (the arm x item interaction over the items). Numbers, or
    arrays of them (a batch of simulated studies)."""
    return seed_part + item_part


def sides(rows: list[dict[str, Any]], winner: str, loser: str, names: dict[str, str]) -> tuple[list[str], list[str]]:
    """(suites that significantly favour ``winner``, suites that significantly favour ``loser``): a suite counts only
    in the direction its means point (``names`` maps a row's direction "a"/"b" to a model name)."""
    for_ = [r["suite"] for r in rows if r["significant"] and names[r["direction"]] == winner]
    against = [r["suite"] for r in rows if r["significant"] and names[r["direction"]] == loser]
    return for_, against


def effective_df(parts: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variance estimates [(variance, its df), ...]: a seed part
    on 2n - 2 df plus an item part on N - 1 df is neither t(2n - 2) (too conservative when items dominate) nor
    normal (too liberal when seeds dominate). Parts with df 0 (unmeasured) are left out; 0 when none is left."""
    used = [(v, d) for v, d in parts if d > 0 and v > 0]
    if not used:
        return 0.0
    return float(sum(v for v, _ in used) ** 2 / sum(v ** 2 / d for v, d in used))


def _power(ncp: float, df: float, alpha: float) -> float:
    """statsmodels' power of the two-sided t-test (df > 0) or z-test (df 0) at noncentrality ``ncp``: an effect
    size of ncp on one observation (statsmodels' noncentrality is effect * sqrt(nobs)), with the given df."""
    from statsmodels.stats.power import normal_power, ttest_power

    if df <= 0:
        return float(normal_power(ncp, 1, alpha))
    value = float(ttest_power(ncp, 1, alpha, df=df))
    # far in the tail the noncentral t can return nan: there the power is 0 or 1
    if math.isnan(value):
        from scipy import stats

        return 1.0 if ncp > float(stats.t.isf(alpha / 2, df)) else 0.0
    return value


def power_at(effect: float, se: float, df: float, alpha: float) -> float:
    """The chance that the two-sided t-test at ``alpha`` on ``df`` degrees of freedom detects a true ``effect``
    whose estimate has standard error ``se`` (noncentral t; normal when df is 0)."""
    if se <= 0:
        return 1.0
    if alpha <= 0:
        return 0.0
    return _power(abs(effect) / se, df, alpha)


def mdd(se: float, df: float, alpha: float, power: float) -> float:
    """The smallest true difference a two-sided t-test at ``alpha`` on ``df`` degrees of freedom (normal when df is
    0) detects with probability ``power`` when its standard error is ``se``: se * the noncentrality at which the
    noncentral t's power reaches ``power``. statsmodels' solve_power fixes df = nobs - 1; the decision's df is a
    Welch-Satterthwaite figure (fractional), so its power function is solved here for the noncentrality."""
    from scipy import optimize, stats

    if se <= 0:
        return 0.0
    if alpha <= 0:  # a look that spends no alpha detects nothing
        return math.inf
    crit = float(stats.t.isf(alpha / 2, df)) if df > 0 else float(stats.norm.isf(alpha / 2))
    hi = crit + 10.0
    while _power(hi, df, alpha) < power:  # very small df: the noncentrality needed is large
        hi *= 2
    ncp = optimize.brentq(lambda x: _power(x, df, alpha) - power, 0.0, hi, xtol=1e-10)
    return float(ncp * se)


def speed_terms(samples: tuple[list[float], list[float]], reference_tok_s: float, paired: bool
                ) -> dict[str, Any]:
    """Each model's speed score (tokens/s over ``reference_tok_s``, capped at 1), their difference and its
    variance. ``paired``: the models were timed in interleaved rounds (A, B, B, A, ...), so round r of A and round
    r of B shared the machine's state and the difference is taken round by round; otherwise Welch's variance of two
    independent means."""
    a, b = (np.minimum(np.asarray(x, dtype=float) / reference_tok_s, 1.0) for x in samples)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"speed needs at least 2 timings per model to have an uncertainty; got {len(a)} and "
                         f"{len(b)}. Rerun the speed benchmark with repeats >= 2.")
    if paired and len(a) != len(b):
        raise ValueError(f"paired speed rounds need as many timings of each model; got {len(a)} and {len(b)}.")
    if paired:
        d = a - b
        var, df = float(np.var(d, ddof=1) / len(d)), len(d) - 1
    else:
        va, vb = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
        var = va + vb
        df = var ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if var > 0 else len(a) + len(b) - 2
    diff = float(a.mean() - b.mean())
    return {"score_a": float(a.mean()), "score_b": float(b.mean()), "diff": diff, "var": var, "df": float(df),
            "paired": bool(paired)}


def sign_flip_p(d: np.ndarray) -> float:
    """Two-sided p of the exact sign-flip test of the paired differences ``d`` (statistic: their sum; zero
    differences carry no sign and drop out). Exact for up to EXACT_SIGN_FLIP_MAX non-zero differences; the
    smallest p it can give on n of them is 2 * 0.5**n, which is what decision.min_attainable_p assumes."""
    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return 1.0
    if n > EXACT_SIGN_FLIP_MAX:
        raise ValueError(f"the exact sign-flip test enumerates 2**n patterns; {n} non-zero differences exceed "
                         f"{EXACT_SIGN_FLIP_MAX}. Use the signed-rank test's normal approximation for that many.")
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    sums = signs @ np.abs(d)
    observed = abs(float(d.sum()))
    return float(min(1.0, np.mean(np.abs(sums) >= observed - 1e-12 * max(1.0, observed))))


def within_ci_sentence(mdd_value: float | None, power: float) -> str:
    """What a non-significant result excludes, for people (after the sentence that gave the CI)."""
    ruled = (f", and differences larger than {mdd_value:.4g} composite points were ruled out at {power:.0%} power"
             if mdd_value is not None and math.isfinite(mdd_value) else "")
    return f"the difference lies within that CI{ruled}"
