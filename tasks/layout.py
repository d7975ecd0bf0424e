"""Where a run's artifacts live, for people: names beside the keyed store, and an index of what a run used.

The store (<out>/store/<stage>/<key>/) is the truth and is never chosen by name. Beside it, each run updates links
with friendly names (<out>/linear -> store/train/<key>, <out>/eval/linear-bf16 -> store/results/<key>, ...) to what
*it* used, and writes <out>/index.json (plus a dated copy in <out>/index/) listing every ref. Two configs run into
one --out keep all their outputs in the store; the links and index.json name the latest run, the dated indexes
every run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from pathlib import Path

from tasks.store import Ref, atomic_write_json, sha256_file

logger = logging.getLogger(__name__)


def _link(root: Path, name: str, target: Path) -> None:
    """Point <root>/<name> at ``target`` (relative, replaced in one rename). A real folder of the old by-name
    layout found there is moved aside to <root>/legacy/, never deleted."""
    link = root / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        aside = root / "legacy" / f"{name.replace('/', '_')}-{stamp}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(link), aside)
        logger.warning("%s was a folder of the old by-name layout; moved to %s", link, aside)
    tmp = link.parent / f".{link.name}.link-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(Path(target).resolve(), link.parent.resolve()), tmp)
    os.replace(tmp, link)


def publish(root: Path, config_path: Path, refs: dict[str, Ref]) -> Path:
    """Links for every named ref and this run's index; returns the index path."""
    root = Path(root)
    for name, ref in refs.items():
        _link(root, name, Path(ref.path))
    now = dt.datetime.now(dt.UTC)
    index = {"time": now.isoformat(timespec="seconds"), "config": str(Path(config_path).resolve()),
             "config_sha256": sha256_file(config_path),
             "outputs": {name: ref.model_dump() for name, ref in sorted(refs.items())}}
    dated = root / "index" / f"{now.strftime('%Y%m%dT%H%M%S%f')}-{Path(config_path).stem}.json"
    atomic_write_json(dated, index)
    return atomic_write_json(root / "index.json", index)


def sweep_staging(root: Path, pid: int | None = None) -> list[Path]:
    """Remove staging folders under <root>/store left by processes of this host that are gone (or by ``pid``): what
    a killed or interrupted run leaves. Folders of live runs, and of other hosts, are kept."""
    from tasks.store import owner_alive

    removed = []
    store = Path(root) / "store"
    if not store.is_dir():
        return removed
    for partial in [*store.glob("*/.*.partial-*"), *store.glob("*/.*.old-*")]:
        if not owner_alive(partial.name, pid):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed
