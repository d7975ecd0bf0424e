"""`alphagate plan`: before any training, how small a composite difference a design can detect, and how many items
per suite and training seeds per arm would detect ``decision.target_effect``.

Variance components, scaled to the planned item count. A per-seed composite's variance at N items is the seed
component plus the item-level answer noise over N: s2_between(N) = s2_seed + sum_s c_s^2 sigma2_resid,s / N_s. So
the seed component is s2_between measured at N_meas minus that noise (floored at 0), and at N' items per suite
and n seeds per arm

    Var(D) = (2 / n) (s2_seed + sum_s c_s^2 sigma2_resid,s / N'_s)  +  sum_s c_s^2 sigma2_interaction,s / N'_s

with the Welch-Satterthwaite df of the two parts (2n - 2 and N' - 1), as the decision's test; the minimum
detectable difference is the noncentral-t figure rules.mdd(sqrt(Var(D)), df). The
one-seed row is about two trained models, not schedules: Var(D) = sum_s c_s^2 var_s(d_i) / N'_s, normal.

Suite sizes come from the items the run would read (bundled samples, ../shared, a file), or for the Hub from the
size of the split each suite's YAML names (its dataset.split_size: the Hub is not contacted).
Variances come from the latest decision found (``--history``: a decision.json, a run folder holding
``decision/decision.json``, or a nightly study folder), as measured, else from the priors in
tasks/decide/replicates.py (labelled as such). No prior pulls a measured variance down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.store import read_json_object


def suite_sizes(suites: list[str], data: str | None) -> dict[str, int]:
    """Items each suite would be evaluated on: counted from the local source, or the Hub split's size."""
    from tasks.bench.suites import load_docs, load_suite

    sizes = {}
    for suite in suites:
        spec = load_suite(suite)  # a clear error for an unknown suite
        if data == "hub":
            if spec.dataset.split_size is None:
                raise ValueError(f"No published split size is known for {suite} (its YAML declares no "
                                 "dataset.split_size); plan it on local items (--data shared or a file), or declare "
                                 "the size of the split it names.")
            sizes[suite] = spec.dataset.split_size
        else:
            sizes[suite] = len(load_docs(spec, data))
    return sizes


def earlier_variances(history: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """(variance components measured by the latest decision under ``history``, where from): {"total",
    "interaction", "residual": per suite, "seed_var": between-seed variance of a composite or None,
    "measured_items": per suite}; (None, None) when there is none, (None, path) for an older record without them."""
    if history is None:
        return None, None
    history = Path(history)
    candidates = [history] if history.is_file() else [history / "decision" / "decision.json",
                                                       history / "decision.json"]
    study = history / "study" / "study.json"
    if history.is_dir() and study.is_file():
        nights = read_json_object(study, "nightly study record", ("nights",)).get("nights") or []
        if nights:
            candidates.insert(0, Path(nights[-1]["decision"]["record"]))
    for path in candidates:
        if path.is_file():
            record = read_json_object(path, "decision.json of `alphagate decide`", ("reason",),
                                      "Pass a decision.json, a run folder or a nightly study folder as --history.")
            var = record.get("variance") or {}
            if not var.get("per_item_diff_var") or not var.get("n_items"):
                return None, str(path)  # an older record: no variance components
            seeds = var.get("between_seed_var")
            return ({"total": var["per_item_diff_var"],
                     "interaction": var.get("per_item_interaction_var") if seeds is not None else None,
                     "residual": var.get("per_item_residual_var") if seeds is not None else None,
                     "seed_var": seeds, "measured_items": var["n_items"]}, str(path))
    if not history.exists():
        raise FileNotFoundError(f"--history {history} does not exist; pass a decision.json, a run folder (--out of "
                                "`alphagate run`) or a nightly study folder, or leave --history out for priors.")
    return None, None


def seed_component(seed_var: float | None, residual: dict[str, float] | None, coefs: dict[str, float],
                   measured_items: dict[str, int] | None) -> float | None:
    """The between-seed variance of a composite less the item-level answer noise it carried at the items it was
    measured on (floored at 0): what more items cannot average away."""
    if seed_var is None:
        return None
    noise = sum(coefs[s] ** 2 * residual[s] / measured_items[s] for s in coefs
                if residual and residual.get(s) is not None and measured_items and measured_items.get(s))
    return max(0.0, float(seed_var) - noise)


def difference_variance(coefs: dict[str, float], comp: dict[str, Any], n_items: dict[str, int], n_seeds: int
                        ) -> tuple[float, float]:
    """(Var(D), df) of a design with ``n_seeds`` per arm and ``n_items`` per suite, from the components ``comp``
    ({"total", "interaction", "residual", "seed_component"}); one seed per arm: the two trained models (items only)."""
    from tasks.decide import rules

    per_item = {s: max(n_items[s], 1) for s in coefs}
    if n_seeds == 1:
        return float(sum(coefs[s] ** 2 * comp["total"][s] / per_item[s] for s in coefs)), 0.0
    resid = comp.get("residual") or {}
    inter = comp.get("interaction") or {}
    per_seed = comp["seed_component"] + sum(coefs[s] ** 2 * (resid.get(s) or 0.0) / per_item[s] for s in coefs)
    items = {s: coefs[s] ** 2 * (inter[s] if inter.get(s) is not None else comp["total"][s]) / per_item[s]
             for s in coefs}
    seed_part = per_seed * 2 / n_seeds
    # each item part's df as the decision measures it (replicates.item_df): items - 1, times the interaction's
    # share of the per-item variance of the difference of arm means squared
    spread = {s: items[s] * per_item[s] / coefs[s] ** 2 + 2 / n_seeds * (resid.get(s) or 0.0) if coefs[s] else 0.0
              for s in coefs}
    df = rules.effective_df([(seed_part, 2 * n_seeds - 2), *(
        (v, (per_item[s] - 1) * (v * per_item[s] / coefs[s] ** 2 / spread[s]) ** 2 if spread[s] > 0 else 0.0)
        for s, v in items.items())])
    return float(rules.variance_of_difference(seed_part, sum(items.values()))), df


def mde(coefs: dict[str, float], comp: dict[str, Any], n_items: dict[str, int], n_seeds: int, alpha: float,
        power: float) -> float:
    """The minimum detectable composite difference of a design (noncentral t, rules.mdd)."""
    from tasks.decide import rules

    var, df = difference_variance(coefs, comp, n_items, n_seeds)
    return rules.mdd(var ** 0.5, df, alpha, power)


def components(suites: list[str], measured: dict[str, Any] | None, coefs: dict[str, float]) -> dict[str, Any]:
    """The components a plan uses: measured where measured (as measured), priors elsewhere, each with its source."""
    from tasks.bench.metrics import METRICS
    from tasks.decide.replicates import PRIOR_ITEM_DIFF_VAR, PRIOR_SEED_SD
    from tasks.decide.scores import suite_role

    measured = measured or {}
    total, source = {}, {}
    for s in suites:
        if (measured.get("total") or {}).get(s) is not None:
            total[s], source[s] = float(measured["total"][s]), "measured"
        else:
            binary = METRICS[suite_role(s).primary].binary
            total[s], source[s] = PRIOR_ITEM_DIFF_VAR["binary" if binary else "graded"], "prior"
    seed = seed_component(measured.get("seed_var"), measured.get("residual"), coefs, measured.get("measured_items"))
    return {"total": total, "source": source, "interaction": measured.get("interaction"),
            "residual": measured.get("residual"), "seed_var": measured.get("seed_var"),
            "seed_component": PRIOR_SEED_SD ** 2 if seed is None else seed,
            "seed_source": "prior" if seed is None else "measured"}


def plan(suites: dict[str, int], spec, *, measured: dict[str, Any] | None = None, limit: int | None = None,
         seeds: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)) -> dict[str, Any]:
    """How small a difference each design can detect, and what would detect ``spec.target_effect``.

    ``suites``: suite -> items available; ``measured``: variance components of an earlier decision
    (earlier_variances; None: priors); ``limit``: items per suite the run would use (None: all)."""
    from tasks.decide.replicates import composite_coefficients

    coefs, _ = composite_coefficients(sorted(suites), spec)
    comp = components(sorted(suites), measured, coefs)
    used = {s: min(n, limit) if limit else n for s, n in suites.items()}
    rows = []
    for n in seeds:
        need = _items_needed(coefs, comp, suites, n, spec)
        terms = {s: coefs[s] ** 2 * (comp["total"][s] if n == 1 else (comp["interaction"] or comp["total"]).get(
            s, comp["total"][s])) / max(suites[s], 1) for s in coefs}
        terms["seeds"] = comp["seed_component"] * 2 / n if n > 1 else 0.0
        rows.append({"seeds_per_arm": n, "scope": "models" if n == 1 else "schedules",
                     "mde_at_items_used": mde(coefs, comp, used, n, spec.alpha, spec.power),
                     "mde_at_all_items": mde(coefs, comp, suites, n, spec.alpha, spec.power),
                     "items_per_suite_for_target": need, "largest_variance_at_all_items": max(terms, key=terms.get)})
    enough = [r["seeds_per_arm"] for r in rows if r["seeds_per_arm"] > 1 and r["items_per_suite_for_target"]]
    return {"target_effect": spec.target_effect, "alpha": spec.alpha, "power": spec.power, "suites": suites,
            "items_used": used, "item_diff_var": comp["total"], "item_diff_var_source": comp["source"],
            "item_interaction_var": comp["interaction"], "item_residual_var": comp["residual"],
            "seed_var": comp["seed_var"], "seed_component": comp["seed_component"],
            "seed_var_source": comp["seed_source"], "measured_items": (measured or {}).get("measured_items"),
            "rows": rows, "fewest_seeds_for_target": min(enough) if enough else None}


def _items_needed(coefs, comp, sizes, n_seeds, spec) -> int | None:
    """The fewest items per suite (one cap for every suite, at most what it has) whose MDE reaches the target;
    None when even every item does not."""
    from tasks.decide import rules

    def detects(cap: int) -> bool:  # MDD <= target, i.e. the power at the target reaches spec.power (one nct call)
        var, df = difference_variance(coefs, comp, {s: min(cap, n) for s, n in sizes.items()}, n_seeds)
        return rules.power_at(spec.target_effect, var ** 0.5, df, spec.alpha) >= spec.power

    cap_max = max(sizes.values())
    if not detects(cap_max):
        return None
    lo, hi = 1, cap_max
    while lo < hi:
        mid = (lo + hi) // 2
        if detects(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def plan_for(config: PipelineConfig, suites: list[str], data: str | None, limit: int | None,
             history: Path | None) -> dict[str, Any]:
    measured, source = earlier_variances(history)
    result = plan(suite_sizes(suites, data), config.decision, measured=measured, limit=limit)
    return {**result, "data": data or "sample", "variance_from": source}


def plan_text(result: dict[str, Any]) -> str:
    """The plan for people: the inputs, the one-seed row (these two trained models), then the rows about the
    schedules (two or more seeds per arm)."""
    used = result["items_used"]
    seed_line = (f"Seed component of a composite's variance: {result['seed_component']:.3g} "
                 f"({result['seed_var_source']}"
                 + (f": between-seed variance {result['seed_var']:.3g} less the item noise at "
                    + ", ".join(f"{s} {n}" for s, n in (result["measured_items"] or {}).items()) + " items"
                    if result["seed_var_source"] == "measured" else "") + ")")
    lines = [f"Items per suite ({result['data']}): " + ", ".join(f"{s} {used[s]}"
                                                                  + (f" of {n}" if used[s] != n else "")
                                                                  for s, n in result["suites"].items()),
             "Per-item variance of the paired difference: " + ", ".join(
                 f"{s} {v:.3g} ({result['item_diff_var_source'][s]})" for s, v in result["item_diff_var"].items()),
             seed_line + (f"; measured values (as measured, scaled to each item count) from {result['variance_from']}"
                          if result["variance_from"] else ""),
             f"alpha {result['alpha']}, power {result['power']:.0%}, target effect {result['target_effect']}; "
             "minimum detectable difference (MDD) from the noncentral t", ""]
    header = ["seeds/arm | MDD (items used) | MDD (all items) | items per suite for the target",
              "----------|------------------|-----------------|-------------------------------"]
    models = [r for r in result["rows"] if r["seeds_per_arm"] == 1]
    schedules = [r for r in result["rows"] if r["seeds_per_arm"] > 1]
    if models:
        lines += ["These two trained models (one seed per arm: items are the replicates; says nothing about the "
                  "schedules):", *header, *(_row(r, result) for r in models), ""]
    lines += ["The schedules (training seeds are the replicates):", *header, *(_row(r, result) for r in schedules)]
    fewest = result["fewest_seeds_for_target"]
    lines += ["", f"Fewest seeds per arm that detect {result['target_effect']} between the schedules (all items): "
              + (str(fewest) if fewest else "more than listed (raise the items or accept a larger target effect)")]
    return "\n".join(lines)


def _row(r: dict[str, Any], result: dict[str, Any]) -> str:
    need, big = r["items_per_suite_for_target"], r["largest_variance_at_all_items"]
    need_text = (f"{need}" if need is not None else "not reachable with every item; largest variance: "
                 + ("the seeds" if big == "seeds" else f"{big} ({result['suites'][big]} items)"))
    return (f"{r['seeds_per_arm']:>9} | {r['mde_at_items_used']:>16.4f} | {r['mde_at_all_items']:>15.4f} | "
            f"{need_text}")
