"""The stage contract, written once: a stage output is found by the key of its inputs, verified, or built and sealed.

Every stage is two plain functions (tasks/stages/): its *plan* (the key, from the typed settings it was handed and
the sha256 of the refs it consumes, and the folder ``<root>/store/<stage>/<key>/`` that key addresses) and its
*build* (what writes the output into a staging folder). ``produce`` joins them: an intact output of the key is
reused (no slot, no process, no work), anything else is built in a staging folder that is renamed into place only
when complete, then stamped (tasks/store.py). ``cache_token`` is what a scheduler's cache may key on: the stage key
plus the stamp of the intact output (None when there is none, so a deleted or damaged output is rebuilt, never
handed out from a cache).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.store import Ref, keyed_dir, ref_of, seal, staging_dir, verified

__all__ = ["Plan", "plan", "found", "produce", "cache_token"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where a stage's output for these inputs lives: ``out`` = <root>/store/<stage>/<key>/."""

    stage: str
    key: str
    out: Path
    inputs: dict[str, Any] | None = None  # what the stamp records (None: the stage's build seals it itself)


def plan(stage: str, root: str | Path, inputs: dict[str, Any]) -> Plan:
    """The plan of a stage whose key is its inputs (JSON-able) and its code version (tasks.keys.stage_key)."""
    from tasks.keys import stage_key

    key = stage_key(stage, inputs)
    return Plan(stage, key, keyed_dir(root, stage, key), inputs)


def at(stage: str, root: str | Path, key: str) -> Plan:
    """The plan of a stage whose key (and stamp) its own package computes (data, train, dpo, export, eval)."""
    return Plan(stage, key, keyed_dir(root, stage, key))


def found(planned: Plan) -> Ref | None:
    """The intact output of the plan's key (every file matches its stamp), or None."""
    return verified(planned.out, planned.key)


def produce(planned: Plan, build: Callable[[Path], None]) -> Ref:
    """The output of ``planned``: found by key and verified, or built into a staging folder, sealed and renamed
    into place."""
    if (ref := found(planned)) is not None:
        return ref
    if planned.inputs is None:
        raise ValueError(f"Stage {planned.stage}: a plan without inputs cannot be sealed here; its own build seals it.")
    with staging_dir(planned.out) as tmp:
        build(tmp)
        seal(tmp, planned.stage, planned.key, planned.inputs)
    return ref_of(planned.out)


def cache_token(planned: Plan) -> str | None:
    """A scheduler's cache key for this stage: its key + the intact output's stamp sha256 + its location (a cached
    ref carries absolute paths, so a moved store must not hit the old records), or None when no intact output is
    there (then nothing may be cached: the stage runs and rebuilds it)."""
    ref = found(planned)
    if ref is None:
        return None
    return hashlib.sha256(f"{planned.stage}|{planned.key}|{ref.sha256}|{ref.path}".encode()).hexdigest()
