"""lm-evaluation-harness output beside ours: its samples_<task>_*.jsonl read into our per-suite shape ({"records",
"summary"}), each task mapped to the suite whose YAML claims it (``lm_eval_tasks``), read as that YAML says
(``lm_eval_categories``: tasks as categories; ``lm_eval_filters``: one line per item and filter, merged)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from tasks.decide.scores import load_results, suite_role
from tasks.store import read_jsonl


def _lm_eval_suite(task: str) -> tuple[str, str] | None:
    """(our suite, the pattern that matched) for an lm-eval task name, as the suites declare it (configs/suites/
    *.yaml: lm_eval_tasks)."""
    from tasks.bench.suites import suite_names

    return next(((s, pattern) for s in suite_names() for pattern in suite_role(s).lm_eval_tasks
                 if fnmatchcase(task, pattern)), None)


def _filtered(entry: dict[str, Any], by_doc: dict[int, dict[str, Any]], sample: dict[str, Any], role) -> None:
    """One line of a filtered task: its filter's metric on the item's one record (merged across filters)."""
    record = by_doc.get(sample["doc_id"])
    if record is None:
        record = by_doc[sample["doc_id"]] = {"index": sample["doc_id"], "category": ""}
        entry["records"].append(record)
    # the same metric names as our records: the suite maps each lm-eval filter to one of its metrics
    record[role.lm_eval_filters.get(sample.get("filter"), role.primary)] = bool(sample.get("exact_match", 0.0))


def import_lm_eval(folder: Path) -> dict[str, dict[str, Any]]:
    """lm-eval output (samples_<task>_*.jsonl) -> our suite -> {"records", "summary"} shape."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(folder).rglob("samples_*.jsonl")):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        found = _lm_eval_suite(task)
        if found is None:
            continue
        suite, pattern = found
        role = suite_role(suite)
        entry = out.setdefault(suite, {"records": [], "summary": {"timings": {}, "source": "lm-eval"}})
        by_doc: dict[int, dict[str, Any]] = {}
        for s in read_jsonl(path, hint="Re-run lm-eval with --log_samples, or leave this folder out."):
            if role.lm_eval_filters:
                _filtered(entry, by_doc, s, role)
                continue
            # categories: the tasks' doc_ids each start at 0, so items are numbered across them
            entry["records"].append({"index": len(entry["records"]) if role.lm_eval_categories else s["doc_id"],
                                     "category": task[len(pattern.split("*")[0]):] if role.lm_eval_categories
                                     else "",
                                     "acc": bool(s.get("acc", 0.0)),
                                     "acc_norm": bool(s.get("acc_norm", s.get("acc", 0.0)))})
    if not out:
        from tasks.bench.suites import suite_names

        claimed = sorted({p for s in suite_names() for p in suite_role(s).lm_eval_tasks})
        raise ValueError(f"{folder}: no lm-evaluation-harness samples_*.jsonl of a task the suites claim "
                         f"({', '.join(claimed)}) found (run lm-eval with --log_samples).")
    return out


def load_any(folder: Path) -> dict[str, dict[str, Any]]:
    """A result folder of ours, or lm-eval's output."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Results folder {folder} does not exist.")
    if list(folder.glob("*.summary.json")):
        return load_results(folder)
    return import_lm_eval(folder)
