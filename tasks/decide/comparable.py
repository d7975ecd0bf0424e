"""Like with like: the one comparability check that the decision and the degradation/quantization gates share.

Two results of a suite are compared item by item only when they were evaluated the same way (suite version, prompt,
shot count, item set, limit and every other evaluation input except the model). A suite that one side has and the
other lacks is named: the decision reports it as missing when the run said which suites it expected (else it
refuses), and the gates hold the format back unless the config lists that suite in ``decision.optional_suites``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# what must be equal for two results of one suite to be compared item by item
COMPARABLE = ("suite_version", "prompt_sha256", "num_fewshot", "data_sha256")


def identity(summary: dict[str, Any]) -> dict[str, Any]:
    """Everything an evaluation's result depends on except the model itself (the judge, context size, tags ...)."""
    inputs = {k: v for k, v in summary.get("inputs", {}).items() if k not in ("model_sha256", "keep_reasoning")}
    return {**{k: summary.get(k) for k in COMPARABLE}, "limit": inputs.pop("limit", None), **inputs}


def problems(loaded: dict[str, dict], folders: dict[str, Path | str]) -> dict[str, Any]:
    """{"missing": suite -> [the sides lacking it], "different": suite -> why the two evaluations differ}
    for two sides (label -> suite -> {"records", "summary"})."""
    (a, ra), (b, rb) = loaded.items()
    missing = {s: [m for m, r in ((a, ra), (b, rb)) if s not in r] for s in sorted(set(ra) ^ set(rb))}
    different = {}
    for suite in sorted(set(ra) & set(rb)):
        ia, ib = identity(ra[suite]["summary"]), identity(rb[suite]["summary"])
        if ia != ib:
            keys = sorted(set(ia) | set(ib), key=str)
            different[suite] = (f"{suite} was not evaluated the same way for {a} ({folders[a]}) and {b} "
                                f"({folders[b]}): " + "; ".join(f"{k}: {ia.get(k)!r} vs {ib.get(k)!r}"
                                                                for k in keys if ia.get(k) != ib.get(k)))
    return {"missing": missing, "different": different}


def check(loaded: dict[str, dict], folders: dict[str, Path | str], expected_suites: list[str] | None) -> None:
    """Refuse (a clear error) two sides that were not evaluated the same way: another suite version, prompt, shot
    count, item set or limit for a suite both have, or, unless the run named the suites it expected (then absent
    ones are reported as missing), different sets of suites. Deciding on the overlap alone would be a verdict
    on a part the user did not ask about."""
    (a, ra), (b, rb) = loaded.items()
    if not set(ra) & set(rb):
        raise ValueError(f"{a} ({folders[a]}) and {b} ({folders[b]}) have no suite in common ({sorted(ra)} vs "
                         f"{sorted(rb)}): there is nothing to compare. Evaluate both on the same suites.")
    found = problems(loaded, folders)
    if expected_suites is None and found["missing"]:
        raise ValueError(f"{a} ({folders[a]}) has suites {sorted(ra)} but {b} ({folders[b]}) has {sorted(rb)}. "
                         "Evaluate both on the same suites (or decide on folders holding the same set).")
    if found["different"]:
        raise ValueError("; ".join(found["different"].values())
                         + ". Re-evaluate both with the same suite version, data and limit.")


def gate_reasons(loaded: dict[str, dict], folders: dict[str, Path | str], optional: list[str]) -> list[str]:
    """The gates' view of the same check: each difference, and each suite missing on either side unless it is
    optional, as a reason that holds the upload back."""
    (a, _), (b, _) = loaded.items()
    found = problems(loaded, folders)
    reasons = [f"{why}; the two cannot be compared item by item (re-evaluate both with the same suite version, "
               "data and limit)" for why in found["different"].values()]
    for suite, lacking in found["missing"].items():
        if suite in optional:
            continue
        present = b if lacking == [a] else a
        reasons.append(f"{suite} is missing for {', '.join(lacking)} (evaluated for {present}), so {b} cannot be "
                       f"shown not to have lost on it against {a}; evaluate it, or list {suite} in "
                       "decision.optional_suites")
    return reasons
