"""Every bad input gets a clear message (what was expected, what was found, what to do) naming the file, field or
flag, before any work, printed without a traceback and with exit code 2; a bug prints one line (its type, message
and the log holding its traceback; ALPHAGATE_DEBUG=1 shows it).

Fast: no model is loaded (the one evaluation here runs on a stand-in engine)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from flows.cli import main


def _results(folder: Path, correct: list[int]) -> Path:
    folder.mkdir(parents=True)
    (folder / "mmlu.jsonl").write_text("".join(json.dumps({"index": i, "correct": bool(c)}) + "\n"
                                               for i, c in enumerate(correct)))
    (folder / "mmlu.summary.json").write_text(json.dumps({"timings": {"generation_tokens_per_s": 0.0}}))
    return folder


@pytest.fixture
def pair(tmp_path):
    return _results(tmp_path / "a", [1, 0] * 5), _results(tmp_path / "b", [0, 1] * 5)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def fake_gguf(tmp_path):
    """A file with the GGUF magic: enough for the checks before work (nothing here loads it)."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))  # a whole header: version 3, no tensors, no metadata
    return path


# -- 1. corrupt summary / decision / records --------------------------------------------------------------------

@pytest.mark.parametrize("command", ["decide", "report", "degrade"])
@pytest.mark.parametrize("damage, expected", [
    (("mmlu.summary.json", b'{"timings": '), "mmlu.summary.json is not valid UTF-8 JSON"),
    (("mmlu.jsonl", b'\xff\xfe{"index": 0}\n'), "mmlu.jsonl is not UTF-8 text"),
    (("mmlu.jsonl", b'{"index": 0\n'), "mmlu.jsonl:1: not valid JSON"),
])
def test_corrupt_results_are_named_by_every_command_that_reads_them(pair, tmp_path, capsys, command, damage,
                                                                    expected):
    a, b = pair
    (a / damage[0]).write_bytes(damage[1])
    labels = {"decide": ["a", "b"], "report": ["a", "b"], "degrade": ["base/bf16", "linear/bf16"]}[command]
    argv = [command, "--results", f"{labels[0]}={a}", f"{labels[1]}={b}", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = _error(capsys)
    assert f"alphagate: error: {a}" in err and expected in err and ("re-run" in err.lower() or "rerun" in err.lower())


def test_a_corrupt_or_wrong_decision_file_is_named_before_any_work(pair, tmp_path, capsys):
    a, _ = pair
    bad, wrong = tmp_path / "decision.json", tmp_path / "other.json"
    bad.write_text('{"reason": ')
    wrong.write_text('{"suites": []}')
    out = tmp_path / "report"
    assert main(["report", "--results", f"a={a}", "--decision", str(bad), "--out", str(out)]) == 2
    assert f"{bad} is not valid UTF-8 JSON (Expecting value" in _error(capsys)
    assert not out.exists()  # read before any figure is drawn
    assert main(["report", "--results", f"a={a}", "--decision", str(wrong), "--out", str(out)]) == 2
    err = _error(capsys)
    assert f"{wrong} is not a decision.json of `alphagate decide`: it lacks 'reason', 'upload'" in err
    assert "Pass the decision.json that `alphagate decide` wrote" in err
    for decision, expected in ((bad, "is not valid UTF-8 JSON"), (wrong, "is not a decision.json")):
        assert main(["upload", "--decision", str(decision), "--config", "configs/demo.yaml", "--dry-run"]) == 2
        assert f"alphagate: error: {decision} {expected}" in _error(capsys)


def test_corrupt_degradation_and_speed_files_are_named(pair, tmp_path, capsys):
    a, b = pair
    degradation, speed = tmp_path / "degradation.json", tmp_path / "speed.json"
    degradation.write_bytes(b"\xff{}")
    speed.write_text('{"models": ')
    common = ["decide", "--results", f"a={a}", f"b={b}", "--out", str(tmp_path / "d")]
    assert main([*common, "--degradation", str(degradation)]) == 2
    assert f"{degradation} is not valid UTF-8 JSON ('utf-8' codec can't decode" in _error(capsys)
    assert main([*common, "--speed", str(speed)]) == 2
    assert f"{speed} is not valid UTF-8 JSON" in _error(capsys)
    assert not (tmp_path / "d").exists()
    assert main(["report", "--results", f"a={a}", "--degradation", str(degradation), "--out", str(tmp_path / "r")]) == 2
    assert f"{degradation} is not valid UTF-8 JSON" in _error(capsys)


def test_lm_eval_samples_with_a_bad_line_are_named_with_their_line(tmp_path, capsys):
    folder = tmp_path / "lm_eval_out"
    folder.mkdir()
    (folder / "samples_arc_challenge_2024.jsonl").write_text('{"doc_id": 0, "acc": 1.0}\n{"doc_id": 1,\n')
    assert main(["report", "--results", f"x/gguf={folder}", "--out", str(tmp_path / "r")]) == 2
    assert "samples_arc_challenge_2024.jsonl:2: not valid JSON" in _error(capsys)


def test_missing_results_folder_is_named(pair, tmp_path, capsys):
    a, _ = pair
    assert main(["decide", "--results", f"a={a}", f"b={tmp_path / 'nope'}", "--out", str(tmp_path / "d")]) == 2
    assert f"--results b={tmp_path / 'nope'}: that folder does not exist" in _error(capsys)


# -- 2. judge YAML -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("kind: gguf\npath: [unclosed\n", "is not valid YAML"),
    ("kind: gguff\nmodle: x\n", "is not a valid judge spec:\n  kind: Input should be 'gguf' or 'openai' (found "
                                "'gguff')\n  modle: Extra inputs are not permitted (found 'x')\nKnown fields:"),
    ("- a\n- b\n", "expected a mapping of fields at the top level; found list"),
    ("kind: openai\n", "an openai judge needs 'base_url' and 'model'"),
])
def test_bad_judge_yaml_is_a_clear_error_before_any_work(tmp_path, capsys, fake_gguf, monkeypatch, text, expected):
    import tasks.bench.runner as runner

    monkeypatch.setattr(runner, "run_suite", lambda *a, **k: pytest.fail("evaluation started"))
    judge = tmp_path / "judge.yaml"
    judge.write_text(text)
    argv = ["eval", "--gguf", str(fake_gguf), "--suite", "elyza_tasks_100", "--judge", str(judge),
            "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = _error(capsys)
    assert f"alphagate: error: Judge YAML {judge}" in err and expected in err
    assert main(["run", "--judge", str(judge), "--out", str(tmp_path / "run")]) == 2  # the flow's check, same text
    assert expected in _error(capsys)


# -- 3. unreachable Hub ------------------------------------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_an_unreachable_hub_names_the_dataset_and_what_to_do(offline, tmp_path, capsys, fake_gguf):
    argv = ["eval", "--gguf", str(fake_gguf), "--suite", "mmlu", "--data", "hub", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = _error(capsys)
    assert "Cannot resolve dataset 'cais/mmlu' at revision 'main'" in err
    assert "the Hugging Face Hub at" in err and "could not be reached (HF_HUB_OFFLINE is set)" in err
    assert "pin dataset.revision in" in err and "mmlu.yaml" in err and "--data sample" in err


def test_a_pinned_dataset_that_is_not_cached_says_so(monkeypatch):
    import datasets

    from tasks.bench.suites import load_docs, load_suite

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    suite = load_suite("arc_challenge")
    suite = suite.model_copy(update={"dataset": suite.dataset.model_copy(update={"revision": "a" * 40})})
    with pytest.raises(RuntimeError) as info:
        load_docs(suite, "hub", 1)
    message = str(info.value)
    assert "Cannot load dataset 'allenai/ai2_arc'" in message and "not in the local datasets cache" in message
    assert "could not be reached" in message and "run this once with the Hub reachable" in message
    assert "--data sample" in message


def test_an_unreachable_hub_names_the_base_model(offline):
    from tasks.config import BaseModelSpec
    from tasks.data.base_model import base_ref

    with pytest.raises(RuntimeError, match="Cannot resolve model 'org/some-model' .* could not be reached .* pin "
                                           "base_model.revision .* base_model.local_dir"):
        base_ref(BaseModelSpec(name="m", hub_id="org/some-model"), Path("unused"))


# -- 4, 5. numbers checked while parsing -----------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["eval", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
    (["eval", "--limit", "-1"], "argument --limit: must be >= 1, got -1"),
    (["eval", "--num-fewshot", "-1"], "argument --num-fewshot: must be >= 0, got -1"),
    (["run", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
])
def test_bad_numbers_are_rejected_while_parsing(argv, expected, tmp_path, capsys):
    command, *flags = argv
    if command == "eval":
        flags += ["--gguf", "m.gguf", "--suite", "mmlu", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        main([command, *flags])
    assert info.value.code == 2
    err = _error(capsys)
    assert expected in err and "omit" in err


# -- 6. --out checked before evaluating -------------------------------------------------------------------------

def test_an_out_that_is_a_file_or_unwritable_fails_before_any_evaluation(tmp_path, capsys, fake_gguf, monkeypatch):
    import tasks.bench.runner as runner

    monkeypatch.setattr(runner, "run_suite", lambda *a, **k: pytest.fail("evaluation started"))
    a_file = tmp_path / "results.txt"
    a_file.write_text("")
    common = ["eval", "--gguf", str(fake_gguf), "--suite", "mmlu"]
    assert main([*common, "--out", str(a_file)]) == 2
    assert f"--out {a_file} is a file, but a folder is needed there" in _error(capsys)
    assert main([*common, "--out", str(a_file / "sub")]) == 2
    assert f"--out {a_file / 'sub'} is not writable ({a_file} is a file, not a folder)" in _error(capsys)

    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "mkdir", lambda self, *a, **k: read_only(self))
    assert main([*common, "--out", str(tmp_path / "new")]) == 2
    assert f"--out {tmp_path / 'new'} is not writable (Permission denied)" in _error(capsys)


def test_other_commands_check_their_output_first(pair, tmp_path, capsys, fake_gguf):
    a, b = pair
    a_file = tmp_path / "f"
    a_file.write_text("")
    for argv in (["decide", "--results", f"a={a}", f"b={b}"], ["report", "--results", f"a={a}"],
                 ["degrade", "--results", f"base/bf16={a}", f"x/bf16={b}"]):
        assert main([*argv, "--out", str(a_file)]) == 2
        assert f"--out {a_file} is a file" in _error(capsys)
    assert main(["speed", "--gguf", f"x={fake_gguf}", "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder, but a file name is needed" in _error(capsys)


def test_a_file_that_is_not_a_gguf_is_named(tmp_path, capsys):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text('{"json": true}')
    assert main(["eval", "--gguf", str(not_gguf), "--suite", "mmlu", "--out", str(tmp_path / "o")]) == 2
    assert f"--gguf {not_gguf} is not a GGUF file (it starts with b'{{\"js', not b'GGUF')" in _error(capsys)
    assert main(["serve", "--gguf", str(not_gguf)]) == 2
    assert f"--gguf {not_gguf} is not a GGUF file" in _error(capsys)


# -- 7. ScienceQA image items without --mmproj -------------------------------------------------------------------

class _StandInEngine:
    """Scores every choice the same (the CLI path, runner included, without loading a model)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def reset_timings(self):
        pass

    def encode_pair(self, context, continuation):
        return [1], [2] * max(len(continuation), 1)

    def loglikelihood(self, context, continuation):
        from types import SimpleNamespace

        return SimpleNamespace(loglikelihood=-1.0, is_greedy=False)

    def timings(self):
        return {"prompt_tokens_per_s": 1.0, "generation_tokens_per_s": 1.0}


def test_image_items_skipped_without_mmproj_get_one_hint_and_a_note_in_the_summary(tmp_path, capsys, fake_gguf,
                                                                                   monkeypatch):
    import tasks.bench.engine as engine

    monkeypatch.setattr(engine, "Engine", _StandInEngine)
    out = tmp_path / "o"
    assert main(["eval", "--gguf", str(fake_gguf), "--suite", "scienceqa", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    hint = ("scienceqa: 1 of 5 items have an image and were skipped because no vision projector (mmproj GGUF) was "
            "given; to score them set vision.mmproj (and vision.image_root) in the config, or pass --mmproj and "
            "--image-root to `alphagate eval`.")
    assert captured.err.count("--mmproj") == 1 and f"alphagate: note: {hint}" in captured.err  # once
    assert "4 scored, 1 skipped" in captured.out
    summary = json.loads((out / "scienceqa.summary.json").read_text())
    assert summary["notes"] == [hint] and summary["skipped"] == 1


def test_no_note_when_nothing_is_skipped():
    from tasks.bench.runner import skip_notes
    from tasks.bench.suites import load_suite

    assert skip_notes(load_suite("scienceqa"), [{"index": 0, "correct": True}]) == []


# -- main(): the user's errors get a message, bugs one line and a log of their traceback -------------------------

def _command_raising(monkeypatch, failing):
    import flows.cli.train

    monkeypatch.setattr(flows.cli.train, "schedule_command", lambda args: failing())


def _raise(exc):
    raise exc


def test_project_errors_are_messages_and_bugs_one_line_with_a_log(monkeypatch, capsys, tmp_path):
    from tasks.bench.suites import load_suite

    _command_raising(monkeypatch, lambda: load_suite("mmluu"))  # a ValueError the project raises for the user
    assert main(["schedule", "linear"]) == 2
    assert _error(capsys).startswith("alphagate: error: Unknown suite 'mmluu'. Did you mean 'mmlu'?")
    _command_raising(monkeypatch, lambda: _raise(PermissionError(13, "Permission denied", "/x")))
    assert main(["schedule", "linear"]) == 2  # files, permissions, network: always the user's to fix
    assert "Permission denied: '/x'" in _error(capsys)
    monkeypatch.setenv("ALPHAGATE_CACHE", str(tmp_path))
    for bug, shown in ((lambda: _raise(TypeError("unsupported operand")), "TypeError: unsupported operand"),
                       (lambda: {}["winner"], "KeyError: 'winner'"), (lambda: json.loads("{"), "JSONDecodeError"),
                       (lambda: b"\xff".decode(), "UnicodeDecodeError"),
                       (lambda: _raise(ValueError("raised outside the project's code")), "ValueError: raised")):
        _command_raising(monkeypatch, bug)
        assert main(["schedule", "linear"]) == 1  # a bug: one line with its type, message and where its traceback is
        err = _error(capsys)
        assert err.startswith(f"alphagate: error: unexpected {shown}") and "Traceback" not in err, err
        log = Path(err.split("the traceback is in ")[1].split(";")[0])
        assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text(encoding="utf-8")
        assert "ALPHAGATE_DEBUG=1" in err
    _command_raising(monkeypatch, lambda: _raise(KeyboardInterrupt()))
    assert main(["schedule", "linear"]) == 130 and "schedule interrupted" in _error(capsys)
    _command_raising(monkeypatch, lambda: load_suite("mmluu"))
    monkeypatch.setenv("ALPHAGATE_DEBUG", "1")  # the traceback of any error, on demand
    with pytest.raises(ValueError, match="Unknown suite"):
        main(["schedule", "linear"])
