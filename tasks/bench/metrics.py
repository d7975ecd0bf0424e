"""Per-item scoring helpers and the summary statistics computed from per-item records."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import Any

from tasks.bench.metric_table import METRICS, Metric
from tasks.final_section import final_section

__all__ = ["METRICS", "Metric", "STRICT", "FLEXIBLE", "normalize_number", "extract_answer", "number_filters",
           "char_f1", "split_thinking", "reasoning_audit", "summarize"]


# lm-eval gsm8k filters: "strict-match" and "flexible-extract" (last number in the text)
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def normalize_number(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.replace(",", "").replace("$", "").strip()
    return text[:-1] if text.endswith(".") else text


def extract_answer(text: str, pattern: str | re.Pattern, take: str) -> str | None:
    """lm-eval's regex filter: the ``take`` ("first" or "last") match of ``pattern`` in ``text``, as its first
    non-empty group (the whole match when it has none), normalised as a number; None when nothing matches."""
    found = [next((g for g in m.groups() if g), m.group(0)) for m in re.finditer(pattern, text)]
    if not found:
        return None
    return normalize_number(found[0] if take == "first" else found[-1])


def number_filters(text: str) -> tuple[str | None, str | None]:
    """(strict, flexible) with lm-eval's two filters of a number answer (the ones configs/suites/gsm8k.yaml
    declares, which scoring reads from there)."""
    return extract_answer(text, STRICT, "first"), extract_answer(text, FLEXIBLE, "last")


def char_f1(prediction: str, reference: str) -> float:
    """Character-level F1 (multisets of characters, whitespace ignored): suits Japanese without a tokenizer."""
    pred = Counter(c for c in prediction if not c.isspace())
    ref = Counter(c for c in reference if not c.isspace())
    overlap = sum((pred & ref).values())
    if not pred or not ref or overlap == 0:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def split_thinking(text: str, think: tuple[str, str], final: tuple[str, str], *,
                   opened: bool = False) -> tuple[str, str]:
    """(final answer, reasoning text): exactly what `alphagate serve` would return for ``text`` and the reasoning
    it would hash (tasks/final_section.py: the final section if tagged, else the text outside the reasoning tags;
    nested and stray tags never expose reasoning). ``opened``: the prompt ended inside an open reasoning section
    (see tasks.final_section.opens_reasoning), so ``text`` starts inside it."""
    answer, f = final_section(text, think, final, opened=opened, keep_reasoning=True)
    return answer, f.reasoning_text


def reasoning_audit(reasoning: str, keep_text: bool) -> dict[str, Any]:
    """The reasoning never leaves as text unless asked: its SHA-256 and length are the audit trail."""
    audit = {"reasoning_sha256": hashlib.sha256(reasoning.encode("utf-8")).hexdigest() if reasoning else None,
             "reasoning_chars": len(reasoning)}
    if keep_text:
        audit["reasoning_text"] = reasoning
    return audit


def summarize(values: list[float], binary: bool) -> dict[str, Any]:
    """Mean, standard error and 95% CI (Wilson for proportions, Student t for means)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "stderr": None, "ci95": None, "n": 0}
    mean = sum(values) / n
    if binary:
        from statsmodels.stats.proportion import proportion_confint

        lo, hi = proportion_confint(round(mean * n), n, alpha=0.05, method="wilson")
        stderr = math.sqrt(mean * (1 - mean) / n)
    else:
        from scipy import stats

        stderr = stats.sem(values) if n > 1 else float("nan")
        half = stats.t.ppf(0.975, n - 1) * stderr if n > 1 else float("nan")
        lo, hi = mean - half, mean + half
    return {"mean": mean, "stderr": stderr, "ci95": [float(lo), float(hi)], "n": n}
