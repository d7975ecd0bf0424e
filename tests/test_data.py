from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.config import DataSource, DataSpec, FieldMap
from tasks.data.sft import BadRecordError, Record, prepare_data, read_records, split_records


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


GOOD = {"question": "What is 2 + 2?", "reasoning": "Two plus two is four.", "answer": "4"}


def test_builtin_set_prepares_a_deterministic_split(tmp_path):
    spec = DataSpec()
    manifest = prepare_data(spec, tmp_path / "a")
    counts = manifest["counts"]
    assert counts["read"] == 64 and counts["train"] + counts["validation"] == 64
    assert counts["validation"] == round(64 * spec.validation_fraction)
    row = json.loads((tmp_path / "a/train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["prompt"][-1]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    text = row["completion"][0]["content"]
    assert text.startswith("<think>") and "</think>\n<final>" in text and text.endswith("</final>")
    again = prepare_data(spec, tmp_path / "b")
    assert again["files"] == manifest["files"]
    languages = {json.loads(line)["lang"] for line in
                 (Path("tasks/data/resources/sft/thinking-mini.jsonl").read_text(encoding="utf-8").splitlines())}
    assert languages == {"en", "ja"}


def test_rerun_resumes_without_rewriting(tmp_path):
    out = tmp_path / "d"
    prepare_data(DataSpec(), out)
    before = (out / "train.jsonl").stat().st_mtime_ns
    prepare_data(DataSpec(), out)
    assert (out / "train.jsonl").stat().st_mtime_ns == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_custom_tags_and_system_prompt(tmp_path):
    spec = DataSpec(think_tags=("<reason>", "</reason>"), final_tags=("<answer>", "</answer>"),
                    system_prompt="Be brief.")
    prepare_data(spec, tmp_path)
    row = json.loads((tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert row["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert row["completion"][0]["content"].startswith("<reason>")


@pytest.mark.parametrize("bad,match", [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ({"question": "q", "answer": "a"}, r"bad\.jsonl:2: field 'reasoning' is missing"),
    ({"question": "q", "reasoning": "  ", "answer": "a"}, r"bad\.jsonl:2: field 'reasoning' must be a non-empty"),
    ({"question": "q", "reasoning": "r", "answer": 7}, r"field 'answer' must be a non-empty string, found a int"),
    ([1, 2], r"bad\.jsonl:2: expected a JSON object"),
])
def test_bad_record_names_file_line_and_field(tmp_path, bad, match):
    path = _jsonl(tmp_path / "bad.jsonl", [GOOD, bad, GOOD])
    spec = DataSpec(sources=[DataSource(kind="jsonl", path=path)])
    with pytest.raises(BadRecordError, match=match):
        read_records(spec)
    records, counts, skipped = read_records(spec.model_copy(update={"on_bad_record": "skip"}))
    assert len(records) == 2 and counts["bad_skipped"] == 1 and "bad.jsonl:2" in skipped[0]
    assert "record sha256 " in skipped[0]


# a record refused or skipped is named by its line and hash; its text (personal data included) is written nowhere
LEAKY = [
    {"question": ["Mail jane.doe@example.com or call 090-1234-5678"], "reasoning": "r", "answer": "a"},
    {"question": "q", "reasoning": "r", "answer": {"mail": "jane.doe@example.com", "tel": "090-1234-5678"}},
    {"question": "Mail jane.doe@example.com or call 090-1234-5678", "reasoning": "r", "answer": 7},
    {"question": "Mail jane.doe@example.com or call 090-1234-5678", "answer": "a"},
    '{"question": "Mail jane.doe@example.com or call 090-1234-5678", "answer": ',
    '{"question": "Mail jane.doe@example.com or call 090-1234-5678", "reasoning": ["r"], "answer": "a"}',
]


@pytest.mark.parametrize("bad", LEAKY)
def test_a_skipped_or_refused_record_leaks_no_value(tmp_path, caplog, bad):
    path = _jsonl(tmp_path / "bad.jsonl", [GOOD, bad, GOOD, {**GOOD, "question": "What is 3 + 3?"}])
    spec = DataSpec(sources=[DataSource(kind="jsonl", path=path)], validation_fraction=0.5)
    with pytest.raises(BadRecordError) as refused:
        read_records(spec)
    manifest = prepare_data(spec.model_copy(update={"on_bad_record": "skip"}), tmp_path / "out")
    written = str(refused.value) + caplog.text + "".join(p.read_text(encoding="utf-8")
                                                         for p in (tmp_path / "out").iterdir())
    assert manifest["counts"]["bad_skipped"] == 1 and "bad.jsonl:2" in manifest["skipped"][0]
    for value in ("jane.doe", "example.com", "090-1234-5678"):
        assert value not in written


def test_field_mapping_and_limit(tmp_path):
    rows = [{"q": f"Question {i}?", "cot": f"Step {i}.", "a": str(i), "sys": "S"} for i in range(5)]
    path = _jsonl(tmp_path / "m.jsonl", rows)
    source = DataSource(kind="jsonl", path=path, fields=FieldMap(question="q", reasoning="cot", answer="a",
                                                                 system="sys"), limit=3)
    records, counts, _ = read_records(DataSpec(sources=[source]))
    assert [r.answer for r in records] == ["0", "1", "2"] and records[0].system == "S"


def test_hub_source_through_datasets(tmp_path):
    # A local folder stands in for a Hub repo: load_dataset treats both alike (offline here).
    folder = tmp_path / "repo"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [GOOD, {**GOOD, "question": "What is 3 + 3?"}])
    records, _, _ = read_records(DataSpec(sources=[DataSource(kind="hub", hub_id=str(folder))]))
    assert len(records) == 2 and records[0].origin.endswith("[train]#0")


def test_personal_data_is_masked_or_dropped_and_counted(tmp_path):
    rows = [GOOD, {**GOOD, "question": "Mail bob@example.com: what is 2 + 2?"},
            {**GOOD, "question": "Is 090-1234-5678 mine?", "reasoning": "It is a phone number."}]
    path = _jsonl(tmp_path / "p.jsonl", rows)
    spec = DataSpec(sources=[DataSource(kind="jsonl", path=path)])
    records, counts, _ = read_records(spec)
    assert counts["pii_masked"] == 2 and len(records) == 3
    assert "[EMAIL]" in records[1].question and "bob@" not in records[1].question
    assert "[PHONE]" in records[2].question
    records, counts, _ = read_records(spec.model_copy(update={"personal_data": "drop"}))
    assert counts["pii_dropped"] == 2 and len(records) == 1
    manifest = prepare_data(spec, tmp_path / "out")
    assert manifest["counts"]["pii_masked"] == 2
    written = (tmp_path / "out/train.jsonl").read_text() + (tmp_path / "out/validation.jsonl").read_text()
    assert "bob@example.com" not in written


def test_split_is_by_content_and_stable_under_reordering():
    records = [Record(f"Q{i}", "r", "a", None, f"f:{i}") for i in range(20)]
    train, val = split_records(records, 0.25)
    assert len(val) == 5 and len(train) == 15
    train2, val2 = split_records(list(reversed(records)), 0.25)
    assert {r.question for r in val} == {r.question for r in val2}
    with pytest.raises(ValueError, match="at least 2"):
        split_records(records[:1], 0.5)


def test_a_non_utf8_line_is_a_bad_record_named_by_line_and_hash(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes((json.dumps(GOOD) + "\n").encode() + '{"question": "café"}\n'.encode("latin-1")
                     + (json.dumps({**GOOD, "question": "What is 3 + 3?"}) + "\n").encode())
    spec = DataSpec(sources=[DataSource(kind="jsonl", path=path)])
    with pytest.raises(BadRecordError, match=r"latin1\.jsonl:2: not UTF-8 text .* save the file as UTF-8 \(record "
                                             r"sha256 [0-9a-f]{16}\)"):
        read_records(spec)
    records, counts, skipped = read_records(spec.model_copy(update={"on_bad_record": "skip"}))
    assert len(records) == 2 and counts["bad_skipped"] == 1 and "caf" not in skipped[0]
