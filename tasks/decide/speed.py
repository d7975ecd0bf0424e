"""The speed term of the decision: read from the isolated speed benchmark (tasks/bench/speed.py), with its
uncertainty (tasks/decide/rules.py:speed_terms), and in the composite only where a speed difference can be real.

Two models of one architecture in one format run the same computation: whatever their timings differ by is the
machine's noise, so by default (``decision.speed_in_composite: auto``) the speed difference is reported beside the
decision but left out of the composite, and says why. ``always`` puts it in (with its uncertainty), ``never`` leaves
it out. A speed.json without the timing design (an older one: all runs of one model, then of the other) is not
paired: its rounds are treated as independent samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks.config import DecisionSpec
from tasks.decide import rules
from tasks.store import read_json_object

PAIRED_DESIGN = "interleaved"


def read_speed(path: Path, names: tuple[str, str], replicates: dict[str, list[str]] | None = None
               ) -> dict[str, Any]:
    """The two arms' timings from a speed.json: {"samples": (A, B), "paired", "design", "same_build", "builds"}.

    ``replicates``: each arm's replicate labels. When the speed.json timed every replicate (its models are those
    labels), an arm's timing of round r is the mean over its replicates' round r, so every replicate counts and
    the rounds still pair the arms; a speed.json that timed the arms by name is read as it is."""
    record = read_json_object(Path(path), "speed.json of `alphagate speed`", ("models",))
    models = record["models"]
    members = {n: [n] for n in names}
    if not set(names) <= set(models) and replicates:
        members = {n: list(replicates.get(n, [n])) for n in names}
    wanted = [m for n in names for m in members[n]]
    if not set(wanted) <= set(models):
        raise ValueError(f"{path} measures {sorted(models)}, not both of {list(names)} (or every replicate: "
                         f"{wanted}); rerun the speed benchmark on the models being compared.")
    counts = {len(models[m]["tokens_per_s"]) for m in wanted}
    if len(counts) > 1 and any(len(v) > 1 for v in members.values()):
        raise ValueError(f"{path} times the replicates a different number of rounds ({sorted(counts)}); rerun the "
                         "speed benchmark on every replicate together.")
    samples = tuple([float(x) for x in np.mean([models[m]["tokens_per_s"] for m in members[n]], axis=0)]
                    for n in names)
    paired = record.get("design") == PAIRED_DESIGN and len(samples[0]) == len(samples[1])
    builds = sorted({(models[m].get("architecture"), models[m].get("file_type")) for m in wanted}, key=str)
    known = all(x is not None for build in builds for x in build)
    return {"samples": samples, "paired": paired, "replicates_timed": {n: members[n] for n in names},
            "design": record.get("design", "not recorded (taken as independent samples)"),
            "same_build": len(builds) == 1 if known else None, "builds": builds}


def speed_info(speed: dict[str, Any] | None, spec: DecisionSpec) -> dict[str, Any]:
    """What the decision records about speed, and whether (``in_composite``) and with what variance it enters."""
    if speed is None:
        return {"source": "not measured on its own: the speed term is left out", "in_composite": False}
    terms = rules.speed_terms(speed["samples"], spec.speed_reference_tok_s, speed["paired"])
    same = speed.get("same_build")
    if spec.speed_in_composite == "always":
        inside, why = True, "decision.speed_in_composite is 'always'"
    elif spec.speed_in_composite == "never":
        inside, why = False, "decision.speed_in_composite is 'never'"
    elif same is False:
        inside, why = True, "the two models differ in architecture or format, so their speeds can differ"
    else:
        inside, why = False, ("the two models share architecture and format" if same else
                              "the speed record does not say whether the two models share architecture and format")
        why += (", so a speed difference between them is timing noise; reported, not scored "
                "(decision.speed_in_composite: always puts it in)")
    a, b = speed["samples"]
    from scipy import stats

    terms["ci_half"] = float(stats.t.isf(0.025, max(terms["df"], 1))) * terms["var"] ** 0.5
    return {"source": "isolated benchmark", "design": speed["design"], "paired": terms["paired"],
            "replicates_timed": speed.get("replicates_timed"),
            "tok_s_a": list(a), "tok_s_b": list(b), **terms, "in_composite": inside, "why": why}


def speed_sentence(info: dict[str, Any], names: tuple[str, str]) -> str:
    """The speed figures for people: each model's mean tokens/s and the score difference with its 95% CI."""
    if info.get("source") != "isolated benchmark":
        return "Speed: not measured on its own."
    if "ci_half" in info:  # recorded by the decision: showing it needs no scipy (a cached run stays light)
        half = info["ci_half"]
    else:
        from scipy import stats

        half = float(stats.t.isf(0.025, max(info["df"], 1))) * info["var"] ** 0.5
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return (f"Speed: {names[0]} {mean(info['tok_s_a']):.1f} tok/s, {names[1]} {mean(info['tok_s_b']):.1f} tok/s "
            f"({info['design']}); speed score difference {info['diff']:+.4f} (95% CI [{info['diff'] - half:+.4f}, "
            f"{info['diff'] + half:+.4f}]), " + ("in the composite: " if info["in_composite"] else
                                                 "not in the composite: ") + info["why"] + ".")
