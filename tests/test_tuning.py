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


# -- experiment fingerprint (tasks/train/tune.py): trials of other experiments never count -----------------------------

BASE_SHA, DATA_SHA = "b" * 64, "d" * 64


def _config(**sections):
    from tasks.config import BaseModelSpec, PipelineConfig, TrainSpec, TunerSpec

    fields = dict(name="fp", base_model=BaseModelSpec(name="fp", hub_id="org/model"),
                  train=TrainSpec(seed=1), tuner=TunerSpec(n_trials=3, proxy_steps=4, n_initial_points=2,
                                                            k_bounds=K_BOUNDS, midpoint_bounds=M_BOUNDS))
    config = PipelineConfig(**fields)
    for name, update in sections.items():
        config = config.model_copy(update={name: getattr(config, name).model_copy(update=update)})
    return config


def _fingerprint(config, base=BASE_SHA, data=DATA_SHA):
    from tasks.train.tune import experiment_fingerprint

    return experiment_fingerprint(config, base, data)[0]


@pytest.mark.parametrize("section,update,same", [
    ("train", {"seed": 99}, True),  # replicates of one experiment share its trials
    ("train", {"seeds": [1, 2, 3]}, True),  # adding replicates must not orphan earlier trials
    ("tuner", {"per_seed": True}, False),  # ... unless each seed tunes on its own
    ("train", {"max_steps": 500}, True),  # proxies train tuner.proxy_steps, not max_steps
    ("tuner", {"n_trials": 9, "n_initial_points": 1}, True),  # how long to search, not what is measured
    ("train", {"learning_rate": 1e-3}, False), ("train", {"batch_size": 8}, False),
    ("train", {"max_length": 256}, False), ("lora", {"r": 8}, False), ("gates", {"learning_rate": 1e-2}, False),
    ("pet", {"scale": "sum"}, False), ("tuner", {"proxy_steps": 5}, False),
    ("tuner", {"k_bounds": (1.0, 20.0)}, False), ("tuner", {"midpoint_bounds": (0.2, 0.9)}, False),
    ("tuner", {"base": "zero"}, False),
])
def test_fingerprint_covers_the_objective_but_not_the_seed(section, update, same):
    assert (_fingerprint(_config(**{section: update})) == _fingerprint(_config())) is same


def test_fingerprint_covers_base_model_and_data_and_lists_its_inputs():
    from tasks.train.tune import experiment_fingerprint

    fp, inputs = experiment_fingerprint(_config(), BASE_SHA, DATA_SHA)
    assert fp != _fingerprint(_config(), base="c" * 64) and fp != _fingerprint(_config(), data="e" * 64)
    assert inputs["base_model_sha256"] == BASE_SHA and inputs["data_sha256"] == DATA_SHA
    assert inputs["proxy_steps"] == 4 and inputs["space"]["k_bounds"] == list(K_BOUNDS)
    assert "seed" not in inputs["training"]["train"] and inputs["training"]["train"]["learning_rate"] == 2e-4
    assert inputs["objective"]["metric"] == "final_eval_loss"


class FakeFit:
    """Stands in for tasks.train.fit.fit: the toy bowl shifted by ``offset``; records every proposal."""

    def __init__(self, offset=1.0):
        self.offset, self.seen = offset, []

    def __call__(self, config, base_dir, data_dir, schedule, max_steps, scratch, **kwargs):
        assert max_steps == config.tuner.proxy_steps
        self.seen.append(schedule)
        return {"final_eval_loss": toy(schedule) + self.offset, "train_seconds": 0.0}


def _tune(monkeypatch, config, history, run_id="run", offset=1.0):
    from tasks.train import fit as fit_mod
    from tasks.train.tune import tune_sigmoid

    fake = FakeFit(offset)
    monkeypatch.setattr(fit_mod, "fit", fake)
    best, info = tune_sigmoid(config, None, None, history, run_id, base_sha256=BASE_SHA, data_sha256=DATA_SHA)
    return best, info, fake.seen


@pytest.mark.parametrize("section,update", [
    ("train", {"learning_rate": 1e-3}), ("tuner", {"proxy_steps": 2}), ("tuner", {"k_bounds": (2.0, 20.0)}),
    ("tuner", {"midpoint_bounds": (0.3, 0.8)}), ("data", None),
])
def test_a_better_trial_of_another_experiment_is_neither_chosen_nor_counted(tmp_path, monkeypatch, section, update):
    # A naive tuner (best over the whole history, count by a run id or by all trials) would pick this trial: it lies
    # inside the current bounds, has the same base and a far better objective; it was measured on another objective.
    history = tmp_path / "h.json"
    other = _config(**({section: update} if update else {}))
    other_fp = _fingerprint(other, data="e" * 64 if section == "data" else DATA_SHA)
    foreign = SigmoidSchedule(8.0, 0.4)
    SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, history, fingerprint=other_fp).tell(foreign, -5.0, meta={"run_id": "run"})

    best, info, seen = _tune(monkeypatch, _config(), history)
    assert len(seen) == 3  # the foreign trial is not counted as done (same run id even)
    assert best != foreign and info["best_value"] >= 1.0
    assert info["trials_this_experiment"] == 3 and info["trials_other_experiments"] == 1
    assert info["trials_total"] == 4  # kept in the file, untouched
    _, _, cold = _tune(monkeypatch, _config(), tmp_path / "fresh.json")
    assert seen == cold  # and it did not steer the surrogate either


def test_old_trials_without_fingerprint_are_ignored_with_a_log_line(tmp_path, monkeypatch, caplog):
    history = tmp_path / "h.json"
    legacy = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, history, seed=1)  # the pre-fingerprint format: meta has no key
    legacy.tell(SigmoidSchedule(8.0, 0.4), -5.0, meta={"run_id": "run", "trial": 0})
    legacy.tell(SigmoidSchedule(3.0, 0.6), -4.0, meta={"run_id": "run", "trial": 1})
    with caplog.at_level("INFO", logger="tasks.train.tune"):
        best, info, seen = _tune(monkeypatch, _config(), history)
    assert len(seen) == 3 and info["best_value"] >= 1.0 and info["trials_ignored_no_fingerprint"] == 2
    assert "2 trial(s) without an experiment fingerprint" in caplog.text


def test_same_fingerprint_trials_of_an_earlier_run_count_and_warm_start(tmp_path, monkeypatch):
    from tasks.train.tune import experiment_fingerprint

    history = tmp_path / "h.json"
    _, first, seen1 = _tune(monkeypatch, _config(), history, run_id="night1")
    assert len(seen1) == 3
    trials = json.loads(history.read_text())["trials"]
    fp, inputs = experiment_fingerprint(_config(), BASE_SHA, DATA_SHA)
    assert all(t["meta"]["fingerprint"] == fp and t["meta"]["fingerprint_inputs"] == inputs for t in trials)

    # a replicate with another seed: same experiment, its 3 trials are done, nothing is re-measured
    reseeded = _config(train={"seed": 77})
    best, info, seen = _tune(monkeypatch, reseeded, history, run_id="night2")
    assert seen == [] and info["fingerprint"] == first["fingerprint"] and best.to_dict() == first["best"]

    # asked for more trials: only the missing ones, proposed from the earlier trials (warm start)
    more = _config(train={"seed": 77}, tuner={"n_trials": 5})
    assert _fingerprint(more) == fp
    expected = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, history, seed=77, n_initial_points=2, fingerprint=fp).ask()
    cold = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, seed=77, n_initial_points=2, fingerprint=fp).ask()
    best, info, seen = _tune(monkeypatch, more, history, run_id="night3")
    assert len(seen) == 2 and seen[0] == expected != cold
    assert info["trials_this_experiment"] == 5 and info["trials_this_run"] == 2
    assert info["best_value"] == min(t["value"] for t in json.loads(history.read_text())["trials"])


def test_tuner_with_a_fingerprint_stamps_and_scopes_its_trials(tmp_path):
    path = tmp_path / "h.json"
    a = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, path, fingerprint="A")
    a.tell(SigmoidSchedule(8.0, 0.4), 0.0)
    b = SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, path, fingerprint="B")
    assert b.experiment_trials == [] and b.usable_trials == [] and len(b.trials) == 1
    with pytest.raises(RuntimeError, match="fingerprint"):
        b.best()
    b.tell(SigmoidSchedule(3.0, 0.6), 2.0)
    assert b.best() == SigmoidSchedule(3.0, 0.6)
    assert [t["meta"]["fingerprint"] for t in json.loads(path.read_text())["trials"]] == ["A", "B"]
    assert SigmoidBayesTuner(K_BOUNDS, M_BOUNDS, path).best() == SigmoidSchedule(8.0, 0.4)  # unscoped: all
    with pytest.raises(ValueError, match="fingerprint"):
        b.tell(SigmoidSchedule(3.0, 0.6), 2.0, meta={"fingerprint": "A"})
    with pytest.raises(ValueError, match="fingerprint"):
        SigmoidBayesTuner(fingerprint="")


def test_per_seed_tuning_gives_each_seed_its_own_experiment():
    per_seed = _config(tuner={"per_seed": True})
    reseeded = per_seed.model_copy(update={"train": per_seed.train.model_copy(update={"seed": 99})})
    assert _fingerprint(per_seed) != _fingerprint(reseeded)
