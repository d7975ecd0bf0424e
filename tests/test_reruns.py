"""When one input changes, exactly the stages that depend on it rerun, and everything downstream consumes the new
outputs (issue 12). Each case changes one input of a finished smoke comparison, reruns the flow into the same
--out, and counts the new outputs per stage in the keyed store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("prefect")
STAGES = ("data", "train", "export", "eval", "results", "degrade", "speed", "decide", "report")


@pytest.fixture(scope="module")
def judges(tiny_base_dir, tmp_path_factory):
    """Two different judge models (the tiny model as BF16 and Q8_0) and a judge YAML for each."""
    from tasks.export.gguf import export_model

    out = tmp_path_factory.mktemp("judges")
    export_model(tiny_base_dir, out / "export", ["bf16", "q8_0"], name="judge")
    paths = []
    for fmt in ("BF16", "Q8_0"):
        path = out / f"judge-{fmt}.yaml"
        path.write_text(f"kind: gguf\npath: {out / 'export' / f'judge-{fmt}.gguf'}\nmax_retries: 0\nmax_tokens: 24\n")
        paths.append(str(path))
    return paths


def _store(root: Path) -> dict[str, set[str]]:
    return {s: {p.name for p in (root / "store" / s).iterdir() if not p.name.startswith(".")}
            if (root / "store" / s).is_dir() else set() for s in STAGES}


def _eval_models(root: Path, names: set[str]) -> list[str]:
    return sorted(json.loads(next((root / "store" / "eval" / n).glob("*.summary.json")).read_text())["model_sha256"]
                  for n in names)


def _config(folder: Path, base_dir, data: Path, **train) -> Path:
    steps = train.get("max_steps", 2)
    formats = train.get("formats", "[bf16]")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "smoke.yaml"
    path.write_text(f"name: smoke\nbase_model: {{name: tiny, local_dir: {base_dir}}}\n"
                    f"data: {{sources: [{{kind: jsonl, path: {data}}}]}}\n"
                    f"train: {{max_steps: {steps}, batch_size: 2, eval_every: 2, max_length: 96}}\n"
                    "tuner: {n_trials: 1, proxy_steps: 1, n_initial_points: 1}\n"
                    f"export: {{formats: {formats}}}\n"
                    "decision: {bootstrap: 200}\n")
    return path


@pytest.mark.slow
def test_one_changed_input_reruns_exactly_what_depends_on_it(harness, tiny_base_dir, judges, tmp_path,
                                                            monkeypatch):
    import importlib.machinery

    import tasks.bench.catalog as suites  # the folder of the suite declarations and their samples
    from flows.compare import CompareParams, compare
    from tasks import keys
    from tasks.data.sft import BUILTIN
    from tasks.store import verified

    root = tmp_path / "run"
    data = tmp_path / "sft.jsonl"
    shutil.copy(BUILTIN / "thinking-mini.jsonl", data)
    suite_dir = sample_dir = tmp_path / "suites"  # each suite's YAML beside its bundled samples
    shutil.copytree(suites.SUITES_DIR, suite_dir)
    monkeypatch.setattr(suites, "SUITES_DIR", suite_dir)
    code_copy = tmp_path / "code" / "alpha_gate"
    shutil.copytree(Path(keys._locate("alpha_gate").origin).parent, code_copy)
    real_locate = keys._locate

    def run(config: Path, judge: str = judges[0], limit: int = 2) -> dict:
        params = CompareParams(config=str(config), out=str(root), cache=str(tmp_path / "cache"),
                               suites=["mmlu", "gsm8k", "elyza_tasks_100"], formats=None, limit=limit, judge=judge)
        before = _store(root)
        result = compare(params)
        after = _store(root)
        return {"new": {s: after[s] - before[s] for s in STAGES}, "result": result}

    baseline = _config(tmp_path / "c0", tiny_base_dir, data)
    first = run(baseline)["new"]
    assert {s: len(v) for s, v in first.items()} == {"data": 1, "train": 2, "export": 3, "eval": 9, "results": 3,
                                                     "degrade": 1, "speed": 1, "decide": 1, "report": 1}
    assert {s: len(v) for s, v in run(baseline)["new"].items()} == dict.fromkeys(STAGES, 0)  # nothing changed

    def edit(path: Path, old: str, new: str, count: int = 1):
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, count), encoding="utf-8")
        return lambda: path.write_text(text, encoding="utf-8")

    def alpha_gate_edit():
        spec = importlib.machinery.ModuleSpec("alpha_gate", None, origin=str(code_copy / "__init__.py"),
                                              is_package=True)
        spec.submodule_search_locations = [str(code_copy)]
        monkeypatch.setattr(keys, "_locate", lambda name: spec if name == "alpha_gate" else real_locate(name))
        # the stage processes (trainings, exports) import alpha_gate from the copy too: PYTHONPATH comes first
        path_before = os.environ.get("PYTHONPATH")
        monkeypatch.setenv("PYTHONPATH", str(code_copy.parent))
        undo = edit(code_copy / "pet.py", '"""', '"""Edited. ')
        keys.code_version.cache_clear()

        def revert():
            undo()
            monkeypatch.setattr(keys, "_locate", real_locate)
            if path_before is None:
                monkeypatch.delenv("PYTHONPATH")
            else:
                monkeypatch.setenv("PYTHONPATH", path_before)
            keys.code_version.cache_clear()
        return revert

    downstream = {"results": 3, "degrade": 1, "speed": 0, "decide": 1, "report": 1}
    cases = {  # name -> (change it and return the undo, run kwargs, expected new outputs per stage or None)
        "train section": (lambda: None, {"config": _config(tmp_path / "c1", tiny_base_dir, data, max_steps=3)},
                          {"data": 0, "train": 2, "export": 2, "eval": 6, "results": 2, "degrade": 1, "speed": 1,
                           "decide": 1, "report": 1}),
        "SFT data file": (lambda: edit(data, '"answer": "', '"answer": "Edited: ', -1), {},
                          {"data": 1, "train": 2, "export": 2, "eval": 6, "results": 2, "degrade": 1, "speed": 1,
                           "decide": 1, "report": 1}),
        "suite YAML": (lambda: edit(suite_dir / "mmlu.yaml", "The following are", "These are"), {},
                       {"data": 0, "train": 0, "export": 0, "eval": 3, **downstream}),
        "bundled sample item": (lambda: edit(sample_dir / "gsm8k.sample.jsonl", '"question": "',
                                             '"question": "Edited: '), {},
                                {"data": 0, "train": 0, "export": 0, "eval": 3, **downstream}),
        "judge model": (lambda: None, {"judge": judges[1]},
                        {"data": 0, "train": 0, "export": 0, "eval": 3, **downstream}),
        "eval limit": (lambda: None, {"limit": 3}, {"data": 0, "train": 0, "export": 0, "eval": 9, **downstream}),
        "alpha_gate source file": (alpha_gate_edit, {}, None),
        "export format list": (lambda: None, {"config": _config(tmp_path / "c2", tiny_base_dir, data,
                                                                formats="[bf16, q8_0]")}, None),
    }
    seen = {}
    for name, (change, kwargs, expected) in cases.items():
        undo = change()
        try:
            outcome = run(**{"config": baseline, **kwargs})
        finally:
            if undo:
                undo()
        new = outcome["new"]
        seen[name] = {s: len(v) for s, v in new.items()}
        if expected is not None:
            assert seen[name] == expected, name
        if name == "train section":  # the new GGUFs are what was evaluated and decided on
            decision = json.loads((root / "decision" / "decision.json").read_text())
            for variant in ("linear", "sigmoid-bayes"):
                manifest = json.loads((Path(decision["exports"][variant]) / "manifest.json").read_text())
                assert Path(decision["exports"][variant]).name in new["export"]
                bf16 = next(f["sha256"] for f in manifest["files"] if f["format"] == "bf16")
                results = Path(decision["results"][variant])
                assert {json.loads(p.read_text())["model_sha256"] for p in results.glob("*.summary.json")} == {bf16}
                assert json.loads((Path(decision["runs"][variant]) / "run.json").read_text())["steps"] == 3
        if name == "alpha_gate source file":  # trainings and every export rerun; evaluations follow the GGUFs
            assert seen[name]["train"] == 2 and seen[name]["export"] == 3 and seen[name]["decide"] == 1
            assert len(new["eval"]) == 3 * len(set(_eval_models(root, new["eval"])))
        if name == "export format list":  # every export rebuilt; the new format evaluated on every model
            assert seen[name]["export"] == 3 and seen[name]["train"] == 0
            q8 = [n for n in new["eval"] if "Q8_0" in json.loads(next(
                (root / "store" / "eval" / n).glob("*.summary.json")).read_text())["model"]]
            assert len(q8) == 9 and seen[name]["results"] >= 3
    # both configs' outputs stay in the store, intact and unmixed: the first run's index still verifies
    first_index = json.loads(sorted((root / "index").iterdir())[0].read_text())
    for ref in first_index["outputs"].values():
        assert verified(ref["path"], ref["key"]) is not None


@pytest.mark.slow
def test_deleting_the_run_folder_recomputes_instead_of_returning_dangling_references(harness, tiny_base_dir,
                                                                                     smoke_store, tmp_path,
                                                                                     monkeypatch):
    from flows.compare import CompareParams, compare
    from tests.conftest import seed_store
    from tests.test_flow import _config as smoke_config

    # the session's smoke config and its trainings and exports (seed_store): what is tested is the deletion
    config = smoke_config(tmp_path, tiny_base_dir)
    seed_store(smoke_store, tmp_path / "run")
    params = CompareParams(config=str(config), out=str(tmp_path / "run"), cache=str(tmp_path / "cache"),
                           suites=["mmlu"], formats=["bf16"], limit=2)
    compare(params)
    assert not (tmp_path / "run" / "logs" / "trainings.jsonl").exists()  # found by key: nothing trained
    compare(params)  # from here on, Prefect's cache holds a record for every task
    shutil.rmtree(tmp_path / "run")
    result = compare(params)
    journal = (tmp_path / "run" / "logs" / "trainings.jsonl").read_text().splitlines()
    assert len(journal) == 2  # trained again: a cache record whose output is gone is not a hit
    assert Path(result["report"]).is_file() and Path(result["decision_record"]).is_file()
    decision = json.loads(Path(result["decision_record"]).read_text())
    for folder in [*decision["exports"].values(), *decision["runs"].values(), *decision["results"].values()]:
        assert Path(folder).is_dir()
