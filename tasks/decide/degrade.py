"""Degradation analysis (each variant against the untouched base model, each quantization against the
BF16 of the same model) and the upload gates that follow from it.

Result folders are labelled "<model>/<format>" (e.g. "base/bf16", "linear/q4_k_m"). Per suite: the
degradation rate (base - model) / base * 100 (undefined when base scores 0), a 95% CI of the model's
score (Wilson for proportions, bootstrap for means), the paired test of tasks/decide/decision.py with Holm across
suites, and a flag when the model is significantly worse. Composites here are quality only: speed is not a
quality, and evaluation timings (measured under parallel load) are never used. Each suite is scored by its one
declared metric (tasks/decide/decision.py), the same for both sides.

Gates hold a format back only on evidence: the composite is *significantly* below the base model's by more than
decision.max_drop_vs_base (the lower end of the drop's CI exceeds it), or a quantization's loss against its BF16
is significantly above decision.max_quant_loss (the lower end of the loss share's CI exceeds it). One flipped item
in five is noise, not a 20% loss.

Gates compare like with like, with the decision's own check (tasks/decide/comparable.py): a suite evaluated
another way on the two sides (another limit, item set, version or prompt) holds the format back, and so does a suite
missing on either side unless decision.optional_suites lists it. A missing comparison is not evidence of no loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks.bench.metrics import summarize
from tasks.config import DecisionSpec
from tasks.decide import comparable
from tasks.decide.compare import compare
from tasks.decide.scores import item_scores, load_results
from tasks.store import atomic_write_json


def _ci(values: np.ndarray, binary: bool, seed: int) -> list[float] | None:
    if len(values) == 0:
        return None
    if binary:
        return summarize(values.tolist(), binary=True)["ci95"]  # Wilson, as everywhere else
    if np.all(values == values[0]):
        return [float(values[0]), float(values[0])]  # no spread: the bootstrap distribution is a point
    from scipy.stats import bootstrap

    res = bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                    rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def against(reference: dict, model: dict, spec: DecisionSpec) -> dict[str, Any]:
    """How much ``model`` lost against ``reference`` (both: suite -> records/summary)."""
    cmp = compare(reference, model, spec)  # diff = reference - model; no speed term
    for row in cmp["suites"]:
        suite = row["suite"]
        scores, binary, _ = item_scores(model[suite]["records"], suite, row["metric"])
        row["model_ci95"] = _ci(np.array(list(scores.values())), binary, spec.seed)
        base = row["a"]
        row["degradation_pct"] = None if not base else (base - row["b"]) / base * 100
        row["flagged"] = bool(row["significant"] and row["b"] < base)
    lo, hi = cmp["diff_ci95"]
    return {"suites": cmp["suites"], "failed_suites": cmp["failed_suites"], "reference_composite": cmp["composite_a"],
            "composite": cmp["composite_b"], "composite_drop": cmp["diff"], "composite_drop_ci95": [lo, hi],
            "speed": "not part of degradation (quality only)",
            "flagged_suites": [r["suite"] for r in cmp["suites"] if r["flagged"]]}


def analyze(results: dict[str, Path], spec: DecisionSpec, base_model: str = "base") -> dict[str, Any]:
    """Every "<model>/<format>" against base/bf16, and every quantization against its model's BF16; gates."""
    loaded = {label: load_results(folder) for label, folder in results.items()}
    base_label = f"{base_model}/bf16"
    if base_label not in loaded:
        raise ValueError(f"Degradation needs the untouched base model's results labelled {base_label!r}; "
                         f"got {sorted(loaded)}.")
    report: dict[str, Any] = {"vs_base": {}, "vs_bf16": {}, "gates": {}}
    for label in sorted(loaded):
        model, _, fmt = label.partition("/")
        if model == base_model:
            continue
        report["vs_base"][label] = against(loaded[base_label], loaded[label], spec)
        unlike = comparable.gate_reasons({base_label: loaded[base_label], label: loaded[label]},
                                         {base_label: results[base_label], label: results[label]},
                                         spec.optional_suites)
        bf16 = f"{model}/bf16"
        if fmt != "bf16" and bf16 in loaded:
            report["vs_bf16"][label] = against(loaded[bf16], loaded[label], spec)
            unlike += comparable.gate_reasons({bf16: loaded[bf16], label: loaded[label]},
                                              {bf16: results[bf16], label: results[label]}, spec.optional_suites)
        report["vs_base"][label]["not_comparable"] = unlike
        report["gates"][label] = gate(report, label, spec)
    return report


def gate(report: dict[str, Any], label: str, spec: DecisionSpec) -> dict[str, Any]:
    vs_base = report["vs_base"][label]
    reasons = list(vs_base.get("not_comparable", []))
    vs_bf16 = report["vs_bf16"].get(label)
    # a suite that failed for this format (its judge, say) is not evidence of no loss: it holds the format back
    for against, name in ((vs_base, "the base model"), (vs_bf16, "its BF16")):
        for suite, why in (against or {}).get("failed_suites", {}).items():
            reasons.append(f"{suite} could not be compared with {name}: {why}")
    if vs_base["composite"] is None:
        return {"upload": False, "reasons": [*reasons, "no suite could be compared with the base model"],
                "quantization": None}
    if vs_base["composite_drop_ci95"][0] > spec.max_drop_vs_base:  # significantly below by more than the margin
        reasons.append(f"composite {vs_base['composite']:.4f} is below the base model's "
                       f"{vs_base['reference_composite']:.4f} by more than {spec.max_drop_vs_base} "
                       f"(drop CI [{vs_base['composite_drop_ci95'][0]:.4f}, {vs_base['composite_drop_ci95'][1]:.4f}])")
    quant = None
    if vs_bf16 and vs_bf16["composite"] is None:
        reasons.append("no suite could be compared with its BF16")
    elif vs_bf16 and vs_bf16["reference_composite"]:
        ref = vs_bf16["reference_composite"]
        lo, hi = (x / ref for x in vs_bf16["composite_drop_ci95"])
        quant = {"loss_share": vs_bf16["composite_drop"] / ref, "loss_share_ci95": [lo, hi],
                 "limit": spec.max_quant_loss}
        if lo > spec.max_quant_loss:  # the loss is significantly beyond the limit, not one flipped item
            reasons.append(f"the quantization lost {quant['loss_share']:.1%} of its BF16 composite (CI "
                           f"[{lo:.1%}, {hi:.1%}], limit {spec.max_quant_loss:.0%})")
    return {"upload": not reasons, "reasons": reasons, "quantization": quant}


def write_analysis(results: dict[str, Path], spec: DecisionSpec, out_dir: Path) -> dict[str, Any]:
    report = analyze(results, spec)
    atomic_write_json(Path(out_dir) / "degradation.json", report)
    return report
