"""Upload the winner to the Hugging Face Hub as three repos, or stage a dry run.

<org>/<name>-bf16 holds the merged safetensors and the BF16 GGUF; -q8_0 and -q4_k_m hold their GGUF.
Order of work: the token and write access are checked first (seconds, not after hours); every file is
verified locally (sha256 against the export manifest, GGUFs loaded and asked a question) before the
first byte is sent; each repo is one upload_folder commit, and huggingface_hub skips the commit when
nothing changed, so a rerun creates no new commits. The token is never logged or written.

Beside the models, <org>/<name>-details: a dataset repo with the per-item records behind the decision
(tasks/publish/details.py), uploaded first; every card's evaluation results link to it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.publish import details
from tasks.publish.access import UploadRefusedError, check_access, preflight, resolve_token
from tasks.publish.cards import Measured, card, card_problems, lineage
from tasks.store import atomic_write_json, atomic_write_text, read_json, read_json_object, sha256_file, staging_dir

logger = logging.getLogger(__name__)
# re-exported: callers import the access checks and the refusal from here
__all__ = ["SUFFIX", "UploadRefusedError", "check_access", "plan", "preflight", "resolve_token", "stage", "upload",
           "verify_locally"]
SUFFIX = {"bf16": "bf16", "q8_0": "q8_0", "q4_k_m": "q4_k_m"}


def _arm_folder(label: str, decision: dict) -> Path | None:
    """The BF16 result folder the decision recorded for ``label`` (an arm, or one of its seed replicates)."""
    for arm, labels in (decision.get("replicates") or {arm: [arm] for arm in decision.get("results") or {}}).items():
        recorded = (decision.get("results") or {}).get(arm)
        folders = [recorded] if isinstance(recorded, str) else list(recorded or [])
        if label in labels and len(folders) == len(labels):
            return Path(folders[labels.index(label)])
    return None


def _scores_for(label: str, fmt: str, decision: dict, results: dict[str, Path]) -> dict[str, Measured]:
    """Measured scores of this exact model/format: BF16 from the decision, quantizations from degradation; each
    with where its items came from (the format's own evaluation summary, else the BF16 one: the degradation gates
    compared the two item by item, so they were evaluated on the same items)."""
    if fmt == "bf16" and decision.get("suites") and label in decision["models"]:
        side = "a" if decision["models"][0] == label else "b"
        rows = [(r["suite"], r["metric"], r[side]) for r in decision["suites"] if r[side] is not None]
    elif decision.get("degradation") and Path(decision["degradation"]).is_file():
        found = read_json(decision["degradation"]).get("vs_base", {}).get(f"{label}/{fmt}", {}).get("suites", [])
        rows = [(r["suite"], r["metric"], r["b"]) for r in found]
    else:
        return {}
    folders = [f for f in (results.get(f"{label}/{fmt}"), _arm_folder(label, decision)) if f is not None]

    def data(suite: str) -> dict | None:
        summary = next((Path(f) / f"{suite}.summary.json" for f in folders
                        if (Path(f) / f"{suite}.summary.json").is_file()), None)
        return read_json(summary).get("inputs", {}).get("data") if summary else None

    return {suite: Measured(metric, value, data(suite)) for suite, metric, value in rows}


def _passing(formats: list[str], gates: dict[str, Any], label: str) -> list[str]:
    """The configured formats the upload gates let through (a held-back one is logged with its reasons)."""
    out = []
    for fmt in formats:
        gate = gates.get(f"{label}/{fmt}")
        if gate is not None and not gate["upload"]:
            logger.warning("%s/%s held back by the upload gates: %s", label, fmt, "; ".join(gate["reasons"]))
            continue
        out.append(fmt)
    return out


def _files(fmt: str, entry: dict[str, Any], export_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One repo's files: the format's GGUF, and for BF16 the merged safetensors folder beside it."""
    files = [{"path": entry["path"], "source": str(export_dir / entry["path"]), "sha256": entry["sha256"],
              "format": fmt}]
    if fmt == "bf16":
        merged = export_dir / manifest["merged_dir"]
        files += [{"path": p.name, "source": str(p), "sha256": manifest["merged_sha256"].get(p.name),
                   "format": "safetensors"} for p in sorted(merged.iterdir()) if p.is_file()]
    return files


def plan(decision_path: Path, config: PipelineConfig, *, exports: dict[str, Path] | None = None,
         runs: dict[str, Path] | None = None, results: dict[str, Path] | None = None) -> dict[str, Any]:
    """What would be uploaded: repos, files (with sha256 from the export manifest), cards, and the per-item details
    dataset. ``config`` is the *current* run's config (its upload section, names and tags): never the one recorded
    at training time. ``results``: "label/format" -> result folder, for the published quantizations' details (the
    arms' BF16 results are the decision's own)."""
    decision = read_json_object(decision_path, "decision.json of `alphagate decide`", ("upload", "reason", "models"),
                                "Pass the decision.json that `alphagate decide` wrote (--decision).")
    if not decision.get("upload"):
        raise UploadRefusedError(f"The decision says not to upload: {decision.get('reason')}")
    winner = decision["winner"]
    # with seed replicates, the winning arm's best replicate (decision "upload_label") is what is published
    label = decision.get("upload_label") or winner
    export_dir, run_dir = _locate(decision, winner, label, exports, runs)
    manifest, run = read_json(export_dir / "manifest.json"), read_json(run_dir / "run.json")
    spec = config.upload
    gates = _gates(decision, decision_path)
    files_by_fmt = {f["format"]: f for f in manifest["files"]}
    upstream = _upstream(config)
    formats = _passing(spec.formats, gates, label)
    # a quantization points at the BF16 repo when that one is published in this same upload
    bf16_repo = f"{spec.org}/{spec.name or config.name}-{SUFFIX['bf16']}" if "bf16" in formats else None
    results = {k: Path(v) for k, v in (results or {}).items()}
    scores = {fmt: _scores_for(label, fmt, decision, results) for fmt in formats}
    details_repo = details.details_repo_id(spec.org, spec.name or config.name)
    published = {f"{label}/{fmt}": {s: m.metric for s, m in scores[fmt].items()} for fmt in formats}
    splits = {(s.model, s.fmt, s.suite): s.split for s in details.sources(decision, published, results)}
    repos = []
    for fmt in formats:
        if fmt not in files_by_fmt:
            raise UploadRefusedError(f"upload.formats lists {fmt}, but {winner}'s export has only "
                                     f"{sorted(files_by_fmt)}; export that format too, or drop it from upload.formats.")
        files = _files(fmt, files_by_fmt[fmt], export_dir, manifest)
        details_urls = {s: details.viewer_url(details_repo, splits[(label, fmt, s)], spec.endpoint)
                        for s in scores[fmt] if (label, fmt, s) in splits}
        repos.append(_repo(fmt, files, config, upstream, bf16_repo, run, decision, scores[fmt], details_repo,
                           details_urls))
    if not repos:
        raise UploadRefusedError("Every format was held back by the upload gates; nothing to upload.")
    return {"winner": winner, "spec": spec, "private": spec.private, "repos": repos,
            "prompt": config.export.answer_prompt, "decision_path": Path(decision_path),
            "details": {"repo_id": details_repo, "published": published, "results": results}}


def _locate(decision: dict, winner: str, label: str, exports: dict[str, Path] | None,
            runs: dict[str, Path] | None) -> tuple[Path, Path]:
    """The export and training-run folders of ``label``: those handed over, else the ones the decision records."""
    export_dir = Path((exports or {}).get(label) or decision["exports"].get(label, ""))
    run_dir = Path((runs or {}).get(label) or decision["runs"].get(label, ""))
    if not (export_dir / "manifest.json").is_file() or not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"The decision does not locate {winner}'s export (manifest.json) and training run "
                                "(run.json); record them with `alphagate decide --exports ... --runs ...`.")
    return export_dir, run_dir


def _gates(decision: dict, decision_path: Path) -> dict[str, Any]:
    """The upload gates of the degradation the decision records ({} when it records none)."""
    if not decision.get("degradation"):
        return {}
    return read_json_object(decision["degradation"], "degradation.json of `alphagate degrade`", ("gates",),
                            f"{decision_path} records it as its upload gates; rerun `alphagate degrade`, then "
                            "`alphagate decide --degradation`.")["gates"]


def _upstream(config: PipelineConfig) -> str:
    """The base model's Hub repo id the cards name (a local name is refused before anything is built)."""
    upstream = config.base_model.card_id
    if not upstream:
        raise UploadRefusedError(f"The model cards need the base model's Hub repo id (owner/name) as base_model; "
                                 f"{config.base_model.name!r} is a local name the Hub refuses. Set "
                                 "base_model.hub_repo_id in the config (e.g. HuggingFaceTB/SmolLM2-135M-Instruct).")
    return upstream


def _repo(fmt: str, files: list[dict[str, Any]], config: PipelineConfig, upstream: str, bf16_repo: str | None,
          run: dict, decision: dict, scores: dict[str, Measured], details_repo: str,
          details_urls: dict[str, str]) -> dict[str, Any]:
    """One repo of the upload: its files and its model card (refused when the Hub would not accept the card)."""
    spec = config.upload
    repo = f"{spec.org}/{spec.name or config.name}-{SUFFIX[fmt]}"
    base_model, relation = lineage(fmt, upstream, bf16_repo)
    body = card(repo=repo, fmt=fmt, base_model=base_model, relation=relation, upstream=upstream,
                license=config.base_model.license, schedule=run["schedule"], decision=decision,
                scores=scores, files=[f["path"] for f in files],
                think_tags=tuple(config.data.think_tags), final_tags=tuple(config.data.final_tags),
                project_git_url=spec.project_git_url, details=details.viewer_url(details_repo, None, spec.endpoint),
                details_urls=details_urls)
    problems = card_problems(body)
    if problems:
        raise UploadRefusedError(f"The model card of {repo} would not be accepted by the Hub: "
                                 + "; ".join(problems) + ". Fix the config's base_model / upload section.")
    return {"repo_id": repo, "format": fmt, "files": files, "card": body}


def verify_locally(the_plan: dict[str, Any]) -> None:
    """sha256 of every file against the export manifest, and a load test of every GGUF; raise on any failure."""
    from tasks.export.verify import verify

    for repo in the_plan["repos"]:
        for f in repo["files"]:
            source = Path(f["source"])
            if not source.is_file():
                raise FileNotFoundError(f"{repo['repo_id']}: {source} is gone; re-run the export.")
            if f["sha256"] is not None and sha256_file(source) != f["sha256"]:
                raise UploadRefusedError(f"{repo['repo_id']}: {source.name} does not match the export manifest's "
                                         "sha256; the file changed after export. Re-run the export.")
            if source.suffix == ".gguf":
                verify(source, f["format"], the_plan["prompt"])


def stage(the_plan: dict[str, Any], out_dir: Path) -> Path:
    """Exactly what would be uploaded: one folder per repo (files linked, README.md card), the details dataset's
    folder (tasks/publish/details.py), plus plan.json."""
    out_dir = Path(out_dir)
    spec = the_plan["details"]
    with staging_dir(out_dir / spec["repo_id"].replace("/", "__")) as tmp:
        written = details.write_details(the_plan["decision_path"], tmp, spec["repo_id"], published=spec["published"],
                                        results=spec["results"])
    for repo in the_plan["repos"]:
        folder = out_dir / repo["repo_id"].replace("/", "__")
        folder.mkdir(parents=True, exist_ok=True)
        for f in repo["files"]:
            link = folder / f["path"]
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(Path(f["source"]).resolve(), link)
        atomic_write_text(folder / "README.md", repo["card"])
    summary = {"winner": the_plan["winner"], "repos": [{"repo_id": r["repo_id"], "folder": r["repo_id"].replace(
        "/", "__"), "files": [{k: f[k] for k in ("path", "sha256")} for f in r["files"]] + [{"path": "README.md"}]}
        for r in the_plan["repos"]],
        "details": {"repo_id": spec["repo_id"], "folder": spec["repo_id"].replace("/", "__"), "repo_type": "dataset",
                    "files": written["files"], "splits": [{k: row[k] for k in ("split", "model", "fmt", "suite",
                                                                              "metric", "rows", "scored", "mean")}
                                                          for row in written["splits"]]}}
    atomic_write_json(out_dir / "plan.json", summary)
    return out_dir


def upload(decision_path: Path, out_dir: Path, config: PipelineConfig, *, dry_run: bool | None = None,
           exports: dict[str, Path] | None = None, runs: dict[str, Path] | None = None,
           results: dict[str, Path] | None = None) -> dict[str, Any]:
    the_plan = plan(decision_path, config, exports=exports, runs=runs, results=results)
    run_spec = the_plan["spec"]
    token = resolve_token(run_spec)
    dry = (not run_spec.enabled) if dry_run is None else dry_run
    if not dry and not token:
        raise UploadRefusedError("Uploading needs a Hub token: set HF_TOKEN or upload.token_secret_block "
                            "(or run with --dry-run).")
    api = None
    if not dry:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=run_spec.endpoint, token=token)
        check_access(api, run_spec.org)  # before anything slow (the flow also calls preflight() at its start)
    verify_locally(the_plan)
    staged = stage(the_plan, out_dir)
    details_repo = the_plan["details"]["repo_id"]
    details_folder = staged / details_repo.replace("/", "__")
    if dry:
        how = (f"Dry run: {len(the_plan['repos'])} repo(s) and the details dataset {details_repo} staged in {staged}. "
               "To publish, set HF_TOKEN (a write "
               f"token for {run_spec.org}) and run: alphagate upload --decision {decision_path} "
               "--config <this run's config>")
        atomic_write_text(staged / "HOW_TO_PUBLISH.txt", how + "\n")
        return {"dry_run": True, "staged": str(staged), "repos": [r["repo_id"] for r in the_plan["repos"]],
                "details": {"repo_id": details_repo, "folder": str(details_folder)}, "message": how}
    # the evidence first: the cards that link to it go up after it
    details_commit = details.publish_details(api, details_folder, details_repo, private=the_plan["private"],
                                             message=f"alpha-gate: per-item details of {the_plan['winner']}")
    sent = []
    for repo in the_plan["repos"]:
        api.create_repo(repo["repo_id"], private=the_plan["private"], exist_ok=True)
        info = api.upload_folder(repo_id=repo["repo_id"], folder_path=staged / repo["repo_id"].replace("/", "__"),
                                 commit_message=f"alpha-gate: {the_plan['winner']} {repo['format']}")
        sent.append({"repo_id": repo["repo_id"], "commit": getattr(info, "oid", None) if info else None})
    record = {"repos": sent, "details": {"repo_id": details_repo, "commit": details_commit}}
    atomic_write_json(staged / "uploaded.json", record)
    return {"dry_run": False, "staged": str(staged), **record}
