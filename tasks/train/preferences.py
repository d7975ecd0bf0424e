"""Preference pairs from the SFT model's own answers (the DPO stage, tasks/train/dpo.py): which reference answers can
be checked automatically (exactly one number, or a multiple-choice letter), which sampled answers are right (read
as evaluation and `alphagate serve` read them), and which questions are left out because a benchmark holds them."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path

from tasks.config import PipelineConfig
from tasks.final_section import opens_reasoning

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
CHOICE = re.compile(r"^\(?([A-E])\)?[.):]?$")


def final_answer(text: str, config: PipelineConfig, opened: bool = False) -> str:
    """The final answer exactly as evaluation and `alphagate serve` read it (tasks/final_section.py); ``opened``:
    the prompt ended inside an open reasoning section, so ``text`` starts inside it."""
    from tasks.bench.metrics import split_thinking

    return split_thinking(text, config.data.think_tags, config.data.final_tags, opened=opened)[0]


def _number(text: str) -> str | None:
    found = NUMBER.findall(text.replace("，", ","))
    if not found:
        return None
    value = found[-1].replace(",", "")
    return value.rstrip("0").rstrip(".") if "." in value else value


def checkable(reference_final: str) -> tuple[str, str] | None:
    """('choice', 'B') or ('number', '105'), or None when the answer cannot be checked automatically."""
    text = reference_final.strip()
    if m := CHOICE.match(text):
        return "choice", m.group(1)
    numbers = NUMBER.findall(text)
    if len(numbers) == 1 and not re.search(r"\d\s*[:/]\s*\d", text):  # a time or ratio is not one number
        return "number", _number(text)
    return None


def is_correct(kind: str, expected: str, answer_final: str) -> bool:
    if kind == "choice":
        m = re.search(r"\b([A-E])\b", answer_final)
        return bool(m) and m.group(1) == expected
    return _number(answer_final) == expected


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def benchmark_texts(extra_dirs: list[Path] | None = None) -> set[str]:
    """Normalised question-like strings (20+ characters) of every benchmark item we ship or were given."""
    from tasks.bench.catalog import bundled_samples

    files = list(bundled_samples())
    for d in extra_dirs or []:
        files += sorted(Path(d).glob("*.jsonl"))
    texts: set[str] = set()

    def walk(value):
        if isinstance(value, str) and len(value) >= 20:
            texts.add(_norm(value))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                walk(json.loads(line))
    return texts


def build_pairs(records: list[dict], sample: Callable[[list[dict], int], list[str]], n: int,
                config: PipelineConfig, exclude: set[str], seed: int = 0) -> tuple[list[dict], dict[str, int]]:
    """records: the training split's chat records. ``sample(prompt_messages, n)`` returns n completions; an
    optional ``sample.prompt_text(prompt_messages)`` gives the prompt text it sends (when that ends inside an open
    reasoning section, the completions start inside it)."""
    rng = random.Random(seed)
    counts = {"questions": len(records), "pairs": 0, "not_checkable": 0, "benchmark_overlap": 0,
              "all_correct": 0, "none_correct": 0}
    pairs = []
    from tasks.progress import Progress

    progress = Progress(len(records), "DPO: sampling answers")
    for record in progress.iterate(records):
        question = " ".join(m["content"] for m in record["prompt"] if m["role"] == "user")
        if _norm(question) in exclude:
            counts["benchmark_overlap"] += 1
            continue
        target = checkable(final_answer(record["completion"][0]["content"], config))
        if target is None:
            counts["not_checkable"] += 1
            continue
        answers = sample(record["prompt"], n)
        prompt_text = getattr(sample, "prompt_text", None)
        opened = prompt_text is not None and opens_reasoning(prompt_text(record["prompt"]), config.data.think_tags)
        graded = [(a, is_correct(*target, final_answer(a, config, opened))) for a in answers]
        good = [a for a, ok in graded if ok]
        bad = [a for a, ok in graded if not ok]
        if not good or not bad:
            counts["all_correct" if good else "none_correct"] += 1
            continue
        pairs.append({"prompt": record["prompt"], "chosen": [{"role": "assistant", "content": rng.choice(good)}],
                      "rejected": [{"role": "assistant", "content": rng.choice(bad)}],
                      "expected": target[1], "n_correct": len(good), "n_sampled": len(answers)})
        counts["pairs"] += 1
    progress.close()
    return pairs, counts
