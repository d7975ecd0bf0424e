"""What the run a user started shows of its records: the decision as Markdown and a per-suite table, and the report
with its figures embedded (the Prefect UI cannot load files from the server's disk; it renders data:image sources).
Plain data here (kind, key, payload, description); the flows turn each card into a Prefect artifact."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, NamedTuple

from tasks.store import read_json

IMAGE_BUDGET = 4_000_000  # bytes of PNG embedded into one report artifact; figures beyond it are listed by path
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


class Card(NamedTuple):
    kind: str  # "markdown" or "table"
    key: str
    payload: Any
    description: str


def embed_figures(markdown: str, folder: Path, budget: int = IMAGE_BUDGET) -> str:
    """The report's Markdown with its figures as ``data:image/png;base64`` URIs. A figure that is missing, not a PNG,
    or over the budget is named by its path instead of a broken image."""
    used = 0

    def inline(match: re.Match) -> str:
        nonlocal used
        alt, target = match.groups()
        if "://" in target or target.startswith(("data:", "/")):
            return match.group(0)
        path = folder / target
        if path.suffix.lower() != ".png" or not path.is_file():
            return f"*(figure {alt}: {path} is missing)*"
        size = path.stat().st_size
        if used + size > budget:
            return f"*(figure {alt}: `{path}` — not embedded, the report's figures exceed {budget // 1_000_000} MB)*"
        used += size
        return f"![{alt}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')})"

    return _IMAGE.sub(inline, markdown)


def decision_cards(decision_json: str | Path) -> list[Card]:
    """The decision as Markdown (the winner, or why there is none) and, when suites were compared, its per-suite
    table (numbers rounded for people; decision.json keeps them whole)."""
    from tasks.decide.decision import decision_markdown, suite_table

    record = read_json(Path(decision_json))
    cards = [Card("markdown", "alphagate-decision", decision_markdown(record), "the winner, or why there is none")]
    if record.get("suites"):
        cards.append(Card("table", "alphagate-decision-suites", suite_table(record),
                          f"paired tests per suite: a = {record['models'][0]}, b = {record['models'][1]}"))
    return cards


def report_card(report_md: str | Path) -> Card:
    path = Path(report_md)
    return Card("markdown", "alphagate-report",
                f"Report: `{path}`\n\n" + embed_figures(path.read_text(encoding="utf-8"), path.parent),
                "the comparison report")
