"""The stages that judge and ship: the degradation gates, the decision (with what each arm's trainings cost), the
report, the upload of the winner (or its dry run), the per-item details dataset of a decision that uploads nothing,
and the run's human-friendly names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.config import DecisionSpec, PipelineConfig, UploadSpec
from tasks.keyed import plan, produce
from tasks.store import Ref, read_json, sha256_file

COMPUTE_FIELDS = ("train_steps", "train_seconds", "tuner_trials", "tuner_proxy_steps", "tuner_seconds",
                  "total_steps", "total_seconds")


def _paths(refs: dict[str, Ref]) -> dict[str, Path]:
    return {k: Path(r.path) for k, r in refs.items()}


def _shas(refs: dict[str, Ref]) -> dict[str, str]:
    return {k: r.sha256 for k, r in sorted(refs.items())}


def degrade(spec: DecisionSpec, results: dict[str, Ref], root: str) -> Ref:
    from tasks.decide.degrade import write_analysis

    inputs = {"results": _shas(results), "decision": spec.model_dump(mode="json")}
    return produce(plan("degrade", root, inputs), lambda tmp: write_analysis(_paths(results), spec, tmp))


def compute(runs: dict[str, Ref], labels: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Per arm: what its trainings cost (sums over its replicates' run.json "compute")."""
    out: dict[str, dict[str, Any]] = {}
    for arm, names in labels.items():
        rows = [read_json(Path(runs[n].path) / "run.json").get("compute") for n in names if n in runs]
        rows = [r for r in rows if r]
        if not rows:
            continue
        total = {k: sum(r[k] for r in rows) for k in COMPUTE_FIELDS}
        total["total_seconds"] = round(total["total_seconds"], 2)
        total["replicates"] = len(rows)
        out[arm] = total
    return out


def decide(spec: DecisionSpec, results: dict[str, list[Ref]], exports: dict[str, Ref], runs: dict[str, Ref],
           degradation: Ref, speed: Ref, expected_suites: list[str], root: str,
           labels: dict[str, list[str]] | None = None, look: dict[str, Any] | None = None) -> dict[str, Any]:
    """The decision record (with ``ref``: where it is). Inputs: each arm's result sets (one per seed replicate, named
    by ``labels``), the replicates' exports and runs (for the upload and the compute per arm), the degradation gates,
    the isolated speed samples, the decision settings and, in a sequential study, the ``look``."""
    from tasks.decide.decision import decide as decide_record

    labels = labels or {arm: [arm] for arm in results}
    inputs = {"results": {k: [r.sha256 for r in v] for k, v in sorted(results.items())}, "labels": labels,
              "exports": _shas(exports), "runs": _shas(runs), "degradation": degradation.sha256,
              "speed": speed.sha256, "expected_suites": sorted(expected_suites),
              "decision": spec.model_dump(mode="json"), "look": look}
    single = look is None and all(len(v) == 1 for v in results.values())
    ref = produce(plan("decide", root, inputs), lambda tmp: decide_record(
        {k: Path(v[0].path) if single else [Path(r.path) for r in v] for k, v in results.items()}, spec, tmp,
        exports=_paths(exports), runs=_paths(runs), degradation=Path(degradation.path) / "degradation.json",
        expected_suites=expected_suites, speed=Path(speed.path) / "speed.json", labels=labels, look=look,
        compute=compute(runs, labels)))
    return {**read_json(Path(ref.path) / "decision.json"), "ref": ref}


def tuner_trials_of(runs: dict[str, Ref]) -> Path | None:
    """The tuner's trials a tuned training carries (tasks.train.variant.TUNER_HISTORY): the last such run's copy, or
    None when no run was tuned (a frozen schedule, or linear only)."""
    from tasks.train.variant import TUNER_HISTORY

    copies = [Path(r.path) / TUNER_HISTORY for r in runs.values() if (Path(r.path) / TUNER_HISTORY).is_file()]
    return copies[-1] if copies else None


def report(results: dict[str, Ref], decision: Ref, degradation: Ref, runs: dict[str, Ref], root: str,
           study: str | None = None) -> Ref:
    """``study``: a nightly study's study.json (its night-by-night margin and CI become the trend figure). The tuner's
    trials come with the tuned trainings' refs."""
    from tasks.publish.report import write_report

    tuner = tuner_trials_of(runs)
    study_path = Path(study) if study else None
    if study_path is not None and not study_path.is_file():
        raise FileNotFoundError(f"The report was asked for the study record {study_path}, which does not exist; rerun "
                                "the nightly flow (it writes the record before the report).")
    inputs = {"results": _shas(results), "decision": decision.sha256, "degradation": degradation.sha256,
              "runs": _shas(runs), "tuner": sha256_file(tuner) if tuner else None,
              "study": sha256_file(study_path) if study_path else None}
    return produce(plan("report", root, inputs), lambda tmp: write_report(
        _paths(results), tmp, decision=Path(decision.path) / "decision.json",
        degradation=Path(degradation.path) / "degradation.json", runs=_paths(runs), tuner=tuner, study=study_path))


def preflight(spec: UploadSpec, config_file: str) -> str | None:
    """Before the first training of a run that really uploads: token, write access, namespace."""
    from tasks.publish.upload import preflight as check

    if not spec.enabled:
        raise ValueError(f"A real upload was asked for but upload.enabled is false in {config_file}; set it to "
                         "true (with upload.org) or run without --upload for a dry run.")
    return check(spec)


def upload(config: PipelineConfig, decision: Ref, exports: dict[str, Ref], runs: dict[str, Ref], root: str,
           dry_run: bool, results: dict[str, Ref] | None = None) -> dict[str, Any]:
    """Stage (dry run) or publish the winner, with this run's upload settings and names, from the refs of this run's
    exports and trainings (not paths read back from the decision record); ``results`` ("label/format" -> result set):
    the published quantizations' per-item records for the details dataset."""
    from tasks.publish.upload import upload as send

    card_config = config.model_dump(mode="json", include={"name", "base_model", "data", "export", "upload"})
    inputs = {"decision": decision.sha256, "config": card_config, "dry_run": dry_run, "exports": _shas(exports),
              "runs": _shas(runs)}
    if results:  # (absent from the key when not given: the keys of earlier uploads stay valid)
        inputs["results"] = _shas(results)
    outcome: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        outcome.update(send(Path(decision.path) / "decision.json", tmp, config, dry_run=dry_run,
                            exports=_paths(exports), runs=_paths(runs), results=_paths(results or {})))

    ref = produce(plan("upload", root, inputs), build)
    if not outcome:  # found by key: what it staged (and, for a real upload, sent) is recorded beside it
        staged = read_json(Path(ref.path) / "plan.json")
        outcome = {"dry_run": dry_run, "staged": ref.path, "repos": [r["repo_id"] for r in staged["repos"]]}
    return {**outcome, "ref": ref}


def details(spec: UploadSpec, config_name: str, decision: Ref, root: str) -> Ref | None:
    """A decision that uploads nothing still has its evidence: the per-item details dataset, staged locally as the
    upload's dry run stages it (<out>/details/<org>__<name>-details; nothing is sent). Keyed with the upload stage's
    code. None when the decision compared no suite (no per-item record to show)."""
    from tasks.publish.details import details_repo_id, write_details

    if not read_json(Path(decision.path) / "decision.json").get("suites"):
        return None
    repo = details_repo_id(spec.org, spec.name or config_name)
    return produce(plan("upload", root, {"decision": decision.sha256, "details_only": repo}), lambda tmp: write_details(
        Path(decision.path) / "decision.json", tmp / repo.replace("/", "__"), repo))


def names(root: str, config_file: str, refs: dict[str, Ref]) -> str:
    """Human-friendly names beside the store (<out>/linear, <out>/export-base, <out>/eval/linear-bf16,
    <out>/decision, ...: links to this run's keyed outputs) and this run's index (<out>/index.json, and a dated copy
    under <out>/index/), which records the config file the run was started with and its sha256."""
    from tasks.layout import publish

    return str(publish(Path(root), Path(config_file), refs))
