"""Every llama.cpp model is opened through tasks.llama_load.open_llama (one lock around llama-cpp-python's
stdout/stderr swap): two unguarded loads in threads can leave the process printing into /dev/null."""

from __future__ import annotations

import ast
import os
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_constructs_llama_directly():
    found = []
    for path in sorted((ROOT / "tasks").rglob("*.py")):
        if path.name == "llama_load.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Llama":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], "build models with tasks.llama_load.open_llama: " + ", ".join(found)


def test_parallel_loads_leave_stdout_and_stderr_alone(smollm2_gguf):
    from tasks.llama_load import open_llama

    before = (sys.stdout, sys.stderr, os.fstat(1).st_ino, os.fstat(2).st_ino)
    models, errors = [], []

    def load():
        try:
            models.append(open_llama(smollm2_gguf, n_ctx=256, verbose=False))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m in models:
        m.close()
    assert errors == [] and len(models) == 4
    assert (sys.stdout, sys.stderr, os.fstat(1).st_ino, os.fstat(2).st_ino) == before
