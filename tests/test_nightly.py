"""The nightly study: replicates accumulate night by night (tasks/decide/study.py, flows/nightly.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.config import load_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def _config(tmp_path, tiny_base_dir, max_looks: int = 3, extra: str = "") -> Path:
    path = tmp_path / "smoke.yaml"
    path.write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\n"
                    "train: {max_steps: 2, batch_size: 2, eval_every: 2, max_length: 96}\n"
                    "tuner: {n_trials: 1, proxy_steps: 1, n_initial_points: 1}\n"
                    "decision: {bootstrap: 200}\n"
                    f"nightly: {{max_looks: {max_looks}, spending: pocock, data: shared, limit: 3, "
                    "suites: [mmlu, arc_challenge], formats: [bf16]}\n" + extra)
    return path


def test_a_study_refuses_another_design_but_not_another_night(tmp_path, tiny_base_dir):
    from tasks.decide.study import STUDY_VERSION, next_night, open_study, study_path
    from tasks.store import atomic_write_json

    config = load_config(_config(tmp_path, tiny_base_dir))
    study = open_study(tmp_path / "out", config, "smoke.yaml")
    assert study["nights"] == [] and study["version"] == STUDY_VERSION
    frozen = "frozen: tuned once with 1 trials, every seed reuses that choice"
    assert next_night(study, config) == {"night": 1, "seed": 1001, "tuner_trials": 1, "tuning": frozen}
    atomic_write_json(study_path(tmp_path / "out"), {**study, "nights": [{"night": 1, "tuning": frozen}]})
    # the budget does not grow: night 2's seed is a replicate of the same frozen schedule
    assert next_night(open_study(tmp_path / "out", config, "x"), config) == {"night": 2, "seed": 1002,
                                                                             "tuner_trials": 1, "tuning": frozen}
    # the per-night settings may differ (seed, tuner budget); anything else is another study
    seeded = load_config(_config(tmp_path, tiny_base_dir, extra=""))
    seeded = seeded.model_copy(update={"train": seeded.train.model_copy(update={"seed": 7, "seeds": [7, 8]})})
    open_study(tmp_path / "out", seeded, "x")
    other = seeded.model_copy(update={"train": seeded.train.model_copy(update={"learning_rate": 1e-3})})
    with pytest.raises(ValueError, match="another design: the config's train changed"):
        open_study(tmp_path / "out", other, "x")


def test_nightly_data_must_not_be_the_bundled_samples(tmp_path, tiny_base_dir):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: x\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\nnightly: {{data: sample}}\n")
    with pytest.raises(ValueError, match="nightly.data is 'sample'"):
        load_config(path)


def test_nights_tuned_another_way_are_not_pooled(tmp_path, tiny_base_dir):
    """A naive study pools every night; nights whose schedule was chosen another way (an older study whose tuner
    budget grew each night, or per-seed tuners after a frozen schedule) are not exchangeable replicates."""
    from tasks.decide.study import next_night, open_study, study_path
    from tasks.store import atomic_write_json

    config = load_config(_config(tmp_path, tiny_base_dir))
    study = open_study(tmp_path / "out", config, "x")
    atomic_write_json(study_path(tmp_path / "out"), {**study, "version": 1, "nights": [{"night": 1}]})
    with pytest.raises(ValueError, match="not exchangeable replicates"):
        open_study(tmp_path / "out", config, "x")
    per_seed = _config(tmp_path, tiny_base_dir).read_text().replace("n_initial_points: 1}", "n_initial_points: 1, "
                                                                    "per_seed: true}")
    (tmp_path / "p.yaml").write_text(per_seed.replace("formats: [bf16]}", "formats: [bf16], tuning: per_seed}"))
    other = load_config(tmp_path / "p.yaml")
    fresh = open_study(tmp_path / "new", other, "x")
    assert next_night(fresh, other)["tuning"].startswith("per_seed: each seed tuned on its own with 1 trials")
    atomic_write_json(study_path(tmp_path / "new"), {**fresh, "nights": [{"night": 1, "tuning": "frozen: x"}]})
    with pytest.raises(ValueError, match="tuned another way"):
        open_study(tmp_path / "new", other, "x")
    (tmp_path / "bad.yaml").write_text(per_seed)  # per-seed tuners but nightly.tuning left at frozen
    with pytest.raises(ValueError, match="nightly.tuning is 'frozen' but tuner.per_seed is True"):
        open_study(tmp_path / "bad", load_config(tmp_path / "bad.yaml"), "x")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/benchmarks (real items) beside the repository")
def test_two_nights_accumulate_replicates_and_then_the_study_is_closed(harness, tiny_base_dir, tmp_path, monkeypatch):
    from flows.nightly import NightlyParams, nightly

    config = _config(tmp_path, tiny_base_dir, max_looks=2)  # night 2 pools night 1; its look is the last
    out = tmp_path / "nightly"
    history = out / "tuner_history.json"
    journal = out / "logs" / "trainings.jsonl"  # one line per training process that really trained
    trials = []

    def trained_since(n: int) -> list:
        lines = journal.read_text().splitlines() if journal.is_file() else []
        return sorted((r["variant"], r["seed"]) for r in map(json.loads, lines[n:]))

    for night, date in enumerate(("2026-12-01", "2026-12-02"), 1):
        before = len(journal.read_text().splitlines()) if journal.is_file() else 0
        result = nightly(NightlyParams(config=str(config), out=str(out), cache=str(tmp_path / "cache"), date=date))
        trained = trained_since(before)
        assert result["night"] == night
        # tonight trains one new seed per arm; earlier nights' models are pooled, not retrained
        assert sorted(trained) == [("linear", 1000 + night), ("sigmoid-bayes", 1000 + night)]
        record = json.loads(Path(result["decision_record"]).read_text())
        assert record["seeds"]["a"] == record["seeds"]["b"] == night
        assert [r["label"] for r in record["per_seed_composites"]["linear"]] == \
            [f"linear-s{1000 + n}" for n in range(1, night + 1)]
        assert record["sequential"]["look"] == night
        assert (out / "nights" / f"{date}-night{night:02d}" / "decision.json").is_file()
        fingerprints = {t["meta"]["fingerprint"] for t in json.loads(history.read_text())["trials"]}
        trials.append(len(json.loads(history.read_text())["trials"]))
        assert len(fingerprints) == 1  # one experiment: the tuner warm-starts from every earlier trial
    assert trials == [1, 1]  # frozen: tuned once on night 1, later seeds reuse that choice (no new trials)
    assert {n["tuning"] for n in json.loads((out / "study" / "study.json").read_text())["nights"]} == \
        {"frozen: tuned once with 1 trials, every seed reuses that choice"}
    study = json.loads((out / "study" / "study.json").read_text())
    assert [n["seed"] for n in study["nights"]] == [1001, 1002]
    assert study["decided"] or study["ended"]  # max_looks is 2: after the second look the study is closed
    report = (Path(result["report"])).read_text()
    assert "## Nightly study" in report and report.count("| 2026-12-0") == 2
    assert (Path(result["report"]).parent / "study_trend.png").is_file()
    assert "| linear |" in report or "optimizer steps" in report  # compute per arm beside the result
    # a closed study says so and trains nothing
    import tasks.procs

    monkeypatch.setattr(tasks.procs, "run_in_process", lambda *a, **k: pytest.fail(f"started a stage: {a[0]}"))
    before = len(journal.read_text().splitlines())
    closed = nightly(NightlyParams(config=str(config), out=str(out), cache=str(tmp_path / "cache"),
                                   date="2026-12-03"))
    assert "closed" in closed and trained_since(before) == []


def test_nightly_cli_on_a_decided_study_says_so_and_trains_nothing(harness, tiny_base_dir, tmp_path, capsys,
                                                                   monkeypatch):
    import tasks.procs
    from flows.cli import main
    from tasks.decide.study import open_study, study_path
    from tasks.store import atomic_write_json

    monkeypatch.setattr(tasks.procs, "run_in_process", lambda *a, **k: pytest.fail(f"started a stage: {a[0]}"))
    config = _config(tmp_path, tiny_base_dir)
    out = tmp_path / "study"
    study = open_study(out, load_config(config), config)
    atomic_write_json(study_path(out), {**study, "decided": {"night": 4, "date": "2026-12-04", "winner": "linear",
                                                             "reason": "linear beats sigmoid-bayes."}})
    assert main(["nightly", "--config", str(config), "--out", str(out)]) == 0
    assert "decided on night 4 (2026-12-04)" in capsys.readouterr().out
    # a study of another design is refused with the field that changed
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("max_steps: 2", "max_steps: 3"))
    assert main(["nightly", "--config", str(other), "--out", str(out)]) == 2
    assert "another design: the config's train changed" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("data: shared", "data: sample"))
    assert main(["nightly", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "must not decide on the 5-item bundled samples" in capsys.readouterr().err


def test_a_night_whose_evaluations_failed_is_not_recorded_and_spends_no_look(harness, tiny_base_dir, tmp_path,
                                                                             monkeypatch):
    """A naive study would record the night with a replicate missing a suite (dropping that suite for the rest of
    the study) and count the look; the night must fail instead, so the next run retries the same seed."""
    import flows.nightly
    from flows.nightly import NightlyParams, nightly
    from tasks.decide.study import study_path

    seen = []

    def failing_pipeline(params, config, seeds, *rest):
        seen.append(seeds)
        return {"failed_evaluations": ["linear-s1001/bf16/mmlu"], "decision_record": str(tmp_path / "d.json")}

    monkeypatch.setattr(flows.nightly, "configured_pipeline", lambda config: failing_pipeline)
    config = _config(tmp_path, tiny_base_dir)
    out = tmp_path / "study"
    for _ in range(2):
        with pytest.raises(RuntimeError, match="night is not recorded and no look is spent"):
            nightly(NightlyParams(config=str(config), out=str(out), cache=str(tmp_path / "cache")))
    assert seen == [[1001], [1001]]  # the retry is the same night, same seed
    assert not study_path(out).exists()


def test_earlier_nights_evaluated_on_a_suite_since_changed_are_refused_before_tonight_trains(tmp_path):
    """A naive study pools every earlier night's results and finds out at the decision, after tonight's training, that
    a suite was evaluated another way then (its YAML or prompt changed since): the study refuses up front, naming the
    suite and what changed; the same results with the suite as declared now pool."""
    from tasks.bench.suites import load_suite, suite_path
    from tasks.decide.study import earlier_replicates
    from tasks.store import sha256_file, verified

    def sealed(name: str, files: dict[str, dict]) -> dict:
        from tasks.store import seal, staging_dir

        with staging_dir(tmp_path / name) as tmp:
            for file, content in files.items():
                (tmp / file).write_text(json.dumps(content))
            seal(tmp, name, name, {})
        return verified(tmp_path / name).model_dump()

    suite = load_suite("mmlu")
    now = {"suite": "mmlu", "suite_version": suite.version, "prompt_sha256": suite.prompt_hash(),
           "inputs": {"suite_yaml_sha256": sha256_file(suite_path("mmlu"))}}

    def study(summary: dict, name: str) -> dict:
        rep = {"label": "linear-s1", "results": sealed(name, {"mmlu.summary.json": summary}),
               "export": sealed(f"{name}-export", {"m.json": {}}), "run": sealed(f"{name}-run", {"run.json": {}})}
        return {"nights": [{"night": 1, "replicates": {"linear": [rep]}}]}

    assert [r["label"] for r in earlier_replicates(study(now, "same"))["linear"]] == ["linear-s1"]
    stale = {**now, "prompt_sha256": "0" * 64, "inputs": {"suite_yaml_sha256": "1" * 64}}
    with pytest.raises(ValueError, match=r"Night 1's linear-s1 .* mmlu .*changed since \(prompt_sha256, "
                                         r"suite_yaml_sha256\).*new study"):
        earlier_replicates(study(stale, "stale"))
