"""The report's figures (seaborn, PNG): per-suite scores with their CIs, the score and degradation heatmaps, the judge's
grades, per-category heatmaps, training curves, the tuner's trials and a trend across runs. Each reads the score
tables of tasks/publish/report.py or the files it is handed, and returns the names of the files it drew."""

from __future__ import annotations

import math
from pathlib import Path

from tasks.store import read_json_object


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def save_figure(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _score_bars(scores, out: Path, plt) -> str:
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
    return save_figure(fig, out / "scores.png")


def _score_heatmap(scores, out: Path, plt, sns) -> str:
    labels = list(dict.fromkeys(scores["label"]))
    pivot = scores.pivot_table(index="suite", columns="label", values="mean")[labels]
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 3, 0.6 * len(pivot) + 2))
    sns.heatmap(pivot, annot=True, fmt=".3f", cmap="viridis", vmin=0, vmax=1, ax=ax)
    ax.set_title("Scores: suite x model/format")
    return save_figure(fig, out / "heatmap_scores.png")


def _degradation_heatmap(degradation: dict | None, out: Path, plt, sns) -> list[str]:
    if not degradation or not degradation.get("vs_base"):
        return []
    rows = [{"label": lab, "suite": r["suite"], "pct": r["degradation_pct"]}
            for lab, d in degradation["vs_base"].items() for r in d["suites"] if r["degradation_pct"] is not None]
    if not rows:
        return []
    import pandas as pd

    deg = pd.DataFrame(rows).pivot_table(index="suite", columns="label", values="pct")
    fig, ax = plt.subplots(figsize=(1.4 * deg.shape[1] + 3, 0.6 * len(deg) + 2))
    sns.heatmap(deg, annot=True, fmt=".1f", cmap="RdYlGn_r", center=0, ax=ax)
    ax.set_title("Degradation vs the base model, % ((base - model) / base)")
    return [save_figure(fig, out / "heatmap_degradation.png")]


def _category_heatmaps(cats, out: Path, plt, sns) -> list[str]:
    made = []
    for suite in sorted(set(cats["suite"])) if len(cats) else []:
        pc = cats[cats["suite"] == suite].pivot_table(index="category", columns="label", values="mean")
        fig, ax = plt.subplots(figsize=(1.4 * pc.shape[1] + 4, 0.45 * len(pc) + 2))
        sns.heatmap(pc, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax)
        ax.set_title(f"{suite}: per category")
        made.append(save_figure(fig, out / f"categories_{suite}.png"))
    return made


def _trend(scores, out: Path, plt) -> list[str]:
    """Result folders of successive runs, in the order given: a trend per suite."""
    labels = list(dict.fromkeys(scores["label"]))
    if len(labels) < 2:
        return []
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(labels) + 3), 4.5))
    for suite in dict.fromkeys(scores["suite"]):
        sub = scores[scores["suite"] == suite].set_index("label").reindex(labels)
        ax.plot(range(len(labels)), sub["mean"], marker="o", label=suite)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set(ylim=(0, 1), ylabel="score (primary metric)", title="Trend across the given results, in order")
    ax.legend(fontsize=8)
    return [save_figure(fig, out / "trend.png")]


def figures(scores, cats, out: Path, degradation: dict | None, runs: dict[str, Path], tuner: Path | None,
            results: dict[str, Path], trend: bool = False) -> list[str]:
    plt, sns = _pyplot()
    made = [_score_bars(scores, out, plt), _score_heatmap(scores, out, plt, sns)]
    made += _degradation_heatmap(degradation, out, plt, sns)
    made += _judge_figure(results, out, plt, sns)
    made += _category_heatmaps(cats, out, plt, sns)
    made += _training_figures(runs, tuner, out, plt)
    if trend:
        made += _trend(scores, out, plt)
    return made


def _judge_figure(results, out, plt, sns) -> list[str]:
    """The judge's grades per item of every judged suite (their YAML declares the judge_grade metric)."""
    import pandas as pd

    from tasks.bench.suites import suite_names
    from tasks.decide.scores import suite_role
    from tasks.publish.lm_eval_import import load_any

    judged = [s for s in suite_names() if suite_role(s).judged]
    rows = [{"label": label, "grade": r["judge_grade"]} for label, folder in results.items()
            for s in judged for r in load_any(folder).get(s, {}).get("records", []) if r.get("judge_grade")]
    if not rows:
        return []
    data = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(1.5 * data["label"].nunique() + 3, 4))
    sns.boxplot(data=data, x="label", y="grade", ax=ax, color="lightgray")
    sns.stripplot(data=data, x="label", y="grade", ax=ax, alpha=0.6, jitter=0.2)
    ax.set_ylim(0.5, 5.5)
    ax.set_title(f"{', '.join(suite_role(s).title for s in judged)} judge grades per item")
    return [save_figure(fig, out / "judge_grades.png")]


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
        made.append(save_figure(fig, out / "training.png"))
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
            made.append(save_figure(fig, out / "tuner_trials.png"))
    return made


def study_figure(rows: list[dict], models: tuple[str, str], out: Path) -> str:
    """A nightly study's composite difference and its CIs night by night (tasks/decide/study.py:trend_rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = models
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
    return save_figure(fig, out / "study_trend.png")
