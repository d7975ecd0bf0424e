"""Personal identifiers in training text (English and Japanese): e-mail addresses, phone numbers, card numbers,
Japanese postal codes, My Number (個人番号) and IP addresses.

Matching runs on an NFKC-normalised copy of the text (full-width ０-９, Ａ-Ｚ, ＠, －, （ ） become ASCII; dash-like
characters such as ー − ‐ – become "-"), character by character so that every normalised character maps back
to the original one: the mask replaces the original span, whatever its width.

Boundaries are explicit lookarounds on ASCII digits (and letters where they matter), never ``\\b``: kana and
kanji are word characters to ``re``, so ``電話は090-1234-5678です`` has no word boundary around the number.

Patterns are strict where arithmetic and version numbers live, so worked maths is not taken for personal data:

- phone: Japanese numbers must have the right length for their prefix (mobile/IP 050/070/080/090 and 0800:
  11 digits, other 0-prefixed numbers 10); a separator is one "-", one space or parentheses, never " - ";
  unseparated 10-digit landlines need a phone word before them (TEL, 電話, 携帯...); +81 numbers need 9-10
  national digits; US numbers need an area code starting 2-9 and one consistent separator.
- card: 13-19 digits, unbroken or in groups of 3-6 with one consistent separator, an issuer digit 2-6, Luhn.
- my_number: 12 digits with the official check digit, grouped 4-4-4 or after a word like マイナンバー / 個人番号.
- postal: 〒123-4567 (or 〒1234567), or 123-4567 in an address context (郵便番号/住所/postal/zip before it, a
  prefecture or city after it).
- ip: four valid octets without leading zeros, not preceded by letters or a version word (version, v, ver.,
  release, build, section, バージョン...), not part of a longer dotted number; IPv6 in full or compressed form
  (what ``ipaddress`` accepts, at least two groups written out).
- dashes: the wave dash 〜 and full-width ～ count as dashes (090〜1234〜5678); mobile numbers may be dotted
  (090.1234.5678), US numbers spaced (555 123 4567).
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

# mask tokens by kind; find_personal_data reports kinds in this order
MASKS = {"email": "[EMAIL]", "card": "[CARD]", "my_number": "[MY_NUMBER]", "phone": "[PHONE]",
         "postal": "[POSTAL]", "ip": "[IP]"}
KINDS = tuple(MASKS)

_DASHES = dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70\ufe63\uff0d", "-")
# wave dash and full-width tilde: Japanese writes 090〜1234〜5678 too (matched as dashes; NFKC leaves 〜 alone)
_WAVES = "\u301c\uff5e"

EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                   r"(?![A-Za-z0-9-])")
_NO_DIGIT_BEFORE = r"(?<![0-9])(?<![0-9][-.])"  # not inside a longer number (nor right after "12-" or "1.")
_NO_DIGIT_AFTER = r"(?![0-9])(?![-.][0-9])"
JP_PHONE = re.compile(
    _NO_DIGIT_BEFORE
    + r"(?:\(0[0-9]{1,4}\) ?[0-9]{1,4}-?[0-9]{3,4}"  # (03)1234-5678
    r"|0[0-9]{1,4}(?:-| |\()[0-9]{1,4}(?:-| |\) ?)[0-9]{3,4}"  # 090-1234-5678, 03 1234 5678, 03(1234)5678
    r"|0[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{3,4}"  # 090.1234.5678
    r"|0[0-9]{9,10})"  # 09012345678
    + _NO_DIGIT_AFTER)
JP_INTL_PHONE = re.compile(r"(?<![0-9A-Za-z+])\+81[- ]?(?:\(0\)[- ]?)?[0-9]{1,4}[- ]?[0-9]{1,4}[- ]?[0-9]{3,4}"
                           + _NO_DIGIT_AFTER)
INTL_PHONE = re.compile(r"(?<![0-9A-Za-z+])\+[0-9]{1,3}[ -]?\(?[0-9]{1,4}\)?(?:[ -][0-9]{2,4}){2,3}"
                        + _NO_DIGIT_AFTER)  # +1 (555) 123 4567, +44 20 7946 0958
US_PHONE = re.compile(_NO_DIGIT_BEFORE
                      + r"(?:\([2-9][0-9]{2}\) ?[0-9]{3}[- ][0-9]{4}|[2-9][0-9]{2}([-. ])[0-9]{3}\1[0-9]{4})"
                      + _NO_DIGIT_AFTER)  # (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567
CARD = re.compile(r"(?<![0-9])(?:[0-9]{13,19}|[0-9]{4}([- ])[0-9]{3,6}(?:\1[0-9]{3,6}){1,3})(?![0-9])")
MY_NUMBER = re.compile(r"(?<![0-9])(?<![0-9][- ])(?:[0-9]{12}|[0-9]{4}([- ])[0-9]{4}\1[0-9]{4})(?![0-9])(?![- ][0-9])")
POSTAL = re.compile(_NO_DIGIT_BEFORE + r"[0-9]{3}-?[0-9]{4}" + _NO_DIGIT_AFTER)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = re.compile(rf"(?<![0-9A-Za-z._])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9A-Za-z])(?!\.[0-9])")
# candidates only: hex groups and colons (with an IPv4 tail); ``_ipv6_ok`` keeps what ipaddress accepts
IPV6 = re.compile(r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?"
                  r"(?![0-9A-Za-z:])")



def _words(pattern: str, flags: int = re.IGNORECASE) -> re.Pattern:
    """A context pattern, with its long vowel marks (マイナンバー) spelled as the normalised text has them ("-")."""
    return re.compile(pattern.translate(str.maketrans(_DASHES)), flags)


_PHONE_WORD = _words(r"(?:tel|phone|fax|mobile|call|電話|携帯|連絡先|☎)[^0-9]{0,6}$")
_MY_NUMBER_WORD = _words(r"(?:マイナンバー|個人番号|my ?number)[^0-9]{0,8}$")
_POSTAL_BEFORE = _words(r"(?:郵便番号|住所|所在地|postal(?: code)?|post ?code|zip(?: code)?)[^0-9]{0,6}$")
_KANJI = "\u4e00-\u9fff"
_POSTAL_AFTER = re.compile(rf"^[ ,、]{{0,2}}(?:北海道|東京都|京都府|大阪府|[{_KANJI}]{{2,3}}県"
                           rf"|[{_KANJI}]{{1,5}}[市区町村郡]|[A-Za-z-]+,? Japan\b|Japan\b)")
_VERSION_BEFORE = _words(r"(?:(?<![A-Za-z])v|ver|version|release|rev|revision|build|section|sec|chapter|step|"
                         r"バージョン|ver\.)[ .:=#]{0,3}$")


class Span(NamedTuple):
    start: int  # in the original text
    end: int
    kind: str


def _normalise(text: str) -> tuple[str, list[int]]:
    """NFKC (dashes unified) and, for each normalised character, the index of the original one it came from."""
    if text.isascii():
        return text, list(range(len(text)))
    out, origin = [], []
    for i, char in enumerate(text):
        norm = "-" if char in _WAVES else unicodedata.normalize("NFKC", char)
        for c in norm:
            out.append(_DASHES.get(c, c))
            origin.append(i)
    return "".join(out), origin


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in _digits(number)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_luhn_ok = luhn_ok  # the former private name


def my_number_check_digit(first11: str) -> int:
    """The My Number check digit of the first 11 digits: weights Pn = n + 1 (n = 1..6), n - 5 (n = 7..11) over the
    digits counted from the right; 11 - (sum mod 11), or 0 when the remainder is 0 or 1."""
    if len(first11) != 11 or not first11.isdigit():
        raise ValueError(f"expected 11 digits; got {first11!r}")
    total = sum(int(d) * (n + 1 if n <= 6 else n - 5) for n, d in enumerate(reversed(first11), 1))
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number_ok(number: str) -> bool:
    digits = _digits(number)
    return len(digits) == 12 and my_number_check_digit(digits[:11]) == int(digits[11])


def _phone_ok(norm: str, m: re.Match) -> bool:
    digits = _digits(m.group())
    if len(digits) < 10 or digits[1] == "0":  # 00 is the international call prefix
        return False
    long_prefix = digits.startswith(("050", "070", "080", "090", "0800"))
    if len(digits) != (11 if long_prefix else 10):
        return False
    if digits == m.group() and not long_prefix and not digits.startswith(("0120", "0570")):
        return bool(_PHONE_WORD.search(norm[max(0, m.start() - 16):m.start()]))  # bare 10 digits: needs a word
    return True


def _jp_intl_ok(_norm: str, m: re.Match) -> bool:
    national = _digits(m.group().replace("(0)", ""))[2:]
    return 9 <= len(national) <= 10 and national[0] != "0"


def _card_ok(_norm: str, m: re.Match) -> bool:
    digits = _digits(m.group())
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _my_number_ok(norm: str, m: re.Match) -> bool:
    grouped = m.group(1) is not None
    return my_number_ok(m.group()) and (grouped or bool(_MY_NUMBER_WORD.search(norm[max(0, m.start() - 20):m.start()])))


def _postal_ok(norm: str, m: re.Match) -> bool:
    before = norm[max(0, m.start() - 16):m.start()]
    if before.rstrip(" ").endswith("〒"):
        return True
    if "-" not in m.group():
        return bool(_POSTAL_BEFORE.search(before))
    return bool(_POSTAL_BEFORE.search(before) or _POSTAL_AFTER.search(norm[m.end():m.end() + 24]))


def _ipv6_ok(_norm: str, m: re.Match) -> bool:
    """A real IPv6 address with at least two groups written out (not a clock time like 10:45:30, nor '::')."""
    import ipaddress

    try:
        ipaddress.IPv6Address(m.group())
    except ValueError:
        return False
    return sum(1 for g in m.group().split(":") if g) >= 2


def _ip_ok(norm: str, m: re.Match) -> bool:
    return not (_VERSION_BEFORE.search(norm[max(0, m.start() - 12):m.start()]) or norm[m.end():].startswith("版"))


# (kind, pattern, validator) in priority order: an accepted span hides later ones that overlap it
_RULES = (
    ("email", EMAIL, None),
    ("card", CARD, _card_ok),
    ("my_number", MY_NUMBER, _my_number_ok),
    ("phone", JP_INTL_PHONE, _jp_intl_ok),
    ("phone", INTL_PHONE, None),
    ("phone", JP_PHONE, _phone_ok),
    ("phone", US_PHONE, None),
    ("postal", POSTAL, _postal_ok),
    ("ip", IPV6, _ipv6_ok),
    ("ip", IPV4, _ip_ok),
)


def personal_data_spans(text: str) -> list[Span]:
    """Non-overlapping spans of personal data in ``text`` (indices into the original text), in text order."""
    norm, origin = _normalise(text)
    taken: list[tuple[int, int]] = []
    spans: list[Span] = []
    for kind, pattern, ok in _RULES:
        for m in pattern.finditer(norm):
            if m.start() == m.end() or any(m.start() < e and s < m.end() for s, e in taken):
                continue
            if ok is not None and not ok(norm, m):
                continue
            taken.append((m.start(), m.end()))
            spans.append(Span(origin[m.start()], origin[m.end() - 1] + 1, kind))
    return sorted(spans)


def find_personal_data(text: str) -> list[str]:
    """Kinds of identifiers found in ``text`` (empty when clean), in the order of ``KINDS``."""
    found = {s.kind for s in personal_data_spans(text)}
    return [k for k in KINDS if k in found]


def mask_personal_data(text: str) -> str:
    """``text`` with every identifier replaced by its mask token ([EMAIL], [PHONE], [CARD], [IP], [POSTAL],
    [MY_NUMBER])."""
    out, last = [], 0
    for span in personal_data_spans(text):
        out.append(text[last:span.start])
        out.append(MASKS[span.kind])
        last = span.end
    out.append(text[last:])
    return "".join(out)
