"""The base of every config section: strict models (unknown keys are errors), and the Hub id check."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def hub_repo_id_problem(value: str) -> str | None:
    """Why ``value`` is not a Hugging Face Hub model id of the form ``owner/name``, or None when it is one.

    The Hub's rules (as huggingface_hub.utils.validate_repo_id states them), with the owner required: each part
    1-96 characters of letters, digits, '-', '_' or '.', starting and ending with a letter, digit or '_'; no '--'
    or '..'; not ending in '.git'."""
    import re

    if not isinstance(value, str) or value.count("/") != 1:
        return "expected owner/name (exactly one '/'), as on huggingface.co/<owner>/<name>"
    part = re.compile(r"\w(?:[\w.-]{0,94}\w)?", re.ASCII)
    if not all(part.fullmatch(p) for p in value.split("/")):
        return ("each of owner and name must be 1-96 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter, digit or '_'")
    if "--" in value or ".." in value:
        return "'--' and '..' are not allowed in a Hub repo id"
    if value.endswith(".git"):
        return "a Hub repo id cannot end in '.git'"
    return None
