"""Thinking-format SFT data: read sources, check every record, mask personal data, split, write.

Each record {question, reasoning, answer} becomes a conversational prompt/completion pair:
prompt = [system?] + user question; completion = one assistant turn
"<think>{reasoning}</think>\n<final>{answer}</final>" (tags configurable). trl applies the base model's
chat template and computes the loss on the completion (the assistant turn) only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config import DataSource, DataSpec
from tasks.data.pii import find_personal_data, mask_personal_data
from tasks.store import Ref, atomic_write_json, read_json, ref_of, seal, sha256_file, staging_dir, verified

logger = logging.getLogger(__name__)
MARKER = "data_manifest.json"
BUILTIN = Path(__file__).parent / "resources" / "sft"


class BadRecordError(ValueError):
    """A record that cannot be used; the message names file (or dataset), line (or row) and field, never a value
    (``digest``: the sha256 of the record's line, where the record could not be read)."""

    def __init__(self, message: str, digest: str | None = None):
        super().__init__(message)
        self.digest = digest


@dataclass(frozen=True)
class Record:
    question: str
    reasoning: str
    answer: str
    system: str | None
    origin: str  # "file:line" or "hub_id[split]#row"


def _field(row: Any, name: str, origin: str, required: bool = True) -> str | None:
    if not isinstance(row, dict):
        raise BadRecordError(f"{origin}: expected a JSON object, found {type(row).__name__}")
    if name not in row or row[name] is None:
        if not required:
            return None
        raise BadRecordError(f"{origin}: field '{name}' is missing (fields present: {sorted(row)})")
    value = row[name]
    if not isinstance(value, str) or not value.strip():
        # the value itself is never shown: this message goes into the manifest and the logs (personal data)
        found = "an empty string" if isinstance(value, str) else f"a {type(value).__name__}"
        raise BadRecordError(f"{origin}: field '{name}' must be a non-empty string, found {found}")
    return value.strip()


def _digest(raw: bytes) -> str:
    """How a refused record is identified in manifests and logs: its line's sha256, never its text."""
    return hashlib.sha256(raw).hexdigest()[:16]


def _record(row: Any, source: DataSource, origin: str) -> Record:
    f = source.fields
    return Record(_field(row, f.question, origin), _field(row, f.reasoning, origin), _field(row, f.answer, origin),
                  _field(row, f.system, origin, required=False) if f.system else None, origin)


def _rows(source: DataSource, commit: str | None = None):
    """(origin, raw row or BadRecordError) for every row of a source."""
    if source.kind in ("builtin", "jsonl"):
        path = source.path if source.kind == "jsonl" else BUILTIN / f"{source.name}.jsonl"
        if not path.is_file():
            known = sorted(p.stem for p in BUILTIN.glob("*.jsonl"))
            hint = f"bundled sets: {known}" if source.kind == "builtin" else "check data.sources[].path"
            raise FileNotFoundError(f"SFT data file {path} does not exist ({hint}).")
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                origin = f"{path}:{number}"
                try:
                    yield origin, json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    yield origin, BadRecordError(f"{origin}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                                 "save the file as UTF-8", _digest(raw.rstrip(b"\r\n")))
                except json.JSONDecodeError as exc:
                    yield origin, BadRecordError(f"{origin}: not valid JSON ({exc.msg} at column {exc.colno})",
                                                 _digest(raw.rstrip(b"\r\n")))
    else:
        import datasets

        rows = datasets.load_dataset(source.hub_id, source.hub_config, split=source.split, revision=commit)
        for i, row in enumerate(rows):
            yield f"{source.hub_id}[{source.split}]#{i}", row


def read_records(spec: DataSpec, commits: dict[int, str | None] | None = None
                 ) -> tuple[list[Record], dict[str, int], list[str]]:
    """All usable records, counts, and the messages of skipped bad records."""
    records, skipped = [], []
    counts = {"read": 0, "bad_skipped": 0, "pii_masked": 0, "pii_dropped": 0}
    for number, source in enumerate(spec.sources):
        taken = 0
        for origin, row in _rows(source, (commits or {}).get(number)):
            if source.limit is not None and taken >= source.limit:
                break
            counts["read"] += 1
            try:
                if isinstance(row, BadRecordError):
                    raise row
                record = _record(row, source, origin)
            except BadRecordError as exc:
                digest = exc.digest or _digest(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
                if spec.on_bad_record == "error":
                    raise BadRecordError(f"{exc} (record sha256 {digest}) — fix the record, or set "
                                         "data.on_bad_record: skip") from None
                skipped.append(f"{exc} (record sha256 {digest})")
                counts["bad_skipped"] += 1
                continue
            record = _handle_personal_data(record, spec, counts)
            if record is not None:
                records.append(record)
                taken += 1
    return records, counts, skipped


def _handle_personal_data(record: Record, spec: DataSpec, counts: dict[str, int]) -> Record | None:
    texts = [record.question, record.reasoning, record.answer, record.system or ""]
    if not any(find_personal_data(t) for t in texts):
        return record
    if spec.personal_data == "drop":
        counts["pii_dropped"] += 1
        return None
    counts["pii_masked"] += 1
    return Record(*(mask_personal_data(t) if t else None for t in texts[:3]),
                  mask_personal_data(record.system) if record.system else None, record.origin)


def completion_text(record: Record, spec: DataSpec) -> str:
    (t0, t1), (f0, f1) = spec.think_tags, spec.final_tags
    return f"{t0}{record.reasoning}{t1}\n{f0}{record.answer}{f1}"


def to_chat(record: Record, spec: DataSpec) -> dict[str, Any]:
    system = record.system or spec.system_prompt
    prompt = [{"role": "system", "content": system}] if system else []
    prompt.append({"role": "user", "content": record.question})
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": completion_text(record, spec)}]}


def _rank(record: Record) -> bytes:
    return hashlib.sha256(record.question.encode("utf-8")).digest()


def split_records(records: list[Record], fraction: float) -> tuple[list[Record], list[Record]]:
    """Exactly round(fraction * n) records (at least 1) go to validation: those whose question hashes lowest.

    Chosen by content, not position, so reordering sources changes nothing; order within each split is kept.
    """
    if len(records) < 2:
        raise ValueError(f"Need at least 2 usable SFT records for a train/validation split; found {len(records)}.")
    n_val = min(len(records) - 1, max(1, round(fraction * len(records))))
    chosen = {id(r) for r in sorted(records, key=_rank)[:n_val]}
    return [r for r in records if id(r) not in chosen], [r for r in records if id(r) in chosen]


def data_inputs(spec: DataSpec) -> dict[str, Any]:
    """What the prepared data depends on: the spec (paths replaced by the sha256 of the files they name) and, for
    Hub sources, the commit the revision resolves to."""
    from tasks.keys import hub_revision

    sources = []
    for s in spec.sources:
        entry = s.model_dump(mode="json", exclude={"path"})
        if s.kind in ("builtin", "jsonl"):
            path = s.path if s.kind == "jsonl" else BUILTIN / f"{s.name}.jsonl"
            if not path.is_file():
                raise FileNotFoundError(f"SFT data file {path} does not exist (check data.sources[].path).")
            entry["sha256"] = sha256_file(path)
        else:
            entry["commit"] = hub_revision(s.hub_id, s.revision, "dataset")
        sources.append(entry)
    return {"spec": spec.model_dump(mode="json", exclude={"sources"}), "sources": sources}


def data_key(spec: DataSpec) -> tuple[str, dict[str, Any]]:
    from tasks.keys import stage_key

    inputs = data_inputs(spec)
    return stage_key("data", inputs), inputs


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def prepare_data(spec: DataSpec, out_dir: Path) -> dict[str, Any]:
    """Write train.jsonl / validation.jsonl (chat prompt/completion) and a manifest into ``out_dir``, reused only
    when it already holds an intact output of the same key."""
    key, inputs = data_key(spec)
    if verified(out_dir, key):
        return read_json(out_dir / MARKER)
    records, counts, skipped = read_records(spec, {i: s.get("commit") for i, s in enumerate(inputs["sources"])})
    train, val = split_records(records, spec.validation_fraction)
    with staging_dir(out_dir) as tmp:
        _write_jsonl(tmp / "train.jsonl", [to_chat(r, spec) for r in train])
        _write_jsonl(tmp / "validation.jsonl", [to_chat(r, spec) for r in val])
        manifest = {"key": key, "counts": {**counts, "train": len(train), "validation": len(val)},
                    "skipped": skipped, "think_tags": list(spec.think_tags), "final_tags": list(spec.final_tags),
                    "files": {n: sha256_file(tmp / f"{n}.jsonl") for n in ("train", "validation")}}
        atomic_write_json(tmp / MARKER, manifest)
        seal(tmp, "data", key, inputs)
    for kind in ("bad_skipped", "pii_masked", "pii_dropped"):
        if counts[kind]:
            logger.warning("SFT data: %d record(s) %s", counts[kind], kind.replace("_", " "))
    return manifest


def data_ref(spec: DataSpec, out_dir: Path) -> Ref:
    prepare_data(spec, out_dir)
    return ref_of(out_dir)


def load_split(data_dir: Path, split: str):
    """A datasets.Dataset of one prepared split."""
    import datasets

    path = Path(data_dir) / f"{split}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.Dataset.from_list(rows)
