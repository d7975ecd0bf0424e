"""The decision with training seeds as replicates (tasks/decide/replicates.py has the statistics): the comparison
of two arms of one or more seeds each, decision.json's seeds/variance/power fields, and their Markdown lines.

Power figures (the minimum detectable difference from the noncentral t, what would detect
decision.target_effect) use the measured variance components, raised toward the priors of
tasks/decide/replicates.py where few degrees of freedom measured them (the priors count as ``PRIOR_SEED_DF`` seed
and ``PRIOR_ITEM_DF`` item degrees of freedom), and never lowered: a 5-item sample on which two models never
disagree has not shown that it could detect a small difference, and its MDE says so, while a seed variance measured
larger than the prior is used as measured. The test itself always uses the measured variances.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.bench.metrics import METRICS
from tasks.config import DecisionSpec
from tasks.decide import rules
from tasks.decide.scores import item_scores, paired_metric

PRIOR_SEED_DF = 2
PRIOR_ITEM_DF = 20


def power_and_variance(comp: dict[str, Any], spec: DecisionSpec, alpha: float) -> dict[str, Any]:
    """decision.json's power and variance-component fields from a replicate analysis's composite."""
    seeds = comp["n_seeds"]
    measured = comp["seed_var"] is not None
    note = ("training seeds are replicates: the interval covers seed-to-seed and item sampling variance, so the "
            "result speaks for the schedules" if measured else
            "one training seed per arm: seed variance is unmeasured, so the result speaks for these two trained "
            "models only, not for the schedules (set train.seeds to replicate)")
    if comp.get("assumed"):
        note += (f" (arm {comp['assumed']} has one seed: the other arm's seed variance is assumed for it; train "
                 "as many seeds per arm)")
    return {
        "seeds": {"a": seeds[0], "b": seeds[1], "seed_variance_measured": measured, "note": note},
        "variance": {"between_seed_var": comp["seed_var"], "between_seed_df": comp.get("seed_df", comp["df"]),
                     "test_df": comp["df"],
                     "seed_var_a": comp.get("seed_var_a"), "seed_var_b": comp.get("seed_var_b"),
                     "seed_test": comp.get("seed_test"), "seed_var_term": comp["seed_var_term"],
                     "item_var_term": comp["item_var_term"], "per_item_diff_var": comp["per_item_diff_var"],
                     "per_item_interaction_var": comp.get("per_item_interaction_var"),
                     "per_item_residual_var": comp.get("per_item_residual_var"),
                     "speed_var_term": comp.get("speed_var_term", 0.0), "n_items": comp["n_items"]},
        "power": {"alpha": alpha, "power": spec.power, "se": comp["se"], **_mde(comp, spec, alpha),
                  "basis": (f"seeds and items (t, df = {comp['df']:.3g})" if measured else "items only (normal)")
                  + f"; noncentral t; variances as measured, raised (never lowered) toward the priors by "
                    f"{PRIOR_SEED_DF} seed / {PRIOR_ITEM_DF} item df",
                  "to_detect_target": _to_detect(comp, spec)},
    }


def shrunk_variances(comp: dict[str, Any]) -> dict[str, Any]:
    """The analysis's variance components, each raised toward its prior by the prior's degrees of freedom where
    that is larger than what was measured: max(measured, (df_measured * measured + df_prior * prior) /
    (df_measured + df_prior)). A prior never pulls a measured variance down."""
    from tasks.decide.replicates import PRIOR_ITEM_DIFF_VAR, PRIOR_SEED_SD
    from tasks.decide.scores import suite_role

    def pull(value: float | None, df: float, prior: float, prior_df: float) -> float:
        return prior if value is None or df <= 0 else max(value, (df * value + prior_df * prior) / (df + prior_df))

    total, interaction = {}, {}
    for suite, n in comp["n_items"].items():
        prior = PRIOR_ITEM_DIFF_VAR["binary" if METRICS[suite_role(suite).primary].binary else "graded"]
        total[suite] = pull(comp["per_item_diff_var"].get(suite), n - 1, prior, PRIOR_ITEM_DF)
        measured = (comp.get("per_item_interaction_var") or {}).get(suite) if comp["seed_var"] is not None else None
        interaction[suite] = pull(measured, n - 1, prior, PRIOR_ITEM_DF) if measured is not None else total[suite]
    seed = (pull(comp["seed_var"], comp.get("seed_df", comp["df"]), PRIOR_SEED_SD ** 2, PRIOR_SEED_DF)
            if comp["seed_var"] is not None else None)
    return {"total": total, "interaction": interaction, "seed_var": seed}


def _mde(comp: dict[str, Any], spec: DecisionSpec, alpha: float) -> dict[str, Any]:
    """The minimum detectable composite difference of this design (its items, seeds and df), from the shrunk
    variances; ``mde_measured`` is the same from the measured ones alone."""
    shrunk = shrunk_variances(comp)
    n_a, n_b = comp["n_seeds"]
    var = sum(c ** 2 * (shrunk["interaction"] if shrunk["seed_var"] is not None else shrunk["total"])[s]
              / comp["n_items"][s] for s, c in comp["coefficients"].items())
    if shrunk["seed_var"] is not None:
        var = rules.variance_of_difference(shrunk["seed_var"] * (1 / n_a + 1 / n_b), var)
    var += comp.get("speed_var_term", 0.0)
    mde = rules.mdd(float(np.sqrt(var)), comp["df"], alpha, spec.power)
    return {"mde": mde, "mde_measured": comp["mde"], "target_effect": spec.target_effect,
            "target_detectable": bool(mde <= spec.target_effect)}


def _to_detect(comp: dict[str, Any], spec: DecisionSpec) -> dict[str, Any]:
    """With the variances measured here (shrunk toward the priors; priors for what is unmeasured), the seeds per
    arm and items per suite that would detect decision.target_effect, drawing items from the full published splits
    (tasks/decide/planning.py)."""
    from tasks.decide.planning import plan
    from tasks.decide.scores import suite_role

    sizes = {s: max(suite_role(s).dataset.split_size or n, n) for s, n in comp["n_items"].items()}
    shrunk = shrunk_variances(comp)
    measured = shrunk["seed_var"] is not None
    result = plan(sizes, spec, measured={"total": shrunk["total"], "seed_var": shrunk["seed_var"],
                                         "interaction": shrunk["interaction"] if measured else None,
                                         "residual": comp.get("per_item_residual_var") if measured else None,
                                         "measured_items": comp["n_items"]})
    return {"fewest_seeds_per_arm": result["fewest_seeds_for_target"], "suite_sizes": sizes,
            "seed_var_source": result["seed_var_source"],
            "rows": [{k: r[k] for k in ("seeds_per_arm", "mde_at_all_items", "items_per_suite_for_target",
                                        "largest_variance_at_all_items")} for r in result["rows"]]}


def _first_failure(suite: str, reps_a: list[dict], reps_b: list[dict], spec: DecisionSpec
                   ) -> tuple[str | None, str | None]:
    """(the suite's metric, the first reason a pair of replicates cannot be compared on it, or None)."""
    metric, failure = None, None
    for ra in reps_a:
        for rb in reps_b:
            metric, failure = paired_metric(suite, ra[suite], rb[suite], spec)
            if failure:
                return metric, failure
    return metric, None


def _matrices(reps_a: list[dict], reps_b: list[dict], spec: DecisionSpec):
    """(suite -> (A's, B's seeds x items score grids), suite -> (metric, items, dropped), failed suite -> why) over
    the items scored in every replicate of both arms."""
    suites = sorted(set.intersection(*(set(r) for r in reps_a + reps_b)))
    matrices, failed, meta = {}, {}, {}
    for suite in suites:
        metric, failure = _first_failure(suite, reps_a, reps_b, spec)
        if failure:
            failed[suite] = failure
            continue
        scored = [item_scores(r[suite]["records"], suite, metric)[:2] for r in reps_a + reps_b]
        common = sorted(set.intersection(*(set(sc) for sc, _ in scored)))
        if not common:
            failed[suite] = "no item was scored in every replicate of both arms"
            continue
        grid = np.array([[sc[i] for i in common] for sc, _ in scored])
        matrices[suite] = (grid[: len(reps_a)], grid[len(reps_a):])
        meta[suite] = (metric, len(common), len(set.union(*(set(sc) for sc, _ in scored))) - len(common))
    return matrices, meta, failed


def _replicate_row(suite: str, r: dict[str, Any], grids: tuple[np.ndarray, np.ndarray], meta: tuple[str, int, int],
                   spec: DecisionSpec) -> dict[str, Any]:
    """One suite's row of a replicate comparison: means, per-seed means, the seed-level test and its CI."""
    from tasks.decide.replicates import interval

    metric, n, dropped = meta
    mean_a, mean_b = float(np.mean(grids[0])), float(np.mean(grids[1]))
    direction = "a" if r["diff"] > 0 else "b" if r["diff"] < 0 else "tie"
    return {"suite": suite, "metric": metric, "metric_label": METRICS[metric].label(metric),
            "n_paired": n, "n_seeds": r["n_seeds"], "dropped": dropped, "a": mean_a, "b": mean_b,
            "per_seed_a": r["per_seed_a"], "per_seed_b": r["per_seed_b"], "direction": direction,
            "test_direction": direction,
            "test": (f"seed-level {'Welch ' if r['seed_test'] == 'welch' else ''}t (df={r['df']:.3g}, "
                     "seeds and items)"
                     if r["df"] > 0 else "item-level z (one seed per arm)"),
            "p_value": r["p_value"], "se": r["se"], "mde": r["mde"], "seed_var": r["seed_var"],
            # the paired difference a - b and its 95% CI (the report's forest plot reads them)
            "diff": r["diff"], "diff_ci95": interval(r["diff"], r["seed_var_term"], r["item_var_term"],
                                                     r["df"], spec.alpha, spec.power)["ci"],
            "min_attainable_p": None, "can_reach_significance": bool(r["df"] > 0 and r["testable"])}


def compare_replicates(arms: dict[str, list[dict]], labels: dict[str, list[str]], spec: DecisionSpec,
                       alpha: float, speed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The comparison of two arms with one or more seed replicates each (tasks/decide/replicates.py): per-seed
    composites, seed-level t-tests per suite (Holm at ``alpha``) and for the composite, variance components and
    power. Items are those scored in every replicate of both arms."""
    from tasks.decide.replicates import analyse, interval
    from tasks.decide.speed import speed_info as speed_record

    (name_a, reps_a), (name_b, reps_b) = arms.items()
    matrices, meta, failed = _matrices(reps_a, reps_b, spec)
    speed_info = speed_record(speed, spec)
    speed_a, speed_b = (speed_info["score_a"], speed_info["score_b"]) if speed_info["in_composite"] else (None, None)
    if not matrices:
        return {"suites": [], "failed_suites": failed, "composite_a": None, "composite_b": None, "diff": 0.0,
                "diff_ci95": [0.0, 0.0], "speed_a": speed_a, "speed_b": speed_b, "speed": speed_info}
    result = analyse(matrices, spec, alpha, None if speed_a is None else (speed_a, speed_b, speed_info["var"]))
    rows = [_replicate_row(suite, r, matrices[suite], meta[suite], spec) for suite, r in result["suites"].items()]
    adjusted = rules.holm([r["p_value"] for r in rows])
    for row, p_adj in zip(rows, adjusted, strict=True):
        row["p_holm"] = float(p_adj)
        row["significant"] = bool(p_adj < alpha and row["direction"] != "tie" and row["can_reach_significance"])
    comp = result["composite"]
    ci95 = interval(comp["diff"], comp["seed_var_term"], comp["item_var_term"], comp["df"], spec.alpha,
                    spec.power)["ci"]
    per_seed = {name: [{"label": label, "composite": c} for label, c in zip(labels[name], values, strict=True)]
                for name, values in ((name_a, comp["per_seed_a"]), (name_b, comp["per_seed_b"]))}
    return {"suites": rows, "failed_suites": failed, "composite_a": float(np.mean(comp["per_seed_a"])),
            "composite_b": float(np.mean(comp["per_seed_b"])), "diff": comp["diff"], "diff_ci95": ci95,
            "decision_ci": comp["ci"], "composite_p_value": comp["p_value"], "per_seed_composites": per_seed,
            "speed_a": speed_a, "speed_b": speed_b, "speed": speed_info, **power_and_variance(comp, spec, alpha)}
