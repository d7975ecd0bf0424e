"""A suite's whole role lives in its YAML (ARCHITECTURE rule 11): no suite or group name is written in the Python of
flows/, tasks/, alpha_gate/ or deployments/. The names are read from configs/suites (the suites and groups.yaml).

What is scanned: string constants (f-string parts included; docstrings left out) and identifiers (names, attributes,
function/class/argument names, imports, keywords). Comments are not part of the AST. A name matches as a whole run of
word parts ("mmlu" in "_mmlu", "mmlu_" or "x/mmlu/y", never in "mmlux"): case-insensitively in identifiers, as
written in strings (a display title such as "ScienceQA" in a message is prose, not the suite's name)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tasks.bench import catalog

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("flows", "tasks", "alpha_gate", "deployments")


def _parts(text: str, fold: bool) -> list[str]:
    return [p.lower() if fold else p for p in re.split(r"[^A-Za-z0-9]+", text) if p]


def _mentions(text: str, name: str, fold: bool) -> bool:
    words, wanted = _parts(text, fold), _parts(name, fold)
    return any(words[i:i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1))


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _identifiers(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, ast.keyword):
        return [node.arg or ""]
    return []


def violations(path: Path, names: list[str]) -> list[str]:
    """``path:line: 'name' in <text>`` for every suite or group name written in ``path``'s code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings, found = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            texts = [(node.value, False)]
        else:
            texts = [(text, True) for text in _identifiers(node) if text]
        for text, fold in texts:
            found += [f"{path}:{node.lineno}: {name!r} in {text[:80]!r}" for name in names
                      if _mentions(text, name, fold)]
    return found


def declared_names() -> list[str]:
    return sorted({*catalog.suite_names(), *catalog.groups()})


def test_no_suite_or_group_name_is_written_in_code():
    names = declared_names()
    assert len(names) >= 6  # the scan reads the real declarations
    found = [v for folder in SCANNED for path in sorted((ROOT / folder).rglob("*.py"))
             for v in violations(path, names)]
    assert not found, ("suite or group names written in Python (ask the suite's YAML instead, "
                       "tasks/bench/suites.py, tasks/bench/catalog.py):\n" + "\n".join(found))


def test_the_scan_catches_a_planted_name_and_leaves_prose_alone(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('''"""Docstrings may name gsm8k and the core group."""
# a comment may name mmlu
WEIGHTS = {"core": 0.4}


def _mmlu_prompt(doc):
    """mmlu: allowed here."""
    return f"{doc}/mmlu_" + "Every CPU core; ScienceQA items"


def sizes(suite):
    if suite == "gsm8k":
        return 1319
    return 0
''', encoding="utf-8")
    found = violations(planted, ["gsm8k", "mmlu", "core", "scienceqa", "elyza_tasks_100"])
    lines = sorted({int(v.split(":")[1]) for v in found})
    # the dict key, the function name, the f-string part, the comparison; "core" in a message is a word too
    assert lines == [3, 6, 8, 12], found
    assert not [v for v in found if "ScienceQA" in v and "'scienceqa'" in v]  # a display title is prose
    assert not violations(planted, ["elyza_tasks_100"])
