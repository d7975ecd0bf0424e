"""The flows' run forms: the parameters of the comparison and of the nightly study, and the JSON schema Prefect's UI
builds its form from and validates a submitted form against (POST /ui/schemas/validate; a run created from a
deployment is validated against the same schema), so that a form that cannot run is refused before a run exists.

The schema pydantic writes is reshaped for people (``form_schema``):
- a field that always has a value is ``required`` (the form labels every other field "(Optional)");
- an optional number or text (``int | None``) is that type alone, without a default: the form shows an empty input
  instead of a "None" tab reading `Property is type "None"`; Prefect's validation adds null back for a field that
  is neither required nor defaulted (prefect.utilities.schema_tools.validation.preprocess_schema);
- a list that must hold a value says so (``contains``: formats without bf16 are refused in the form);
- a field with known choices besides free text (data) offers them as a list, with a text field for a file.
Python callers (the CLI, the nightly flow) keep the pydantic types: ``formats=None`` means the config's formats.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.bench.suites import DEFAULT_SUITES, suite_names
from tasks.export.formats import FORMATS, SOURCE_FORMAT, Format

SUITES = list(DEFAULT_SUITES)
# the run form's choices: every suite with a YAML in configs/suites, the GGUF formats the export writes
Suite = Literal[tuple(suite_names())]  # type: ignore[valid-type]
DATA_CHOICES = ("sample", "shared", "hub")
REQUIRED_FORMAT = SOURCE_FORMAT  # every run's formats include it: the others are quantized from it


def _nullable_as_plain(prop: dict[str, Any]) -> None:
    """``anyOf: [T, null]`` with default null -> T alone, no default (an empty input in the form)."""
    branches = [b for b in prop.pop("anyOf") if b.get("type") != "null"]
    if len(branches) != 1:
        raise ValueError(f"expected one non-null branch in {prop.get('title')}'s anyOf, found {branches}")
    prop.update(branches[0])
    prop.pop("default", None)


def form_schema(schema: dict[str, Any], optional: tuple[str, ...] = (), choices: dict[str, tuple] | None = None,
                must_contain: dict[str, str] | None = None) -> None:
    """Reshape a params model's JSON schema for Prefect's run form, in place (see the module's docstring).
    ``optional``: the ``X | None`` fields (empty in the form means None); every other field is required.
    ``choices``: a text field's known values, offered as a list beside free text. ``must_contain``: a list field and
    the value it must hold; a nullable list becomes the list alone (the form always sends one)."""
    props = schema["properties"]
    for name in optional:
        _nullable_as_plain(props[name])
    for name, value in (must_contain or {}).items():
        prop = props[name]
        if "anyOf" in prop:
            (array,) = [b for b in prop.pop("anyOf") if b.get("type") == "array"]
            prop.update(array)
        prop["contains"] = {"const": value}
        prop["description"] = prop.get("description", "") + f" Must include {value}."
    for name, known in (choices or {}).items():
        prop = props[name]
        text = {k: prop.pop(k) for k in ("type", "pattern") if k in prop}
        prop["anyOf"] = [{"type": "string", "enum": list(known), "title": "Choose"},
                         {**text, "title": "A file (path)"}]
    schema["required"] = [name for name in props if name not in optional]


def _compare_form(schema: dict[str, Any]) -> None:
    form_schema(schema, optional=("limit", "judge"), choices={"data": DATA_CHOICES},
                must_contain={"formats": REQUIRED_FORMAT})


class CompareParams(BaseModel):
    """What to compare and where: the config names the base model, data, training, export and decision settings;
    the fields below choose the run's suites, formats, items and output folder."""

    model_config = ConfigDict(json_schema_extra=_compare_form)

    config: str = Field("configs/demo.yaml", description="Pipeline config (YAML, relative to the repository root). "
                                                         "It is checked before any work; an error names the field.")
    out: str = Field("runs/demo", description="Output folder. Results live under store/STAGE/KEY/, with links "
                                              "for people beside them (decision, report, eval/...).")
    cache: str = Field("runs/cache", description="Folder for the downloaded or unpacked base model.")
    suites: list[Suite] = Field(list(SUITES), min_length=1,
                                description="Benchmark suites to evaluate every model on (at least one).")
    formats: list[Format] | None = Field(list(FORMATS), min_length=1,
                                         description="GGUF formats to export and evaluate; the decision compares "
                                                     "the BF16 models and the others are quantized from them.")
    data: str = Field("sample", description="Benchmark items: sample (the bundled few per suite), shared (the "
                                            "shared benchmark folder), hub (the datasets at their pinned "
                                            "revisions), or the path of a JSONL file.")
    limit: int | None = Field(None, ge=1, description="Items per suite; empty: every item.")
    judge: str | None = Field(None, description="Judge YAML for ELYZA-tasks-100; empty: ELYZA items are not graded.")
    upload: bool = Field(False, description="Really upload the winner (needs upload.enabled in the config and a "
                                            "Hub token); off: a dry run that stages the repos under the output.")

    @field_validator("formats")
    @classmethod
    def _has_bf16(cls, formats: list[str] | None) -> list[str] | None:
        if formats is not None and REQUIRED_FORMAT not in formats:
            raise ValueError(f"formats {formats} lack {REQUIRED_FORMAT}: the decision compares the BF16 models and "
                             f"the other formats are quantized from them. Add {REQUIRED_FORMAT}.")
        return formats


DEFAULT_PARAMS = CompareParams()


def _nightly_form(schema: dict[str, Any]) -> None:
    form_schema(schema, optional=("date",))


class NightlyParams(BaseModel):
    """The nightly study's run form: what to study and where. What each night runs (looks, spending, items, suites,
    how the schedule is tuned) is the nightly section of the config."""

    model_config = ConfigDict(json_schema_extra=_nightly_form)

    config: str = Field("configs/demo.yaml", description="Pipeline config; its nightly section sets the study.")
    out: str = Field("runs/nightly", description="The study's folder: study/study.json, nights/<date>-nightNN/, "
                                                 "store/.")
    cache: str = Field("runs/cache", description="Base-model cache.")
    date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                             description="Tonight's date label (YYYY-MM-DD); empty: today.")
    upload: bool = Field(False, description="Really upload a decided winner (needs upload.enabled and a token).")
