"""The metrics a suite may declare (names, scales), apart from how they are computed (tasks/bench/metrics.py).

Suites validate their declared metric names against this table; it is kept apart from the scoring code so that the
code which *generates* answers (and so the generation key, tasks/bench/generate.py) does not depend on the scorers:
a change to an answer filter or a metric's computation rescores, it never regenerates.
"""

from __future__ import annotations

from typing import Any, NamedTuple


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

# an exact-match metric names the answer filter it reads: exact_match_<filter> (suite YAML: filters.<filter>)
EXACT_MATCH = "exact_match_"
