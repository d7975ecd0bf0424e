"""Per-item scoring helpers and the summary statistics computed from per-item records."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import Any, NamedTuple

from tasks.final_section import final_section


class Metric(NamedTuple):
    """A per-item metric: the record field holding it (the metric's own name, as lm-evaluation-harness names it),
    whether it is 0/1, the [lo, hi] scale it is mapped from onto [0, 1] for composites (judge grades 1-5), and the
    field records written before the fields took the metric names held it in (read, never written)."""
    field: str
    binary: bool
    scale: tuple[float, float] = (0.0, 1.0)
    legacy: str | None = None

    def read(self, record: dict[str, Any]) -> Any:
        """The raw value in a per-item record (None when the item has none), from older records too."""
        if self.field in record or self.legacy is None:
            return record.get(self.field)
        return record.get(self.legacy)

    def label(self, name: str) -> str:
        """How the metric is shown beside a value on the [0, 1] scale (decision, report, model cards)."""
        lo, hi = self.scale
        return name if (lo, hi) == (0.0, 1.0) else f"{name} ({lo:g}-{hi:g} mapped to 0-1)"

    def value(self, raw: Any) -> float:
        lo, hi = self.scale
        return (float(raw) - lo) / (hi - lo)


# every metric a suite may declare (configs/suites/*.yaml: metrics, primary)
# (one name per metric everywhere: records, summaries, decision, report and cards say acc / acc_norm /
# exact_match_strict / exact_match_flexible; records before that said correct / correct_norm / correct_strict /
# correct_flexible, which are still read)
METRICS = {"acc": Metric("acc", True, legacy="correct"), "acc_norm": Metric("acc_norm", True, legacy="correct_norm"),
           "exact_match_strict": Metric("exact_match_strict", True, legacy="correct_strict"),
           "exact_match_flexible": Metric("exact_match_flexible", True, legacy="correct_flexible"),
           "char_f1": Metric("char_f1", False), "judge_grade": Metric("judge_grade", False, (1.0, 5.0))}

# lm-eval gsm8k filters: "strict-match" and "flexible-extract" (last number in the text)
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def normalize_number(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.replace(",", "").replace("$", "").strip()
    return text[:-1] if text.endswith(".") else text


def gsm8k_extract(text: str) -> tuple[str | None, str | None]:
    strict = STRICT.search(text)
    flexible = [m.group(1) or m.group(2) for m in FLEXIBLE.finditer(text)]
    return (normalize_number(strict.group(1)) if strict else None,
            normalize_number(flexible[-1]) if flexible else None)


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
