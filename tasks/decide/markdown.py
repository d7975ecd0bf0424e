"""A decision record for people: decision.md (the claim first, the per-suite table, the composite, scope, and the
seeds/variance/power/looks/compute lines) and the per-suite rows of a table artifact. Read from the record only."""

from __future__ import annotations

from typing import Any

from tasks.numbers import human, interval, rounded


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
    lines += replicate_lines(record)
    return "\n".join(lines) + "\n"


def replicate_lines(record: dict[str, Any]) -> list[str]:
    """Seeds, variance components, power, repeated looks and compute, for people."""
    lines: list[str] = []
    if record.get("seeds"):
        lines += ["", f"Seeds: {record['seeds']['a']} vs {record['seeds']['b']} per arm; {record['seeds']['note']}."]
    for arm, rows in (record.get("per_seed_composites") or {}).items():
        lines.append(f"- {arm}: per-seed composites " + ", ".join(f"{r['label']} {r['composite']:.4f}" for r in rows))
    var = record.get("variance")
    if var:
        seed = "unmeasured" if var["between_seed_var"] is None else f"{var['between_seed_var']:.3g}"
        lines += ["", f"Variance of the composite difference: seeds {var['seed_var_term']:.3g} + items "
                      f"{var['item_var_term']:.3g} (between-seed variance of a composite: {seed}, df "
                      f"{var['between_seed_df']})."]
    power = record.get("power")
    if power and power["alpha"] <= 0:
        lines += ["", "This look spends no alpha (one seed per arm cannot decide about the schedules): no power "
                      "figure for it."]
    elif power:
        lines += ["", f"Minimum detectable composite difference (alpha {power['alpha']:.3g}, power "
                      f"{power['power']:.0%}): {power['mde']:.4f}; the target effect {power['target_effect']:.4g} is "
                      + ("detectable with these items and seeds." if power["target_detectable"] else
                         "NOT detectable with these items and seeds (see `alphagate plan`).")]
        need = power.get("to_detect_target") or {}
        if need:
            fewest = need["fewest_seeds_per_arm"]
            row = next((r for r in need["rows"] if r["seeds_per_arm"] == fewest), None)
            lines.append(f"To detect {power['target_effect']:.4g} (variances measured here, never lowered toward "
                         f"the priors; seed variance {need['seed_var_source']}): " + (
                             f"{fewest} seeds per arm with up to {row['items_per_suite_for_target']} items per suite "
                             "(full splits)." if row else
                             f"not with {need['rows'][-1]['seeds_per_arm']} seeds per arm and every item; the largest "
                             f"variance is then {need['rows'][-1]['largest_variance_at_all_items']}."))
    look = record.get("sequential")
    if look:
        lines += ["", f"Repeated looks: look {look['look']} of {look['max_looks']} ({look['spending']} alpha "
                      f"spending): this look tests at alpha {look['alpha_this_look']:.3g}; spent so far "
                      f"{look['alpha_spent']:.3g} of {look['alpha_total']:.3g}."]
    compute = record.get("compute")
    if compute:
        lines += ["", "| arm | optimizer steps (incl. tuner proxies) | of which tuner | wall s |", "|---|---|---|---|"]
        lines += [f"| {arm} | {c['total_steps']} | {c['tuner_proxy_steps']} | {c['total_seconds']:.1f} |"
                  for arm, c in compute.items()]
    return lines
