"""Every statistical rule of the decision has a check built from a counterexample, and each check is shown to matter:
``test_a_naive_rule_fails_the_statistical_checks`` replaces one rule at a time by its naive version (Holm by raw
p-values, the two-level variance by items only, the sign-aware rule by a sign-blind one, the noncentral-t minimum
detectable difference by z * SE, speed with its uncertainty by a point estimate, the comparability check by none)
and asserts that the checks then fail. The simulation draws seeds x items from known variance components
(vectorised, a few seconds): the planned minimum detectable difference must match the effect that the simulated
studies detect with 80% power within 15% at two item counts, and the false-positive rate must stay within 3-7%.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tasks.config import DecisionSpec
from tasks.decide import comparable, rules

SPEC = DecisionSpec(bootstrap=300)
CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def _entry(correct: list[int], limit: int | None = None) -> dict:
    records = [{"index": i, "correct": bool(c), "correct_norm": bool(c), "correct_flexible": bool(c)}
               for i, c in enumerate(correct)]
    return {"records": records, "summary": {"suite_version": 1, "data_sha256": "d", "inputs": {"limit": limit}}}


def _write(folder: Path, results: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suite, entry in results.items():
        (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in entry["records"]))
        (folder / f"{suite}.summary.json").write_text(json.dumps(entry["summary"]))
    return folder


@check
def check_holm_keeps_three_borderline_suites_from_being_significant():
    """Three suites each with McNemar p = 0.039 (10 vs 2 discordant pairs): raw, all three are significant; Holm
    multiplies the smallest by 3, so none is."""
    from tasks.decide.decision import compare

    a = _entry([1] * 10 + [0] * 2 + [1] * 20 + [0] * 8)
    b = _entry([0] * 10 + [1] * 2 + [1] * 20 + [0] * 8)
    cmp = compare({s: a for s in ("mmlu", "arc_challenge", "hellaswag")},
                  {s: b for s in ("mmlu", "arc_challenge", "hellaswag")}, SPEC)
    assert all(r["p_value"] == pytest.approx(0.0386, abs=1e-3) for r in cmp["suites"])
    from statsmodels.stats.multitest import multipletests

    ps = [0.01, 0.04, 0.03, 0.5, 0.012]
    assert rules.holm(ps) == pytest.approx(list(multipletests(ps, method="holm")[1]))
    assert not any(r["significant"] for r in cmp["suites"]), [r["p_holm"] for r in cmp["suites"]]


@check
def check_a_suite_significant_for_the_loser_makes_the_result_mixed():
    """The composite favours A, but the only significant suite favours B: that is evidence against A, not for it."""
    from tasks.decide.claims import significance

    rows = [{"suite": "mmlu", "significant": True, "direction": "b", "can_reach_significance": True},
            {"suite": "gsm8k", "significant": False, "direction": "a", "can_reach_significance": True}]
    outcome, why = significance(rows, [0.01, 0.05], "A", "B", {"a": "A", "b": "B", "tie": ""})
    assert outcome == "mixed" and "mmlu significantly favours B" in why


@check
def check_the_mdd_is_the_noncentral_t_figure():
    """At df 2 the exact minimum detectable difference is 5.65 SE (t quantiles added give 5.36, z gives 2.80);
    statsmodels' one-sample t power (df = n - 1, noncentrality d * sqrt(n)) agrees."""
    from statsmodels.stats.power import TTestPower

    assert rules.mdd(1.0, 2, 0.05, 0.8) == pytest.approx(5.6535, abs=2e-3)
    for n in (3, 5, 12):
        d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
        assert rules.mdd(1.0, n - 1, 0.05, 0.8) == pytest.approx(d * np.sqrt(n), rel=1e-3)
    assert rules.mdd(1.0, 0, 0.05, 0.8) == pytest.approx(2.8016, abs=1e-3)  # df 0: normal


@check
def check_speed_noise_does_not_exclude_zero():
    """Two models of equal true speed, answering every item alike, speed in the composite: the composite CI must
    cover 0 for most timing draws. A point estimate of the speeds gives a zero-width CI off 0 every time."""
    from tasks.decide.decision import compare

    rng = np.random.default_rng(3)
    spec = DecisionSpec(bootstrap=200, speed_in_composite="always")
    same = {"mmlu": _entry([1, 0] * 20)}
    covered = 0
    for _ in range(30):
        rounds = 95 + rng.normal(0, 3, 6)  # the machine's state, shared by the two models of a round
        timings = (list(rounds + rng.normal(0, 1.5, 6)), list(rounds + rng.normal(0, 1.5, 6)))
        cmp = compare(same, same, spec, speed={"samples": timings, "paired": True, "design": "interleaved",
                                               "same_build": True})
        covered += cmp["diff_ci95"][0] <= 0 <= cmp["diff_ci95"][1]
    assert covered >= 24, covered


@check
def check_gates_refuse_missing_and_unlike_comparisons():
    """A Q4 result lacking arc_challenge, and a base scored on 200 items against a variant scored on 10, must both
    hold the upload back with the suite named; decide refuses unlike evaluations outright."""
    from tasks.decide.decision import decide
    from tasks.decide.degrade import analyze

    good = [1, 1, 0, 1] * 50
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = _write(root / "base", {"mmlu": _entry(good, 200), "arc_challenge": _entry(good, 200)})
        bf16 = _write(root / "bf16", {"mmlu": _entry(good, 200), "arc_challenge": _entry(good, 200)})
        q4 = _write(root / "q4", {"mmlu": _entry(good, 200)})
        short = _write(root / "short", {"mmlu": _entry(good[:10], 10), "arc_challenge": _entry(good, 200)})
        report = analyze({"base/bf16": base, "m/bf16": bf16, "m/q4_k_m": q4, "s/bf16": short}, SPEC)
        assert report["gates"]["m/bf16"]["upload"] is True
        q4_gate = report["gates"]["m/q4_k_m"]
        assert not q4_gate["upload"] and any("arc_challenge is missing for m/q4_k_m" in r for r in q4_gate["reasons"])
        short_gate = report["gates"]["s/bf16"]
        assert not short_gate["upload"] and any("limit: 200 vs 10" in r for r in short_gate["reasons"])
        with pytest.raises(ValueError, match="not evaluated the same way"):
            decide({"a": base, "b": short}, SPEC)


def _simulate(rng, studies: int, seeds: int, items: int, sd: dict[str, float]) -> tuple[np.ndarray, ...]:
    """``studies`` null studies of two arms x ``seeds`` seeds x ``items`` items: score = item effect + arm x item
    interaction + seed effect + seed x item residual. Returns (D, SE, df, between-seed var, residual, interaction)
    estimated as the decision does (tasks/decide/replicates.py), batched over the studies."""
    from tasks.decide.replicates import item_df, item_term, residual_var

    shape = (studies, 1, items)
    item = rng.normal(0, 1, shape)
    arms = [item + rng.normal(0, sd["interaction"] / np.sqrt(2), shape)
            + rng.normal(0, sd["seed"], (studies, seeds, 1)) + rng.normal(0, sd["residual"], (studies, seeds, items))
            for _ in range(2)]
    per_seed = [x.mean(axis=-1) for x in arms]
    seed_var = (per_seed[0].var(axis=-1, ddof=1) + per_seed[1].var(axis=-1, ddof=1)) / 2
    item_part, _ = item_term(*arms)
    seed_part = seed_var * 2 / seeds
    se = np.sqrt(rules.variance_of_difference(seed_part, item_part))
    df = np.array([rules.effective_df([(s, 2 * seeds - 2), (i, d)]) for s, i, d in zip(seed_part, item_part,
                                                                                     item_df(*arms), strict=True)])
    diff = per_seed[0].mean(axis=-1) - per_seed[1].mean(axis=-1)
    return diff, se, df, seed_var, residual_var(*arms), item_part * items


def _power_80(diff: np.ndarray, se: np.ndarray, crit: np.ndarray) -> float:
    """The true effect that the simulated tests detect in 80% of studies: a shift of every study's difference."""
    lo, hi = 0.0, 10 * float(np.median(se))
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(np.abs(diff + mid) / se > crit) < 0.8 else (lo, mid)
    return hi


@check
def check_planned_mdd_matches_simulated_power_and_false_positives_stay_near_alpha():
    """Components measured at 400 items and scaled: the plan at 25 and at 400 items matches the simulated 80%-power
    effect within 15%, and the false-positive rate at alpha 0.05 stays within 3-7% over 2 x 3000 studies."""
    from tasks.decide.planning import plan

    rng = np.random.default_rng(11)
    sd = {"seed": 0.03, "interaction": 0.2, "residual": 0.3}
    seeds, measured_at = 3, 400
    figures = {}
    sims = {n: _simulate(rng, 3000, seeds, n, sd) for n in (25, measured_at)}
    _, _, _, seed_var, residual, interaction = sims[measured_at]
    measured = {"total": {"mmlu": float(np.mean(interaction + 2 * residual))},
                "interaction": {"mmlu": float(np.mean(interaction))}, "residual": {"mmlu": float(np.mean(residual))},
                "seed_var": float(np.mean(seed_var)), "measured_items": {"mmlu": measured_at}}
    for n, (diff, se, df, *_) in sims.items():
        crit = stats.t.isf(0.025, df)
        row = next(r for r in plan({"mmlu": n}, SPEC, measured=measured, seeds=(seeds,))["rows"])
        figures[n] = {"planned": row["mde_at_all_items"], "simulated": _power_80(diff, se, crit),
                      "false_positive_rate": float(np.mean(np.abs(diff) / se > crit))}
    print(f"planned vs simulated 80%-power effect, false-positive rate: {figures}")
    for n, f in figures.items():
        assert f["planned"] == pytest.approx(f["simulated"], rel=0.15), (n, f)
        assert 0.03 <= f["false_positive_rate"] <= 0.07, (n, f)


@check
def check_the_exact_sign_flip_test_with_ties_and_zeros():
    """Five equal differences and a zero: 2 * 0.5**5 exactly, the smallest p five differences can give."""
    assert rules.sign_flip_p(np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.0])) == pytest.approx(0.0625)
    assert rules.sign_flip_p(np.array([1.0, -1.0, 2.0, 2.0])) == pytest.approx(0.375)  # 6 of 16 as extreme


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_statistical_check(name):
    CHECKS[name]()


def _failures() -> list[str]:
    """The first check that fails (one is enough to show the rule is guarded), or none."""
    for name, fn in CHECKS.items():
        try:
            with np.errstate(divide="ignore"):  # a naive zero variance divides by zero
                fn()
        except (AssertionError, pytest.fail.Exception):  # a failed assert, or pytest.raises that did not raise
            return [name]
    return []


def _sign_blind(rows, winner, loser, names):
    return [r["suite"] for r in rows if r["significant"]], []


def _z_mdd(se, df, alpha, power):
    return (stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) * se


def _point_speed(samples, reference, paired):
    return {**ORIGINAL_SPEED(samples, reference, paired), "var": 0.0}


ORIGINAL_SPEED = rules.speed_terms
NAIVE = {"holm -> raw p": (rules, "holm", lambda p: list(p)),
         "two-level variance -> items only": (rules, "variance_of_difference", lambda seed, items: items),
         "sign-aware -> sign-blind": (rules, "sides", _sign_blind),
         "noncentral-t MDD -> z * SE": (rules, "mdd", _z_mdd),
         "speed with uncertainty -> point estimate": (rules, "speed_terms", _point_speed),
         "comparability check -> none": (comparable, "problems", lambda loaded, folders: {"missing": {},
                                                                                          "different": {}})}


@pytest.mark.parametrize("naive", sorted(NAIVE))
def test_a_naive_rule_fails_the_statistical_checks(naive, monkeypatch):
    module, name, replacement = NAIVE[naive]
    monkeypatch.setattr(module, name, replacement)
    assert _failures(), f"with {naive} every statistical check still passes: the rule is unguarded"
