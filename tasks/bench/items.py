"""Benchmark items checked against their suite's declaration before any model is loaded.

A suite's hook (tasks/bench/suites.py) reads one raw item with the field helpers below, which refuse a value of
the wrong type instead of converting it (a label 2.7 is not 2, True is not 1). ``check_docs`` then checks the
canonical documents against what the suite's YAML declares: a multiple-choice template that shows a fixed set of
choices (MMLU's A-D, ScienceQA's A-E) needs exactly that many, the gold must be one of the choices the prompt shows,
every prompt renders, and no prompt is given twice (a repeated item counts twice in every mean and CI).

Every refusal names the file and line (or the Hub row), the field, what was expected and what was found. Items are
never coerced: a silently "fixed" item scores a question nobody asked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

logger = logging.getLogger(__name__)

LETTERS = "ABCDEFGH"


class MissingFieldError(ValueError):
    """A document lacks a field the suite needs, or holds a wrong one; the message names file, line and field."""


def refuse(origin: str, field: str, expected: str, found: str) -> MissingFieldError:
    """``found``: as shown to the user (``kind_of`` a value)."""
    return MissingFieldError(f"{origin}: field '{field}': expected {expected}, found {found[:80]}. Fix or remove "
                             "this item (items are refused, never converted).")


def kind_of(value: Any) -> str:
    """A value as an error shows it: scalars as written, containers by their type."""
    return repr(value) if isinstance(value, (str, int, float, bool)) or value is None else f"<{type(value).__name__}>"


def need(doc: Any, key: str, origin: str) -> Any:
    if not isinstance(doc, dict) or key not in doc or doc[key] is None:
        present = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise MissingFieldError(f"{origin}: field '{key}' is missing (found: {present}).")
    return doc[key]


def text(doc: Any, key: str, origin: str, *, empty: bool = False) -> str:
    """A string field (non-blank unless ``empty``)."""
    value = need(doc, key, origin)
    if not isinstance(value, str):
        raise refuse(origin, key, "a string", f"<{type(value).__name__}> {value!r:.40}")
    if not empty and not value.strip():
        raise refuse(origin, key, "a non-empty string", repr(value))
    return value


def optional_text(doc: dict, key: str, origin: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise refuse(origin, key, "a string or null", f"<{type(value).__name__}> {value!r:.40}")
    return value


def texts(doc: Any, key: str, origin: str, container: Any = None) -> list[str]:
    """A list of non-blank strings (``container``: the value when it was already taken out of ``doc``)."""
    value = need(doc, key, origin) if container is None else container
    if not isinstance(value, list):
        raise refuse(origin, key, "a list of strings", f"<{type(value).__name__}>")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise refuse(origin, f"{key}[{i}]", "a non-empty string", kind_of(item))
    return list(value)


def index(value: Any, n: int, origin: str, key: str, *, letters: bool = False) -> int:
    """A 0-based choice index < ``n``: an integer, a string of digits (the Hub's layout for some sets) or, with
    ``letters``, an upper-case choice letter (the original releases). Never a bool, a float or another letter."""
    if letters and isinstance(value, str) and len(value) == 1 and value in LETTERS[:n]:
        return LETTERS.index(value)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n:
        return value
    what = f"a choice letter {LETTERS[0]}-{LETTERS[n - 1]} or an index 0-{n - 1}" if letters and n else \
        f"an index 0-{n - 1} of its {n} choices"
    raise refuse(origin, key, f"{what} (a choice the prompt shows)", kind_of(value))


def _shown(suite, doc: dict) -> int:
    """How many choices the prompt of ``doc`` shows and scores."""
    if suite.doc_to_choice is not None:
        return len(suite.doc_to_choice)
    return len(doc[suite.choices_field])


def check_doc(suite, doc: dict) -> str:
    """One canonical document against the suite's declaration; returns the hash of its prompt (and choices)."""
    from tasks.bench.prompts import render

    origin = doc["origin"]
    if suite.kind == "multiple_choice":
        shown = _shown(suite, doc)
        if suite.doc_to_choice is not None or suite.choices_field != "choices":
            # the template lists doc["choices"] under fixed labels (doc_to_choice, or letters A-E)
            if isinstance(doc.get("choices"), list) and len(doc["choices"]) != shown:
                labels = suite.doc_to_choice or doc[suite.choices_field]
                raise refuse(origin, "choices", f"{shown} choices (the template of {suite.name} shows "
                             f"{', '.join(labels)})", f"<{len(doc['choices'])} choices>")
        if shown < 2:
            raise refuse(origin, "choices", "at least 2 choices", f"<{shown} choices>")
        gold = doc[suite.target_field]
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < shown:
            raise refuse(origin, suite.target_field, f"one of the {shown} choices the prompt shows (0-{shown - 1})",
                         kind_of(gold))
    try:
        prompt = render(suite.description, doc) + render(suite.doc_to_text, doc)
    except Exception as exc:  # noqa: BLE001 - a template that cannot render this item: name the item
        raise MissingFieldError(f"{origin}: the template of suite {suite.name} cannot render this item "
                                f"({type(exc).__name__}: {exc}). Fix or remove this item.") from None
    choices = doc.get(suite.choices_field) if suite.choices_field else None
    return hashlib.sha256(json.dumps([prompt, choices], ensure_ascii=False).encode("utf-8")).hexdigest()


def check_docs(suite, docs: list[dict], published: bool = False) -> None:
    """Every document against the suite's declaration, and no prompt twice; MissingFieldError naming the first bad
    one otherwise. ``published``: the items are a Hub dataset at a pinned commit; a repeat there is part of the
    benchmark everyone scores (lm-eval keeps it), so it is logged, not refused: refusing would make the published
    set unusable, and dropping it would score another benchmark."""
    seen: dict[str, str] = {}
    for doc in docs:
        digest = check_doc(suite, doc)
        if digest in seen and published:
            logger.warning("%s: the same prompt and choices as %s (kept: the published benchmark has it)",
                           doc["origin"], seen[digest])
        elif digest in seen:
            raise refuse(doc["origin"], "prompt", f"a prompt not already given by "
                         f"{seen[digest]} (a repeated item counts twice)", "<the same prompt and choices>")
        seen.setdefault(digest, doc["origin"])
