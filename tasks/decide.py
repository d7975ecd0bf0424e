"""Winner selection from per-item records: composite score, paired bootstrap CI of the difference,
McNemar's exact test (binary suites) or Wilcoxon signed-rank (graded/continuous suites), Holm across
suites, and a decision rule for the not-significant case. "Significant" means both: the composite
difference's 95% CI excludes 0 and at least one suite's paired test survives Holm.

Inputs are result folders holding ``NAME.jsonl`` + ``NAME.summary.json`` per suite (tasks/bench/runner.py).
Items are paired by ``index``; only items scored for both models count (skipped or judge-failed items
drop out of the pair and are counted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tasks.config import DecisionSpec
from tasks.store import atomic_write_json, atomic_write_text, read_json

CORE = ("mmlu", "gsm8k", "hellaswag", "arc_challenge")
# suite -> (record field of its primary per-item score, binary?)
PRIMARY = {"mmlu": ("correct", True), "arc_challenge": ("correct_norm", True), "hellaswag": ("correct_norm", True),
           "gsm8k": ("correct_flexible", True), "scienceqa": ("correct", True)}


def item_scores(records: list[dict], suite: str) -> tuple[dict[int, float], bool, str]:
    """index -> score in [0, 1] for scored items; (scores, binary, metric name)."""
    if suite == "elyza_tasks_100":
        graded = [r for r in records if not r.get("skipped") and r.get("judge_grade") is not None]
        if graded:  # the judge's 1-5 scale mapped to [0, 1]
            return {r["index"]: (r["judge_grade"] - 1) / 4 for r in graded}, False, "judge_grade"
        return {r["index"]: float(r["char_f1"]) for r in records if not r.get("skipped")}, False, "char_f1"
    field, binary = PRIMARY[suite]
    return {r["index"]: float(r[field]) for r in records if not r.get("skipped") and r.get(field) is not None}, \
        binary, field


def load_results(folder: Path) -> dict[str, dict[str, Any]]:
    """suite -> {"records": [...], "summary": {...}} for every complete suite in ``folder``."""
    out = {}
    for summary_path in sorted(Path(folder).glob("*.summary.json")):
        suite = summary_path.name[: -len(".summary.json")]
        records = Path(folder) / f"{suite}.jsonl"
        try:
            lines = records.read_text(encoding="utf-8").splitlines()
            out[suite] = {"records": [json.loads(x) for x in lines if x.strip()], "summary": read_json(summary_path)}
        except FileNotFoundError:
            raise FileNotFoundError(f"{summary_path} has no per-item records beside it ({records.name}); "
                                    "re-run that evaluation.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{records} is not valid UTF-8 JSON lines ({exc}); re-run that evaluation.") from None
    return out


# what must be equal for two results of one suite to be compared item by item
COMPARABLE = ("suite_version", "prompt_sha256", "num_fewshot", "data_sha256")


def _identity(summary: dict[str, Any]) -> dict[str, Any]:
    """Everything an evaluation's result depends on except the model itself (the judge, context size, tags ...)."""
    inputs = {k: v for k, v in summary.get("inputs", {}).items() if k not in ("model_sha256", "keep_reasoning")}
    return {**{k: summary.get(k) for k in COMPARABLE}, "limit": inputs.pop("limit", None), **inputs}


def check_comparable(loaded: dict[str, dict], folders: dict[str, Path], expected_suites: list[str] | None) -> None:
    """Refuse (a clear error) two sides that were not evaluated the same way: another suite version, prompt, shot
    count, item set or limit for a suite both have, or, unless the run named the suites it expected (then absent
    ones are reported as missing), different sets of suites. Deciding on the overlap alone would be a verdict
    on a part the user did not ask about."""
    (a, ra), (b, rb) = loaded.items()
    if not set(ra) & set(rb):
        raise ValueError(f"{a} ({folders[a]}) and {b} ({folders[b]}) have no suite in common ({sorted(ra)} vs "
                         f"{sorted(rb)}): there is nothing to compare. Evaluate both on the same suites.")
    if expected_suites is None and set(ra) != set(rb):
        raise ValueError(f"{a} ({folders[a]}) has suites {sorted(ra)} but {b} ({folders[b]}) has {sorted(rb)}. "
                         "Evaluate both on the same suites (or decide on folders holding the same set).")
    for suite in sorted(set(ra) & set(rb)):
        ia, ib = _identity(ra[suite]["summary"]), _identity(rb[suite]["summary"])
        if ia != ib:
            diff = {k: (ia[k], ib[k]) for k in ia if ia[k] != ib[k]}
            raise ValueError(f"{suite} was not evaluated the same way for {a} and {b}: "
                             + "; ".join(f"{k}: {x!r} vs {y!r}" for k, (x, y) in diff.items())
                             + ". Re-evaluate both with the same suite version, data and limit.")


def speed_score(results: dict[str, dict], spec: DecisionSpec) -> float:
    """min(generation tokens/s / reference, 1): capped so speed can never dominate."""
    rates = [r["summary"]["timings"]["generation_tokens_per_s"] for r in results.values()
             if r["summary"]["timings"].get("generation_tokens_per_s")]
    return min((sum(rates) / len(rates)) / spec.speed_reference_tok_s, 1.0) if rates else 0.0


def _groups(suites: list[str]) -> dict[str, list[str]]:
    return {"elyza": [s for s in suites if s == "elyza_tasks_100"], "core": [s for s in suites if s in CORE],
            "scienceqa": [s for s in suites if s == "scienceqa"]}


def composite(suite_means: dict[str, float], speed: float, spec: DecisionSpec) -> float:
    """Weighted sum over the groups present; weights renormalised over what is present."""
    parts, weights = {}, {}
    for group, members in _groups(list(suite_means)).items():
        if members:
            parts[group] = sum(suite_means[s] for s in members) / len(members)
            weights[group] = spec.weights[group]
    parts["speed"], weights["speed"] = speed, spec.weights["speed"]
    total = sum(weights.values())
    return sum(weights[g] * parts[g] for g in parts) / total


def paired_test(a: np.ndarray, b: np.ndarray, binary: bool) -> tuple[str, float]:
    if binary:
        from statsmodels.stats.contingency_tables import mcnemar

        table = [[int(np.sum((a == 1) & (b == 1))), int(np.sum((a == 1) & (b == 0)))],
                 [int(np.sum((a == 0) & (b == 1))), int(np.sum((a == 0) & (b == 0)))]]
        return "mcnemar_exact", float(mcnemar(table, exact=True).pvalue)
    from scipy.stats import wilcoxon

    if np.all(a == b):
        return "wilcoxon_signed_rank", 1.0  # no differing pair: nothing to test
    return "wilcoxon_signed_rank", float(wilcoxon(a, b, zero_method="wilcox").pvalue)


def speed_from_benchmark(samples: tuple[list[float], list[float]], spec: DecisionSpec
                         ) -> tuple[float, float, dict[str, Any]]:
    """Speed scores from an isolated, repeated benchmark (tasks/bench/speed.py): Welch's t-test on the
    tokens/s samples; when the difference is not significant both models get the pooled mean, so measurement
    noise cannot move the composite."""
    from scipy.stats import ttest_ind

    a, b = (np.asarray(x, dtype=float) for x in samples)
    p = float(ttest_ind(a, b, equal_var=False).pvalue) if np.std(a) + np.std(b) > 0 else float(a.mean() == b.mean())
    p = 1.0 if np.isnan(p) else p
    tied = p >= spec.alpha
    pooled = float(np.concatenate([a, b]).mean())
    rate_a, rate_b = (pooled, pooled) if tied else (float(a.mean()), float(b.mean()))
    score = lambda rate: min(rate / spec.speed_reference_tok_s, 1.0)  # noqa: E731
    return score(rate_a), score(rate_b), {"source": "isolated benchmark", "tok_s_a": a.tolist(),
                                          "tok_s_b": b.tolist(), "p_value": p, "tied": bool(tied)}


def compare(results_a: dict, results_b: dict, spec: DecisionSpec,
            speed: tuple[list[float], list[float]] | None = None) -> dict[str, Any]:
    """Paired comparison of model A and B over the suites both completed. ``speed``: tokens/s samples of
    A and B from tasks/bench/speed.py (else the evaluation timings are used)."""
    from statsmodels.stats.multitest import multipletests

    suites = sorted(set(results_a) & set(results_b))
    if not suites:
        raise ValueError("The two models have no completed suite in common; nothing to compare.")
    paired, rows = {}, []
    for suite in suites:
        sa, binary, metric = item_scores(results_a[suite]["records"], suite)
        sb, _, _ = item_scores(results_b[suite]["records"], suite)
        common = sorted(set(sa) & set(sb))
        a, b = np.array([sa[i] for i in common]), np.array([sb[i] for i in common])
        test, p = paired_test(a, b, binary) if len(common) else ("none", 1.0)
        paired[suite] = (a, b)
        rows.append({"suite": suite, "metric": metric, "n_paired": len(common),
                     "dropped": max(len(sa), len(sb)) - len(common), "a": float(a.mean()) if len(a) else None,
                     "b": float(b.mean()) if len(b) else None, "test": test, "p_value": p})
    adjusted = multipletests([r["p_value"] for r in rows], alpha=spec.alpha, method="holm")[1]
    for row, p_adj in zip(rows, adjusted, strict=True):
        row["p_holm"], row["significant"] = float(p_adj), bool(p_adj < spec.alpha)
    if speed is not None:
        speed_a, speed_b, speed_info = speed_from_benchmark(speed, spec)
    else:
        speed_a, speed_b = speed_score(results_a, spec), speed_score(results_b, spec)
        speed_info = {"source": "evaluation timings (measured under parallel load: noisy)"}
    comp_a = composite({s: paired[s][0].mean() for s in suites}, speed_a, spec)
    comp_b = composite({s: paired[s][1].mean() for s in suites}, speed_b, spec)
    lo, hi = _bootstrap_diff(paired, suites, speed_a, speed_b, spec)
    return {"suites": rows, "composite_a": float(comp_a), "composite_b": float(comp_b), "diff": float(comp_a - comp_b),
            "diff_ci95": [lo, hi], "speed_a": speed_a, "speed_b": speed_b, "speed": speed_info}


def _bootstrap_diff(paired, suites, speed_a, speed_b, spec: DecisionSpec) -> tuple[float, float]:
    """Percentile CI of composite(A) - composite(B); each suite's items resampled jointly for A and B."""
    rng = np.random.default_rng(spec.seed)
    diffs = np.empty(spec.bootstrap)
    for k in range(spec.bootstrap):
        means_a, means_b = {}, {}
        for s in suites:
            a, b = paired[s]
            idx = rng.integers(0, len(a), len(a))
            means_a[s], means_b[s] = a[idx].mean(), b[idx].mean()
        diffs[k] = composite(means_a, speed_a, spec) - composite(means_b, speed_b, spec)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def decide(results: dict[str, Path], spec: DecisionSpec, out_dir: Path | None = None, *,
           exports: dict[str, Path] | None = None, runs: dict[str, Path] | None = None,
           degradation: Path | None = None, expected_suites: list[str] | None = None,
           speed: Path | None = None) -> dict[str, Any]:
    """Pick the winner of exactly two labelled result folders; write decision.json/.md when out_dir is given.

    ``exports``/``runs`` (label -> export folder / training run folder) are recorded so that
    `alphagate upload --decision FILE` finds what to publish; ``degradation`` adds the upload gates.
    ``expected_suites``: what the run meant to evaluate; any of them not complete for both models is named
    in the record (``missing_suites``) and in the reason; a missing *required* suite means no winner.
    ``speed``: a speed.json of tasks/bench/speed.py measuring both labels."""
    if len(results) != 2:
        raise ValueError(f"decide compares exactly two models; got {sorted(results)}.")
    (name_a, dir_a), (name_b, dir_b) = sorted(results.items())
    loaded = {name_a: load_results(dir_a), name_b: load_results(dir_b)}
    check_comparable(loaded, results, expected_suites)
    missing = sorted(s for s in spec.required_suites if any(s not in r for r in loaded.values()))
    absent = {s: sorted(m for m, r in loaded.items() if s not in r)
              for s in sorted(set(expected_suites or []) | set(spec.required_suites))}
    absent = {s: models for s, models in absent.items() if models}
    record: dict[str, Any] = {"models": [name_a, name_b], "missing_required": missing,
                              "missing_suites": absent,
                              "results": {k: str(Path(v).resolve()) for k, v in results.items()},
                              "exports": {k: str(Path(v).resolve()) for k, v in (exports or {}).items()},
                              "runs": {k: str(Path(v).resolve()) for k, v in (runs or {}).items()},
                              "degradation": str(Path(degradation).resolve()) if degradation else None}
    if missing:
        record.update(winner=None, upload=False, significant=False,
                      reason=f"Required suite(s) {missing} are missing, so no winner is picked.")
    else:
        samples = None
        if speed is not None:
            models = json.loads(Path(speed).read_text(encoding="utf-8"))["models"]
            if not {name_a, name_b} <= set(models):
                raise ValueError(f"{speed} measures {sorted(models)}, not both of {[name_a, name_b]}; rerun the speed "
                                 "benchmark on the two models being compared.")
            samples = (models[name_a]["tokens_per_s"], models[name_b]["tokens_per_s"])
        cmp = compare(loaded[name_a], loaded[name_b], spec, speed=samples)
        lo, hi = cmp["diff_ci95"]
        a_wins = cmp["diff"] > 0
        winner, loser = (name_a, name_b) if a_wins else (name_b, name_a)
        margin, ci = (cmp["diff"], [lo, hi]) if a_wins else (-cmp["diff"], [-hi, -lo])
        # Both must agree: the percentile bootstrap alone is anti-conservative when few items differ
        # (4 discordant items all one way: CI excludes 0, McNemar's exact p = 0.125).
        significant = ci[0] > 0 and any(r["significant"] for r in cmp["suites"])
        upload = significant or spec.on_not_significant == "upload_best"
        reason = (f"{winner} beats {loser} by {margin:.4f} composite points (95% CI [{ci[0]:.4f}, {ci[1]:.4f}]), "
                  + ("a significant difference." if significant else
                     "but the difference is not significant ("
                     + ("the CI includes 0" if ci[0] <= 0 else "the CI excludes 0, but no suite's paired test "
                                                                "survives Holm") + ")"
                     + ("; the rule uploads the better one anyway." if upload else "; the rule is: no upload.")))
        record.update(cmp, winner=winner if cmp["diff"] != 0 else None, margin=margin, margin_ci95=ci,
                      significant=bool(significant), upload=bool(upload and cmp["diff"] != 0), reason=reason)
        if cmp["diff"] == 0:
            record["reason"] = "The two models score exactly the same composite: a tie, so nothing is uploaded."
        if absent:
            record["reason"] += (" Decided on the complete suites only; missing: "
                                 + "; ".join(f"{s} (for {', '.join(m)})" for s, m in absent.items()) + ".")
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "decision.json", record)
        atomic_write_text(Path(out_dir) / "decision.md", decision_markdown(record))
    return record


def decision_markdown(record: dict[str, Any]) -> str:
    lines = ["# Decision", "", f"**{record['reason']}**", "",
             f"Upload: {'yes' if record['upload'] else 'no'}", ""]
    if record.get("missing_suites"):
        lines += ["Missing suites (failed or not run): "
                  + ", ".join(f"{s} ({', '.join(m)})" for s, m in record["missing_suites"].items()), ""]
    if record.get("suites"):
        a, b = record["models"]
        lines += [f"| suite | metric | n | {a} | {b} | test | p | p (Holm) | significant |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in record["suites"]:
            sig = "yes" if r["significant"] else "no"
            lines.append(f"| {r['suite']} | {r['metric']} | {r['n_paired']} | {r['a']:.4f} | {r['b']:.4f} | "
                         f"{r['test']} | {r['p_value']:.4g} | {r['p_holm']:.4g} | {sig} |")
        lines += ["", f"Composite: {a} {record['composite_a']:.4f}, {b} {record['composite_b']:.4f}."]
    return "\n".join(lines) + "\n"
