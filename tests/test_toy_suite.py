"""Adding a suite is adding its YAML and its samples, and nothing else: a toy suite written into a copy of
configs/suites is found, validated, loaded, scored and enters the decision's composite through the group its YAML
names. No model is loaded: the items' log-likelihoods are made up, and scoring reads them as it reads an engine's."""

from __future__ import annotations

import json
import shutil

import pytest

from tasks.bench import catalog

TOY = """\
# a toy suite: the items are the documents (no process_docs hook)
name: toy
version: 1
kind: multiple_choice
dataset:
  hub_id: example/toy
  split: test
  split_size: 40   # items in example/toy test as published
  sample: toy.sample.jsonl
doc_to_text: "Q: {{ question }}\\nA:"
choices_field: choices
target_field: answer
metrics: [acc, acc_norm]
title: Toy
group: core
primary: acc
default: [compare]
order: 7
"""

ITEMS = [{"question": f"What is {i} plus one?", "choices": [str(i + 1), str(i + 2), str(i)], "answer": 0}
         for i in range(8)]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """configs/suites copied, plus toy.yaml and toy.sample.jsonl: the seam (catalog.SUITES_DIR) points there."""
    folder = tmp_path / "suites"
    shutil.copytree(catalog.SUITES_DIR, folder)
    (folder / "toy.yaml").write_text(TOY, encoding="utf-8")
    (folder / "toy.sample.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS), encoding="utf-8")
    monkeypatch.setattr(catalog, "SUITES_DIR", folder)
    return folder


def test_the_toy_suite_is_found_loaded_and_in_the_default_set(toy):
    from tasks.bench import suites
    from tasks.decide.planning import suite_sizes

    assert "toy" in suites.suite_names() and "toy" in catalog.suite_names()
    assert suites.DEFAULT_SUITES[-1] == "toy"  # order 7: after the six
    assert "toy" not in catalog.default_suites("nightly")
    spec = suites.load_suite("toy")
    assert (spec.title, spec.group, spec.primary, spec.image_field) == ("Toy", "core", "acc", None)
    docs = suites.load_docs(spec)  # checked against the declaration: every prompt renders, gold among the choices
    assert [d["index"] for d in docs] == list(range(len(ITEMS))) and docs[0]["question"] == ITEMS[0]["question"]
    assert suite_sizes(["toy"], None) == {"toy": len(ITEMS)} and suite_sizes(["toy"], "hub") == {"toy": 40}


def test_an_undeclared_group_is_refused_with_what_to_do(toy):
    from tasks.bench.suites import load_suite

    (toy / "toy.yaml").write_text(TOY.replace("group: core", "group: toys"), encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        load_suite("toy")
    message = str(refused.value)
    assert "'toys'" in message and "core" in message and "groups.yaml" in message and "declare" in message


def test_a_new_group_is_one_line_of_groups_yaml(toy):
    from tasks.bench.suites import load_suite
    from tasks.config import DecisionSpec

    (toy / "toy.yaml").write_text(TOY.replace("group: core", "group: toys"), encoding="utf-8")
    groups = (toy / "groups.yaml").read_text(encoding="utf-8")
    (toy / "groups.yaml").write_text(groups.replace("groups:\n", "groups:\n  toys: 0.2\n"), encoding="utf-8")
    assert load_suite("toy").group == "toys"
    assert DecisionSpec().weights["toys"] == 0.2
    with pytest.raises(ValueError, match="toys"):  # a config's weights must then give the new group one too
        DecisionSpec(weights={"elyza": 0.4, "core": 0.4, "scienceqa": 0.1, "speed": 0.1})


def _scored(spec, docs, right: set[int]) -> list[dict]:
    """Each item scored as the runner scores an engine's log-likelihoods: the gold choice likeliest on ``right``."""
    from tasks.bench.options import RunOptions
    from tasks.bench.prompts import build_context, sha
    from tasks.bench.score import score_row

    rows = []
    for doc in docs:
        lls = [-1.0, -2.0, -3.0] if doc["index"] in right else [-3.0, -1.0, -2.0]
        rows.append({"index": doc["index"], "doc": doc, "prompt_sha256": sha(build_context(spec, doc, docs, 0)),
                     "loglikelihoods": lls, "is_greedy": [ll == max(lls) for ll in lls]})
    return [score_row(spec, row, RunOptions()) for row in rows]


def _write(folder, suite: str, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / f"{suite}.summary.json").write_text(json.dumps({"suite": suite, "timings": {}}))


def test_the_toy_suite_is_scored_and_enters_the_composite_through_its_group(toy, tmp_path):
    from tasks.bench.suites import load_docs, load_suite
    from tasks.config import DecisionSpec
    from tasks.decide.decision import composite, decide

    spec = load_suite("toy")
    docs = load_docs(spec)
    a, b = _scored(spec, docs, set(range(6))), _scored(spec, docs, {0, 1})
    assert sum(r["acc"] for r in a) == 6 and sum(r["acc"] for r in b) == 2 and a[0]["pred"] == 0
    _write(tmp_path / "A", "toy", a)
    _write(tmp_path / "B", "toy", b)
    # an open-ended suite of another group (unjudged: char F1 on both sides)
    _write(tmp_path / "A", "elyza_tasks_100", [{"index": i, "char_f1": 0.5} for i in range(8)])
    _write(tmp_path / "B", "elyza_tasks_100", [{"index": i, "char_f1": 0.25} for i in range(8)])
    settings = DecisionSpec(bootstrap=200)
    record = decide({"A": tmp_path / "A", "B": tmp_path / "B"}, settings)
    assert {r["suite"] for r in record["suites"]} == {"toy", "elyza_tasks_100"}
    toy_row = next(r for r in record["suites"] if r["suite"] == "toy")
    assert (toy_row["a"], toy_row["b"], toy_row["metric"]) == (6 / 8, 2 / 8, "acc")
    core, elyza = settings.weights["core"], settings.weights["elyza"]
    assert record["composite_a"] == pytest.approx((core * 6 / 8 + elyza * 0.5) / (core + elyza))
    assert record["composite_b"] == pytest.approx((core * 2 / 8 + elyza * 0.25) / (core + elyza))
    # the toy shares the core group's weight with the other core suites: their mean enters the composite
    assert composite({"toy": 1.0, "mmlu": 0.0, "elyza_tasks_100": 0.0}, None, settings) == pytest.approx(
        core * 0.5 / (core + elyza))


def test_a_missing_suites_folder_is_an_error_naming_it_not_an_empty_list(tmp_path, monkeypatch, capsys):
    """A non-editable install (or a deleted configs/suites) would otherwise run with no suite at all."""
    from tasks.bench import catalog

    monkeypatch.delenv("ALPHAGATE_DEBUG", raising=False)  # debug shows the traceback instead of the line
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / catalog.GROUPS_FILE).write_text("groups: {}\n")  # groups alone declare no suite
    for folder in (tmp_path / "missing", tmp_path / "suites"):
        monkeypatch.setattr(catalog, "SUITES_DIR", folder)
        with pytest.raises(FileNotFoundError, match=f"No suite declarations .* in {folder}.*make install"):
            catalog.suite_names()
    from flows.cli import main  # the command line says so in one line (its choices come from that folder)

    assert main(["plan", "--config", "configs/demo.yaml"]) == 2
    assert capsys.readouterr().err.startswith(f"alphagate: No suite declarations (<name>.yaml) in {tmp_path}/suites")
