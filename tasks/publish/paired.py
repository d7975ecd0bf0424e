"""The report's opening, read from the decision record only (never recomputed, so the report cannot disagree with
the decision): the paired difference per suite and for the composite with their 95% CIs (a forest plot and a
table), the composites with the speed source the decision used, and the upload gates the decision applied (those of
the degradation file it recorded, checked by sha256)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tasks.numbers import human, interval
from tasks.store import read_json_object, sha256_file

FOREST = "paired_difference.png"


def forest_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per compared suite, then the composite: label, difference a - b, its 95% CI (None when the record
    has none: older decisions kept no per-suite CI), whether it is significant, and for the composite of a
    sequential look the CI at the look's alpha (what the decision tests)."""
    rows = []
    for r in record.get("suites") or []:
        rows.append({"label": f"{r['suite']} ({r.get('metric_label', r['metric'])})",
                     "diff": r.get("diff", r["a"] - r["b"]), "ci": r.get("diff_ci95"),
                     "significant": bool(r.get("significant")), "composite": False})
    if record.get("composite_a") is not None:
        decision_ci = record.get("decision_ci")
        rows.append({"label": "composite", "diff": record["diff"], "ci": record.get("diff_ci95"),
                     "significant": bool(record.get("significant")), "composite": True,
                     "decision_ci": decision_ci if decision_ci and decision_ci != record.get("diff_ci95") else None})
    return rows


def forest_plot(record: dict[str, Any], out: Path) -> str | None:
    """The paired differences (a - b) with their 95% CIs, composite last; None when nothing was compared."""
    rows = forest_rows(record)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = record["models"]
    finite = [x for r in rows for x in [r["diff"], *(r["ci"] or [])] if x is not None and math.isfinite(x)]
    span = max([abs(x) for x in finite] + [1e-3])
    edge = 1.25 * span  # an unbounded interval (nothing measured its spread) is drawn to the edge, with an arrow
    clip = lambda x: max(-edge, min(edge, x)) if math.isfinite(x) else math.copysign(edge, x)  # noqa: E731
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 2.2))
    ax.axvline(0, color="gray", lw=1)
    ys = list(range(len(rows)))[::-1]  # first suite at the top, composite at the bottom
    if rows[-1]["composite"] and len(rows) > 1:
        ax.axhline(0.5, color="lightgray", lw=1)
    for y, r in zip(ys, rows, strict=True):
        color = "black" if r["composite"] else ("tab:blue" if r["significant"] else "dimgray")
        if r.get("decision_ci"):
            lo, hi = (clip(x) for x in r["decision_ci"])
            ax.plot([lo, hi], [y, y], color="lightsteelblue", lw=8, solid_capstyle="butt", zorder=1,
                    label="CI at this look's alpha (what the decision tests)")
        if r["ci"]:
            lo, hi = (clip(x) for x in r["ci"])
            ax.errorbar([r["diff"]], [y], xerr=[[r["diff"] - lo], [hi - r["diff"]]], fmt="none", ecolor=color,
                        elinewidth=2.2 if r["composite"] else 1.6, capsize=4, zorder=2)
            for x, bound in ((lo, r["ci"][0]), (hi, r["ci"][1])):
                if not math.isfinite(bound):
                    ax.annotate("", xy=(x, y), xytext=(x - math.copysign(0.08 * edge, x), y),
                                arrowprops={"arrowstyle": "->", "color": color})
        ax.plot([r["diff"]], [y], marker="D" if r["composite"] else "o", ms=9 if r["composite"] else 7,
                color=color, zorder=3)
        ax.annotate(f"{human(r['diff'], signed=True)}  {interval(r['ci'], signed=True)}", xy=(1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=9, color=color)
    ax.set_yticks(ys, [r["label"] for r in rows])
    ax.set_xlim(-1.3 * span, 1.3 * span)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"paired difference {a} - {b} (score on a 0-1 scale; > 0 favours {a})")
    ax.set_title(f"{a} - {b}: paired difference per suite and composite, 95% CI", fontsize=11)
    ax.grid(axis="x", alpha=0.4)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles[:1], labels[:1], fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / FOREST, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return FOREST


def opening_lines(record: dict[str, Any], figure: str | None) -> list[str]:
    """The report's first section: the forest plot and its numbers, as the decision recorded them."""
    rows = forest_rows(record)
    if not rows:
        return []
    a, b = record["models"]
    lines = ["## Paired difference (from the decision)", ""]
    if figure:
        lines += [f"![{figure}]({figure})", ""]
    lines += [f"| | {a} - {b} | 95% CI | significant |", "|---|---|---|---|"]
    lines += [f"| {r['label']} | {human(r['diff'], signed=True)} | "
              f"{interval(r['ci'], signed=True) if r['ci'] else 'not recorded'} | "
              f"{'yes' if r['significant'] else 'no'} |" for r in rows]
    if record.get("composite_a") is not None:
        lines += ["", f"Composite: {a} {human(record['composite_a'], 4)}, {b} {human(record['composite_b'], 4)} "
                      f"(speed term: {_speed_term(record.get('speed') or {})})."]
    return [*lines, ""]


def _speed_term(speed: dict[str, Any]) -> str:
    if speed.get("source") != "isolated benchmark":
        return speed.get("source", "n/a")
    if "in_composite" not in speed:  # an older record
        return "isolated benchmark"
    return "in the composite" if speed["in_composite"] else f"left out: {speed.get('why', '')}"


def decision_gates(record: dict[str, Any] | None, degradation: Path | None) -> tuple[dict | None, str | None]:
    """(the degradation analysis whose gates the decision applied, a note for the report). With a decision, the
    gates are the ones of the file it recorded; a ``degradation`` file given beside it must be that file (same
    sha256), else the report would show gates the decision did not apply. Without a decision: ``degradation``."""
    hint = "Pass the degradation.json that `alphagate degrade` wrote, or leave --degradation out."
    if record is None:
        return (read_json_object(degradation, "degradation.json of `alphagate degrade`", ("gates",), hint)
                if degradation else None), None
    recorded, digest = record.get("degradation"), record.get("degradation_sha256")
    if not recorded:
        note = "The decision applied no upload gates (it was made without a degradation analysis)."
        return (read_json_object(degradation, "degradation.json of `alphagate degrade`", ("gates",), hint)
                if degradation else None), note
    if degradation is not None:
        given = sha256_file(degradation)
        expected = digest or (sha256_file(recorded) if Path(recorded).is_file() else None)
        if expected is not None and given != expected:
            raise ValueError(f"--degradation {degradation} is not the degradation analysis the decision applied "
                             f"({recorded}, sha256 {expected[:12]}…; this file's is {given[:12]}…): the report's "
                             "upload gates would contradict the decision. Pass that file, or leave --degradation out.")
        source = degradation
    elif Path(recorded).is_file():
        source = Path(recorded)
    else:
        raise FileNotFoundError(f"The decision's degradation analysis {recorded} is gone; pass it with --degradation "
                                "(it is checked against the sha256 the decision recorded).")
    return read_json_object(source, "degradation.json of `alphagate degrade`", ("gates",), hint), None


def gate_lines(record: dict[str, Any] | None, deg: dict | None, note: str | None) -> list[str]:
    """The upload gates as the decision applied them, and what an upload of its winner would publish. A gate's
    result is worded as a gate passed or failed, never as an upload: most models a gate passes are not uploaded
    (only the decision's winner is)."""
    if deg is None and note is None:
        return []
    lines = ["", "## Upload gates", ""]
    if note:
        lines += [note, ""]
    if record is not None:
        label = record.get("upload_label") or record.get("winner")
        if not record.get("upload"):
            lines += [f"Nothing is uploaded: {record['reason']}", ""]
        elif label:
            held = {k.split("/", 1)[1]: g for k, g in (deg or {}).get("gates", {}).items()
                    if k.split("/", 1)[0] == label}
            formats = ", ".join(f"{fmt} ({'gates passed' if g['upload'] else 'held back'})"
                                for fmt, g in sorted(held.items()))
            lines += [f"The decision uploads {label}: "
                      + (formats or "every configured format (no gate recorded for it)") + ".", ""]
    if (deg or {}).get("gates"):
        lines += ["Each model/format against the base model and its own BF16 (a model is uploaded only when the "
                  "decision picks it and its gates pass):", ""]
    for name, g in (deg or {}).get("gates", {}).items():
        lines.append(f"- {name}: " + ("gates passed" if g["upload"] else "gates failed: " + "; ".join(g["reasons"])))
    return lines
