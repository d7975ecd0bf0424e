"""The sentence a person reads first (ARCHITECTURE rules 12 and 14): the decision's outcome and its ``reason``,
which the report, the Prefect artifact and the model card repeat.

- It states the unit of replication. One training seed per arm: the claim is about the two trained models ("the
  model trained with linear scored higher than the one trained with sigmoid-bayes"); two or more seeds per arm,
  with the seed variance measured: it may speak of the schedules.
- It names no winner that only noise supports: when every quality suite ties, there is no winner ("no quality
  difference"), whatever the speed figures, which stand beside it.
- A result that is not significant says what it excludes: the difference lies within the CI, and differences
  larger than the minimum detectable difference were ruled out at the stated power.
"""

from __future__ import annotations

from typing import Any

from tasks.config import DecisionSpec
from tasks.decide import rules
from tasks.numbers import human, interval

SCOPES = {"models": "these two trained models (one training seed per arm: the seed variance is unmeasured, so "
                    "nothing is claimed about the schedules)",
          "schedules": "the schedules (training seeds are the replicates: the interval covers seed-to-seed and item "
                       "variance)"}


WHO = {"models": "the two trained models", "schedules": "the schedules"}


def scope(cmp: dict[str, Any]) -> str:
    """"schedules" when seeds were replicated and their variance measured, else "models"."""
    return "schedules" if (cmp.get("seeds") or {}).get("seed_variance_measured") else "models"


def subject(winner: str, loser: str, where: str, seeds: dict[str, Any]) -> str:
    if where == "schedules":
        count = seeds["a"] if seeds["a"] == seeds["b"] else f"{seeds['a']} and {seeds['b']}"
        return f"The {winner} schedule scored higher than {loser} over {count} training seeds per arm"
    return f"The model trained with {winner} scored higher than the one trained with {loser}"


def _favour(suites: list[str]) -> str:
    return f"{', '.join(suites)} significantly favour{'s' if len(suites) == 1 else ''}"


def significance(rows: list[dict[str, Any]], ci: list[float], winner: str, loser: str,
                 names: dict[str, str]) -> tuple[str, str]:
    """The sign-aware rule: (outcome, why). outcome is "significant", "mixed" or "not significant"; ``ci`` is the
    CI of the winner's margin; ``names`` maps the rows' direction ("a"/"b") to model names."""
    for_, against = rules.sides(rows, winner, loser, names)
    if against:
        return "mixed", (f"{_favour(against)} {loser} (Holm)" + (f" while {_favour(for_)} {winner}" if for_ else
                                                                " against the composite")
                         + ", so neither is a significant winner")
    if ci[0] <= 0:
        return "not significant", "the composite CI includes 0"
    if not for_:
        never = [r["suite"] for r in rows if not r["can_reach_significance"]]
        return "not significant", ("the CI excludes 0, but no suite's paired test survives Holm in that direction"
                                   + (f" ({', '.join(never)}: too few paired items ever to reach significance)"
                                      if never else ""))
    return "significant", f"{_favour(for_)} {winner} (Holm), none against"


def _same_composite(rows: list[dict], names: dict[str, str], ci95: list[float]) -> dict[str, Any]:
    """Exactly the same composite: no winner; "mixed" when suites significantly favour each side, else a tie."""
    for row in rows:
        if row["significant"]:
            row["verdict"] = f"favours {names[row['direction']]}"
    sides = {side: [r["suite"] for r in rows if r["significant"] and names[r["direction"]] == side]
             for side in (names["a"], names["b"])}
    split = " and ".join(f"{_favour(s)} {side}" for side, s in sides.items() if s)
    return {"winner": None, "margin": 0.0, "margin_ci95": ci95, "significant": False, "upload": False,
            "outcome": "mixed" if split else "tie",
            "reason": "The two models score exactly the same composite: "
            + (f"mixed ({split}), so nothing is uploaded." if split else "a tie, so nothing is uploaded.")}


def _speed_note(speed: dict[str, Any], speed_text: str) -> str:
    """The speed sentence, when speed was measured in isolation and left out of the composite ("" otherwise)."""
    return " " + speed_text if not speed.get("in_composite", True) and speed.get("source") == "isolated benchmark" \
        else ""


def verdict(cmp: dict[str, Any], names: dict[str, str], replicated: bool, look: dict[str, Any] | None,
            alpha: float, spec: DecisionSpec) -> dict[str, Any]:
    """The decision's fields (winner, margin, outcome, significant, upload, scope, reason) from a comparison."""
    from tasks.decide.speed import speed_sentence

    name_a, name_b = names["a"], names["b"]
    where = scope(cmp)
    speed_text = speed_sentence(cmp.get("speed") or {}, (name_a, name_b))
    base = {"scope": where, "scope_note": SCOPES[where]}
    rows = cmp["suites"]
    for row in rows:
        row["verdict"] = ("cannot reach significance" if not row["can_reach_significance"] else "not significant")
    if all(r["direction"] == "tie" for r in rows):
        return {**base, "winner": None, "margin": 0.0, "margin_ci95": cmp["diff_ci95"], "significant": False,
                "upload": False, "outcome": "no quality difference",
                "reason": (f"No quality difference between {WHO[where]}: every suite ties ("
                           + ", ".join(r["suite"] for r in rows) + "), so no winner is named and nothing is "
                           f"uploaded. {speed_text}")}
    lo, hi = cmp.get("decision_ci", cmp["diff_ci95"])  # what decides: the CI at this look's alpha
    lo95, hi95 = cmp["diff_ci95"]  # what people read: the 95% CI (at a sequential look it is not the decision's)
    a_wins = cmp["diff"] > 0
    winner, loser = (name_a, name_b) if a_wins else (name_b, name_a)
    margin, ci = (cmp["diff"], [lo, hi]) if a_wins else (-cmp["diff"], [-hi, -lo])
    ci95 = [lo95, hi95] if a_wins else [-hi95, -lo95]
    if cmp["diff"] == 0:
        return {**base, **_same_composite(rows, names, ci95)}
    for row in rows:
        if row["significant"]:
            row["verdict"] = ("supports " if names[row["direction"]] == winner else "against ") + winner
    if replicated and not (cmp.get("seeds") or {}).get("seed_variance_measured"):
        outcome, why = "not significant", ("one training seed per arm so far: the seed variance is unmeasured, "
                                           "so no difference between the schedules can be claimed yet")
    else:
        outcome, why = significance(rows, ci, winner, loser, names)
    significant = outcome == "significant"
    upload = significant or spec.on_not_significant == "upload_best"
    at_look = f"; look {look['look']} of {look['max_looks']} tests at alpha {alpha:.3g}" if look else ""
    mdd = (cmp.get("power") or {}).get("mde")
    excludes = "" if significant else "; " + rules.within_ci_sentence(mdd, spec.power)
    reason = (f"{subject(winner, loser, where, cmp.get('seeds') or {})} by {human(margin)} composite "
              f"points (95% CI {interval(ci95)}{at_look}): "
              + ("a significant difference: " + why + "." if significant else
                 f"{outcome}: {why}{excludes}" + ("; the rule uploads the better one anyway." if upload else
                                                  "; the rule is: no upload."))
              + ("" if where == "schedules" else " This speaks for these two trained models, not for the schedules "
                 "(one training seed per arm).")) + _speed_note(cmp.get("speed") or {}, speed_text)
    return {**base, "winner": winner, "margin": margin, "margin_ci95": ci95, "margin_ci_decision": ci,
            "significant": significant, "upload": upload, "outcome": outcome, "reason": reason}
