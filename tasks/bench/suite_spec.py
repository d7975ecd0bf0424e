"""What a suite YAML (configs/suites/<name>.yaml) may declare, validated: its data, its prompts (Jinja templates with
lm-eval's names), its metrics and answer filters, and its role (display name, composite group, primary metric,
default sets, image field, lm-eval import mapping). Loading and the documents: tasks/bench/suites.py."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hub_id: str
    hub_config: str | None = None
    split: str
    split_size: int | None = Field(None, ge=1)  # items in that split as published (planning on the Hub's items)
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
    # a hook of tasks/bench/doc_hooks.py mapping a raw item (original release or Hub layout) to the canonical
    # document; none: the items are the documents as they are
    process_docs: str | None = None
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
    image_field: str | None = None  # the document field of an item's image: such items need the vision projector
    # the suite's role, read by the runner, decision, degradation gates, report and model cards:
    title: str  # its display name (cards, report)
    group: str  # the composite group whose weight it shares (configs/suites/groups.yaml, decision.weights)
    primary: str  # the one metric the decision compares, the same for both sides
    primary_without_judge: str | None = None  # for judged suites: the metric used when no side was judged
    default: list[Literal["compare", "nightly"]] = Field(default_factory=list)  # the default sets it is in
    order: int | None = None  # its place in the default sets
    lm_eval_tasks: list[str] = Field(default_factory=list)  # lm-eval task names (fnmatch) whose samples map here
    lm_eval_categories: bool = False  # each matched lm-eval task is a category (the name after the pattern's "*")
    lm_eval_filters: dict[str, str] = Field(default_factory=dict)  # lm-eval filter -> our metric (one line each)

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
        unknown = sorted(set(self.lm_eval_filters.values()) - set(self.metrics))
        if unknown:
            raise ValueError(f"suite {self.name}: lm_eval_filters map to {unknown}, which are not among its metrics "
                             f"{self.metrics}; map each lm-eval filter to one of them")
        return self

    @model_validator(mode="after")
    def _declared_group(self):
        from tasks.bench.catalog import groups, groups_path

        declared = list(groups())
        if self.group not in declared:
            raise ValueError(f"suite {self.name}: group {self.group!r} is not a declared composite group; expected "
                             f"one of {declared} (declared in {groups_path()}). Name one of them, or declare the "
                             "group there with its default weight (and give it a weight in every config that sets "
                             "decision.weights)")
        return self

    @property
    def judged(self) -> bool:
        return "judge_grade" in self.metrics

    def has_image(self, doc: dict) -> bool:
        """Whether ``doc`` is an image item (the suite declares an image field and the item fills it)."""
        return self.image_field is not None and bool(doc.get(self.image_field))

    def prompt_hash(self) -> str:
        """Hash of everything that shapes a prompt: bump ``version`` when it changes."""
        keys = ("description", "doc_to_text", "doc_to_choice", "choices_field", "target_delimiter",
                "fewshot_delimiter", "fewshot_target", "num_fewshot", "process_docs", "generation")
        return hashlib.sha256(json.dumps(self.model_dump(include=set(keys)), sort_keys=True).encode()).hexdigest()
