"""The hooks a suite's ``process_docs`` names: each maps one raw item, in the original release's layout *or* the Hub
dataset's, to the canonical document its templates read, checking every field it takes (tasks/bench/items.py).

A hook is named for what it reads, never for a suite: several suites may share one, and a suite whose items already
are its documents names none. Add one here only where a template cannot express the mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tasks.bench import items
from tasks.bench.items import MissingFieldError


def subject_choices(doc: dict, origin: str) -> dict:
    """question, choices, subject and the answer as a letter (original CSV release) or an index (Hub)."""
    choices = items.texts(doc, "choices", origin)
    return {"question": items.text(doc, "question", origin), "choices": choices,
            "subject": items.optional_text(doc, "subject", origin),
            "answer": items.index(items.need(doc, "answer", origin), len(choices), origin, "answer", letters=True)}


def arc(doc: dict, origin: str) -> dict:
    """question.stem/question.choices[{text, label}] (original) or question/choices{text, label} (Hub), answerKey."""
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


def _activity_preprocess(text: str) -> str:
    # lm-eval's HellaSwag utils.py preprocess, verbatim in effect.
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def activity_endings(doc: dict, origin: str) -> dict:
    """activity label + ctx_a + capitalised ctx_b as the query, the endings as choices (lm-eval's preprocess)."""
    ctx = items.text(doc, "ctx_a", origin) + " " + items.text(doc, "ctx_b", origin, empty=True).capitalize()
    label = items.text(doc, "activity_label", origin)
    endings = items.texts(doc, "endings", origin)
    return {"query": _activity_preprocess(label + ": " + ctx), "activity_label": label,
            "choices": [_activity_preprocess(e) for e in endings],
            "answer": items.index(items.need(doc, "label", origin), len(endings), origin, "label")}


def worked_number(doc: dict, origin: str) -> dict:
    """question and a worked answer ending in "#### <number>": the number is the gold answer."""
    answer = items.text(doc, "answer", origin)
    if "####" not in answer:
        raise MissingFieldError(f"{origin}: field 'answer' has no '#### <number>' line.")
    gold = answer.split("####")[-1].strip().replace(",", "")
    if not re.fullmatch(r"-?[0-9]+(?:\.[0-9]+)?", gold):
        raise items.refuse(origin, "answer", "a number after '####' (the gold answer)", repr(gold))
    return {"question": items.text(doc, "question", origin), "answer": answer, "gold": gold}


def open_task(doc: dict, origin: str) -> dict:
    """An open-ended task: input, reference output and the grading aspect (for a judge)."""
    return {"input": items.text(doc, "input", origin), "output": items.text(doc, "output", origin),
            "eval_aspect": items.optional_text(doc, "eval_aspect", origin)}


def hinted_choices(doc: dict, origin: str) -> dict:
    """question, choices (lettered), hint, subject and an optional image (problems.json records or the Hub)."""
    choices = items.texts(doc, "choices", origin)
    image = doc.get("image")  # a file name (original release) or the Hub's image object
    return {"question": items.text(doc, "question", origin), "choices": choices,
            "hint": items.optional_text(doc, "hint", origin),
            "answer": items.index(items.need(doc, "answer", origin), len(choices), origin, "answer", letters=True),
            "letters": list("ABCDE"[: len(choices)]), "image": image, "pid": str(doc.get("pid", "")),
            "subject": items.optional_text(doc, "subject", origin)}


HOOKS: dict[str, Callable[[dict, str], dict]] = {
    hook.__name__: hook for hook in (subject_choices, arc, activity_endings, worked_number, open_task, hinted_choices)}
