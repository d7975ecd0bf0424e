"""Stage keys: the sha256 of everything a stage's output depends on.

A key hashes the stage's name, its inputs (the config fields it reads, the sha256 of the artifacts and files it
consumes) and the version of the code it runs: the source of every module and data folder listed for it below,
found through the import system, so a non-editable install is hashed the same way as a checkout. A listed module
that cannot be found is an error, never silently left out of the key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import threading
from functools import cache
from pathlib import Path
from typing import Any

# stage -> its entry modules (dotted; a package means all of its .py files) and package data folders
# ("pkg:folder"); every project module they import is added (see _closure)
CODE: dict[str, tuple[str, ...]] = {
    "data": ("tasks.data.sft", "tasks.data.pii", "tasks.config", "tasks.data:resources/sft"),
    "base": ("tasks.data.base_model", "tasks.data:resources"),
    "train": ("alpha_gate", "tasks.train.variant", "tasks.train.fit", "tasks.train.tune", "tasks.train.outputs",
              "tasks.data.base_model", "tasks.train.unsloth_backend", "tasks.data.sft", "tasks.config"),
    "dpo": ("alpha_gate", "tasks.train.dpo", "tasks.train.fit", "tasks.train.outputs", "tasks.data.base_model",
            "tasks.data.sft", "tasks.config", "tasks.bench.metrics", "tasks.llama_load"),
    "export": ("alpha_gate", "tasks.export.gguf", "tasks.export.converter", "tasks.export.verify",
               "tasks.data.base_model", "tasks.train.outputs", "tasks.llama_load"),
    # generation records (completions, log-likelihoods): the code that makes them, never the scorers' (a scorer
    # change must not regenerate); an evaluation's key holds its generation key and adds the scorers' code
    "generate": ("tasks.llama_load", "tasks.bench.engine", "tasks.bench.generate", "tasks.bench.suites",
                 "tasks.bench.vision"),
    "judge": ("tasks.llama_load", "tasks.bench.engine", "tasks.bench.judge"),
    "eval": ("tasks.bench.runner", "tasks.bench.score", "tasks.bench.metrics", "tasks.bench.judge"),
    "results": ("tasks.keys",),
    "speed": ("tasks.bench.speed", "tasks.bench.engine", "tasks.llama_load"),
    "degrade": ("tasks.decide.degrade", "tasks.decide.decision", "tasks.config"),
    "decide": ("tasks.decide.decision", "tasks.decide.degrade", "tasks.config"),
    "report": ("tasks.publish.report", "tasks.decide.decision", "tasks.bench.metrics"),
    "upload": ("tasks.publish.upload", "tasks.publish.cards", "tasks.config", "tasks.export.verify"),
}
SUFFIXES = (".py", ".jsonl", ".jinja", ".yaml", ".json")


def _locate(module: str):
    """Where the import system finds ``module`` (a seam: tests point a package at an edited copy)."""
    return importlib.util.find_spec(module)


def _sources(entry: str) -> list[Path]:
    if ":" in entry:  # package data: "package:folder"
        package, folder = entry.split(":", 1)
        spec = _locate(package)
        root = Path(next(iter(spec.submodule_search_locations))) / folder if spec else None
        if root is None or not root.is_dir():
            raise FileNotFoundError(f"Code-version entry {entry!r}: folder {root} not found; the install is "
                                    "incomplete (reinstall the project).")
        return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    spec = _locate(entry)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"Code-version entry {entry!r} is not importable; the install is incomplete.")
    if spec.submodule_search_locations:  # a package: every module in it
        root = Path(next(iter(spec.submodule_search_locations)))
        return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    return [Path(spec.origin)]


# libraries whose version changes what a stage produces (the converter and runtime are llama.cpp's)
LIBRARIES: dict[str, tuple[str, ...]] = {"export": ("transformers", "llama-cpp-python", "gguf"),
                                         "generate": ("llama-cpp-python",), "judge": ("llama-cpp-python",),
                                         "speed": ("llama-cpp-python",)}


PROJECT = ("tasks", "alpha_gate")

# CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state: two threads parsing at once
# (Prefect runs tasks in threads, each computing its cache key; 3.11's traceback formatter parses too) can raise
# "SystemError: AST constructor recursion depth mismatch" (seen in CI; cf. CPython gh-106905). Our parses are
# serialised, and one that collides with a parse outside our lock is retried (the depth is reset at each parse).
_AST_LOCK = threading.Lock()


def _parse(source: str, filename: str):
    import ast

    for attempt in range(5):
        try:
            with _AST_LOCK:
                return ast.parse(source, filename=filename)
        except SystemError as error:
            if "recursion depth mismatch" not in str(error) or attempt == 4:
                raise


def _project_imports(path: Path) -> set[str]:
    """The project modules (tasks.*, alpha_gate.*) a source file imports, anywhere in it (lazy imports in functions
    included): ``from tasks.bench import suites`` names tasks.bench.suites when that is a module."""
    import ast

    names: set[str] = set()
    source = path.read_text(encoding="utf-8")
    for node in ast.walk(_parse(source, str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] in PROJECT}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in PROJECT:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names if _is_submodule(node.module, alias.name)}
    return names


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module (``from package import name`` may name a function instead), found
    without importing ``package``: find_spec of a dotted name imports its parent, and importing a project module
    runs its own imports (alpha_gate.callback: torch, transformers), so that computing a key in the orchestrator
    (a training sent to a work pool) imported transformers in one thread while an export imported it in another,
    and transformers' lazy module then failed the export ("cannot import name 'AutoModelForCausalLM'")."""
    import importlib.machinery

    spec = _locate_quiet(package)
    if spec is None or not spec.submodule_search_locations:
        return False  # a plain module has no submodules: ``name`` is something defined in it
    found = importlib.machinery.PathFinder.find_spec(f"{package}.{name}", list(spec.submodule_search_locations))
    return found is not None


def _locate_quiet(module: str):
    try:
        return _locate(module)
    except (ImportError, ValueError):
        return None


def _closure(entries: tuple[str, ...]) -> list[str]:
    """The stage's listed entries plus every project module they import, transitively: the code a stage runs is
    hashed even where the list above forgot a helper. A module found this way counts alone (a package found this
    way: its __init__ only); a *listed* package counts whole."""
    listed = list(entries)
    seen, todo, found = set(listed), [e for e in listed if ":" not in e], []
    while todo:
        module = todo.pop()
        paths = _sources(module) if module in entries else _module_file(module)
        for path in paths:
            for name in sorted(_project_imports(path)):
                if name not in seen and not any(name == e or name.startswith(e + ".") for e in entries
                                                if ":" not in e and _is_package(e)):
                    seen.add(name)
                    found.append(name)
                    todo.append(name)
    return listed + sorted(found)


def _is_package(module: str) -> bool:
    spec = _locate_quiet(module)
    return bool(spec and spec.submodule_search_locations)


def _module_file(module: str) -> list[Path]:
    spec = _locate(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"Code-version entry {module!r} is not importable; the install is incomplete.")
    return [Path(spec.origin)]


@cache
def code_version(stage: str) -> str:
    """sha256 over the source of the code ``stage`` runs (its listed modules and data folders, and every project
    module they import) and the versions of the libraries listed for it (cached for the process: code does not
    change under it)."""
    import importlib.metadata as md

    digest = hashlib.sha256()
    for library in LIBRARIES.get(stage, ()):
        digest.update(f"{library}=={md.version(library)}\0".encode())
    for entry in _closure(CODE[stage]):
        paths = _sources(entry) if entry in CODE[stage] else _module_file(entry)
        for path in paths:
            digest.update(f"{entry}/{path.name}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()


def check_expected_key(stage: str, key: str, expected: str | None) -> None:
    """A stage process refuses to write under another key than the one its caller addressed (the folder it was
    given): both key the same settings (handed over, never re-read), so the code changed between the two, or a
    worker runs another version."""
    if expected is not None and key != expected:
        raise RuntimeError(f"This {stage} process computes the key {key[:12]}… but the flow addressed "
                           f"{expected[:12]}…: the project's code changed while the run was going, or this machine "
                           "runs another version. Rerun the flow (with the same code on every machine).")


def stage_key(stage: str, inputs: dict[str, Any]) -> str:
    """The key of one stage output: stage name + inputs (JSON-able) + the code version of the stage."""
    payload = json.dumps({"stage": stage, "inputs": inputs, "code": code_version(stage)}, sort_keys=True,
                         default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _unreachable(exc: BaseException) -> bool:
    """Whether a Hub call failed because the Hub could not be reached (offline mode, no route, refused, timed out),
    rather than because the repository or revision does not exist or needs a token."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    seen = exc
    while seen is not None:
        if isinstance(seen, (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError)):
            return False
        seen = seen.__cause__ or seen.__context__
    return True


def _hub_failure(what: str, exc: BaseException, pin: str, local: str) -> str:
    from tasks.environment import hub_endpoint, hub_offline

    endpoint = hub_endpoint()
    cause = f"{exc.__class__.__name__}: {str(exc)[:200]}"
    if _unreachable(exc):
        offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
        return (f"{what}: the Hugging Face Hub at {endpoint} could not be reached{offline} ({cause}). Without the "
                f"Hub: {pin}, or {local}. Otherwise check the network, HF_ENDPOINT and HF_HUB_OFFLINE.")
    return (f"{what}: the Hub at {endpoint} refused it ({cause}). Check the id and revision, and the token "
            f"(HF_TOKEN) for a gated or private repository; or {local}.")


# what a user can do without the Hub, by repo type (callers with a more precise place pass their own); kept here so
# that the data and base-model stages' code (and so their keys) need not change for a message
_HINTS = {
    "model": ("pin base_model.revision in the config to a 40-hex commit whose files are in the local Hugging Face "
              "cache", "use a base_model.local_dir, gguf_file or gguf_package instead"),
    "dataset": ("pin the revision in the config to a 40-hex commit whose files are in the local datasets cache",
                "use local files instead (a 'jsonl' or 'builtin' data source; --data sample|shared|FILE for eval)"),
}


def hub_revision(repo_id: str, revision: str | None, repo_type: str, *, pin: str | None = None,
                 local: str | None = None) -> str:
    """The commit a Hub id + revision resolves to (a 40-hex revision is taken as is, offline). A cache key must
    name exact content: "main" today is not "main" tomorrow. ``pin``/``local``: where the user pins the revision
    and what local alternative they have, for the error message."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    from huggingface_hub import HfApi

    try:
        info = HfApi().repo_info(repo_id, revision=revision, repo_type=repo_type)
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing to the user
        default_pin, default_local = _HINTS.get(repo_type, _HINTS["dataset"])
        raise RuntimeError(_hub_failure(
            f"Cannot resolve {repo_type} {repo_id!r} at revision {revision or 'main'!r} to a commit", exc,
            pin or default_pin, local or default_local)) from None
    return info.sha


def load_hub_dataset(hub_id: str, config: str | None, split: str, commit: str | None, *, pin: str, local: str):
    """``datasets.load_dataset`` at ``commit``; a Hub that cannot be reached (and no cached copy) is an error
    naming the dataset and what to do instead of a bare ConnectionError."""
    import datasets

    try:
        return datasets.load_dataset(hub_id, config, split=split, revision=commit)
    except ConnectionError as exc:
        if commit and re.fullmatch(r"[0-9a-f]{40}", commit):  # already pinned: what is missing is the cached copy
            pin = "run this once with the Hub reachable (the datasets cache then serves that commit offline)"
        raise RuntimeError(_hub_failure(
            f"Cannot load dataset {hub_id!r} (config {config!r}, split {split!r}, revision "
            f"{(commit or 'main')[:12]}) and it is not in the local datasets cache", exc, pin, local)) from None
