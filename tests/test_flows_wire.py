"""flows/ wires and does no work (ARCHITECTURE rule 1, issue 27): no file I/O and no arithmetic on scores there.

The scan reads the AST of every module under flows/ (the command line included): a call that reads, writes, lists or
stats a file, or opens a JSON record, fails it; so does arithmetic (a binary operator, sum/min/max/statistics) on a
name that holds a score, a metric, a mean or a margin. The second test plants each kind of violation in a scratch
module and shows the scanner catches it, so the first cannot pass by scanning nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IO_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "mkdir", "unlink", "rmdir", "rename",
            "touch", "iterdir", "glob", "rglob", "stat", "exists", "is_file", "is_dir", "symlink_to", "copy",
            "copy2", "copyfile", "copytree", "rmtree", "move", "remove", "makedirs", "listdir", "scandir", "load",
            "dump", "read_json", "read_jsonl", "read_json_object", "atomic_write_json", "atomic_write_text",
            "sha256_file", "fdopen"}
IO_MODULES = {"shutil", "pickle", "csv", "tempfile", "glob"}  # json: only its load/dump calls are I/O
SCORE = re.compile(r"score|metric|mean|margin|accuracy|acc\b|p_value|weight|composite", re.IGNORECASE)
AGGREGATES = {"sum", "min", "max", "mean", "fmean", "median", "stdev"}


def _names(node: ast.AST) -> list[str]:
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.append(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.append(sub.attr)
        elif isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant):
            out.append(str(sub.slice.value))  # record["score"]
    return out


def _text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or isinstance(node, ast.Constant) and isinstance(node.value, str)


def _on_scores(node: ast.AST) -> bool:
    if isinstance(node, ast.BinOp) and (_text(node.left) or _text(node.right)):
        return False  # building a message, not computing
    return any(SCORE.search(name) for name in _names(node))


def _called(node: ast.Call) -> str:
    return getattr(node.func, "attr", getattr(node.func, "id", ""))


def findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and _called(node) in IO_CALLS:
            found.append(f"{where} file I/O: {_called(node)}()")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} imports {m}" for m in modules if m.split(".")[0] in IO_MODULES | {"statistics"}]
        elif isinstance(node, ast.BinOp | ast.AugAssign) and _on_scores(node):
            found.append(f"{where} arithmetic on scores: {ast.unparse(node)[:80]}")
        elif isinstance(node, ast.Call) and _called(node) in AGGREGATES and _on_scores(node):
            found.append(f"{where} aggregates scores: {ast.unparse(node)[:80]}")
    return found


def test_flows_do_no_file_io_and_no_arithmetic_on_scores():
    modules = sorted((ROOT / "flows").rglob("*.py"))
    assert len(modules) >= 5, modules  # the scan sees the package, the command line included
    found = [f for path in modules for f in findings(path)]
    assert found == [], "flows/ must only wire; move these into tasks/:\n" + "\n".join(found)


def test_the_scan_catches_each_kind_of_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import json\nfrom shutil import copy2\n"
        "def g(handle, metric):\n"
        "    return json.load(handle), f'{metric}: ' + 'ok', json.dumps({'metric': metric})\n"
        "def f(path, results, record):\n"
        "    text = path.read_text()\n"
        "    with open(path) as handle:\n"
        "        pass\n"
        "    total = sum(r['score'] for r in results)\n"
        "    margin = record['mean_a'] - record['mean_b']\n"
        "    path.mkdir()\n"
        "    return 80.0 * len(results) / 3\n")  # progress arithmetic on counts is wiring, not scores
    kinds = [f.split(" ", 1)[1] for f in findings(bad)]
    assert "file I/O: read_text()" in kinds and "file I/O: open()" in kinds and "file I/O: mkdir()" in kinds
    assert "file I/O: load()" in kinds and "imports shutil" in kinds and "imports json" not in kinds
    assert not any("ok" in k or "dumps" in k for k in kinds), kinds  # a message or printed JSON is not work
    assert any(k.startswith("aggregates scores: sum(") for k in kinds)
    assert any(k.startswith("arithmetic on scores: record['mean_a'] - record['mean_b']") for k in kinds)
    assert not any("80.0" in k for k in kinds), kinds
