"""Argument types and LABEL=DIR lists shared by the command families: a bad value is refused while parsing, before
any work, and argparse's message names the flag."""

from __future__ import annotations

import argparse
from pathlib import Path


def blend_base(text: str) -> float:
    """'phi' -> Phi(-2), 'zero' -> 0, or a number in [0, 1)."""
    from alpha_gate.schedules import PHI_MINUS_2

    named = {"phi": PHI_MINUS_2, "phi-2": PHI_MINUS_2, "zero": 0.0}
    if text.lower() in named:
        return named[text.lower()]
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--base expects 'phi', 'zero' or a number in [0, 1); got {text!r}") from None


def at_least(minimum: int, hint: str = ""):
    """An argparse type: an integer >= ``minimum``, rejected while parsing (before any work); argparse prefixes the
    message with the flag ("argument --limit: must be >= 1, got 0")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}{hint}")
        return value

    parse.__name__ = "int"  # argparse names the type in its own messages
    return parse


def date(text: str) -> str:
    """An argparse type: a calendar date YYYY-MM-DD."""
    import datetime

    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a date YYYY-MM-DD, got {text!r}") from None


def labelled(items: list[str] | None, flag: str, require_label: bool = False) -> dict[str, Path]:
    """LABEL=DIR (or a bare DIR, labelled by its name unless ``require_label``) -> label: path."""
    out = {}
    for item in items or []:
        label, sep, folder = item.partition("=")
        if not sep and require_label:
            raise ValueError(f"{flag} expects LABEL=DIR (e.g. linear=runs/eval/linear); got {item!r}")
        if not sep:  # a bare folder: its name is its label
            label, folder = Path(item).name, item
        if not label or not folder:
            raise ValueError(f"{flag} expects LABEL=DIR or DIR; got {item!r}")
        out[label] = Path(folder)
    return out


def replicated(items: list[str]) -> dict[str, list[Path]]:
    """LABEL=DIR[,DIR...] -> label: folders (several folders: seed replicates of that arm)."""
    out: dict[str, list[Path]] = {}
    for item in items:
        label, sep, folders = item.partition("=")
        parts = [p for p in folders.split(",")] if sep else []
        if not sep or not label or not parts or any(not p for p in parts):
            raise ValueError(f"--results expects LABEL=DIR or LABEL=DIR,DIR,... (seed replicates of one arm, e.g. "
                             f"linear=runs/a/eval,runs/b/eval); got {item!r}")
        if label in out:
            raise ValueError(f"--results names {label!r} twice; list an arm's replicates in one LABEL=DIR,DIR,...")
        out[label] = [Path(p) for p in parts]
    return out
