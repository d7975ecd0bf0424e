from __future__ import annotations

import json

import pytest

from tasks.bench.judge import JudgeSpec
from tasks.bench.runner import RunOptions, run_suite
from tasks.bench.suites import SHARED_DIR

SUITES = ["mmlu", "arc_challenge", "hellaswag", "gsm8k", "elyza_tasks_100", "scienceqa"]


def _records(out, name):
    return [json.loads(line) for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def sample_runs(smollm2_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    judge = JudgeSpec(kind="gguf", path=smollm2_gguf, max_tokens=96)
    return out, {s: run_suite(smollm2_gguf, s, out, RunOptions(judge=judge, limit=3 if s == "elyza_tasks_100"
                                                              else None)) for s in SUITES}


def test_all_six_suites_run_on_the_bundled_samples(sample_runs, smollm2_gguf):
    out, summaries = sample_runs
    from tasks.store import sha256_file

    digest = sha256_file(smollm2_gguf)
    for name, summary in summaries.items():
        assert summary["model_sha256"] == digest and summary["suite_version"] >= 1
        assert len(summary["prompt_sha256"]) == 64 and summary["items"] >= 3
        records = _records(out, name)
        assert [r["index"] for r in records] == list(range(len(records)))  # input order
        for metric in summary["metrics"].values():
            if metric["mean"] is not None:
                assert metric["ci95"][0] <= metric["mean"] <= metric["ci95"][1]
        assert summary["timings"]["prompt_tokens_per_s"] > 0


def test_multiple_choice_records(sample_runs):
    out, summaries = sample_runs
    for name in ("mmlu", "arc_challenge", "hellaswag"):
        for r in _records(out, name):
            assert set(r) >= {"index", "prompt_sha256", "loglikelihoods", "pred", "gold", "acc", "acc_norm"}
            assert r["pred"] == max(range(len(r["loglikelihoods"])), key=r["loglikelihoods"].__getitem__)
        acc = summaries[name]["metrics"]["acc"]
        assert acc["mean"] == sum(r["acc"] for r in _records(out, name)) / acc["n"]
    assert "by_category" in summaries["mmlu"]


def test_scienceqa_image_items_are_skipped_and_counted_without_mmproj(sample_runs):
    out, summaries = sample_runs
    s = summaries["scienceqa"]
    assert s["skipped"] == 1 and s["scored"] == 4 and set(s["by_modality"]) == {"text"}
    skipped = [r for r in _records(out, "scienceqa") if r.get("skipped")]
    assert skipped[0]["modality"] == "image" and "mmproj" in skipped[0]["skip_reason"]


def test_generation_records_keep_no_reasoning_text(sample_runs):
    out, summaries = sample_runs
    for r in _records(out, "gsm8k"):
        assert {"extracted_strict", "extracted_flexible", "exact_match_strict", "exact_match_flexible"} <= set(r)
        assert "reasoning_text" not in r and "reasoning_sha256" in r
    elyza = _records(out, "elyza_tasks_100")
    for r in elyza:
        assert 0.0 <= r["char_f1"] <= 1.0
        # the constrained local judge always yields a grade on the 1-5 scale, or an explicit failure
        assert (r["judge_grade"] in (1, 2, 3, 4, 5)) != bool(r["judge_error"])
    judged = summaries["elyza_tasks_100"]["metrics"]["judge_grade"]
    assert judged["n"] == sum(r["judge_grade"] is not None for r in elyza)


def test_a_finished_suite_is_not_rerun(sample_runs, smollm2_gguf):
    out, summaries = sample_runs
    stamp = (out / "mmlu.jsonl").stat().st_mtime_ns
    assert run_suite(smollm2_gguf, "mmlu", out) == summaries["mmlu"]
    assert (out / "mmlu.jsonl").stat().st_mtime_ns == stamp


def test_bad_inputs(smollm2_gguf, tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF"):
        run_suite(tmp_path / "x.gguf", "mmlu", tmp_path)
    with pytest.raises(ValueError, match="Unknown suite"):
        run_suite(smollm2_gguf, "mmlu-pro", tmp_path)
    with pytest.raises(FileNotFoundError, match="mmproj"):
        run_suite(smollm2_gguf, "scienceqa", tmp_path, RunOptions(mmproj=tmp_path / "mm.gguf",
                                                                 image_root=tmp_path))
    assert not list(tmp_path.glob("*.summary.json"))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="../shared/benchmarks not present")
def test_all_six_suites_run_on_the_shared_dev_items(smollm2_gguf, tmp_path):
    for name in SUITES:
        # every item of every file is read and validated (load_docs); five of each are scored: a bounded CI budget
        summary = run_suite(smollm2_gguf, name, tmp_path, RunOptions(data="shared", limit=5))
        assert summary["scored"] + summary["skipped"] == summary["items"] == 5
