"""Generation and scoring are keyed apart: a scorer change (a GSM8K answer filter, the judge) rescores the saved
generations and generates nothing; a generation change (max_tokens, the prompt) generates again; `alphagate rescore`
rescores a run folder from its saved generations and refuses, naming them, when some are missing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import tasks.bench.catalog as suites  # the folder of the suite declarations (the seam)
from tasks.bench.metrics import normalize_number
from tasks.bench.runner import RunOptions, eval_key, run_suite
from tasks.store import keyed_dir, sha256_file

LIMIT = 2


def _evaluate(root: Path, gguf: Path, suite: str, opts: RunOptions) -> dict:
    """What the flow's eval task does: the result in its keyed folder, generations under <root>/store/generate."""
    out = keyed_dir(root, "eval", eval_key(gguf, suite, opts)[0])
    return run_suite(gguf, suite, out, opts, stage_folder=True, store=root)


def _generations(root: Path) -> dict[str, str]:
    """Each kept generation folder -> the sha256 of its records."""
    return {p.name: sha256_file(p / "generations.jsonl") for p in sorted((root / "store" / "generate").iterdir())
            if not p.name.startswith(".")}


def _records(summary_root: Path, summary: dict) -> list[dict]:
    folder = keyed_dir(summary_root, "eval", summary["key"])
    return [json.loads(line) for line in (folder / f"{summary['suite']}.jsonl").read_text().splitlines()]


@pytest.fixture
def suites_dir(tmp_path, monkeypatch):
    """An editable copy of configs/suites that load_suite reads (returns a function editing one suite's YAML)."""
    copy = tmp_path / "suites"
    shutil.copytree(suites.SUITES_DIR, copy)
    monkeypatch.setattr(suites, "SUITES_DIR", copy)

    def edit(name: str, old: str, new: str) -> None:
        path = copy / f"{name}.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    return edit


FLEXIBLE = 'flexible: {regex: "(-?[$0-9.,]{2,})|(-?[0-9]+)", take: last}'
FIRST_CHARACTER = 'flexible: {regex: "(\\\\S)", take: first}'  # another filter: the answer's first character


def test_a_changed_gsm8k_filter_rescores_and_generates_nothing(smollm2_gguf, tmp_path, suites_dir):
    before = _evaluate(tmp_path, smollm2_gguf, "gsm8k", RunOptions(limit=LIMIT))
    kept = _generations(tmp_path)
    assert len(kept) == 1
    suites_dir("gsm8k", FLEXIBLE, FIRST_CHARACTER)
    key, inputs = eval_key(smollm2_gguf, "gsm8k", RunOptions(limit=LIMIT))
    assert key != before["key"] and inputs["generation_key"] == before["generation_key"]  # scorer key only
    after = _run_without_models(tmp_path, smollm2_gguf, "gsm8k", RunOptions(limit=LIMIT))  # no model loads
    assert _generations(tmp_path) == kept  # the same one generation folder, records untouched
    assert after["generation_key"] == before["generation_key"] and after["key"] != before["key"]
    # the summary changed with the filter: other per-item records, and the filter's extraction is the new one
    assert after["records_sha256"] != before["records_sha256"]
    assert after["inputs"]["suite_yaml_sha256"] != before["inputs"]["suite_yaml_sha256"]
    old, new = _records(tmp_path, before), _records(tmp_path, after)
    for o, n in zip(old, new, strict=True):
        assert n["final_answer"] == o["final_answer"]  # the same answers, read by another filter
        expected = re.search(r"(\S)", n["final_answer"])
        assert n["extracted_flexible"] == (normalize_number(expected.group(1)) if expected else None)
        assert n["exact_match_flexible"] == (n["extracted_flexible"] == n["gold"])
        assert n["extracted_strict"] == o["extracted_strict"]  # the strict filter did not change
    assert [n["extracted_flexible"] for n in new] != [o["extracted_flexible"] for o in old]
    # the summary's fields stay what downstream stages read
    assert set(before) <= set(after) and after["metrics"]["exact_match_flexible"]["n"] == LIMIT


def _run_without_models(root: Path, gguf: Path, suite: str, opts: RunOptions) -> dict:
    import tasks.bench.engine as engine

    real = engine.Engine.__init__

    def refuse(self, path, *a, **k):
        pytest.fail(f"a model was loaded ({path}): something was generated again")

    engine.Engine.__init__ = refuse
    try:
        return _evaluate(root, gguf, suite, opts)
    finally:
        engine.Engine.__init__ = real


@pytest.mark.parametrize("edit", [("generation: {max_tokens: 256", "generation: {max_tokens: 64"),
                                  ('doc_to_text: "Question:', 'doc_to_text: "Q:')],
                         ids=["max_tokens", "prompt_template"])
def test_a_generation_change_generates_again(smollm2_gguf, tmp_path, suites_dir, edit):
    """The counterexample: what shapes the answers is in the generation key, so changing it generates anew."""
    opts = RunOptions(limit=1)
    first = _evaluate(tmp_path, smollm2_gguf, "gsm8k", opts)
    suites_dir("gsm8k", *edit)
    assert eval_key(smollm2_gguf, "gsm8k", opts)[1]["generation_key"] != first["generation_key"]
    with pytest.raises(pytest.fail.Exception, match="a model was loaded"):
        _run_without_models(tmp_path, smollm2_gguf, "gsm8k", opts)  # it must load the model: it generates
    second = _evaluate(tmp_path, smollm2_gguf, "gsm8k", opts)
    assert second["generation_key"] != first["generation_key"] and len(_generations(tmp_path)) == 2


def test_a_judge_change_judges_again_and_generates_nothing(smollm2_gguf, tmp_path, suites_dir, monkeypatch):
    """ELYZA's judge is part of scoring: another judge grades the saved answers again (its model loads, with the
    judge's context) while the candidate's answers are not generated again; a GSM8K filter change re-judges
    nothing (the judge's verdicts are kept by the key of its prompts)."""
    import tasks.bench.engine as engine
    from tasks.bench.judge import JudgeSpec

    suites_dir("elyza_tasks_100", "max_tokens: 384", "max_tokens: 32")  # short answers: a fast test
    judge = JudgeSpec(kind="gguf", path=smollm2_gguf, max_tokens=24, max_retries=0)  # one try per item: a fast test
    opts = RunOptions(limit=LIMIT, judge=judge)
    first = _evaluate(tmp_path, smollm2_gguf, "elyza_tasks_100", opts)
    kept = _generations(tmp_path)
    loads, real = [], engine.Engine.__init__

    def recording(self, path, n_ctx=2048, *a, **k):
        loads.append(n_ctx)
        real(self, path, n_ctx, *a, **k)

    monkeypatch.setattr(engine.Engine, "__init__", recording)
    other = RunOptions(limit=LIMIT, judge=judge.model_copy(update={"max_tokens": 32}))
    second = _evaluate(tmp_path, smollm2_gguf, "elyza_tasks_100", other)
    assert loads == [4096]  # the judge only (tasks.bench.judge opens its model with a 4096 context)
    assert _generations(tmp_path) == kept and second["generation_key"] == first["generation_key"]
    assert second["key"] != first["key"] and second["judge"] == first["judge"]
    loads.clear()
    suites_dir("gsm8k", FLEXIBLE, FIRST_CHARACTER)  # a scorer change elsewhere: ELYZA's result is found by key
    assert _evaluate(tmp_path, smollm2_gguf, "elyza_tasks_100", other) == second and loads == []


def _run_folder(root: Path, gguf: Path) -> None:
    """A run folder as `alphagate run` leaves it: keyed evaluations, a result set, and index.json naming it."""
    from flows.stages import results_task
    from tasks.layout import publish
    from tasks.store import ref_of

    refs = {}
    for suite in ("gsm8k", "mmlu"):
        summary = _evaluate(root, gguf, suite, RunOptions(limit=LIMIT))
        refs[suite] = ref_of(keyed_dir(root, "eval", summary["key"]))
    config = root / "config.yaml"
    config.write_text("name: t\n")
    publish(root, config, {"eval/m-bf16": results_task.fn(refs, str(root))})


def test_rescore_a_run_folder_then_refuse_without_its_generations(smollm2_gguf, tmp_path, suites_dir, capsys):
    from flows.cli import main

    root = tmp_path / "run"
    _run_folder(root, smollm2_gguf)
    kept = _generations(root)
    suites_dir("gsm8k", FLEXIBLE, FIRST_CHARACTER)
    import tasks.bench.engine as engine

    real = engine.Engine.__init__
    engine.Engine.__init__ = lambda self, path, *a, **k: pytest.fail(f"a model was loaded ({path})")
    try:
        assert main(["rescore", "--out", str(root)]) == 0
    finally:
        engine.Engine.__init__ = real
    out = capsys.readouterr().out
    assert "m-bf16 gsm8k: exact_match_flexible" in out and "m-bf16 mmlu: acc " in out
    assert "(already scored so)" in out.split("m-bf16 mmlu")[1].splitlines()[0]  # mmlu's scorer did not change
    assert "alphagate run" in out  # how the decision and report are redone
    record = json.loads((root / "rescore.json").read_text())
    rows = {r["suite"]: r for r in record["suites"]}
    assert rows["gsm8k"]["rescored"] and not rows["mmlu"]["rescored"]
    assert _generations(root) == kept
    # a rerun of the flow computes the same keys: the rescored result is what it finds
    assert Path(rows["gsm8k"]["eval"]).name == eval_key(smollm2_gguf, "gsm8k", RunOptions(limit=LIMIT))[0][:24]
    rescored = Path(record["result_sets"]["eval/m-bf16"]) / "gsm8k.summary.json"
    assert json.loads(rescored.read_text())["key"] == eval_key(smollm2_gguf, "gsm8k", RunOptions(limit=LIMIT))[0]

    gsm8k_generations = keyed_dir(root, "generate", json.loads(rescored.read_text())["generation_key"])
    shutil.rmtree(gsm8k_generations)
    assert main(["rescore", "--out", str(root)]) == 2
    err = capsys.readouterr().err
    assert "eval/m-bf16 gsm8k" in err and "alphagate run" in err and "mmlu" not in err.split("generations for")[1]


def test_rescore_refuses_generations_of_another_prompt_and_a_dropped_judge(smollm2_gguf, tmp_path, suites_dir):
    from tasks.bench.rescore import Job, check_judge, plan

    root = tmp_path / "run"
    _run_folder(root, smollm2_gguf)
    suites_dir("gsm8k", 'doc_to_text: "Question:', 'doc_to_text: "Q:')  # the saved answers answer another prompt
    with pytest.raises(FileNotFoundError, match="gsm8k .the suite's prompt or decoding settings changed"):
        plan(root)
    judged = Job("eval/m-bf16", "elyza_tasks_100", {"judge": {"kind": "gguf"}}, root, "k", {})
    with pytest.raises(ValueError, match="pass --judge"):
        check_judge([judged], None)
    check_judge([Job("eval/m-bf16", "elyza_tasks_100", {"judge": None}, root, "k", {})], None)  # never judged: fine


def test_rescore_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    from flows.cli import main

    assert main(["rescore", "--out", str(tmp_path)]) == 2
    assert "index.json" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["tasks.bench.metrics", "tasks.bench.score", "tasks.bench.judge",
                                    "tasks.final_section"])
def test_scorer_code_is_in_the_evaluation_key_and_never_in_the_generation_key(tmp_path, monkeypatch, module):
    """Editing a scorer module (answer extraction, metrics, the judge's parser, the final-answer reader) changes the
    evaluation's code version and leaves the generation's alone; editing the engine changes both."""
    before, after = _code_versions_around_an_edit(tmp_path, monkeypatch, module)
    assert after["eval"] != before["eval"] and after["generate"] == before["generate"]


def test_generation_code_is_in_both_keys(tmp_path, monkeypatch):
    before, after = _code_versions_around_an_edit(tmp_path, monkeypatch, "tasks.bench.engine")
    assert after["generate"] != before["generate"] and after["eval"] != before["eval"]


def _code_versions_around_an_edit(tmp_path, monkeypatch, module: str) -> tuple[dict, dict]:
    """The generate and eval stages' code versions before and after ``module``'s source gains one comment line."""
    import importlib.util

    from tasks import keys

    copy = tmp_path / "copy.py"
    copy.write_text(Path(keys._locate(module).origin).read_text() + "\n# edited\n")
    spec = importlib.util.spec_from_file_location(module, copy)
    keys.code_version.cache_clear()
    before = {stage: keys.code_version(stage) for stage in ("generate", "eval")}
    real = keys._locate
    monkeypatch.setattr(keys, "_locate", lambda name: spec if name == module else real(name))
    keys.code_version.cache_clear()
    try:
        after = {stage: keys.code_version(stage) for stage in before}
    finally:
        keys.code_version.cache_clear()
    return before, after
