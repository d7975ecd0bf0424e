"""Seeds as replicates: the two-level decision, power, and the repeated-looks rule (tasks/decide/replicates.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tasks.config import DecisionSpec
from tasks.decide.decision import decide
from tasks.decide.planning import plan
from tasks.decide.replicates import analyse, look_alpha, spent_alpha

SPEC = DecisionSpec(bootstrap=500)
N_ITEMS = 400


def _answers(accuracy: float, seed: int, latent: np.ndarray) -> np.ndarray:
    """Exactly round(accuracy * n) correct answers, on the items easiest for this model: a shared item difficulty
    (``latent``) plus this training seed's own noise, so replicates agree on most items as real ones do."""
    noise = np.random.default_rng(seed).normal(0, 0.15, len(latent))
    order = np.argsort(latent + noise)
    correct = np.zeros(len(latent), dtype=int)
    correct[order[: round(accuracy * len(latent))]] = 1
    return correct


def _write_mmlu(folder, correct) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mmlu.jsonl").write_text("".join(json.dumps({"index": i, "correct": bool(c), "correct_norm": bool(c)})
                                               + "\n" for i, c in enumerate(correct)))
    (folder / "mmlu.summary.json").write_text(json.dumps({"suite": "mmlu", "suite_version": 1, "limit": None}))


@pytest.fixture
def seed_dominated(tmp_path):
    """Arm A's seeds at 0.70 and 0.50, arm B's at 0.52 and 0.48, 400 MMLU items each: the seeds differ more than
    the arms."""
    latent = np.random.default_rng(0).random(N_ITEMS)
    folders = {}
    for arm, accuracies in (("a", (0.70, 0.50)), ("b", (0.52, 0.48))):
        folders[arm] = []
        for i, acc in enumerate(accuracies):
            folder = tmp_path / f"{arm}{i}"
            _write_mmlu(folder, _answers(acc, seed=10 * i + (arm == "b"), latent=latent))
            folders[arm].append(folder)
    return folders


def test_seed_noise_is_not_mistaken_for_a_schedule_effect(seed_dominated, tmp_path):
    a, b = seed_dominated["a"], seed_dominated["b"]
    # a naive, items-only analysis: one trained model per arm, 400 paired items -> "significant"
    naive = decide({"a": a[0], "b": b[0]}, SPEC)
    assert naive["winner"] == "a" and naive["significant"] is True
    assert naive["seeds"]["seed_variance_measured"] is False and "these two trained models only" in \
        naive["seeds"]["note"]
    # the two-level decision: seeds are the replicates of a schedule
    record = decide({"a": a, "b": b}, SPEC, tmp_path / "decision")
    assert record["winner"] == "a" and record["margin"] == pytest.approx(0.10)
    assert record["significant"] is False and record["outcome"] == "not significant"
    # the first sentence states the scope: one seed per arm speaks for two models, replicates for the schedules
    assert naive["reason"].startswith("The model trained with a scored higher than the one trained with b")
    assert naive["scope"] == "models" and record["scope"] == "schedules"
    assert record["reason"].startswith("The a schedule scored higher than b over 2 training seeds per arm")
    assert (f"differences larger than {record['power']['mde']:.4g} composite points were ruled out at 80% power"
            in record["reason"])
    assert record["margin_ci95"][0] < 0 < record["margin_ci95"][1]
    # ... while the item part of the variance alone would have excluded 0: it is the seed part that decides
    var = record["variance"]
    assert 1.96 * np.sqrt(var["item_var_term"]) < 0.10 < 1.96 * np.sqrt(var["item_var_term"] + var["seed_var_term"])
    assert var["between_seed_var"] == pytest.approx(((0.70 - 0.60) ** 2 * 2 + (0.52 - 0.50) ** 2 * 2) / 2)
    assert var["between_seed_df"] == 2
    assert record["power"]["mde"] > record["margin"]  # no effect of this size could have been detected
    assert record["power"]["target_detectable"] is False
    # and with seeds this noisy, even every MMLU item and 16 seeds per arm would not detect 0.02
    assert record["power"]["to_detect_target"]["fewest_seeds_per_arm"] is None
    per_seed = record["per_seed_composites"]
    assert [round(r["composite"], 4) for r in per_seed["a"]] == [0.70, 0.50]
    assert [r["label"] for r in per_seed["b"]] == ["b#1", "b#2"]
    assert record["upload_label"] == "a#1"  # the winning arm's best replicate would be the one published
    md = (tmp_path / "decision" / "decision.md").read_text()
    assert "Minimum detectable" in md and "seed-level t (df=2, seeds and items)" in md and "per-seed composites" in md


def test_consistent_seeds_do_make_a_significant_schedule_effect(tmp_path):
    """The counterpart: when every seed of A beats every seed of B by about as much, three seeds suffice."""
    latent = np.random.default_rng(1).random(N_ITEMS)
    folders = {"a": [], "b": []}
    for arm, accuracies in (("a", (0.70, 0.71, 0.69)), ("b", (0.50, 0.51, 0.49))):
        for i, acc in enumerate(accuracies):
            folder = tmp_path / f"{arm}{i}"
            _write_mmlu(folder, _answers(acc, seed=100 + 10 * i + (arm == "b"), latent=latent))
            folders[arm].append(folder)
    record = decide(folders, SPEC, labels={"a": ["a-s1", "a-s2", "a-s3"], "b": ["b-s1", "b-s2", "b-s3"]})
    assert record["significant"] is True and record["winner"] == "a"
    assert record["power"]["mde"] < record["margin"]
    assert record["power"]["to_detect_target"]["suite_sizes"] == {"mmlu": 14042}  # the full split to draw from
    assert record["upload_label"] == "a-s2"


def test_one_seed_per_arm_in_a_study_cannot_be_significant(seed_dominated):
    look = look_alpha(1, 5, 0.05, "pocock")
    record = decide({"a": [seed_dominated["a"][0]], "b": [seed_dominated["b"][0]]}, SPEC, look=look)
    assert record["significant"] is False and "seed variance is unmeasured" in record["reason"]
    assert record["alpha"] == pytest.approx(look["alpha_this_look"])


def test_spending_functions_spend_exactly_alpha_and_obrien_fleming_almost_nothing_early():
    for kind in ("obrien_fleming", "pocock"):
        looks = [look_alpha(k, 10, 0.05, kind)["alpha_this_look"] for k in range(1, 11)]
        assert sum(looks) == pytest.approx(0.05) and all(x >= 0 for x in looks)
        assert looks[0] == 0  # look 1 (one seed per arm) can never decide, so it spends nothing
    assert spent_alpha(0.1, 0.05, "obrien_fleming") < 1e-6 < spent_alpha(0.1, 0.05, "pocock")
    assert look_alpha(2, 10, 0.05, "pocock")["alpha_this_look"] == pytest.approx(spent_alpha(1 / 9, 0.05, "pocock"))
    with pytest.raises(ValueError, match="outside 1..10"):
        look_alpha(11, 10, 0.05, "pocock")


def _null_study(rng, looks: int, items: int = 120) -> list[tuple[np.ndarray, np.ndarray]]:
    """One study under a null effect: each night a new seed per arm; a seed shifts its accuracy by N(0, 0.04)."""
    p = rng.uniform(0.2, 0.8, items)
    nights = []
    for _ in range(looks):
        pair = []
        for _arm in range(2):
            shift = rng.normal(0, 0.04)
            pair.append((rng.random(items) < np.clip(p + shift, 0, 1)).astype(float))
        nights.append(tuple(pair))
    return nights


def test_repeated_looks_keep_the_false_positive_rate_at_or_below_alpha():
    """Under a null effect, over many simulated studies of 8 nightly looks, the share of studies ever declared
    significant stays at or below alpha (tolerance: 2 binomial standard errors of the simulated share); testing every
    look at the full alpha (the naive rule) does not."""
    rng = np.random.default_rng(2026)
    studies, looks, alpha = 400, 8, 0.05
    corrected = naive = 0
    for _ in range(studies):
        nights = _null_study(rng, looks)
        hit_c = hit_n = False
        for k in range(1, looks + 1):
            a = np.stack([n[0] for n in nights[:k]])
            b = np.stack([n[1] for n in nights[:k]])
            level = look_alpha(k, looks, alpha, "obrien_fleming")["alpha_this_look"]
            comp = analyse({"mmlu": (a, b)}, SPEC, level)["composite"]
            if comp["df"] > 0:  # one seed per arm never decides a study
                hit_c |= comp["p_value"] < level
                hit_n |= comp["p_value"] < alpha
        corrected += hit_c
        naive += hit_n
    tolerance = 2 * np.sqrt(alpha * (1 - alpha) / studies)
    assert corrected / studies <= alpha + tolerance
    assert naive / studies > alpha + tolerance  # why the correction exists


def test_plan_more_seeds_detect_less_and_seed_variance_caps_what_items_can_do():
    sizes = {"mmlu": 14042, "gsm8k": 1319, "arc_challenge": 1172, "hellaswag": 10042}
    spec = DecisionSpec(target_effect=0.02)
    result = plan(sizes, spec, measured={"seed_var": 0.0001})  # a between-seed SD of 0.01 composite points
    rows = {r["seeds_per_arm"]: r for r in result["rows"]}
    assert rows[2]["mde_at_all_items"] > rows[8]["mde_at_all_items"] > rows[16]["mde_at_all_items"]
    assert rows[2]["items_per_suite_for_target"] is None  # seed noise alone exceeds the target with 2 seeds
    assert result["fewest_seeds_for_target"] is not None and result["fewest_seeds_for_target"] > 2
    n = result["fewest_seeds_for_target"]
    assert rows[n]["mde_at_all_items"] <= 0.02
    assert result["seed_var_source"] == "measured" and result["item_diff_var_source"]["mmlu"] == "prior"
    # a limit shrinks the items used, and the MDE grows
    limited = plan(sizes, spec, measured={"seed_var": 0.0001}, limit=40)
    assert limited["rows"][3]["mde_at_items_used"] > rows[4]["mde_at_items_used"]
    assert rows[1]["scope"] == "models" and {r["scope"] for r in result["rows"][1:]} == {"schedules"}


def test_plan_scales_the_seed_variance_to_the_item_count():
    """A between-seed variance measured on 1,000 items holds the answer noise over 1,000; reused unscaled at 50
    items (the naive plan) it understates the seed-to-seed spread there, and at every item it overstates it."""
    spec = DecisionSpec()
    measured = {"total": {"mmlu": 0.2}, "interaction": {"mmlu": 0.02}, "residual": {"mmlu": 0.09},
                "seed_var": 0.09 / 1000, "measured_items": {"mmlu": 1000}}  # all of it item noise: no seed component
    result = plan({"mmlu": 14042}, spec, measured=measured, limit=50, seeds=(3,))
    assert result["seed_component"] == pytest.approx(0.0, abs=1e-12)
    row = result["rows"][0]
    true_var_50 = (0.09 / 50) * 2 / 3 + 0.02 / 50
    assert row["mde_at_items_used"] > 2.8 * true_var_50 ** 0.5  # not below the z figure of the scaled variance
    unscaled_50 = (0.09 / 1000) * 2 / 3 + 0.02 / 50
    assert row["mde_at_items_used"] > 1.5 * 3.0 * unscaled_50 ** 0.5
    # at every MMLU item the seeds no longer cap what items can do
    assert row["largest_variance_at_all_items"] == "mmlu"


def test_unequal_seed_counts_use_welch_so_the_noisier_small_arm_does_not_inflate_false_positives():
    """Arm A: 2 seeds with seed SD 0.05; arm B: 4 seeds with SD 0.01; no effect. A pooled seed variance (df = 4)
    takes B's small spread for A's and rejects far more often than alpha; Welch keeps each arm's own variance."""
    from tasks.decide.replicates import seed_term

    rng = np.random.default_rng(7)
    alpha, studies, items = 0.05, 1500, 60
    welch = pooled = 0
    for _ in range(studies):
        p = rng.uniform(0.3, 0.7, items)
        a = np.stack([(rng.random(items) < np.clip(p + rng.normal(0, 0.05), 0, 1)) for _ in range(2)]).astype(float)
        b = np.stack([(rng.random(items) < np.clip(p + rng.normal(0, 0.01), 0, 1)) for _ in range(4)]).astype(float)
        comp = analyse({"mmlu": (a, b)}, SPEC, alpha)["composite"]
        assert comp["seed_test"] == "welch"
        welch += comp["p_value"] < alpha
        from scipy import stats

        ca, cb = a.mean(axis=1), b.mean(axis=1)
        s2 = (np.var(ca, ddof=1) + 3 * np.var(cb, ddof=1)) / 4
        t = (ca.mean() - cb.mean()) / np.sqrt(s2 * (1 / 2 + 1 / 4))
        pooled += 2 * stats.t.sf(abs(t), 4) < alpha
    tolerance = 2 * np.sqrt(alpha * (1 - alpha) / studies)
    assert welch / studies <= alpha + tolerance < pooled / studies
    assert seed_term(np.array([0.5]), np.array([0.4, 0.6]))["assumed"] == "a"  # one seed: the other arm's variance


def test_identical_replicates_on_one_item_are_not_a_significant_difference(tmp_path):
    for arm, value in (("a", 1), ("b", 0)):
        for i in range(2):
            _write_mmlu(tmp_path / f"{arm}{i}", [value])
    record = decide({"a": [tmp_path / "a0", tmp_path / "a1"], "b": [tmp_path / "b0", tmp_path / "b1"]}, SPEC)
    assert record["margin"] == 1.0 and record["significant"] is False
    assert record["suites"][0]["p_value"] == 1.0 and record["suites"][0]["can_reach_significance"] is False


def test_five_items_on_which_replicates_agree_do_not_claim_to_detect_a_small_effect():
    """Variances measured on 5 items and 2 seeds can be ~0 (the models barely differ): taken at face value they make
    a small difference look detectable. Shrunk toward the priors, the MDE says what 5 items can really show."""
    from tasks.decide.seeds import power_and_variance

    a = np.array([[0.50, 0.60, 0.40, 0.70, 0.30], [0.501, 0.60, 0.40, 0.70, 0.30]])
    b = np.array([[0.50, 0.60, 0.40, 0.70, 0.301], [0.50, 0.601, 0.40, 0.70, 0.30]])
    comp = analyse({"mmlu": (a, b)}, SPEC, 0.05)["composite"]
    power = power_and_variance(comp, SPEC, 0.05)["power"]
    assert power["mde_measured"] < 0.02 < 0.5 < power["mde"]  # face value: "detects 0.02" on 5 items
    assert power["target_detectable"] is False
