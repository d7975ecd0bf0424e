"""Declared benchmark suites (configs/suites/<name>.yaml, each beside its bundled <name>.sample.jsonl) and their
documents.

A suite YAML says where its data lives, how a document becomes a prompt (Jinja templates with lm-eval's names:
description, doc_to_text, doc_to_choice / choices_field, target_field, target_delimiter, fewshot_delimiter), its
metrics, answer filters and version, and its whole role (tasks/bench/suite_spec.py). ``process_docs`` names a small
hook (tasks/bench/doc_hooks.py) that maps the original release's layout *and* the Hub dataset's layout to one
canonical document, checking fields. Which suites exist, their folder and their groups: tasks/bench/catalog.py.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from tasks.bench import items
from tasks.bench.catalog import ROOT, default_suites, groups, suite_names, suite_path, suites_dir
from tasks.bench.doc_hooks import HOOKS
from tasks.bench.items import MissingFieldError
from tasks.bench.suite_spec import AnswerFilter, DatasetSpec, GenerationSpec, SuiteSpec

__all__ = ["AnswerFilter", "DatasetSpec", "GenerationSpec", "MissingFieldError", "SHARED_DIR", "SuiteSpec",
           "default_suites", "groups", "hub_commit", "hub_hints", "load_docs", "load_suite", "resolve_data",
           "suite_names", "suite_path", "suites_dir"]

SHARED_DIR = ROOT.parent / "shared" / "benchmarks"


def __getattr__(name: str):
    """``DEFAULT_SUITES``: what a comparison evaluates unless told otherwise (the run form's default, `alphagate
    plan`), read from the suites' YAML (``default: [compare, ...]``) when asked for, so a suite added or a folder
    pointed elsewhere is seen. ``SAMPLES_DIR``: where the bundled samples are (beside the YAMLs)."""
    if name == "DEFAULT_SUITES":
        return tuple(default_suites("compare"))
    if name == "SAMPLES_DIR":
        return suites_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_suite(name: str) -> SuiteSpec:
    path = suite_path(name)
    if not path.is_file():
        close = difflib.get_close_matches(name, suite_names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown suite {name!r}.{hint} Known suites: {suite_names()}.")
    from pydantic import ValidationError

    from tasks.yamlfile import field_errors, read_yaml_mapping

    try:
        spec = SuiteSpec.model_validate(read_yaml_mapping(path, "Suite YAML"))
    except ValidationError as exc:
        raise ValueError(f"Suite YAML {path} is not a valid suite declaration (fix these fields):\n"
                         f"{field_errors(exc)}") from None
    if spec.name != name:
        raise ValueError(f"Suite YAML {path} declares name {spec.name!r}; a suite's name is its file's name. Rename "
                         f"the file to {spec.name}.yaml or set name: {name}.")
    if spec.process_docs is not None and spec.process_docs not in HOOKS:
        raise ValueError(f"Suite YAML {path}: process_docs {spec.process_docs!r} is not a document hook; known: "
                         f"{sorted(HOOKS)} (tasks/bench/doc_hooks.py). Name one of them, or leave process_docs out "
                         "when the items already are the documents.")
    return spec


# -- documents -------------------------------------------------------------------------------------

def _raw_rows(path: Path):
    """(origin, row) from a JSONL file, or a JSON list / dict of records (ScienceQA's problems.json)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise MissingFieldError(f"{path}:{line}: not UTF-8 text ({exc.reason}, byte {exc.object[exc.start]:#04x} at "
                                f"offset {exc.start}); save the file as UTF-8.") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MissingFieldError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, (dict, list)):
            raise items.refuse(str(path), "(top level)", "a list or an object of items", items.kind_of(data))
        rows = data.items() if isinstance(data, dict) else enumerate(data)
        for key, row in rows:
            yield f"{path}[{key}]", ({**row, "pid": row.get("pid", key)} if isinstance(row, dict) and
                                     isinstance(data, dict) else row)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise MissingFieldError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def resolve_data(suite: SuiteSpec, data: str | Path | None) -> Path | str:
    """None/'sample' -> the bundled sample; 'shared' -> ../shared/benchmarks; 'hub'; or a file path."""
    if data is None or data == "sample":
        return suites_dir() / suite.dataset.sample
    if data == "shared":
        if suite.dataset.shared is None or not (SHARED_DIR / suite.dataset.shared).is_file():
            raise FileNotFoundError(f"No shared dev items for {suite.name} under {SHARED_DIR}.")
        return SHARED_DIR / suite.dataset.shared
    if data == "hub":
        return "hub"
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} for suite {suite.name} does not exist.")
    return path


def hub_hints(suite: SuiteSpec) -> dict[str, str]:
    """What a user can do when the Hub cannot be reached for this suite (for tasks.keys' error messages)."""
    return {"pin": f"pin dataset.revision in {suite_path(suite.name)} to a 40-hex commit whose files are in the "
                   "local datasets cache",
            "local": "evaluate local items instead with --data sample (bundled), --data shared or --data FILE.jsonl"}


def hub_commit(suite: SuiteSpec) -> str:
    from tasks.keys import hub_revision

    return hub_revision(suite.dataset.hub_id, suite.dataset.revision, "dataset", **hub_hints(suite))


def _as_is(row: dict, origin: str) -> dict:
    """A suite without a hook: the item is the document (check_docs checks what the templates read)."""
    if not isinstance(row, dict):
        raise items.refuse(origin, "(item)", "an object of fields", items.kind_of(row))
    return dict(row)


def load_docs(suite: SuiteSpec, data: str | Path | None = None, limit: int | None = None,
              commit: str | None = None) -> list[dict]:
    """Canonical documents in source order, each with its 0-based ``index`` and ``origin``. ``commit``: the Hub
    commit already resolved for a result's key, so the items read are the ones the key names."""
    source = resolve_data(suite, data)
    hook = HOOKS[suite.process_docs] if suite.process_docs else _as_is
    if source == "hub":
        from tasks.keys import load_hub_dataset

        commit = commit or hub_commit(suite)
        rows = load_hub_dataset(suite.dataset.hub_id, suite.dataset.hub_config, suite.dataset.split, commit,
                                **hub_hints(suite))
        raw = ((f"{suite.dataset.hub_id}[{suite.dataset.split}]#{i}", dict(r)) for i, r in enumerate(rows))
    else:
        raw = _raw_rows(Path(source))
    docs = []
    for index, (origin, row) in enumerate(raw):
        if limit is not None and index >= limit:
            break
        docs.append({**hook(row, origin), "index": index, "origin": origin})
    if not docs:
        raise ValueError(f"{source}: no documents for suite {suite.name}.")
    items.check_docs(suite, docs, published=source == "hub")  # before any model loads: a bad item is refused
    return docs
