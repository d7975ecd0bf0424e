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

from tasks.config import DecisionSpec
from tasks.decide import comparable
from tasks.decide.compare import compare
from tasks.decide.markdown import TEST_NAMES, decision_markdown, suite_table
from tasks.decide.scores import load_results
from tasks.decide.stats import composite, min_attainable_p, paired_test, statistic_direction
from tasks.store import atomic_write_json, atomic_write_text, sha256_file

# the decision's parts, importable from here as they always were
__all__ = ["TEST_NAMES", "compare", "composite", "decide", "decision_markdown", "min_attainable_p", "paired_test",
           "statistic_direction", "suite_table"]


def _arms(results: dict[str, Path | list[Path]], labels: dict[str, list[str]] | None
          ) -> tuple[dict[str, list[Path]], dict[str, list[str]]]:
    """Each arm's result folders and replicate labels (default ``<arm>`` for one folder, ``<arm>#<i>`` for more)."""
    if len(results) != 2:
        raise ValueError(f"decide compares exactly two models; got {sorted(results)}.")
    arms = {k: [Path(x) for x in v] if isinstance(v, (list, tuple)) else [Path(v)] for k, v in sorted(results.items())}
    for name, folders in arms.items():
        if not folders:
            raise ValueError(f"{name} has no result folder; pass at least one.")
    labels = {k: list(labels[k]) if labels and k in labels else
              ([k] if len(v) == 1 else [f"{k}#{i + 1}" for i in range(len(v))]) for k, v in arms.items()}
    for name, folders in arms.items():
        if len(labels[name]) != len(folders):
            raise ValueError(f"{name}: {len(labels[name])} replicate labels for {len(folders)} result folders.")
    return arms, labels


def _load_comparable(arms: dict[str, list[Path]], labels: dict[str, list[str]],
                     expected_suites: list[str] | None) -> dict[str, list[dict]]:
    """Every replicate's results, each checked comparable with every replicate of the other arm and with its own
    arm's first."""
    (name_a, dirs_a), (name_b, dirs_b) = arms.items()
    reps = {k: [load_results(d) for d in v] for k, v in arms.items()}
    for (la, ra, fa) in zip(labels[name_a], reps[name_a], dirs_a, strict=True):
        for (lb, rb, fb) in zip(labels[name_b], reps[name_b], dirs_b, strict=True):
            comparable.check({la: ra, lb: rb}, {la: fa, lb: fb}, expected_suites)
    for name in arms:  # the replicates of one arm must be comparable with each other too
        for label, rep, folder in list(zip(labels[name], reps[name], arms[name], strict=True))[1:]:
            first = (labels[name][0], reps[name][0], arms[name][0])
            comparable.check({first[0]: first[1], label: rep}, {first[0]: first[2], label: folder}, expected_suites)
    return reps


def _record(arms: dict[str, list[Path]], labels: dict[str, list[str]], replicated: bool, alpha: float,
            spec: DecisionSpec, paths: dict[str, Any], look: dict[str, Any] | None,
            compute: dict[str, Any] | None) -> dict[str, Any]:
    """The record's inputs: the arms' folders and labels, what an upload needs, the alpha and the settings."""
    exports, runs, degradation = paths["exports"], paths["runs"], paths["degradation"]
    return {"models": list(arms), "missing_required": [], "missing_suites": {}, "failed_suites": {},
            "results": {k: str(v[0].resolve()) if len(v) == 1 and not replicated else
                        [str(x.resolve()) for x in v] for k, v in arms.items()},
            "replicates": labels,
            "exports": {k: str(Path(v).resolve()) for k, v in (exports or {}).items()},
            "runs": {k: str(Path(v).resolve()) for k, v in (runs or {}).items()},
            "degradation": str(Path(degradation).resolve()) if degradation else None,
            # what the report checks a --degradation file against (its gates are this decision's)
            "degradation_sha256": (sha256_file(degradation) if degradation and Path(degradation).is_file() else None),
            "alpha": alpha, "sequential": look, "compute": compute or {},
            # the configured decision settings, which the report reuses (its DPO comparison)
            "settings": spec.model_dump(mode="json")}


def _verdict(record: dict[str, Any], cmp: dict[str, Any], labels: dict[str, list[str]], replicated: bool,
             look: dict[str, Any] | None, alpha: float, spec: DecisionSpec) -> None:
    """The winner, significance, reason and upload label from a comparison (in place)."""
    from tasks.decide.claims import verdict

    name_a, name_b = record["models"]
    failed = cmp["failed_suites"]
    failed_note = ("" if not failed else " Failed suites (left out): "
                   + "; ".join(f"{s}: {why}" for s, why in failed.items()) + ".")
    failed_required = sorted(set(failed) & set(spec.required_suites))
    if failed_required or not cmp["suites"]:
        record.update(cmp, winner=None, upload=False, significant=False, outcome="no winner",
                      reason=(f"Required suite(s) {failed_required} failed" if failed_required else
                              "No suite could be compared") + ", so no winner is picked." + failed_note)
        return
    record.update(cmp, **verdict(cmp, {"a": name_a, "b": name_b, "tie": ""}, replicated, look, alpha, spec))
    record["reason"] += failed_note
    per_seed = record.get("per_seed_composites")
    if record.get("winner") and per_seed:  # what an upload publishes: the winning arm's best replicate
        record["upload_label"] = max(per_seed[record["winner"]], key=lambda r: r["composite"])["label"]
    elif record.get("winner"):
        record["upload_label"] = labels[record["winner"]][0]
    if record["missing_suites"]:
        record["reason"] += (" Decided on the complete suites only; missing: "
                             + "; ".join(f"{s} (for {', '.join(m)})" for s, m in record["missing_suites"].items())
                             + ".")


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
    arms, labels = _arms(results, labels)
    replicated = look is not None or any(len(v) > 1 for v in arms.values())
    reps = _load_comparable(arms, labels, expected_suites)
    loaded = {k: {s: v[0][s] for s in set.intersection(*(set(r) for r in v))} for k, v in reps.items()}
    alpha = look["alpha_this_look"] if look else spec.alpha
    record = _record(arms, labels, replicated, alpha, spec,
                     {"exports": exports, "runs": runs, "degradation": degradation}, look, compute)
    missing = sorted(s for s in spec.required_suites if any(s not in r for r in loaded.values()))
    absent = {s: sorted(m for m, r in loaded.items() if s not in r)
              for s in sorted(set(expected_suites or []) | set(spec.required_suites))}
    record.update(missing_required=missing, missing_suites={s: models for s, models in absent.items() if models})
    if missing:
        record.update(winner=None, upload=False, significant=False, outcome="no winner",
                      reason=f"Required suite(s) {missing} are missing, so no winner is picked.")
        return _write(record, out_dir)
    from tasks.decide.speed import read_speed

    (name_a, name_b) = record["models"]
    samples = None if speed is None else read_speed(Path(speed), (name_a, name_b), labels)
    if replicated:
        from tasks.decide.seeds import compare_replicates

        cmp = compare_replicates(reps, labels, spec, alpha, speed=samples)
    else:
        cmp = compare(loaded[name_a], loaded[name_b], spec, speed=samples)
    _verdict(record, cmp, labels, replicated, look, alpha, spec)
    return _write(record, out_dir)


def _write(record: dict[str, Any], out_dir: Path | None) -> dict[str, Any]:
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "decision.json", record)
        atomic_write_text(Path(out_dir) / "decision.md", decision_markdown(record))
    return record
