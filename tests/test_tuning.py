from __future__ import annotations

import json
import math
import random

import pytest

from alpha_gate.schedules import PHI_MINUS_2, SigmoidSchedule
from alpha_gate.tuning import HISTORY_FORMAT, SigmoidBayesTuner

K_BOUNDS, M_BOUNDS = (1.0, 30.0), (0.1, 0.9)


def toy(s: SigmoidSchedule) -> float:
    """A smooth 2-D bowl with its minimum at k = 8, midpoint = 0.4 (value 0)."""
    return (math.log(s.k) - math.log(8.0)) ** 2 + 4.0 * (s.midpoint - 0.4) ** 2


def _run(tuner: SigmoidBayesTuner, n: int) -> None:
    for _ in range(n):
        s = tuner.ask()
        tuner.tell(s, toy(s))


def test_beats_random_search_within_15_trials_on_average_over_10_seeds():
    tuned, rand = [], []
    for seed in range(10):
        tuner = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, seed=seed)
        _run(tuner, 15)
        tuned.append(toy(tuner.best()))
        rng = random.Random(seed)  # random search over the same space (k log-uniform, as the tuner's prior)
        draws = [SigmoidSchedule(math.exp(rng.uniform(*map(math.log, K_BOUNDS))), rng.uniform(*M_BOUNDS))
                 for _ in range(15)]
        rand.append(min(toy(s) for s in draws))
    assert sum(tuned) / 10 < sum(rand) / 10
    assert sum(t < r for t, r in zip(tuned, rand, strict=True)) >= 7  # not carried by one lucky seed
    assert sum(tuned) / 10 < 0.01  # and actually near the minimum


def test_same_seed_same_proposals_and_best_is_the_measured_minimum():
    a, b = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, seed=4), SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, seed=4)
    _run(a, 8)
    _run(b, 8)
    assert [t.k for t in a.trials] == [t.k for t in b.trials]
    assert min(a.trials, key=lambda t: t.value).schedule == a.best()
    assert a.best().base == PHI_MINUS_2


def test_history_round_trip_and_warm_start(tmp_path):
    path = tmp_path / "nested" / "tuner.json"
    first = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, history_path=path, seed=1)
    _run(first, 7)
    data = json.loads(path.read_text())
    assert data["format"] == HISTORY_FORMAT and len(data["trials"]) == 7
    assert list(path.parent.iterdir()) == [path]  # atomic writes leave no temporary files

    second = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, history_path=path, seed=1)
    assert second.trials == first.trials
    assert second.ask() == first.ask()  # warm start: the proposal an uninterrupted run would make
    _run(second, 3)
    assert len(SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, history_path=path, seed=1).trials) == 10
    assert second.best() == min(second.trials, key=lambda t: t.value).schedule


def test_warm_started_tuner_uses_earlier_trials():
    # After 12 good trials a warm tuner should propose near the optimum, a cold one uniformly.
    warm = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, seed=0)
    _run(warm, 12)
    cold = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, seed=0)
    assert toy(warm.ask()) < 0.05
    assert cold.ask() != warm.ask()


def test_trials_of_another_base_or_outside_bounds_are_kept_but_not_used(tmp_path):
    path = tmp_path / "h.json"
    zero = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, history_path=path, base=0.0)
    zero.tell(SigmoidSchedule(5.0, 0.5, 0.0), 0.1)
    phi = SigmoidBayesTuner((1.0, 4.0), M_BOUNDS, history_path=path)
    assert phi.usable_trials == [] and len(phi.trials) == 1
    with pytest.raises(RuntimeError, match="No trials with this base"):
        phi.best()
    phi.tell(SigmoidSchedule(2.0, 0.5), 0.3)
    assert len(json.loads(path.read_text())["trials"]) == 2


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_objective_is_refused(value):
    tuner = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS)
    with pytest.raises(ValueError, match="finite"):
        tuner.tell(tuner.ask(), value)
    assert tuner.trials == []


def test_out_of_space_and_wrong_type_are_refused():
    tuner = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS)
    with pytest.raises(ValueError, match="outside"):
        tuner.tell(SigmoidSchedule(50.0, 0.5), 1.0)
    with pytest.raises(ValueError, match="outside"):
        tuner.tell(SigmoidSchedule(5.0, 0.5, 0.0), 1.0)  # other base
    with pytest.raises(TypeError, match="SigmoidSchedule"):
        tuner.tell((5.0, 0.5), 1.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(k_bounds=(0.0, 5.0)), "k_bounds"), (dict(k_bounds=(5.0, 1.0)), "k_bounds"),
    (dict(midpoint_bounds=(0.0, 0.5)), "midpoint_bounds"), (dict(midpoint_bounds=(0.2, 1.0)), "midpoint_bounds"),
    (dict(k_bounds=5.0), "pair"), (dict(base=1.0), "base"), (dict(n_initial_points=0), "n_initial_points"),
])
def test_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SigmoidBayesTuner(**kwargs)


def test_corrupt_history_names_the_file(tmp_path):
    path = tmp_path / "tuner.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="tuner.json.*not valid JSON"):
        SigmoidBayesTuner(history_path=path)
    path.write_text(json.dumps({"format": HISTORY_FORMAT, "trials": [{"k": -1, "midpoint": 0.5, "base": 0,
                                                                      "value": 1.0}]}))
    with pytest.raises(ValueError, match=r"trials\[0\]"):
        SigmoidBayesTuner(history_path=path)
    path.write_text(json.dumps({"trials": []}))
    with pytest.raises(ValueError, match="format"):
        SigmoidBayesTuner(history_path=path)
