from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.pii import find_personal_data, mask_personal_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text,kind", [
    ("write to jane.doe@example.co.jp today", "email"),
    ("call 090-1234-5678 after six", "phone"),
    ("office: 03-1234-5678", "phone"),
    ("US line (555) 123-4567", "phone"),
    ("intl +81 90 1234 5678", "phone"),
    ("card 4111 1111 1111 1111 expires", "card"),
    ("server at 192.168.10.24", "ip"),
])
def test_identifiers_are_found_and_masked(text, kind):
    assert kind in find_personal_data(text)
    masked = mask_personal_data(text)
    assert find_personal_data(masked) == []
    assert f"[{kind.upper() if kind != 'email' else 'EMAIL'}" in masked


@pytest.mark.parametrize("text", [
    "3 x 5 = 15 and 15 - 4 = 11", "the years 2024-2025", "12-34", "250 / 18 = 13 remainder 16",
    "1234567890123 is not a valid card", "version 1.2.3", "10:45 to 13:20 is 155 minutes",
])
def test_worked_maths_is_not_personal_data(text):
    assert find_personal_data(text) == []


def test_the_bundled_sft_set_is_clean():
    path = ROOT / "tasks/resources/sft/thinking-mini.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for field in ("question", "reasoning", "answer"):
            assert find_personal_data(record[field]) == [], (field, record[field])
