"""Personal identifiers in training text: e-mail addresses, phone numbers, card numbers, IP addresses.

Patterns are deliberately strict where arithmetic lives (a phone number needs separators or a leading +,
a card number must pass the Luhn check) so that worked maths is not mistaken for personal data.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?<![\w.])(?:\+\d{1,3}[\s-]?\(?\d{1,4}\)?(?:[\s-]\d{2,4}){2,3}"  # +81 90 1234 5678, +1 (555) 123 4567
    r"|\(\d{2,4}\)\s?\d{2,4}-\d{3,4}"  # (555) 123-4567
    r"|0\d{1,4}-\d{1,4}-\d{3,4}"  # 090-1234-5678, 03-1234-5678
    r"|\d{3}[-.]\d{3}[-.]\d{4})(?![\w])"  # 555-123-4567
)
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")


def _luhn_ok(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_personal_data(text: str) -> list[str]:
    """Kinds of identifiers found in ``text`` (empty when clean)."""
    kinds = []
    if EMAIL.search(text):
        kinds.append("email")
    if PHONE.search(text):
        kinds.append("phone")
    if any(_luhn_ok(m.group()) for m in CARD.finditer(text)):
        kinds.append("card")
    if IPV4.search(text):
        kinds.append("ip")
    return kinds


def mask_personal_data(text: str) -> str:
    text = EMAIL.sub("[EMAIL]", text)
    text = CARD.sub(lambda m: "[CARD]" if _luhn_ok(m.group()) else m.group(), text)
    text = PHONE.sub("[PHONE]", text)
    return IPV4.sub("[IP]", text)
