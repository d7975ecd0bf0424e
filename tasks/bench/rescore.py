"""Rescoring a run's saved generations with the current scorer code and settings (`alphagate rescore`).

A run folder's index.json names its result sets (eval/<model>-<format>); each suite summary there names the
generation key its records were scored from. Rescoring finds each generation under <out>/store/generate/<key>/
(verified), scores it with the scorer as it is now (suite YAML filters and metrics, tasks/bench/score.py, the judge
given) into <out>/store/eval/<key>/ under the same key a rerun of the flow computes, so the rerun finds these scores
and re-decides on them without generating or scoring anything again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.bench.generate import generation_folder
from tasks.bench.options import RunOptions
from tasks.bench.score import score_key, write_scores
from tasks.bench.suites import load_suite
from tasks.store import Ref, keyed_dir, read_json, read_json_object, ref_of, seal, staging_dir, verified

RERUN = "run the `alphagate run` command that made this folder again (same config and flags)"


@dataclass
class Job:
    """One suite of one result set to rescore: its earlier summary and its generations' folder, key and inputs."""
    name: str  # the result set's name in index.json (eval/<model>-<format>)
    suite: str
    before: dict[str, Any]
    generations: Path
    generation_key: str
    generation_inputs: dict[str, Any]


def result_sets(root: Path) -> dict[str, Path]:
    """The result sets of the run at ``root`` (its index.json: name -> folder)."""
    index = read_json_object(Path(root) / "index.json", "run index of `alphagate run`", ("outputs",),
                             hint="Pass the --out folder of an `alphagate run`.")
    sets = {name: Path(ref["path"]) for name, ref in index["outputs"].items() if name.startswith("eval/")}
    if not sets:
        raise ValueError(f"{root}/index.json lists no evaluated result sets (eval/<model>-<format>); {RERUN}.")
    return sets


def plan(root: Path, suites: list[str] | None = None) -> list[Job]:
    """What to rescore; an error naming every generation that is missing (or made from another prompt) otherwise."""
    jobs, missing = [], []
    for name, folder in sorted(result_sets(root).items()):
        for path in sorted(folder.glob("*.summary.json")):
            before = read_json(path)
            suite = before.get("suite", path.name.removesuffix(".summary.json"))
            if suites and suite not in suites:
                continue
            key = before.get("generation_key")
            folder_ = generation_folder(root, key) if key else None
            ref = verified(folder_, key) if folder_ else None
            if ref is None:
                why = (f"store/generate/{key[:24]} is missing or changed" if key else
                       "scored before generations were kept apart")
                missing.append(f"{name} {suite} ({why})")
                continue
            inputs = read_json(Path(ref.path) / "_stage.json")["inputs"]
            if inputs["prompt_sha256"] != load_suite(suite).prompt_hash():
                missing.append(f"{name} {suite} (the suite's prompt or decoding settings changed since its answers "
                               "were generated: they answer other prompts)")
                continue
            jobs.append(Job(name, suite, before, Path(ref.path), key, inputs))
    if missing:
        raise FileNotFoundError(f"Cannot rescore {root}: no usable saved generations for " + "; ".join(missing)
                                + f". To generate them, {RERUN}; it scores them with the current scorer as well.")
    if not jobs:
        raise ValueError(f"{root}: no suite results to rescore" + (f" among {suites}" if suites else "") + ".")
    return jobs


def check_judge(jobs: list[Job], judge) -> None:
    """A judged suite scored with a judge is rescored with one: dropping the judge silently would change the
    decision's metric (judge_grade -> char_f1) without anyone asking for it."""
    judged = sorted({f"{j.name} {j.suite}" for j in jobs if j.before.get("judge") and load_suite(j.suite).judged})
    if judged and judge is None:
        raise ValueError(f"{', '.join(judged)} were graded by a judge; pass --judge FILE (the same judge YAML keeps "
                         "its verdicts, another judge grades the saved answers again).")


def rescore(root: Path, job: Job, opts: RunOptions) -> tuple[Ref, dict[str, Any], bool]:
    """(ref, summary, computed) of ``job`` scored with ``opts``' scorer: found by key, or scored and sealed."""
    key, inputs = score_key(job.generation_key, job.generation_inputs, job.suite, opts)
    out = keyed_dir(root, "eval", key)
    computed = verified(out, key) is None
    if computed:
        with staging_dir(out) as tmp:
            write_scores(job.generations, job.suite, opts, tmp, key, inputs, Path(root))
            seal(tmp, "eval", key, inputs)
    return ref_of(out), read_json(out / f"{job.suite}.summary.json"), computed


def primary(summary: dict[str, Any]) -> tuple[str, float | None]:
    """The suite's primary metric (as the decision reads it) and its mean in ``summary``."""
    suite = load_suite(summary["suite"])
    name = suite.primary
    if summary.get("judge") is None and suite.primary_without_judge:
        name = suite.primary_without_judge
    return name, summary["metrics"].get(name, {}).get("mean")


def write_record(root: Path, rows: list[dict[str, Any]], results: dict[str, Ref]) -> Path:
    """<out>/rescore.json: what the last rescore changed, per result set and suite, and where its scores are."""
    import datetime as dt

    from tasks.store import atomic_write_json

    return atomic_write_json(Path(root) / "rescore.json", {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "suites": rows,
        "result_sets": {name: ref.path for name, ref in sorted(results.items())},
        "next": f"the decision and report still read the earlier scores: {RERUN}; it generates and scores nothing "
                "again (every generation and these scores are found by key) and decides on these scores"})


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def rescore_run(root: Path, judge=None, say=print) -> tuple[int, int, Path]:
    """Rescore every suite of every result set in the run folder ``root`` (the judge spec ``judge``, when the run was
    judged), saying one line per suite; the result sets are made by the flow's own results stage (tasks/stages), so
    a rerun of the flow finds them by key. Returns (suites rescored, suites in all, the rescore record's path)."""
    from tasks.stages.evaluation import result_set

    jobs = plan(root)  # every generation found and verified before anything is scored
    check_judge(jobs, judge)
    opts = RunOptions(judge=judge)
    rows, refs = [], {}
    for job in jobs:
        ref, after, computed = rescore(root, job, opts)
        metric, old = primary(job.before)
        new = primary(after)[1]
        refs.setdefault(job.name, {})[job.suite] = ref
        rows.append({"result_set": job.name, "suite": job.suite, "metric": metric, "before": old, "after": new,
                     "rescored": computed, "eval": ref.path})
        say(f"{job.name.removeprefix('eval/')} {job.suite}: {metric} {_shown(old)} -> {_shown(new)}"
            + ("" if computed else "  (already scored so)"))
    results = {name: result_set(suites, str(root)) for name, suites in refs.items()}
    return sum(bool(r["rescored"]) for r in rows), len(rows), write_record(root, rows, results)
