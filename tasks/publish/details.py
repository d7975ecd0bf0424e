"""The per-item evidence behind a decision as a Hub dataset, ``<org>/<name>-details`` (as lighteval's --save-details
publishes per-sample details): one Parquet split per model × format × suite, written through ``datasets``, beside
the decision record (decision.json), the suite YAMLs the items were evaluated with (suites/<suite>.yaml) and a
dataset card whose ``configs`` list every split, so ``datasets.load_dataset(repo)`` finds them all.

Which splits: exactly the result sets the decision used, and the ones behind a published card's scores:
- every arm's BF16 results the decision compared (decision.json "results"; each seed replicate its own split), on
  the suites of its comparison table;
- with an upload, the published label's other formats (``published``: "label/fmt" -> suite -> metric, the
  degradation scores their cards show) whose result folders the caller hands over.
A result set the decision did not use (the losing arm's quantizations, a format held back by its gate) is not
published, even when handed over.

Every split has one schema (a config's splits must share it, and the suites' records differ): the split's model,
format and suite, the item's index, the metric the decision scored the suite by, the item's score on it (what
tasks/decide/scores.py:item_scores reads; null when unscored), whether it was skipped, and the whole per-item
record as JSON (``record``), so nothing of the evaluation's record is lost or retyped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

from tasks.store import atomic_write_text, read_json, read_jsonl, sha256_file

__all__ = ["Source", "SPLIT_PATTERN", "details_repo_id", "split_name", "sources", "write_details", "split_means",
           "publish_details", "viewer_url"]

# the split names ``datasets`` accepts (datasets.splits: _split_re); the Hub's viewer uses the same names
SPLIT_PATTERN = re.compile(r"^\w+(\.\w+)*$")
SUFFIX = "-details"
COLUMNS = ("model", "format", "suite", "index", "metric", "score", "skipped", "record")


class Source(NamedTuple):
    """One split: whose records (model label, format), which suite, the metric scored, the result folder."""
    split: str
    model: str
    fmt: str
    suite: str
    metric: str
    folder: Path


def details_repo_id(org: str, name: str) -> str:
    return f"{org}/{name}{SUFFIX}"


def viewer_url(repo_id: str, split: str | None = None, endpoint: str | None = None) -> str:
    """The dataset's page on the Hub, or one split's page in its viewer (config "default")."""
    page = f"{(endpoint or 'https://huggingface.co').rstrip('/')}/datasets/{repo_id}"
    return f"{page}/viewer/default/{split}" if split else page


def split_name(model: str, fmt: str, suite: str) -> str:
    """``linear__bf16__gsm8k``: each part with its non-word characters as ``_`` ("sigmoid-bayes" ->
    "sigmoid_bayes"), joined by ``__``."""
    name = "__".join(re.sub(r"\W", "_", part) for part in (model, fmt, suite))
    if not SPLIT_PATTERN.match(name):  # only an empty part can fail here
        raise ValueError(f"Cannot name a dataset split for model {model!r}, format {fmt!r}, suite {suite!r}: "
                         f"{name!r} does not match {SPLIT_PATTERN.pattern}; give every part a name.")
    return name


def _arm_folders(decision: dict[str, Any], arm: str) -> list[tuple[str, Path]]:
    """(replicate label, result folder) of one arm, as the decision records them (one folder, or one per seed)."""
    recorded = (decision.get("results") or {}).get(arm)
    if not recorded:
        raise ValueError(f"The decision record names no result folder for {arm!r} (expected decision.json "
                         f"\"results\": {{{arm!r}: folder}}); rerun `alphagate decide` with this project's version.")
    folders = [recorded] if isinstance(recorded, str) else list(recorded)
    labels = (decision.get("replicates") or {}).get(arm) or [arm]
    if len(labels) != len(folders):
        raise ValueError(f"The decision record lists {len(folders)} result folder(s) for {arm!r} but "
                         f"{len(labels)} replicate label(s) {labels}; it is inconsistent: rerun `alphagate decide`.")
    return [(label, Path(folder)) for label, folder in zip(labels, folders, strict=True)]


def sources(decision: dict[str, Any], published: dict[str, dict[str, str]] | None = None,
            results: dict[str, Path] | None = None) -> list[Source]:
    """The splits (module docstring): the decision's compared BF16 result sets, then the published formats'."""
    compared = {r["suite"]: r["metric"] for r in decision.get("suites") or []}
    out = [Source(split_name(label, "bf16", suite), label, "bf16", suite, metric, folder)
           for arm in decision["models"] for label, folder in _arm_folders(decision, arm)
           for suite, metric in sorted(compared.items())]
    for key, suites in sorted((published or {}).items()):
        label, fmt = key.split("/")
        if fmt == "bf16" or key not in (results or {}):
            continue  # BF16: already the decision's own; a format whose results were not handed over: none
        out += [Source(split_name(label, fmt, s), label, fmt, s, m, Path(results[key]))
                for s, m in sorted(suites.items())]
    seen: dict[str, Source] = {}
    for src in out:
        if src.split in seen and seen[src.split][1:3] != src[1:3]:
            raise ValueError(f"Two result sets would share the dataset split {src.split!r}: {seen[src.split].model}/"
                             f"{seen[src.split].fmt} and {src.model}/{src.fmt} (names differ only in characters a "
                             "split cannot hold); rename one model label.")
        seen[src.split] = src
    if not seen:
        raise ValueError("The decision compared no suite, so there are no per-item records to publish (its "
                         f"\"suites\" table is empty: {decision.get('reason', '')[:200]!r}).")
    return list(seen.values())


def _rows(src: Source) -> tuple[list[dict[str, Any]], str]:
    """The split's rows and the suite's name, with the evaluation's records checked against its summary."""
    from tasks.bench.suites import suite_path
    from tasks.decide.scores import item_scores

    records_path, summary_path = src.folder / f"{src.suite}.jsonl", src.folder / f"{src.suite}.summary.json"
    if not records_path.is_file() or not summary_path.is_file():
        raise FileNotFoundError(f"{src.model}/{src.fmt}: {records_path.name} and {summary_path.name} were expected "
                                f"in {src.folder} (the result set the decision used); it is gone or incomplete. "
                                "Rerun the run (its evaluations are found by key) and the upload.")
    recorded = read_json(summary_path).get("inputs", {}).get("suite_yaml_sha256")
    current = sha256_file(suite_path(src.suite))
    if recorded and recorded != current:
        raise ValueError(f"{suite_path(src.suite)} changed after {src.model}/{src.fmt} was evaluated on it (sha256 "
                         f"{current[:12]}, the evaluation recorded {recorded[:12]}): the published suite YAML would "
                         "not be the one behind the records. Rerun the evaluations with the current suite, or "
                         "restore the YAML the records were made with.")
    records = read_jsonl(records_path, hint="Rerun that evaluation.")
    scores, _, _ = item_scores(records, src.suite, src.metric)
    rows = [{"model": src.model, "format": src.fmt, "suite": src.suite, "index": r["index"], "metric": src.metric,
             "score": scores.get(r["index"]), "skipped": bool(r.get("skipped")),
             "record": json.dumps(r, ensure_ascii=False)} for r in records]
    return rows, src.suite


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """Through ``datasets`` with one declared schema; written to a temporary name, then renamed."""
    import datasets

    features = datasets.Features({"model": datasets.Value("string"), "format": datasets.Value("string"),
                                  "suite": datasets.Value("string"), "index": datasets.Value("int64"),
                                  "metric": datasets.Value("string"), "score": datasets.Value("float64"),
                                  "skipped": datasets.Value("bool"), "record": datasets.Value("string")})
    table = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS}, features=features)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    table.to_parquet(str(tmp))
    os.replace(tmp, path)


def split_means(rows: list[dict[str, Any]]) -> tuple[int, float | None]:
    """(scored items, their mean score) of one split's rows."""
    scored = [r["score"] for r in rows if r["score"] is not None]
    return len(scored), (sum(scored) / len(scored) if scored else None)


def write_details(decision_path: Path, folder: Path, repo_id: str, *, published: dict[str, dict[str, str]] | None
                  = None, results: dict[str, Path] | None = None, license: str | None = None) -> dict[str, Any]:
    """Write the dataset repo's files into ``folder`` (data/<split>.parquet, decision.json, suites/*.yaml,
    README.md). Same inputs, same bytes: a re-upload finds nothing changed. Returns what was written."""
    from tasks.bench.suites import suite_path

    decision = read_json(decision_path)
    chosen = sources(decision, published, results)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "suites").mkdir(exist_ok=True)
    table = []
    for src in chosen:
        rows, suite = _rows(src)
        _write_parquet(rows, folder / "data" / f"{src.split}.parquet")
        table.append({**src._asdict(), "folder": str(src.folder), "path": f"data/{src.split}.parquet",
                      "rows": len(rows), **dict(zip(("scored", "mean"), split_means(rows), strict=True))})
    for suite in sorted({src.suite for src in chosen}):
        shutil.copyfile(suite_path(suite), folder / "suites" / f"{suite}.yaml")
    shutil.copyfile(decision_path, folder / "decision.json")
    atomic_write_text(folder / "README.md", dataset_card(repo_id, decision, table, license))
    return {"repo_id": repo_id, "splits": table,
            "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())}


def dataset_card(repo_id: str, decision: dict[str, Any], table: list[dict[str, Any]], license: str | None) -> str:
    """README.md of the details dataset: huggingface_hub's DatasetCardData (``configs``: one data_files entry per
    split, so ``load_dataset(repo)`` finds every split), and a body whose first sentence says what the records are
    evidence of and what that evidence speaks for."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from tasks.numbers import human

    a, b = decision["models"]
    meta = DatasetCardData(license=license, pretty_name=f"{repo_id.split('/')[-1]}: per-item evaluation details",
                           tags=["alpha-gate", "evaluation", "per-item-details"],
                           configs=[{"config_name": "default", "data_files": [
                               {"split": row["split"], "path": row["path"]} for row in table]}])
    scope = decision.get("scope_note") or "the decision record's scope (decision.json)"
    lines = [f"# {repo_id}", "",
             f"The per-item evaluation records behind the comparison of {a} and {b}, which speaks for {scope}.",
             "", f"Decision: {decision.get('reason', '')}", "",
             "Each split holds one model's records on one suite in one format; `score` is the item's score on "
             "`metric`, the metric the decision compared (on the 0-1 scale), and `record` the evaluation's whole "
             "per-item record (JSON). The decision's per-suite means are the means of `score` over the items both "
             "models scored.", "", "| split | model | format | suite | metric | items scored | mean |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['split']} | {r['model']} | {r['fmt']} | {r['suite']} | {r['metric']} | {r['scored']} | "
              f"{human(r['mean'])} |" for r in table]
    lines += ["", "Also here: `decision.json` (the decision record, as written) and `suites/<suite>.yaml` (each "
              "suite's definition: dataset, prompt template, metrics, version).", "", "```python",
              "from datasets import load_dataset", "", f'details = load_dataset("{repo_id}")',
              f'rows = details["{table[0]["split"]}"]', "```", ""]
    return DatasetCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines)).content


def publish_details(api, folder: Path, repo_id: str, *, private: bool, message: str) -> str | None:
    """Create the dataset repo (when new) and commit the folder as one commit; huggingface_hub skips the commit when
    every file is unchanged (same bytes), so a re-upload of the same evidence creates no commit. Returns the commit
    id (None when skipped)."""
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder, commit_message=message)
    return getattr(info, "oid", None) if info else None
