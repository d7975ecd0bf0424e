from __future__ import annotations

import json

import pytest

from tasks.bench.runner import build_context, choices_of
from tasks.bench.suites import SHARED_DIR, MissingFieldError, load_docs, load_suite, suite_names

SUITES = ["arc_challenge", "elyza_tasks_100", "gsm8k", "hellaswag", "mmlu", "scienceqa"]
needs_shared = pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="../shared/benchmarks not present")


def test_all_six_suites_are_declared():
    assert suite_names() == SUITES
    for name in SUITES:
        suite = load_suite(name)
        assert suite.version >= 1 and len(suite.prompt_hash()) == 64


def test_unknown_suite_says_did_you_mean():
    with pytest.raises(ValueError, match="Did you mean 'hellaswag'"):
        load_suite("helaswag")


@pytest.mark.parametrize("name", SUITES)
def test_bundled_samples_load(name):
    docs = load_docs(load_suite(name))
    assert len(docs) >= 5 and [d["index"] for d in docs] == list(range(len(docs)))


@needs_shared
@pytest.mark.parametrize("name", SUITES)
def test_shared_dev_items_load(name):
    docs = load_docs(load_suite(name), "shared")
    assert len(docs) >= 30


# -- prompt strings pinned to lm-evaluation-harness's default templates -------------------------------

def test_mmlu_prompt_matches_lm_eval_default_template():
    suite = load_suite("mmlu")
    doc = load_docs(suite)[0]
    assert build_context(suite, doc, [doc], 0) == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is 7 x 8?\nA. 54\nB. 56\nC. 64\nD. 48\nAnswer:")
    assert [suite.target_delimiter + c for c in choices_of(suite, doc)] == [" A", " B", " C", " D"]
    assert doc["answer"] == 1


@needs_shared
def test_mmlu_shared_prompts_and_five_shot_layout():
    suite = load_suite("mmlu")
    docs = load_docs(suite, "shared")
    assert build_context(suite, docs[0], docs, 0) == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is the value of p in 24 = 2p?\nA. p = 4\nB. p = 8\nC. p = 12\nD. p = 24\nAnswer:")
    shot = build_context(suite, docs[0], docs, 1)
    first_shot = [d for d in docs if d["index"] != 0 and d["subject"] == "elementary_mathematics"][0]
    letter = "ABCD"[first_shot["answer"]]
    assert shot.startswith("The following are multiple choice questions (with answers) about elementary mathematics."
                           f"\n\n{first_shot['question'].strip()}\nA. ")
    assert f"\nAnswer: {letter}\n\nWhat is the value of p in 24 = 2p?\n" in shot


@needs_shared
def test_arc_prompt_matches_lm_eval_and_both_layouts():
    suite = load_suite("arc_challenge")
    doc = load_docs(suite, "shared")[0]
    assert build_context(suite, doc, [doc], 0) == (
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most "
        "likely effect of this increase in rotation?\nAnswer:")
    assert choices_of(suite, doc)[2] == "Planetary days will become shorter." and doc["answer"] == 2


@needs_shared
def test_hellaswag_prompt_uses_lm_eval_preprocess():
    suite = load_suite("hellaswag")
    doc = load_docs(suite, "shared")[0]
    assert build_context(suite, doc, [doc], 0) == (
        "Pole vault: Pole vault is a sport where you run with a pole and stop and swing your body. A few women")
    assert choices_of(suite, doc)[3] == "are in the gym practicing to do this pole vault, trying to do their best."


def test_hellaswag_preprocess_strips_wikihow_markup(tmp_path):
    row = {"activity_label": "Home and Garden", "ctx_a": "[header] How to fix a tap [title] Turn off the water.",
           "ctx_b": "", "endings": ["[step] Open  the valve.", "b", "c", "d"], "label": "0"}
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(row) + "\n")
    doc = load_docs(load_suite("hellaswag"), path)[0]
    assert doc["query"] == "Home and Garden: How to fix a tap. Turn off the water."
    assert doc["choices"][0] == " Open the valve."  # lm-eval strips *before* removing "[step]": kept as it does


def test_hub_layouts_are_accepted(tmp_path):
    arc = {"id": "x", "question": "Which is a gas?", "choices": {"text": ["ice", "steam"], "label": ["1", "2"]},
           "answerKey": "2"}
    mmlu = {"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}
    sqa = {"question": "Which?", "choices": ["a", "b"], "answer": 1, "hint": "", "image": None, "subject": "s"}
    for name, row in (("arc_challenge", arc), ("mmlu", mmlu), ("scienceqa", sqa)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(row) + "\n")
        assert load_docs(load_suite(name), path)[0]["answer"] == 1


def test_scienceqa_problems_json_layout(tmp_path):
    problems = {"17": {"question": "Which is hot?", "choices": ["sun", "ice"], "answer": 0, "hint": "",
                       "image": "image.png", "subject": "natural science"}}
    path = tmp_path / "problems.json"
    path.write_text(json.dumps(problems))
    doc = load_docs(load_suite("scienceqa"), path)[0]
    assert doc["pid"] == "17" and doc["image"] == "image.png" and doc["letters"] == ["A", "B"]


@pytest.mark.parametrize("name,row,field", [
    ("mmlu", {"question": "q", "choices": ["a", "b"]}, "answer"),
    ("arc_challenge", {"question": {"stem": "q", "choices": []}}, "answerKey"),
    ("gsm8k", {"question": "q"}, "answer"),
    ("elyza_tasks_100", {"input": "x"}, "output"),
    ("hellaswag", {"activity_label": "a", "ctx_a": "b", "endings": []}, "ctx_b"),
])
def test_missing_field_names_file_line_and_field(tmp_path, name, row, field):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(MissingFieldError, match=rf"d\.jsonl:1: field '{field}' is missing"):
        load_docs(load_suite(name), path)


def test_bad_data_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_docs(load_suite("mmlu"), tmp_path / "none.jsonl")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"question": "q", "choices": ["a","b"], "answer": "Z"}\n')
    with pytest.raises(MissingFieldError, match="field 'answer': expected a choice letter A-B or an index 0-1"):
        load_docs(load_suite("mmlu"), bad)


HELLA = {"activity_label": "Tea", "ctx_a": "A man fills a kettle.", "ctx_b": "he", "endings": ["a", "b", "c", "d"],
         "label": 0}
MMLU = {"subject": "s", "question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": "B"}
SQA = {"question": "Which?", "choices": ["a", "b"], "answer": 1, "hint": "", "image": None, "subject": "s"}


# (suite, rows, line, field, found): each is a counterexample the runner once scored as if it were fine
BAD_ITEMS = [
    ("hellaswag", [{**HELLA, "label": 9}], 1, "label", "found 9"),
    ("hellaswag", [{**HELLA, "label": 2.7}], 1, "label", "found 2.7"),
    ("hellaswag", [{**HELLA, "label": True}], 1, "label", "found True"),
    ("hellaswag", [{**HELLA, "label": "x"}], 1, "label", "found 'x'"),
    ("hellaswag", [{**HELLA, "ctx_a": 5}], 1, "ctx_a", "found <int> 5"),
    ("hellaswag", [{**HELLA, "endings": ["a", 2]}], 1, r"endings\[1\]", "found 2"),
    ("mmlu", [{**MMLU, "choices": ["1", "2", "3", "4", "5"], "answer": "E"}], 1, "choices", "found <5 choices>"),
    ("mmlu", [{**MMLU, "choices": ["1", "2", "3"], "answer": "A"}], 1, "choices", "found <3 choices>"),
    ("mmlu", [{**MMLU, "answer": "b"}], 1, "answer", "found 'b'"),
    ("mmlu", [{**MMLU, "answer": 4}], 1, "answer", "found 4"),
    ("mmlu", [{**MMLU, "choices": "3456"}], 1, "choices", "found <str>"),
    ("mmlu", [{**MMLU, "question": ["2+2?"]}], 1, "question", "found <list>"),
    ("mmlu", [MMLU, {**MMLU, "subject": "s"}], 2, "prompt", "the same prompt and choices"),
    ("scienceqa", [{**SQA, "choices": list("abcdef"), "answer": 5}], 1, "choices", "found <6 choices>"),
    ("gsm8k", [{"question": "q", "answer": "so #### twelve"}], 1, "answer", "found 'twelve'"),
    ("elyza_tasks_100", [{"input": "x", "output": ["y"]}], 1, "output", "found <list>"),
    ("elyza_tasks_100", [{"input": "x", "output": "y"}, {"input": "x", "output": "z"}], 2, "prompt", "same prompt"),
    ("arc_challenge", [{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "A"]}, "answerKey": "A"}],
     1, "choices", "labels"),
]


@pytest.mark.parametrize("name,rows,line,field,found", BAD_ITEMS)
def test_bad_items_are_refused_with_file_line_field_and_what_was_found(tmp_path, name, rows, line, field, found):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MissingFieldError, match=rf"items\.jsonl:{line}: field '{field}': expected .*{found}"):
        load_docs(load_suite(name), path)


def test_good_counterparts_of_the_bad_items_pass(tmp_path):
    for name, row in (("hellaswag", HELLA), ("hellaswag", {**HELLA, "label": "3"}), ("mmlu", MMLU),
                      ("mmlu", {**MMLU, "answer": 3}), ("scienceqa", {**SQA, "choices": list("abcde")})):
        path = tmp_path / "ok.jsonl"
        path.write_text(json.dumps(row) + "\n")
        assert load_docs(load_suite(name), path)[0]["answer"] in range(5)


def test_non_utf8_items_name_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(MMLU).encode() + b"\n" + '{"question": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(MissingFieldError, match=r"latin1\.jsonl:2: not UTF-8 text .* save the file as UTF-8"):
        load_docs(load_suite("mmlu"), path)


def test_a_repeat_in_a_published_hub_set_is_logged_not_refused(caplog):
    from tasks.bench.items import check_docs

    suite = load_suite("mmlu")
    doc = {**MMLU, "answer": 1, "index": 0, "origin": "cais/mmlu[test]#0"}
    with pytest.raises(MissingFieldError, match="#1: field 'prompt'"):
        check_docs(suite, [doc, {**doc, "index": 1, "origin": "cais/mmlu[test]#1"}])
    check_docs(suite, [doc, {**doc, "index": 1, "origin": "cais/mmlu[test]#1"}], published=True)
    assert "cais/mmlu[test]#1: the same prompt and choices as cais/mmlu[test]#0" in caplog.text
    with pytest.raises(MissingFieldError, match="field 'answer'"):  # every other check still refuses
        check_docs(suite, [{**doc, "answer": 7}], published=True)
