"""Winner selection from per-item records: composite score, paired bootstrap CI of the difference,
McNemar's exact test (binary suites) or, for graded/continuous suites, the exact sign-flip test (up to 16 differing
items, ties and zeros included) or Wilcoxon signed-rank (more), Holm across suites, and a sign-aware significance
rule (the rules themselves: tasks/decide/rules.py; the sentence that states the result: tasks/decide/claims.py).

A winner is *significant* only when all hold: the composite difference's 95% CI excludes 0, at least one
suite's paired test survives Holm in the composite's direction, and no suite survives Holm against it. When
suites significantly point both ways (or against the composite) the outcome is "mixed"; otherwise "not
significant", with the reason. A suite with too few paired items for its test ever to reach p < alpha is
reported as such.

Each suite's role (its one primary metric, composite group, display name) is declared in its YAML
(configs/suites/*.yaml) and is the same for both sides: a judged suite (ELYZA) is compared on judge grades over
the items both sides were graded on; when the judge failed on more than decision.max_judge_failure_share of
either side's items, the suite is marked failed (named in the record), never scored by another metric for one
side. When neither side was judged, its ``primary_without_judge`` metric is used for both.

Inputs are result folders holding ``NAME.jsonl`` + ``NAME.summary.json`` per suite (tasks/bench/runner.py).
Items are paired by ``index``; only items scored for both models count (skipped or judge-failed items
drop out of the pair and are counted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks.bench.metrics import METRICS
from tasks.config import DecisionSpec
from tasks.decide import comparable, rules
from tasks.decide.scores import item_scores, load_results, paired_metric, suite_role
from tasks.numbers import human, interval, rounded
from tasks.store import atomic_write_json, atomic_write_text, sha256_file


def min_attainable_p(n: int) -> float:
    """The smallest two-sided p McNemar's exact test or the exact Wilcoxon signed-rank test can give on ``n``
    paired items (every item differing, all one way): 2 * 0.5**n."""
    return 1.0 if n <= 0 else min(1.0, 2.0 ** (1 - n))


def _groups(suites: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {"elyza": [], "core": [], "scienceqa": []}
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


def compare(results_a: dict, results_b: dict, spec: DecisionSpec,
            speed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Paired comparison of model A and B over the suites both completed, each on its one declared metric.
    ``speed``: the two models' timings (tasks/decide/speed.py:read_speed); None leaves the speed term out (it is
    never taken from evaluation timings, which are measured under parallel load)."""
    from tasks.decide.speed import speed_info as speed_record

    suites = sorted(set(results_a) & set(results_b))
    if not suites:
        raise ValueError("The two models have no completed suite in common; nothing to compare.")
    paired, rows, failed = {}, [], {}
    for suite in suites:
        metric, failure = paired_metric(suite, results_a[suite], results_b[suite], spec)
        if failure:
            failed[suite] = failure
            continue
        sa, binary, _ = item_scores(results_a[suite]["records"], suite, metric)
        sb, _, _ = item_scores(results_b[suite]["records"], suite, metric)
        common = sorted(set(sa) & set(sb))
        a, b = np.array([sa[i] for i in common]), np.array([sb[i] for i in common])
        if not len(common):
            failed[suite] = "no item was scored for both sides"
            continue
        test, p = paired_test(a, b, binary)
        paired[suite] = (a, b)
        mean_a, mean_b = float(a.mean()), float(b.mean())
        differing = int(np.sum(a != b))  # what the exact tests look at: discordant pairs, non-zero differences
        min_p = min_attainable_p(differing)
        rows.append({"suite": suite, "metric": metric, "metric_label": METRICS[metric].label(metric),
                     "n_paired": len(common), "n_differing": differing,
                     "dropped": len(set(sa) | set(sb)) - len(common), "a": mean_a, "b": mean_b,
                     "direction": "a" if mean_a > mean_b else "b" if mean_b > mean_a else "tie",
                     "test_direction": statistic_direction(a, b, binary, test), "test": test, "p_value": p,
                     "min_attainable_p": min_p, "can_reach_significance": bool(min_p < spec.alpha)})
    if rows:
        adjusted = rules.holm([r["p_value"] for r in rows])
        for row, p_adj in zip(rows, adjusted, strict=True):
            row["p_holm"] = float(p_adj)
            # a significant test must point the way the means do (a signed-rank test can favour the side that
            # wins more items while the other side's mean is higher): otherwise it speaks for neither
            row["significant"] = bool(p_adj < spec.alpha and row["direction"] != "tie"
                                      and row["test_direction"] == row["direction"])
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


def decide(results: dict[str, Path | list[Path]], spec: DecisionSpec, out_dir: Path | None = None, *,
           exports: dict[str, Path] | None = None, runs: dict[str, Path] | None = None,
           degradation: Path | None = None, expected_suites: list[str] | None = None,
           speed: Path | None = None, labels: dict[str, list[str]] | None = None,
           look: dict[str, Any] | None = None, compute: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pick the winner of exactly two labelled arms; write decision.json/.md when out_dir is given.

    ``results``: label -> one result folder, or a list of folders (seed replicates of that arm). With one folder
    per arm the two trained models are compared item by item (McNemar/Wilcoxon, paired bootstrap); with replicates
    (or a ``look``) seeds are the replicates (tasks/decide/replicates.py). ``labels``: each replicate's name (default
    ``<arm>#<i>``), the keys of ``exports``/``runs``/the degradation gates for the upload of the winning arm's best
    replicate. ``look``: a look of a sequential study (tasks/decide/replicates.py:look_alpha); its alpha replaces
    decision.alpha. ``compute``: per arm, what its trainings cost (recorded beside the result).
    ``exports``/``runs`` (label -> export folder / training run folder) are recorded so that
    `alphagate upload --decision FILE` finds what to publish; ``degradation`` adds the upload gates.
    ``expected_suites``: what the run meant to evaluate; any of them not complete for both models is named
    in the record (``missing_suites``) and in the reason; a missing or failed *required* suite means no winner.
    ``speed``: a speed.json of tasks/bench/speed.py measuring both arm labels (without it, no speed term)."""
    if len(results) != 2:
        raise ValueError(f"decide compares exactly two models; got {sorted(results)}.")
    arms = {k: [Path(x) for x in v] if isinstance(v, (list, tuple)) else [Path(v)] for k, v in sorted(results.items())}
    for name, folders in arms.items():
        if not folders:
            raise ValueError(f"{name} has no result folder; pass at least one.")
    (name_a, dirs_a), (name_b, dirs_b) = arms.items()
    labels = {k: list(labels[k]) if labels and k in labels else
              ([k] if len(v) == 1 else [f"{k}#{i + 1}" for i in range(len(v))]) for k, v in arms.items()}
    for name, folders in arms.items():
        if len(labels[name]) != len(folders):
            raise ValueError(f"{name}: {len(labels[name])} replicate labels for {len(folders)} result folders.")
    replicated = look is not None or any(len(v) > 1 for v in arms.values())
    reps = {k: [load_results(d) for d in v] for k, v in arms.items()}
    for (la, ra, fa) in zip(labels[name_a], reps[name_a], dirs_a, strict=True):
        for (lb, rb, fb) in zip(labels[name_b], reps[name_b], dirs_b, strict=True):
            comparable.check({la: ra, lb: rb}, {la: fa, lb: fb}, expected_suites)
    for name in arms:  # the replicates of one arm must be comparable with each other too
        for label, rep, folder in list(zip(labels[name], reps[name], arms[name], strict=True))[1:]:
            first = (labels[name][0], reps[name][0], arms[name][0])
            comparable.check({first[0]: first[1], label: rep}, {first[0]: first[2], label: folder}, expected_suites)
    loaded = {k: {s: v[0][s] for s in set.intersection(*(set(r) for r in v))} for k, v in reps.items()}
    missing = sorted(s for s in spec.required_suites if any(s not in r for r in loaded.values()))
    absent = {s: sorted(m for m, r in loaded.items() if s not in r)
              for s in sorted(set(expected_suites or []) | set(spec.required_suites))}
    absent = {s: models for s, models in absent.items() if models}
    alpha = look["alpha_this_look"] if look else spec.alpha
    record: dict[str, Any] = {"models": [name_a, name_b], "missing_required": missing,
                              "missing_suites": absent, "failed_suites": {},
                              "results": {k: str(v[0].resolve()) if len(v) == 1 and not replicated else
                                          [str(x.resolve()) for x in v] for k, v in arms.items()},
                              "replicates": labels,
                              "exports": {k: str(Path(v).resolve()) for k, v in (exports or {}).items()},
                              "runs": {k: str(Path(v).resolve()) for k, v in (runs or {}).items()},
                              "degradation": str(Path(degradation).resolve()) if degradation else None,
                              # what the report checks a --degradation file against (its gates are this decision's)
                              "degradation_sha256": (sha256_file(degradation)
                                                     if degradation and Path(degradation).is_file() else None),
                              "alpha": alpha, "sequential": look, "compute": compute or {},
                              # the configured decision settings, which the report reuses (its DPO comparison)
                              "settings": spec.model_dump(mode="json")}
    if missing:
        record.update(winner=None, upload=False, significant=False, outcome="no winner",
                      reason=f"Required suite(s) {missing} are missing, so no winner is picked.")
        return _write(record, out_dir)
    from tasks.decide.speed import read_speed

    samples = None if speed is None else read_speed(Path(speed), (name_a, name_b), labels)
    if replicated:
        from tasks.decide.seeds import compare_replicates

        cmp = compare_replicates(reps, labels, spec, alpha, speed=samples)
    else:
        cmp = compare(loaded[name_a], loaded[name_b], spec, speed=samples)
    failed = cmp["failed_suites"]
    failed_note = ("" if not failed else " Failed suites (left out): "
                   + "; ".join(f"{s}: {why}" for s, why in failed.items()) + ".")
    failed_required = sorted(set(failed) & set(spec.required_suites))
    if failed_required or not cmp["suites"]:
        record.update(cmp, winner=None, upload=False, significant=False, outcome="no winner",
                      reason=(f"Required suite(s) {failed_required} failed" if failed_required else
                              "No suite could be compared") + ", so no winner is picked." + failed_note)
        return _write(record, out_dir)
    from tasks.decide.claims import verdict

    fields = verdict(cmp, {"a": name_a, "b": name_b, "tie": ""}, replicated, look, alpha, spec)
    record.update(cmp, **fields)
    record["reason"] += failed_note
    per_seed = record.get("per_seed_composites")
    if record.get("winner") and per_seed:  # what an upload publishes: the winning arm's best replicate
        record["upload_label"] = max(per_seed[record["winner"]], key=lambda r: r["composite"])["label"]
    elif record.get("winner"):
        record["upload_label"] = labels[record["winner"]][0]
    if absent:
        record["reason"] += (" Decided on the complete suites only; missing: "
                             + "; ".join(f"{s} (for {', '.join(m)})" for s, m in absent.items()) + ".")
    return _write(record, out_dir)


def _write(record: dict[str, Any], out_dir: Path | None) -> dict[str, Any]:
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "decision.json", record)
        atomic_write_text(Path(out_dir) / "decision.md", decision_markdown(record))
    return record


def suite_table(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-suite rows of a decision for a table artifact: the paired difference a - b with its 95% CI, tests and
    verdict, numbers rounded to 4 significant digits (decision.json keeps them whole)."""
    out = []
    for r in record.get("suites") or []:
        lo, hi = r.get("diff_ci95") or (None, None)
        out.append({"suite": r["suite"], "metric": r["metric"], "n_paired": r.get("n_paired"),
                    "a": rounded(r["a"]), "b": rounded(r["b"]), "a_minus_b": rounded(r["a"] - r["b"]),
                    "ci95_low": rounded(lo), "ci95_high": rounded(hi), "direction": r.get("direction"),
                    "test": r.get("test"), "p_value": rounded(r.get("p_value")), "p_holm": rounded(r.get("p_holm")),
                    "significant": r.get("significant"), "verdict": r.get("verdict")})
    return out


TEST_NAMES = {"mcnemar_exact": "McNemar exact", "sign_flip_exact": "sign-flip exact",
              "wilcoxon_signed_rank": "Wilcoxon signed-rank"}


def decision_markdown(record: dict[str, Any]) -> str:
    from tasks.decide.speed import speed_sentence

    lines = ["# Decision", "", f"**{record['reason']}**", "",
             f"Outcome: {record.get('outcome', 'n/a')}. Upload: {'yes' if record['upload'] else 'no'}.", ""]
    if record.get("missing_suites"):
        lines += ["Missing suites (failed or not run): "
                  + ", ".join(f"{s} ({', '.join(m)})" for s, m in record["missing_suites"].items()), ""]
    if record.get("failed_suites"):
        lines += ["Failed suites (left out of the comparison): "
                  + "; ".join(f"{s}: {why}" for s, why in record["failed_suites"].items()), ""]
    if record.get("suites"):
        a, b = record["models"]
        # nine narrow columns: the run page's Markdown panel is about 900 px wide at a 1,400 px window
        lines += [f"A = {a}, B = {b}; A - B > 0 favours {a}. p: raw (Holm-adjusted across suites).", "",
                  "| suite | metric | n | A | B | A - B [95% CI] | test | p (Holm) | rule |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in record["suites"]:
            lines.append(f"| {r['suite']} | {r.get('metric_label', r['metric'])} | {r['n_paired']} | {human(r['a'])} | "
                         f"{human(r['b'])} | {human(r['a'] - r['b'], signed=True)} "
                         f"{interval(r.get('diff_ci95'), signed=True)} | {TEST_NAMES.get(r['test'], r['test'])} | "
                         f"{human(r['p_value'])} ({human(r['p_holm'])}) | {r.get('verdict', '')} |")
        if record.get("composite_a") is not None:
            lines += ["", f"Composite: {a} {human(record['composite_a'], 4)}, {b} {human(record['composite_b'], 4)}; "
                      f"{a} - {b} = {human(record['diff'], 4, signed=True)}, 95% CI "
                      f"{interval(record.get('diff_ci95'), 4, signed=True)}. "
                      + speed_sentence(record.get("speed") or {}, (a, b))]
    if record.get("scope_note"):
        lines += ["", f"Scope: {record['scope_note']}."]
    from tasks.decide.seeds import replicate_lines

    lines += replicate_lines(record)
    return "\n".join(lines) + "\n"
