"""Reading a YAML file a person wrote (a pipeline config, a suite, a judge): every failure names the file, and for
a validation error each field, what it expected and what it found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: str | Path, what: str, hint: str = "") -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (``what``: e.g. "Config file"); an error naming it when it is
    missing, a folder, not UTF-8, not YAML or not a mapping."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; pass the YAML file itself{hint}.")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist{hint}.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{what} {path}:{line} is not UTF-8 text ({exc.reason}, byte {data[exc.start]:#04x}); "
                         "save it as UTF-8.") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{what} {path}: expected a mapping of fields at the top level; found "
                         f"{type(raw).__name__}{hint}.")
    return raw


def field_errors(exc) -> str:
    """A pydantic ValidationError as one line per field: where, what was wrong, what was found."""
    return "\n".join(f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']} (found "
                     f"{e.get('input')!r:.60})" for e in exc.errors())
