"""Declared benchmark suites (configs/suites/*.yaml) and their documents.

A suite YAML says where its data lives, how a document becomes a prompt (Jinja templates with lm-eval's
names: description, doc_to_text, doc_to_choice / choices_field, target_field, target_delimiter,
fewshot_delimiter), its metrics and version. ``process_docs`` names a small hook (below) that maps the
original release's layout *and* the Hub dataset's layout to one canonical document, checking fields.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.bench import items
from tasks.bench.items import MissingFieldError

ROOT = Path(__file__).resolve().parents[2]
SUITES_DIR = ROOT / "configs" / "suites"
# what a comparison evaluates unless told otherwise (the run form's default, `alphagate plan`)
DEFAULT_SUITES = ("mmlu", "arc_challenge", "hellaswag", "gsm8k", "elyza_tasks_100", "scienceqa")
SAMPLES_DIR = Path(__file__).parent / "samples"
SHARED_DIR = ROOT.parent / "shared" / "benchmarks"


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hub_id: str
    hub_config: str | None = None
    split: str
    revision: str | None = None  # a branch, tag or commit of hub_id; resolved to a commit for cache keys
    sample: str
    shared: str | None = None


class GenerationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_tokens: int = Field(256, ge=1)
    until: list[str] = Field(default_factory=list)
    chat: bool = False


class AnswerFilter(BaseModel):
    """lm-eval's regex filter: the ``take`` match of ``regex`` in the final answer, as its first non-empty group."""
    model_config = ConfigDict(extra="forbid")
    regex: str
    take: Literal["first", "last"] = "first"

    @model_validator(mode="after")
    def _compiles(self):
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"filters: regex {self.regex!r} does not compile ({exc}); write a Python regular "
                             "expression (its first non-empty group is the answer)") from None
        return self


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int
    kind: Literal["multiple_choice", "generation"]
    dataset: DatasetSpec
    process_docs: str
    description: str = ""
    doc_to_text: str
    doc_to_choice: list[str] | None = None
    choices_field: str | None = None
    target_field: str = "answer"
    fewshot_target: str | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = Field(0, ge=0)
    generation: GenerationSpec | None = None
    metrics: list[str]
    # how a generation suite's answer is read: exact_match_<name> compares the gold answer with filters.<name>'s
    # extraction (scoring settings: a change rescores the saved answers, it regenerates nothing)
    filters: dict[str, AnswerFilter] = Field(default_factory=dict)
    category_field: str | None = None  # per-category breakdowns in the report (e.g. MMLU subjects)
    # the suite's role, read by the runner, decision, degradation gates, report and model cards:
    title: str  # its display name (cards, report)
    group: Literal["core", "elyza", "scienceqa"]  # the composite group whose weight it shares (decision.weights)
    primary: str  # the one metric the decision compares, the same for both sides
    primary_without_judge: str | None = None  # for judged suites: the metric used when no side was judged
    lm_eval_tasks: list[str] = Field(default_factory=list)  # lm-eval task names (fnmatch) whose samples map here

    @model_validator(mode="after")
    def _known_metrics(self):
        from tasks.bench.metric_table import EXACT_MATCH, METRICS

        for name in [*self.metrics, self.primary, *([self.primary_without_judge] if self.primary_without_judge
                                                      else [])]:
            if name not in METRICS:
                raise ValueError(f"suite {self.name}: unknown metric {name!r}; known: {sorted(METRICS)}")
        if self.primary not in self.metrics or (self.primary_without_judge
                                                and self.primary_without_judge not in self.metrics):
            raise ValueError(f"suite {self.name}: primary metric {self.primary!r} (and primary_without_judge) must be "
                             f"one of its metrics {self.metrics}")
        missing = [m for m in self.metrics if m.startswith(EXACT_MATCH) and m[len(EXACT_MATCH):] not in self.filters]
        if missing:
            raise ValueError(f"suite {self.name}: metric(s) {missing} read the answer filter(s) "
                             f"{[m[len(EXACT_MATCH):] for m in missing]}, which 'filters' does not declare (found: "
                             f"{sorted(self.filters)}); add e.g. filters: {{strict: {{regex: '#### (-?[0-9.,]+)', "
                             "take: first}}")
        return self

    @property
    def judged(self) -> bool:
        return "judge_grade" in self.metrics

    def prompt_hash(self) -> str:
        """Hash of everything that shapes a prompt: bump ``version`` when it changes."""
        keys = ("description", "doc_to_text", "doc_to_choice", "choices_field", "target_delimiter",
                "fewshot_delimiter", "fewshot_target", "num_fewshot", "process_docs", "generation")
        return hashlib.sha256(json.dumps(self.model_dump(include=set(keys)), sort_keys=True).encode()).hexdigest()


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.yaml"


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name: str) -> SuiteSpec:
    path = SUITES_DIR / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(name, suite_names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown suite {name!r}.{hint} Known suites: {suite_names()}.")
    from pydantic import ValidationError

    from tasks.yamlfile import field_errors, read_yaml_mapping

    try:
        return SuiteSpec.model_validate(read_yaml_mapping(path, "Suite YAML"))
    except ValidationError as exc:
        raise ValueError(f"Suite YAML {path} is not a valid suite declaration (fix these fields):\n"
                         f"{field_errors(exc)}") from None


# -- documents -------------------------------------------------------------------------------------

def _mmlu(doc: dict, origin: str) -> dict:
    choices = items.texts(doc, "choices", origin)
    return {"question": items.text(doc, "question", origin), "choices": choices,
            "subject": items.optional_text(doc, "subject", origin),
            "answer": items.index(items.need(doc, "answer", origin), len(choices), origin, "answer", letters=True)}


def _arc(doc: dict, origin: str) -> dict:
    question = items.need(doc, "question", origin)
    if isinstance(question, dict):  # original release: question.stem, question.choices[{text, label}]
        stem = items.text(question, "stem", origin + " question")
        listed = items.need(question, "choices", origin + " question")
        if not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed):
            raise items.refuse(origin, "question.choices", "a list of {text, label} objects", items.kind_of(listed))
        texts = items.texts(None, "question.choices[].text", origin, [c.get("text") for c in listed])
        labels = items.texts(None, "question.choices[].label", origin, [c.get("label") for c in listed])
    else:  # Hub: question, choices{text, label}
        stem, choices = items.text(doc, "question", origin), items.need(doc, "choices", origin)
        if not isinstance(choices, dict):
            raise items.refuse(origin, "choices", "an object {text: [...], label: [...]}", items.kind_of(choices))
        texts = items.texts(choices, "text", origin + " choices")
        labels = items.texts(choices, "label", origin + " choices")
    if len(texts) != len(labels) or len(set(labels)) != len(labels):
        raise items.refuse(origin, "choices", "one distinct label per choice text", f"<labels {labels}>")
    key = items.need(doc, "answerKey", origin)
    if not isinstance(key, str) or key not in labels:
        raise MissingFieldError(f"{origin}: answerKey {key!r} is not one of the labels {labels}.")
    return {"question": stem, "choices": texts, "answer": labels.index(key)}


def _hellaswag_preprocess(text: str) -> str:
    # lm-eval's hellaswag/utils.py preprocess, verbatim in effect.
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(doc: dict, origin: str) -> dict:
    ctx = items.text(doc, "ctx_a", origin) + " " + items.text(doc, "ctx_b", origin, empty=True).capitalize()
    label = items.text(doc, "activity_label", origin)
    endings = items.texts(doc, "endings", origin)
    return {"query": _hellaswag_preprocess(label + ": " + ctx), "activity_label": label,
            "choices": [_hellaswag_preprocess(e) for e in endings],
            "answer": items.index(items.need(doc, "label", origin), len(endings), origin, "label")}


def _gsm8k(doc: dict, origin: str) -> dict:
    answer = items.text(doc, "answer", origin)
    if "####" not in answer:
        raise MissingFieldError(f"{origin}: field 'answer' has no '#### <number>' line.")
    gold = answer.split("####")[-1].strip().replace(",", "")
    if not re.fullmatch(r"-?[0-9]+(?:\.[0-9]+)?", gold):
        raise items.refuse(origin, "answer", "a number after '####' (the gold answer)", repr(gold))
    return {"question": items.text(doc, "question", origin), "answer": answer, "gold": gold}


def _elyza(doc: dict, origin: str) -> dict:
    return {"input": items.text(doc, "input", origin), "output": items.text(doc, "output", origin),
            "eval_aspect": items.optional_text(doc, "eval_aspect", origin)}


def _scienceqa(doc: dict, origin: str) -> dict:
    choices = items.texts(doc, "choices", origin)
    image = doc.get("image")  # a file name (original release) or the Hub's image object
    return {"question": items.text(doc, "question", origin), "choices": choices,
            "hint": items.optional_text(doc, "hint", origin),
            "answer": items.index(items.need(doc, "answer", origin), len(choices), origin, "answer", letters=True),
            "letters": list("ABCDE"[: len(choices)]), "image": image, "pid": str(doc.get("pid", "")),
            "subject": items.optional_text(doc, "subject", origin)}


HOOKS: dict[str, Callable[[dict, str], dict]] = {
    "mmlu": _mmlu, "arc": _arc, "hellaswag": _hellaswag, "gsm8k": _gsm8k, "elyza": _elyza, "scienceqa": _scienceqa}


def _raw_rows(path: Path):
    """(origin, row) from a JSONL file, or a JSON list / dict of records (ScienceQA's problems.json)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise MissingFieldError(f"{path}:{line}: not UTF-8 text ({exc.reason}, byte {exc.object[exc.start]:#04x} at "
                                f"offset {exc.start}); save the file as UTF-8.") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MissingFieldError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, (dict, list)):
            raise items.refuse(str(path), "(top level)", "a list or an object of items", items.kind_of(data))
        rows = data.items() if isinstance(data, dict) else enumerate(data)
        for key, row in rows:
            yield f"{path}[{key}]", ({**row, "pid": row.get("pid", key)} if isinstance(row, dict) and
                                     isinstance(data, dict) else row)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise MissingFieldError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def resolve_data(suite: SuiteSpec, data: str | Path | None) -> Path | str:
    """None/'sample' -> the bundled sample; 'shared' -> ../shared/benchmarks; 'hub'; or a file path."""
    if data is None or data == "sample":
        return SAMPLES_DIR / suite.dataset.sample
    if data == "shared":
        if suite.dataset.shared is None or not (SHARED_DIR / suite.dataset.shared).is_file():
            raise FileNotFoundError(f"No shared dev items for {suite.name} under {SHARED_DIR}.")
        return SHARED_DIR / suite.dataset.shared
    if data == "hub":
        return "hub"
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} for suite {suite.name} does not exist.")
    return path


def hub_hints(suite: SuiteSpec) -> dict[str, str]:
    """What a user can do when the Hub cannot be reached for this suite (for tasks.keys' error messages)."""
    return {"pin": f"pin dataset.revision in {suite_path(suite.name)} to a 40-hex commit whose files are in the "
                   "local datasets cache",
            "local": "evaluate local items instead with --data sample (bundled), --data shared or --data FILE.jsonl"}


def hub_commit(suite: SuiteSpec) -> str:
    from tasks.keys import hub_revision

    return hub_revision(suite.dataset.hub_id, suite.dataset.revision, "dataset", **hub_hints(suite))


def load_docs(suite: SuiteSpec, data: str | Path | None = None, limit: int | None = None,
              commit: str | None = None) -> list[dict]:
    """Canonical documents in source order, each with its 0-based ``index`` and ``origin``. ``commit``: the Hub
    commit already resolved for a result's key, so the items read are the ones the key names."""
    source = resolve_data(suite, data)
    hook = HOOKS[suite.process_docs]
    if source == "hub":
        from tasks.keys import load_hub_dataset

        commit = commit or hub_commit(suite)
        rows = load_hub_dataset(suite.dataset.hub_id, suite.dataset.hub_config, suite.dataset.split, commit,
                                **hub_hints(suite))
        raw = ((f"{suite.dataset.hub_id}[{suite.dataset.split}]#{i}", dict(r)) for i, r in enumerate(rows))
    else:
        raw = _raw_rows(Path(source))
    docs = []
    for index, (origin, row) in enumerate(raw):
        if limit is not None and index >= limit:
            break
        docs.append({**hook(row, origin), "index": index, "origin": origin})
    if not docs:
        raise ValueError(f"{source}: no documents for suite {suite.name}.")
    items.check_docs(suite, docs, published=source == "hub")  # before any model loads: a bad item is refused
    return docs
