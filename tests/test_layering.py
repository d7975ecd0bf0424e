"""Imports point one way: deployments -> flows -> tasks -> alpha_gate (ARCHITECTURE.md, rule 1)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import (directly, anywhere in the file)
FORBIDDEN = {
    "alpha_gate": {"prefect", "prefect_dask", "llama_cpp", "tasks", "flows", "deployments"},
    "tasks": {"flows", "deployments"},
    # flows wire; they do no maths and load no models
    "flows": {"torch", "transformers", "peft", "trl", "unsloth", "llama_cpp", "numpy", "scipy", "pandas"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_modules(path) & FORBIDDEN[package]
        found += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_imports(package):
    assert (ROOT / package).is_dir()
    assert violations(package) == []


def test_the_scanner_catches_violations(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import prefect.tasks\nfrom llama_cpp import Llama\ndef f():\n    import torch\n"
                   "importlib.import_module('trl')\n")
    assert imported_modules(bad) == {"prefect", "llama_cpp", "torch", "trl"}


def test_importing_flows_and_the_cli_does_not_load_torch():
    code = ("import sys, flows, flows.cli, alpha_gate, alpha_gate.schedules\n"
            "heavy = [m for m in ('torch', 'transformers', 'prefect', 'llama_cpp') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_the_flow_module_imports_prefect_but_no_model_code():
    code = ("import sys, flows.compare\n"
            "print(','.join(m for m in ('torch', 'transformers', 'llama_cpp', 'peft', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
