"""What each command may overwrite or remove in an output a user names, checked while its lock is held
(tasks/outdir.py): only what that command wrote, unless the user passes --replace.

- decide: decision.json/.md; one about other models (other result folders) is kept unless --replace.
- report: the folder holds only the current report: the previous report's files (listed in its manifest,
  ``.alphagate-report.json``) are removed and the new ones moved in together; anything else is refused.
- speed: a speed.json of `alphagate speed` is replaced; any other file of that name is refused.
- serve: the audit log is appended to only when it is one (JSON lines of requests).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.outdir import ForeignFilesError, refuse_foreign, user_files

REPORT_MANIFEST = ".alphagate-report.json"
REPORT_TITLE = "# alpha-gate comparison report"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _resolved(folders: dict[str, Any]) -> dict[str, list[str]]:
    return {k: sorted(str(Path(f).resolve()) for f in (v if isinstance(v, list) else [v])) for k, v in folders.items()}


def check_decision_out(out: Path, results: dict[str, list[Path]], replace: bool) -> None:
    """Refuse to replace a decision.json about other result folders, or decision files decide did not write."""
    if replace:
        return
    found = _json(out / "decision.json") if (out / "decision.json").exists() else None
    if (out / "decision.json").exists() and not (isinstance(found, dict) and isinstance(found.get("results"), dict)):
        refuse_foreign(out, ["decision.json"], "`alphagate decide`")
    if found is None:
        if (out / "decision.md").exists():
            refuse_foreign(out, ["decision.md"], "`alphagate decide`")
        return
    theirs, ours = _resolved(found["results"]), _resolved({k: list(v) for k, v in results.items()})
    if sorted(theirs.values()) != sorted(ours.values()):
        shown = "; ".join(f"{k}={','.join(v)}" for k, v in theirs.items())
        raise ForeignFilesError(f"--out {out} holds a decision about other models ({shown}); this one would replace "
                                "it. Choose another --out, or pass --replace to overwrite it.")


def check_distinct_arms(results: dict[str, list[Path]]) -> None:
    """The two arms of a decision never share a result folder (the same model against itself is no comparison)."""
    (a, dirs_a), (b, dirs_b) = list(results.items())[:2]
    shared = {str(Path(d).resolve()) for d in dirs_a} & {str(Path(d).resolve()) for d in dirs_b}
    if shared:
        raise ValueError(f"--results {a} and {b} both name {sorted(shared)[0]}: a model compared with itself always "
                         "ties. Pass the result folders of two different models.")


def check_decision_matches(decision: Path, results: dict[str, Path]) -> None:
    """A report's --decision must be about models whose results the report shows (it becomes the headline)."""
    found = _json(Path(decision))
    if not isinstance(found, dict) or not isinstance(found.get("results"), dict):
        return  # the report's own reading of the file names what is wrong with it
    shown = {str(Path(f).resolve()) for f in results.values()}
    missing = {k: v for k, v in _resolved(found["results"]).items() if not set(v) & shown}
    if missing:
        listed = "; ".join(f"{k}={','.join(v)}" for k, v in missing.items())
        raise ValueError(f"--decision {decision} is about results not among --results ({listed}). Pass the "
                         "decision made from these results, add those folders to --results, or leave --decision "
                         "out.")


def check_out_not_input(out: Path, inputs: dict[str, Path]) -> None:
    """A report's --out never holds one of its --results (the folder is emptied of everything but the report)."""
    out = Path(out).resolve()
    for label, folder in inputs.items():
        folder = Path(folder).resolve()
        if folder == out or out in folder.parents:
            raise ValueError(f"--out {out} holds --results {label}={folder}; the report's folder holds only the "
                             "report, so those results would be removed. Choose another --out.")


def _previous_report(out: Path) -> set[str]:
    manifest = _json(out / REPORT_MANIFEST)
    if isinstance(manifest, dict) and isinstance(manifest.get("files"), list):
        return {str(f) for f in manifest["files"]}
    report = out / "report.md"  # a report written before manifests: report.md and its figures
    if report.is_file() and report.read_text(encoding="utf-8", errors="replace").startswith(REPORT_TITLE):
        return {"report.md", *(p.name for p in out.glob("*.png"))}
    return set()


def write_report_only(out: Path, write: Callable[[Path], Path], replace: bool) -> Path:
    """Run ``write`` (which writes a report into the folder it is given) so that ``out`` ends up holding that
    report only: made in a staging folder, the previous report's files removed, the new ones moved in."""
    previous = _previous_report(out)
    foreign = user_files(out, previous)
    if foreign and not replace:
        refuse_foreign(out, foreign, "`alphagate report`")
    staging = out / f".alphagate-staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write(staging)
        new = user_files(staging, set())
        for name in sorted(previous | set(foreign)):
            (out / name).unlink(missing_ok=True)
        for name in new:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)
        (out / REPORT_MANIFEST).write_text(json.dumps({"files": new}, indent=1), encoding="utf-8")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "report.md"


def check_speed_out(out: Path, replace: bool) -> None:
    found = _json(out) if out.exists() else {"models": {}}
    if not replace and not (isinstance(found, dict) and isinstance(found.get("models"), dict)):
        raise ForeignFilesError(f"--out {out} exists and is not a speed.json of `alphagate speed`; it would be "
                                "overwritten. Choose another --out, or pass --replace to overwrite it.")


def check_audit_log(path: Path) -> None:
    """Append only to an audit log of `alphagate serve` (its first line is a request record) or a new file."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        first = handle.readline(1 << 16)
    try:
        record = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        record = None
    if not (isinstance(record, dict) and "request_id" in record):
        raise ForeignFilesError(f"--audit-log {path} exists and is not an audit log of `alphagate serve` (its first "
                                "line is no request record); appending would damage it. Choose another --audit-log.")
