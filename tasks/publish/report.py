"""The analysis report: seaborn figures and a Markdown file tying them to the decision.

Every number is recomputed from per-item records (ours, or lm-evaluation-harness's samples_*.jsonl, so
runs made elsewhere sit beside ours). Result folders are labelled "<model>/<format>"; passing several
nightly folders in order gives a trend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tasks.bench.metrics import METRICS, summarize
from tasks.decide.scores import item_scores, load_results, suite_role
from tasks.numbers import human, interval
from tasks.store import atomic_write_text, read_json_object, read_jsonl

LM_EVAL_GSM8K_FILTERS = {"strict-match": "exact_match_strict", "flexible-extract": "exact_match_flexible"}


def _lm_eval_suite(task: str) -> str | None:
    """Our suite for an lm-eval task name, as the suites declare it (configs/suites/*.yaml: lm_eval_tasks)."""
    from fnmatch import fnmatchcase

    from tasks.bench.suites import suite_names

    return next((s for s in suite_names() for pattern in suite_role(s).lm_eval_tasks if fnmatchcase(task, pattern)),
                None)


def import_lm_eval(folder: Path) -> dict[str, dict[str, Any]]:
    """lm-eval output (samples_<task>_*.jsonl) -> our suite -> {"records", "summary"} shape."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(folder).rglob("samples_*.jsonl")):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        suite = _lm_eval_suite(task)
        if suite is None:
            continue
        entry = out.setdefault(suite, {"records": [], "summary": {"timings": {}, "source": "lm-eval"}})
        by_doc: dict[int, dict[str, Any]] = {}  # gsm8k: one line per doc and filter, merged into one record
        for s in read_jsonl(path, hint="Re-run lm-eval with --log_samples, or leave this folder out."):
            if suite == "gsm8k":
                record = by_doc.get(s["doc_id"])
                if record is None:
                    record = by_doc[s["doc_id"]] = {"index": s["doc_id"], "category": ""}
                    entry["records"].append(record)
                # the same metric names as our records: lm-eval's strict-match / flexible-extract filters
                record[LM_EVAL_GSM8K_FILTERS.get(s.get("filter"), "exact_match_flexible")] = \
                    bool(s.get("exact_match", 0.0))
                continue
            entry["records"].append({"index": len(entry["records"]) if suite == "mmlu" else s["doc_id"],
                                     "category": task[len("mmlu_"):] if suite == "mmlu" else "",
                                     "acc": bool(s.get("acc", 0.0)),
                                     "acc_norm": bool(s.get("acc_norm", s.get("acc", 0.0)))})
    if not out:
        raise ValueError(f"{folder}: no lm-evaluation-harness samples_*.jsonl of mmlu/arc/hellaswag/gsm8k found "
                         "(run lm-eval with --log_samples).")
    return out


def load_any(folder: Path) -> dict[str, dict[str, Any]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Results folder {folder} does not exist.")
    if list(folder.glob("*.summary.json")):
        return load_results(folder)
    return import_lm_eval(folder)


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


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def figures(scores, cats, out: Path, degradation: dict | None, runs: dict[str, Path], tuner: Path | None,
            results: dict[str, Path], trend: bool = False) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    made = []
    labels = list(dict.fromkeys(scores["label"]))
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * scores["suite"].nunique() + 2), 4.5))
    suites = list(dict.fromkeys(scores["suite"]))
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        sub = scores[scores["label"] == label].set_index("suite").reindex(suites)
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(suites))]
        ax.bar(xs, sub["mean"], width, label=label,
               yerr=[sub["mean"] - sub["lo"], sub["hi"] - sub["mean"]], capsize=3)
    ax.set_xticks(range(len(suites)), suites, rotation=15)
    ax.set_ylabel("score (primary metric)")
    ax.set_ylim(0, 1)
    ax.set_title("Per-suite scores with 95% CI")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    made.append(_save(fig, out / "scores.png"))

    pivot = scores.pivot_table(index="suite", columns="label", values="mean")[labels]
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 3, 0.6 * len(pivot) + 2))
    sns.heatmap(pivot, annot=True, fmt=".3f", cmap="viridis", vmin=0, vmax=1, ax=ax)
    ax.set_title("Scores: suite x model/format")
    made.append(_save(fig, out / "heatmap_scores.png"))

    if degradation and degradation.get("vs_base"):
        rows = [{"label": lab, "suite": r["suite"], "pct": r["degradation_pct"]}
                for lab, d in degradation["vs_base"].items() for r in d["suites"] if r["degradation_pct"] is not None]
        if rows:
            import pandas as pd

            deg = pd.DataFrame(rows).pivot_table(index="suite", columns="label", values="pct")
            fig, ax = plt.subplots(figsize=(1.4 * deg.shape[1] + 3, 0.6 * len(deg) + 2))
            sns.heatmap(deg, annot=True, fmt=".1f", cmap="RdYlGn_r", center=0, ax=ax)
            ax.set_title("Degradation vs the base model, % ((base - model) / base)")
            made.append(_save(fig, out / "heatmap_degradation.png"))

    made += _judge_figure(results, out, plt, sns)
    for suite in sorted(set(cats["suite"])) if len(cats) else []:
        pc = cats[cats["suite"] == suite].pivot_table(index="category", columns="label", values="mean")
        fig, ax = plt.subplots(figsize=(1.4 * pc.shape[1] + 4, 0.45 * len(pc) + 2))
        sns.heatmap(pc, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax)
        ax.set_title(f"{suite}: per category")
        made.append(_save(fig, out / f"categories_{suite}.png"))
    made += _training_figures(runs, tuner, out, plt)
    if trend and len(labels) > 1:  # result folders of successive runs, in the order given: a trend per suite
        fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(labels) + 3), 4.5))
        for suite in suites:
            sub = scores[scores["suite"] == suite].set_index("label").reindex(labels)
            ax.plot(range(len(labels)), sub["mean"], marker="o", label=suite)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set(ylim=(0, 1), ylabel="score (primary metric)", title="Trend across the given results, in order")
        ax.legend(fontsize=8)
        made.append(_save(fig, out / "trend.png"))
    return made


def _judge_figure(results, out, plt, sns) -> list[str]:
    import pandas as pd

    rows = [{"label": label, "grade": r["judge_grade"]} for label, folder in results.items()
            for r in load_any(folder).get("elyza_tasks_100", {}).get("records", []) if r.get("judge_grade")]
    if not rows:
        return []
    data = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(1.5 * data["label"].nunique() + 3, 4))
    sns.boxplot(data=data, x="label", y="grade", ax=ax, color="lightgray")
    sns.stripplot(data=data, x="label", y="grade", ax=ax, alpha=0.6, jitter=0.2)
    ax.set_ylim(0.5, 5.5)
    ax.set_title("ELYZA-tasks-100 judge grades per item")
    return [_save(fig, out / "judge_grades.png")]


def _training_figures(runs: dict[str, Path], tuner: Path | None, out: Path, plt) -> list[str]:
    made = []
    if runs:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        for label, run in runs.items():
            traj = read_json_object(run / "alpha_trajectory.json", "training run's alpha trajectory",
                                    ("trajectory",), f"Is --runs {label}={run} a training run folder?")["trajectory"]
            a1.plot([t["step"] for t in traj], [t["blend_alpha"] for t in traj], label=label)
            val = read_json_object(run / "loss_curves.json", "training run's loss curves", ("validation",),
                                   f"Is --runs {label}={run} a training run folder?")["validation"]
            a2.plot([v["step"] for v in val], [v["eval_loss"] for v in val], marker="o", label=label)
        a1.set(title="blend_alpha trajectory", xlabel="optimizer step", ylabel="blend_alpha")
        a2.set(title="validation loss", xlabel="optimizer step", ylabel="loss")
        a1.legend()
        a2.legend()
        made.append(_save(fig, out / "training.png"))
    if tuner is not None and Path(tuner).is_file():
        trials = read_json_object(tuner, "tuner history", ("trials",), "Pass the --history file of "
                                  "`alphagate tune`, or leave --tuner out.")["trials"]
        if trials:
            fig, ax = plt.subplots(figsize=(6, 4.5))
            points = ax.scatter([t["k"] for t in trials], [t["midpoint"] for t in trials],
                                c=[t["value"] for t in trials], cmap="viridis_r", s=60)
            best = min(trials, key=lambda t: t["value"])
            ax.scatter([best["k"]], [best["midpoint"]], marker="*", s=250, c="red", label="best")
            fig.colorbar(points, label="proxy validation loss")
            ax.set(xscale="log", xlabel="k (steepness, log scale)", ylabel="midpoint", title="Sigmoid tuner trials")
            from matplotlib.ticker import ScalarFormatter

            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(ScalarFormatter())
            ax.legend()
            made.append(_save(fig, out / "tuner_trials.png"))
    return made


def _dpo_section(results: dict[str, Path], record: dict | None) -> list[str]:
    """Each "<variant>+dpo" model beside its SFT parent: paired per-suite differences and tests, with the decision
    settings the decision record was made with (the configured ones; defaults only without a record)."""
    from tasks.config import DecisionSpec
    from tasks.decide.decision import compare

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.decide.study import closed, trend_rows

    rows = trend_rows(study)
    if not rows:
        return []
    a, b = rows[-1]["models"] or ("A", "B")
    nights = [r["night"] for r in rows]
    diffs = [r["diff"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows) + 3), 4.5))
    ax.axhline(0, color="gray", lw=1)
    finite = [x for r in rows for x in (r.get("ci95") or []) if x is not None and math.isfinite(x)]
    span = max([abs(x) for x in finite] + [abs(d) for d in diffs] + [1e-6])
    # early looks of an O'Brien-Fleming study test at a tiny alpha: their intervals are huge; keep the scale of
    # the 95% CIs (the wide bars run off the plot, which is what they mean); an untestable look (no variance at
    # all) has an unbounded interval, drawn to the edge
    bound = lambda x: x if x is not None and math.isfinite(x) else math.copysign(10 * span, x or 1)  # noqa: E731
    for key, style, label in (("ci", dict(lw=7, color="lightsteelblue", capsize=0),
                               "CI at this look's alpha (what the decision uses)"),
                              ("ci95", dict(lw=1.5, color="navy", capsize=4), "95% CI (no correction for looks)")):
        lo = [r["diff"] - bound(r[key][0]) if r.get(key) else 0 for r in rows]
        hi = [bound(r[key][1]) - r["diff"] if r.get(key) else 0 for r in rows]
        ax.errorbar(nights, diffs, yerr=[lo, hi], fmt="none", label=label, **style)
    ax.plot(nights, diffs, "o-", color="black", label=f"composite {a} - {b}")
    ax.set_ylim(-1.4 * span, 1.4 * span)
    ax.set(xlabel="night (look)", ylabel="composite difference", xticks=nights,
           title="Nightly study: the margin and its CI, night by night")
    ax.legend(fontsize=8)
    made.append(_save(fig, out / "study_trend.png"))
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
        from tasks.decide.seeds import replicate_lines

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
