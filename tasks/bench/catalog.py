"""Where the suites are declared, and what a caller can learn from the folder without validating a whole suite.

configs/suites/ holds each suite's ``<name>.yaml`` beside its bundled ``<name>.sample.jsonl``, and ``groups.yaml``:
the composite groups a suite's ``group:`` names, with their default weights (decision.weights) and the speed
term's. ``SUITES_DIR`` is the one seam: a test points it at a folder of its own (a toy suite), and everything that
looks for a suite, a sample or a group reads it through ``suites_dir()``.

This module reads YAML only (no pydantic suite model, no benchmark code), so that tasks.config can take its
defaults from here (decision.weights, nightly.suites) without making every stage's key depend on the benchmark
code (tasks/keys.py hashes what a module imports). The full declaration is validated by tasks/bench/suites.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SUITES_DIR = ROOT / "configs" / "suites"
GROUPS_FILE = "groups.yaml"
SPEED = "speed"  # decision.weights' key of the speed term (not a group: no suite is in it)
# the default sets a suite can be in (its ``default:``): the comparison (`alphagate run`, the run form,
# `alphagate plan`) and the nightly study (nightly.suites)
DEFAULT_SETS = ("compare", "nightly")

_CACHE: dict[tuple[str, int], dict[str, Any]] = {}


def suites_dir() -> Path:
    """The folder of the suite declarations (the seam: read here only); a clear error when it has none, instead of
    a run that silently knows no suite."""
    folder = Path(SUITES_DIR)
    if not any(p.name != GROUPS_FILE for p in folder.glob("*.yaml")):
        raise FileNotFoundError(
            f"No suite declarations (<name>.yaml) in {folder}: alphagate reads its benchmark suites from"
            " configs/suites/ of its source checkout. Run it from a clone set up by `make install` or `make demo`"
            " (an editable install; a wheel or a non-editable `pip install .` does not carry configs/), or restore"
            " the folder (`git checkout -- configs/suites`).")
    return folder


def suite_path(name: str) -> Path:
    return suites_dir() / f"{name}.yaml"


def groups_path() -> Path:
    return suites_dir() / GROUPS_FILE


def suite_names() -> list[str]:
    """Every declared suite, sorted: the stems of the folder's YAML files (groups.yaml aside)."""
    return sorted(p.stem for p in suites_dir().glob("*.yaml") if p.name != GROUPS_FILE)


def bundled_samples() -> list[Path]:
    """Every bundled item file beside the suite declarations (the samples of all suites)."""
    return sorted(suites_dir().glob("*.jsonl"))


def _read(path: Path, what: str) -> dict[str, Any]:
    """A YAML mapping, read once per version of the file."""
    from tasks.yamlfile import read_yaml_mapping

    stamp = (str(path), path.stat().st_mtime_ns if path.is_file() else -1)
    if stamp not in _CACHE:
        _CACHE[stamp] = read_yaml_mapping(path, what)
    return _CACHE[stamp]


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{groups_path()}: {where} must be a number >= 0 (a default weight of the composite); "
                         f"found {value!r}. Fix that line.")
    return float(value)


def groups() -> dict[str, float]:
    """The declared composite groups and their default weights, in the order groups.yaml lists them."""
    raw = _read(groups_path(), "Composite groups file")
    declared = raw.get("groups")
    if not isinstance(declared, dict) or not declared:
        raise ValueError(f"{groups_path()}: expected 'groups:' mapping each composite group to its default weight "
                         f"(groups: {{<group>: <weight>, ...}}); found {declared!r}. Declare every group a suite "
                         "names.")
    if SPEED in declared:
        raise ValueError(f"{groups_path()}: '{SPEED}' is the speed term's weight, not a group; give it as "
                         f"'{SPEED}: <weight>' at the top level and name the group otherwise.")
    return {str(name): _weight(w, f"groups.{name}") for name, w in declared.items()}


def default_weights() -> dict[str, float]:
    """decision.weights' default: every declared group's weight, then the speed term's."""
    raw = _read(groups_path(), "Composite groups file")
    return {**groups(), SPEED: _weight(raw.get(SPEED), SPEED)}


def default_suites(which: str = "compare") -> list[str]:
    """The suites whose YAML puts them in the default set ``which`` (DEFAULT_SETS), in their declared ``order``."""
    if which not in DEFAULT_SETS:
        raise ValueError(f"Unknown default set {which!r}; expected one of {list(DEFAULT_SETS)}.")
    chosen = []
    for name in suite_names():
        raw = _read(suite_path(name), "Suite YAML")
        sets = raw.get("default") or []
        if which in (sets if isinstance(sets, list) else []):
            order = raw.get("order")
            chosen.append((order if isinstance(order, int) and not isinstance(order, bool) else 10**9, name))
    return [name for _, name in sorted(chosen)]
