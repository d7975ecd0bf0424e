"""A suite's prompts: its Jinja templates rendered for one document, with lm-eval's few-shot layout."""

from __future__ import annotations

import functools
import hashlib

import jinja2

from tasks.bench.suite_spec import SuiteSpec

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@functools.lru_cache(maxsize=64)
def _compiled(template: str) -> jinja2.Template:
    return _ENV.from_string(template)


def render(template: str, doc: dict) -> str:
    return _compiled(template).render(**doc)  # compiled once per template: every item is rendered before a run


def choices_of(suite: SuiteSpec, doc: dict) -> list[str]:
    return list(suite.doc_to_choice) if suite.doc_to_choice is not None else list(doc[suite.choices_field])


def build_context(suite: SuiteSpec, doc: dict, docs: list[dict], num_fewshot: int) -> str:
    """lm-eval's layout: description + shots (text + delimiter + gold) joined by the fewshot delimiter + doc."""
    shots = []
    if num_fewshot:
        same = [d for d in docs if d["index"] != doc["index"] and (suite.category_field is None or
                d.get(suite.category_field) == doc.get(suite.category_field))]
        for shot in same[:num_fewshot]:
            target = (render(suite.fewshot_target, shot) if suite.fewshot_target else
                      suite.target_delimiter + choices_of(suite, shot)[shot[suite.target_field]])
            shots.append(render(suite.doc_to_text, shot) + target)
    parts = shots + [render(suite.doc_to_text, doc)]
    return render(suite.description, doc) + suite.fewshot_delimiter.join(parts)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
