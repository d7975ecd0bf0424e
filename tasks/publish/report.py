"""The analysis report: seaborn figures and a Markdown file tying them to the decision.

Every number is recomputed from per-item records (ours, or lm-evaluation-harness's samples_*.jsonl, so
runs made elsewhere sit beside ours). Result folders are labelled "<model>/<format>"; passing several
nightly folders in order gives a trend.
"""

from __future__ import annotations

from pathlib import Path

from tasks.bench.metrics import METRICS, summarize
from tasks.decide.scores import item_scores, load_results, suite_role
from tasks.numbers import human, interval
from tasks.publish.figures import figures, study_figure
from tasks.publish.lm_eval_import import import_lm_eval, load_any
from tasks.store import atomic_write_text, read_json_object

# the report's parts, importable from here as they always were
__all__ = ["figures", "import_lm_eval", "load_any", "score_table", "write_report"]

def score_table(results: dict[str, Path]):
    """One row per (label, suite): primary metric mean, 95% CI, n; plus per-category rows."""
    import pandas as pd

    rows, cats = [], []
    for label, folder in results.items():
        for suite, data in load_any(folder).items():
            scores, binary, metric = item_scores(data["records"], suite)
            metric = METRICS[metric].label(metric)
            s = summarize(list(scores.values()), binary)
            if s["n"]:
                rows.append({"label": label, "suite": suite, "metric": metric,
                             "mean": s["mean"], "lo": max(0.0, s["ci95"][0]), "hi": min(1.0, s["ci95"][1]),
                             "n": s["n"]})  # all primary metrics live in [0, 1]
            by_cat: dict[str, list[float]] = {}
            for r in data["records"] if suite_role(suite).category_field else []:  # e.g. MMLU subjects
                if r.get("category") and r["index"] in scores:
                    by_cat.setdefault(r["category"], []).append(scores[r["index"]])
            cats += [{"label": label, "suite": suite, "category": c, "mean": sum(v) / len(v), "n": len(v)}
                     for c, v in by_cat.items()]
    return pd.DataFrame(rows), pd.DataFrame(cats)


def _dpo_section(results: dict[str, Path], record: dict | None) -> list[str]:
    """Each "<variant>+dpo" model beside its SFT parent: paired per-suite differences and tests, with the decision
    settings the decision record was made with (the configured ones; defaults only without a record)."""
    from tasks.config import DecisionSpec
    from tasks.decide.compare import compare

    spec = DecisionSpec(**(record or {}).get("settings", {}))

    lines = []
    for label, folder in sorted(results.items()):
        model, _, fmt = label.partition("/")
        parent = results.get(f"{model[:-len('+dpo')]}/{fmt}") if model.endswith("+dpo") else None
        if parent is None:
            continue
        a, b = load_results(Path(folder)), load_results(Path(parent))
        if not set(a) & set(b):
            continue
        cmp = compare(a, b, spec)
        if not lines:
            lines = ["", "## DPO beside its SFT parent (paired, same items)", "",
                     "| model/format | suite | metric | n | DPO | SFT parent | change | test | p (Holm) |",
                     "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in cmp["suites"] if r["n_paired"]):
            lines.append(f"| {label} | {r['suite']} | {r['metric_label']} | {r['n_paired']} | {human(r['a'])} | "
                         f"{human(r['b'])} | {human(r['a'] - r['b'], signed=True)} | {r['test']} | "
                         f"{human(r['p_holm'])} |")
        for suite, why in cmp["failed_suites"].items():
            lines.append(f"| {label} | {suite} | failed: {why} | | | | | | |")
        if cmp["composite_a"] is not None:  # no speed term: DPO and its parent were not speed-benchmarked
            lines.append(f"| {label} | composite (quality only, no speed term) | | | {human(cmp['composite_a'], 4)} | "
                         f"{human(cmp['composite_b'], 4)} | {human(cmp['diff'], 4, signed=True)} "
                         f"{interval(cmp['diff_ci95'], 4, signed=True)} | paired bootstrap | |")
    return lines


def _skipped_section(results: dict[str, Path]) -> list[str]:
    """Items that no model could be scored on, and why (the evaluations' notes, e.g. ScienceQA's image items without a
    vision projector): once per note, with the model/formats it holds for."""
    by_note: dict[str, list[str]] = {}
    for label, folder in results.items():
        for path in sorted(Path(folder).glob("*.summary.json")):
            for note in read_json_object(path, "evaluation summary", (), "Re-run that evaluation.").get("notes", []):
                by_note.setdefault(note, []).append(label)
    if not by_note:
        return []
    lines = ["", "## Items not scored", ""]
    for note, labels in by_note.items():
        which = f"every model/format ({len(labels)})" if len(labels) == len(results) else ", ".join(labels)
        lines.append(f"- {note} ({which})")
    return lines


def _study_section(study: dict, out: Path, made: list[str]) -> list[str]:
    """The nightly study's trend: the composite difference and its CIs night by night (figure + table)."""
    from tasks.decide.study import closed, trend_rows

    rows = trend_rows(study)
    if not rows:
        return []
    a, b = rows[-1]["models"] or ("A", "B")
    made.append(study_figure(rows, (a, b), out))
    lines = ["## Nightly study", "", closed(study) or f"Open: {len(study['nights'])} of {study['max_looks']} looks "
             f"({study['spending']} alpha spending).", "",
             f"| night | date | seeds per arm | {a} - {b} | CI (look alpha) | look alpha | outcome |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        alpha = human(r.get("alpha"))
        lines.append(f"| {r['night']} | {r['date']} | {r['seeds']} | {human(r['diff'], signed=True)} | "
                     f"{interval(r.get('ci'), signed=True)} | {alpha} | {r['outcome']} |")
    return [*lines, ""]


def write_report(results: dict[str, Path], out: Path, *, decision: Path | None = None,
                 degradation: Path | None = None, runs: dict[str, Path] | None = None,
                 tuner: Path | None = None, trend: bool = False, study: Path | None = None) -> Path:
    """``study``: a nightly study's study.json: its margin and CI night by night become a trend figure and table.
    With a ``decision``, the report opens with its paired differences (forest plot) and shows its upload gates: the
    figures come from the decision record, never recomputed (tasks/publish/paired.py)."""
    from tasks.publish.paired import decision_gates, forest_plot, gate_lines, opening_lines

    out = Path(out)
    # every file named on the command line is read before any figure is drawn: a bad one fails first, named
    record = read_json_object(decision, "decision.json of `alphagate decide`", ("reason", "upload"),
                              "Pass the decision.json that `alphagate decide` wrote, or leave --decision out."
                              ) if decision else None
    deg, gates_note = decision_gates(record, Path(degradation) if degradation else None)
    if tuner is not None and Path(tuner).is_file():
        read_json_object(tuner, "tuner history", ("trials",), "Pass the --history file of `alphagate tune`.")
    nights = read_json_object(study, "nightly study record", ("nights",),
                              "Pass the study.json of the alphagate-nightly flow, or leave --study out."
                              ) if study else None
    out.mkdir(parents=True, exist_ok=True)
    scores, cats = score_table(results)
    if scores.empty:
        raise ValueError("No scored items in the given results; nothing to report.")
    forest = forest_plot(record, out) if record is not None else None
    made = figures(scores, cats, out, deg, runs or {}, tuner, results, trend)
    study_lines = _study_section(nights, out, made) if nights else []
    lines = ["# alpha-gate comparison report", ""]
    if record is not None:
        from tasks.decide.markdown import replicate_lines

        # the first paragraph is the claim, with its scope (ARCHITECTURE rule 14)
        lines += [record["reason"], ""] + ([f"Scope: {record['scope_note']}.", ""] if record.get("scope_note") else [])
        lines += opening_lines(record, forest)
        lines += ["## Decision", "", record["reason"], "", f"Upload: {'yes' if record['upload'] else 'no'}",
                  *replicate_lines(record), ""]
    lines += study_lines
    lines += ["## Scores (primary metric, 95% CI, computed from per-item records)", "",
              "| model/format | suite | metric | score | 95% CI | n |", "|---|---|---|---|---|---|"]
    for r in scores.itertuples():
        lines.append(f"| {r.label} | {r.suite} | {r.metric} | {human(r.mean)} | {interval([r.lo, r.hi])} | {r.n} |")
    if len(cats):
        lines += ["", "## Per category", "", "| model/format | suite | category | score | n |", "|---|---|---|---|---|"]
        lines += [f"| {r.label} | {r.suite} | {r.category} | {human(r.mean)} | {r.n} |"
                  for r in cats.sort_values(["suite", "category", "label"]).itertuples()]
    lines += _skipped_section(results)
    lines += _dpo_section(results, record)
    if record is not None and record.get("suites"):
        from tasks.decide.disagree import disagreements, markdown_lines

        lines += ["", *markdown_lines(disagreements(record))]
    lines += gate_lines(record, deg, gates_note)
    lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in made]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
