"""Training seeds as replicates of a schedule: the two sources of variance, power, and repeated looks.

The question is about *schedules*, so a difference between two trained models mixes the schedule effect with
training-seed noise. With several seeds per arm the composite difference D = mean_s c_A,s - mean_s c_B,s (c: a
seed's composite over the items) gets the standard error of a nested design with items crossed:

    SE^2 = s2_seed * (1/n_A + 1/n_B)  +  sum_suite coef_suite^2 * var_interaction / n_items

where s2_seed is the between-seed variance of the per-seed composites, pooled over both arms (df = n_A + n_B - 2;
the two schedules share the trainer, so one seed variance is assumed), and d_i is item i's paired difference of the
arm means (items are paired: every replicate answered the same items). The test is a t-test whose degrees of freedom
are those of its variance estimate (Welch-Satterthwaite over the seed part, on the seed degrees of freedom, and the
item part, on items - 1): seeds, not items, are the replicates of a schedule, so when the seed part dominates, two
seeds per arm give df near 2 and a wide interval however many items there are. The per-seed composites' variance
already holds the noise of one seed's answers on each item, so the item term keeps only the arm x item interaction
(the seed x item residual, measured from the replicates, is subtracted from var_i(d_i); see ``item_term``). Every
suite is tested the same way on its own mean, Holm across suites, and the sign-aware rule of
tasks/decide/decision.py applies.

With one seed per arm the seed variance is unmeasured (df = 0): the interval covers items only and the result speaks
for these two trained models, not for the schedules; normal quantiles are used then.

Power: the minimum detectable difference at the configured alpha and power is the noncentral-t figure rules.mdd(SE,
df); tasks/decide/planning.py turns earlier variance components (or priors) into the items per suite and seeds per
arm that would detect ``decision.target_effect``.

Repeated looks (the nightly study): alpha is spent over ``nightly.max_looks`` looks by a Lan-DeMets spending
function (O'Brien-Fleming-type or Pocock-type); look k tests at alpha_k = A(k/K) - A((k-1)/K). Since sum_k alpha_k =
alpha, the union bound keeps the chance of ever declaring a null effect significant at or below alpha whatever the
correlation between looks (conservative: it ignores that correlation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tasks.config import DecisionSpec
from tasks.decide import rules

# Priors for `alphagate plan` when no earlier decision measured the variances (assumptions, replaced by measured
# values as soon as a decision exists): the per-item variance of the paired difference of two fine-tunes of one
# base model (binary items: about the share of items the two answer differently; graded items in [0, 1]), and the
# between-seed standard deviation of a composite score.
PRIOR_ITEM_DIFF_VAR = {"binary": 0.15, "graded": 0.05}
PRIOR_SEED_SD = 0.01


def composite_coefficients(suites: list[str], spec: DecisionSpec, speed: bool = False
                           ) -> tuple[dict[str, float], float]:
    """The composite as a linear form: composite = sum_s coef[s] * mean_s + speed_coef * speed (the same weights
    and renormalisation as tasks/decide/decision.py:composite)."""
    from tasks.decide.scores import suite_role

    groups: dict[str, list[str]] = {}
    for s in suites:
        groups.setdefault(suite_role(s).group, []).append(s)
    weights = {g: spec.weights[g] for g in groups} | ({"speed": spec.weights["speed"]} if speed else {})
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"decision.weights give every present group weight 0 ({sorted(weights)}); nothing to "
                         "compare.")
    coefs = {s: spec.weights[g] / total / len(members) for g, members in groups.items() for s in members}
    return coefs, (spec.weights["speed"] / total if speed else 0.0)


def _quantile(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df)) if df > 0 else float(stats.norm.ppf(q))


def _p_value(estimate: float, se: float, df: float) -> float:
    from scipy import stats

    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    z = abs(estimate) / se
    return float(2 * (stats.t.sf(z, df) if df > 0 else stats.norm.sf(z)))


def contrast(a: np.ndarray, b: np.ndarray, coefs: np.ndarray, offsets: tuple[float, float] = (0.0, 0.0)
             ) -> dict[str, Any]:
    """The difference of arm means of a linear score over suites, with its seed variance part.

    ``a``: (n_A seeds, n_items) scores of arm A, items of every suite side by side; ``b`` likewise (same items,
    same order); ``coefs``: (n_items,) weight of each item in the score (coef of its suite / items in the suite);
    ``offsets``: a constant added to each arm's score (the speed term)."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    per_seed_a, per_seed_b = a @ coefs + offsets[0], b @ coefs + offsets[1]
    return {"per_seed_a": per_seed_a.tolist(), "per_seed_b": per_seed_b.tolist(),
            "diff": float(per_seed_a.mean() - per_seed_b.mean()), **seed_term(per_seed_a, per_seed_b)}


def seed_term(per_seed_a: np.ndarray, per_seed_b: np.ndarray) -> dict[str, Any]:
    """The seed part of Var(D) and its degrees of freedom.

    Equal seed counts: the seed variance pooled over both arms (the two schedules share the trainer), df = 2n - 2.
    Unequal counts with two or more seeds each: Welch (each arm its own variance, Satterthwaite df), since a
    pooled variance is liberal when the arm with fewer seeds is the noisier one. One seed in one arm: the other
    arm's variance is assumed for it (``assumed`` says so). One seed in each: unmeasured (df 0)."""
    n_a, n_b = len(per_seed_a), len(per_seed_b)
    var = {n: float(np.var(x, ddof=1)) if len(x) > 1 else None for n, x in (("a", per_seed_a), ("b", per_seed_b))}
    base = {"n_seeds": [n_a, n_b], "seed_var_a": var["a"], "seed_var_b": var["b"], "assumed": None}
    if var["a"] is None and var["b"] is None:
        return {**base, "seed_var": None, "seed_var_term": 0.0, "df": 0, "seed_test": "unmeasured"}
    if var["a"] is None or var["b"] is None:
        known, n_known = (var["b"], n_b) if var["a"] is None else (var["a"], n_a)
        return {**base, "seed_var": known, "seed_var_term": known * (1 / n_a + 1 / n_b), "df": n_known - 1,
                "seed_test": "pooled", "assumed": "a" if var["a"] is None else "b"}
    if n_a == n_b:
        pooled = (var["a"] + var["b"]) / 2
        return {**base, "seed_var": pooled, "seed_var_term": pooled * 2 / n_a, "df": 2 * n_a - 2,
                "seed_test": "pooled"}
    ta, tb = var["a"] / n_a, var["b"] / n_b
    term = ta + tb
    df = term ** 2 / (ta ** 2 / (n_a - 1) + tb ** 2 / (n_b - 1)) if term > 0 else float(n_a + n_b - 2)
    pooled = ((n_a - 1) * var["a"] + (n_b - 1) * var["b"]) / (n_a + n_b - 2)
    return {**base, "seed_var": pooled, "seed_var_term": term, "df": df, "seed_test": "welch"}


def _scalar(x):
    """A 0-d result as a float; a batch (leading axes, as the simulation tests use) as an array."""
    return float(x) if np.ndim(x) == 0 else np.asarray(x, dtype=float)


def residual_var(*arms: np.ndarray):
    """The seed x item residual variance (a two-way layout per arm: score = seed effect + item effect + residual),
    pooled over the arms with at least two seeds; None when no arm has two. Arms are (seeds, items) arrays, or
    batches of them (..., seeds, items)."""
    ss = df = 0.0
    for y in arms:
        y = np.atleast_2d(np.asarray(y, dtype=float))
        if y.shape[-2] < 2 or y.shape[-1] < 2:
            continue
        r = y - y.mean(axis=-1, keepdims=True) - y.mean(axis=-2, keepdims=True) + y.mean(axis=(-2, -1),
                                                                                     keepdims=True)
        ss = ss + np.sum(r ** 2, axis=(-2, -1))
        df += (y.shape[-2] - 1) * (y.shape[-1] - 1)
    return _scalar(ss / df) if df else None


def item_term(a: np.ndarray, b: np.ndarray):
    """(variance of the difference of arm means from sampling this suite's items, the per-item variance of the
    paired difference it rests on).

    var_i(d_i) holds the arm x item interaction (what items add) plus the seed x item residual of the arm means,
    sigma2_e (1/n_A + 1/n_B), which the per-seed composites' variance already carries; with replicates that part
    is subtracted (measured from the two-way residual), so nothing is counted twice. With one seed per arm it
    stays: the item term is then the whole uncertainty of the comparison of these two models. Batches (leading
    axes) give arrays."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    d = a.mean(axis=-2) - b.mean(axis=-2)
    if d.shape[-1] < 2:  # one item: its variance is unknown, and nothing is testable (interval() gives p = 1)
        return 0.0, 0.0
    total = np.var(d, ddof=1, axis=-1)
    sigma2 = residual_var(a, b)
    interaction = total if sigma2 is None else np.maximum(0.0, total - sigma2 * (1 / a.shape[-2] + 1 / b.shape[-2]))
    return _scalar(interaction / d.shape[-1]), _scalar(total)


def item_df(a: np.ndarray, b: np.ndarray):
    """Degrees of freedom of the interaction estimate (var_i(d_i) on items - 1 df, less the residual part): a
    difference of mean squares has (items - 1) (interaction / var_i(d_i))^2, so an interaction that is mostly
    subtracted noise carries almost no information (Satterthwaite)."""
    part, total = item_term(a, b)
    n = np.atleast_2d(np.asarray(a)).shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(np.asarray(total) > 0, np.asarray(part) * n / np.asarray(total), 0.0)
    return _scalar((n - 1) * share ** 2)


def item_variance(suites: dict[str, tuple[np.ndarray, np.ndarray]], coefs: dict[str, float]) -> float:
    """Variance of the composite difference from sampling items: sum over suites of coef^2 x the suite's item term."""
    return float(sum(coefs[s] ** 2 * item_term(*pair)[0] for s, pair in suites.items()))


def interval(diff: float, seed_part: float, item_var: float, df: float, alpha: float, power: float
             ) -> dict[str, Any]:
    """SE, CI at 1 - alpha, two-sided p and minimum detectable difference (at ``power``, noncentral t) of a
    difference whose variance is the two-level ``seed_part`` + ``item_var`` (rules.variance_of_difference), tested
    with t on ``df`` degrees of freedom (normal when df is 0). A zero SE measures nothing (identical replicates, a
    single item): p is 1 and the CI unbounded."""
    se = math.sqrt(rules.variance_of_difference(seed_part, item_var))
    if se == 0:
        return {"se": 0.0, "ci": [-math.inf, math.inf], "p_value": 1.0, "mde": math.inf, "df": df,
                "seed_var_term": seed_part, "item_var_term": item_var, "testable": False}
    half = _quantile(1 - alpha / 2, df) * se
    return {"se": se, "ci": [diff - half, diff + half], "p_value": _p_value(diff, se, df),
            "mde": rules.mdd(se, df, alpha, power), "df": df,
            "seed_var_term": seed_part, "item_var_term": item_var, "testable": True}


def test_df(seed: dict[str, Any], item_parts: list[tuple[float, float]]) -> float:
    """The test's degrees of freedom: 0 (normal) while the seed variance is unmeasured (one seed per arm: the two
    trained models); else Welch-Satterthwaite over the seed part (its df) and the item parts (items - 1 each)."""
    if seed["df"] <= 0:
        return 0.0
    return rules.effective_df([(seed["seed_var_term"], seed["df"]), *item_parts])


def analyse(suites: dict[str, tuple[np.ndarray, np.ndarray]], spec: DecisionSpec, alpha: float,
            speed: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """The replicate analysis of two arms. ``suites``: suite -> (A scores (n_A, n_items), B scores (n_B, n_items)),
    items paired by column; ``speed``: (A's speed score, B's, the variance of their difference) or None (no speed
    term); its variance joins the item part (timing noise is neither seeds nor items, and never zero).

    Returns the composite difference with its interval and variance components, and one row per suite."""
    names = sorted(suites)
    coefs, speed_coef = composite_coefficients(names, spec, speed is not None)
    a = np.concatenate([np.atleast_2d(suites[s][0]) for s in names], axis=1)
    b = np.concatenate([np.atleast_2d(suites[s][1]) for s in names], axis=1)
    item_coef = np.concatenate([np.full(np.atleast_2d(suites[s][0]).shape[1],
                                        coefs[s] / np.atleast_2d(suites[s][0]).shape[1]) for s in names])
    offsets = (speed_coef * speed[0], speed_coef * speed[1]) if speed is not None else (0.0, 0.0)
    comp = contrast(a, b, item_coef, offsets)
    speed_var = speed_coef ** 2 * speed[2] if speed is not None else 0.0
    item_var = item_variance(suites, coefs) + speed_var
    comp["seed_df"] = comp["df"]
    item_parts = [(coefs[s] ** 2 * item_term(*suites[s])[0], item_df(*suites[s])) for s in names]
    comp |= interval(comp["diff"], comp["seed_var_term"], item_var, test_df(comp, item_parts), alpha, spec.power)
    comp["speed_var_term"] = speed_var
    comp["per_item_residual_var"] = {s: residual_var(*suites[s]) for s in names}
    comp["per_item_diff_var"] = {s: item_term(*suites[s])[1] for s in names}
    comp["per_item_interaction_var"] = {s: item_term(*suites[s])[0] * np.atleast_2d(suites[s][0]).shape[1]
                                        for s in names}
    comp["n_items"] = {s: int(np.atleast_2d(suites[s][0]).shape[1]) for s in names}
    comp["coefficients"] = coefs
    rows = {}
    for s in names:
        sa, sb = np.atleast_2d(suites[s][0]), np.atleast_2d(suites[s][1])
        one = contrast(sa, sb, np.full(sa.shape[1], 1 / sa.shape[1]))
        part = item_term(sa, sb)[0]
        one["seed_df"] = one["df"]
        one |= interval(one["diff"], one["seed_var_term"], part, test_df(one, [(part, item_df(sa, sb))]), alpha,
                        spec.power)
        rows[s] = one
    return {"composite": comp, "suites": rows}


# --- repeated looks ---------------------------------------------------------------------------------------------

def spent_alpha(t: float, alpha: float, kind: str) -> float:
    """Lan-DeMets spending function: the share of alpha spent by information fraction ``t`` in [0, 1]."""
    from scipy import stats

    t = min(max(t, 0.0), 1.0)
    if t == 0:
        return 0.0
    if kind == "obrien_fleming":
        return float(min(alpha, 2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t))))
    if kind == "pocock":
        return float(alpha * math.log(1 + (math.e - 1) * t))
    raise ValueError(f"unknown alpha-spending function {kind!r}; expected 'obrien_fleming' or 'pocock'")


def look_alpha(look: int, max_looks: int, alpha: float, kind: str) -> dict[str, Any]:
    """The nominal alpha of look ``look`` (1-based) of ``max_looks``: what this look may spend.

    Look 1 has one seed per arm, so the seed variance is unmeasured and it can never decide: it spends nothing.
    The spending function runs over looks 2..K (information fraction (k - 1) / (K - 1)), so all of alpha is
    available to looks that can use it."""
    if not 1 <= look <= max_looks:
        raise ValueError(f"look {look} is outside 1..{max_looks} (nightly.max_looks); the study is over.")
    span = max_looks - 1
    before = spent_alpha(max(look - 2, 0) / span, alpha, kind) if look > 1 else 0.0
    now = spent_alpha((look - 1) / span, alpha, kind) if look > 1 else 0.0
    return {"look": look, "max_looks": max_looks, "spending": kind, "alpha_total": alpha,
            "alpha_spent_before": before, "alpha_spent": now, "alpha_this_look": now - before}
