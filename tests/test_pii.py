from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.data.pii import (
    KINDS,
    MASKS,
    find_personal_data,
    mask_personal_data,
    my_number_check_digit,
    my_number_ok,
    personal_data_spans,
)

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
    path = ROOT / "tasks/data/resources/sft/thinking-mini.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for field in ("question", "reasoning", "answer"):
            assert find_personal_data(record[field]) == [], (field, record[field])


# -- labelled corpora: (text, [(kind, the identifier as written)]); an empty list is a negative -------------------

ENGLISH = [
    ("write to jane.doe@example.co.jp today", [("email", "jane.doe@example.co.jp")]),
    ("Contact: JOHN_SMITH+news@mail.example.org.", [("email", "JOHN_SMITH+news@mail.example.org")]),
    ("call 090-1234-5678 after six", [("phone", "090-1234-5678")]),
    ("office: 03-1234-5678", [("phone", "03-1234-5678")]),
    ("US line (555) 123-4567", [("phone", "(555) 123-4567")]),
    ("intl +81 90 1234 5678", [("phone", "+81 90 1234 5678")]),
    ("London desk +44 20 7946 0958, ask for Sam", [("phone", "+44 20 7946 0958")]),
    ("Reach me at 415-555-0132 tomorrow", [("phone", "415-555-0132")]),
    ("card 4111 1111 1111 1111 expires 12/27", [("card", "4111 1111 1111 1111")]),
    ("Amex 3782-822463-10005 on file", [("card", "3782-822463-10005")]),
    ("paid with 5555555555554444 yesterday", [("card", "5555555555554444")]),
    ("server at 192.168.10.24.", [("ip", "192.168.10.24")]),
    ("ssh admin@10.0.0.5 then reboot", [("ip", "10.0.0.5")]),
    ("Ship to: 1-1 Chiyoda, Chiyoda-ku, Tokyo 100-0001, Japan", [("postal", "100-0001")]),
    ("zip code 150-0002 (Shibuya)", [("postal", "150-0002")]),
    ("Her My Number is 1234 5678 9018.", [("my_number", "1234 5678 9018")]),
    ("Mail a.b@example.com or call +1 (555) 123 4567", [("email", "a.b@example.com"),
                                                        ("phone", "+1 (555) 123 4567")]),
    # negatives: arithmetic, versions, dates, times, numbers that fail a check
    ("3 x 5 = 15 and 15 - 4 = 11", []),
    ("12 + 34 = 46", []),
    ("1234 - 5678 = -4444", []),
    ("555 - 123 - 4567 = -4135", []),
    ("version 1.2.3.4 fixes the bug", []),
    ("upgrade to v1.2.3.4 today", []),
    ("Section 1.2.3.4 explains it", []),
    ("Build 10.0.19045.1234 of the OS", []),
    ("the years 2024-2025 and 1999-2000", []),
    ("10:45 to 13:20 is 155 minutes", []),
    ("1234567890123 is not a valid card", []),
    ("4111 1111 1111 1112 fails the Luhn check", []),
    ("The product is 123456789018.", []),  # a valid My Number check digit, but neither grouped nor named
    ("Pi is 3.14159265 and e is 2.71828", []),
    ("0.5 x 0.25 = 0.125", []),
    ("see pages 123-4567 of the archive", []),
]

JAPANESE = [
    ("電話は090-1234-5678です", [("phone", "090-1234-5678")]),
    ("携帯：０９０－１２３４－５６７８までご連絡ください", [("phone", "０９０－１２３４－５６７８")]),
    ("自宅の番号は03-1234-5678です。", [("phone", "03-1234-5678")]),
    ("大阪オフィス（06）1234-5678に電話", [("phone", "（06）1234-5678")]),
    ("フリーダイヤル0120-123-456へ", [("phone", "0120-123-456")]),
    ("TEL：0312345678（代表）", [("phone", "0312345678")]),
    ("海外からは+81-90-1234-5678におかけください", [("phone", "+81-90-1234-5678")]),
    ("連絡先は09012345678です", [("phone", "09012345678")]),
    ("番号は090ー1234ー5678（長音記号で区切り）", [("phone", "090ー1234ー5678")]),
    ("メールはtaro.yamada＠example.co.jpまで", [("email", "taro.yamada＠example.co.jp")]),
    ("ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐに送信", [("email", "ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ")]),
    ("問い合わせ: info@example.com（担当：佐藤）", [("email", "info@example.com")]),
    ("〒100-0001 東京都千代田区千代田1-1", [("postal", "100-0001")]),
    ("〒５３０－０００１　大阪府大阪市北区", [("postal", "５３０－０００１")]),
    ("住所：150-0002 渋谷区渋谷2-21-1", [("postal", "150-0002")]),
    ("郵便番号は〒0600001です", [("postal", "0600001")]),
    ("マイナンバーは123456789018です", [("my_number", "123456789018")]),
    ("個人番号：1234-5678-9018", [("my_number", "1234-5678-9018")]),
    ("カード番号4111-1111-1111-1111で支払い", [("card", "4111-1111-1111-1111")]),
    ("ＪＣＢカード３５３０１１１３３３３０００００を登録", [("card", "３５３０１１１３３３３０００００")]),
    ("サーバーのIPは192.168.1.10です", [("ip", "192.168.1.10")]),
    ("お客様のメールは yuki@example.ne.jp、電話は080-9876-5432です",
     [("email", "yuki@example.ne.jp"), ("phone", "080-9876-5432")]),
    # negatives
    ("12 + 34 = 46 なので答えは46です", []),
    ("1234 - 5678 = -4444 になります", []),
    ("３×５＝１５、１５−４＝１１", []),
    ("バージョン1.2.3.4をインストール", []),
    ("v1.2.3.4にアップデートしてください", []),
    ("第1.2.3.4版の資料", []),
    ("2024年3月15日（2024-03-15）に提出", []),
    ("りんごが１２３個と４５６個で合計５７９個", []),
    ("ページ123-4567を参照", []),
    ("円周率は3.14159です", []),
    ("答えは123456789018です", []),
    ("時刻は09:30から12:45まで", []),
    ("コーヒー3杯で1200円、ケーキ2個で800円", []),
    ("電卓で0.5×0.25=0.125", []),
]


def _score(corpus):
    """(true positives, false negatives, false positives, failure descriptions) over a labelled corpus."""
    tp = fn = fp = 0
    failures = []
    for text, expected in corpus:
        spans = personal_data_spans(text)
        masked = mask_personal_data(text)
        wanted = []
        for kind, written in expected:
            start = text.index(written)
            wanted.append((start, start + len(written), kind))
        for start, end, kind in wanted:
            hit = any(s.kind == kind and s.start <= start and end <= s.end for s in spans)
            if hit and text[start:end] not in masked and MASKS[kind] in masked:
                tp += 1
            else:
                fn += 1
                failures.append(f"missed {kind} {text[start:end]!r} in {text!r} -> {masked!r}")
        for s in spans:
            if not any(s.start < end and start < s.end for start, end, _ in wanted):
                fp += 1
                failures.append(f"false {s.kind} {text[s.start:s.end]!r} in {text!r}")
        assert find_personal_data(masked) == [], masked  # nothing left once masked
        assert find_personal_data(text) == [k for k in KINDS if k in {kind for kind, _ in expected}], text
    return tp, fn, fp, failures


@pytest.mark.parametrize("name,corpus", [("english", ENGLISH), ("japanese", JAPANESE)])
def test_labelled_corpus_precision_and_recall(name, corpus):
    positives = sum(len(e) for _, e in corpus)
    negatives = sum(not e for _, e in corpus)
    assert len(corpus) >= 30 and positives >= 18 and negatives >= 12
    tp, fn, fp, failures = _score(corpus)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    print(f"{name}: {len(corpus)} lines, {positives} identifiers, {negatives} negative lines: "
          f"tp={tp} fn={fn} fp={fp} precision={precision:.3f} recall={recall:.3f}")
    assert failures == []
    assert (tp, fn, fp) == (positives, 0, 0)
    kinds = {kind for _, e in corpus for kind, _ in e}
    assert kinds == set(KINDS)  # every kind is exercised in both languages


def test_mask_replaces_the_original_span_and_keeps_the_rest():
    text = "携帯：０９０－１２３４－５６７８、〒５３０－０００１ 大阪府"
    assert mask_personal_data(text) == "携帯：[PHONE]、〒[POSTAL] 大阪府"
    assert mask_personal_data("plain text, no identifiers: 12 + 34 = 46") == "plain text, no identifiers: 12 + 34 = 46"


def test_my_number_check_digit_follows_the_official_rule():
    # 1 2 3 4 5 6 7 8 9 0 1: from the right, weights 2..7 then 2..6: 2+0+36+40+42+42+10+12+12+10+6 = 212,
    # 212 mod 11 = 3, check = 11 - 3 = 8
    assert my_number_check_digit("12345678901") == 8 and my_number_ok("123456789018")
    assert not my_number_ok("123456789012")
    assert my_number_check_digit("10000000003") == 0  # remainder 1 -> 0
    with pytest.raises(ValueError):
        my_number_check_digit("1234")


# the forms an earlier masking missed (issue 25): each must be masked, and its look-alikes left alone
@pytest.mark.parametrize("text,kind,masked", [
    ("電話は090〜1234〜5678です", "phone", "電話は[PHONE]です"),  # wave dashes
    ("携帯：０９０～１２３４～５６７８", "phone", "携帯：[PHONE]"),  # full-width digits and tildes
    ("携帯 090－1234－5678", "phone", "携帯 [PHONE]"),  # full-width hyphen-minus
    ("mobile 090.1234.5678 anytime", "phone", "mobile [PHONE] anytime"),  # dotted
    ("call 090 1234 5678", "phone", "call [PHONE]"),  # spaced
    ("US desk 555 123 4567.", "phone", "US desk [PHONE]."),
    ("host 2001:db8::8a2e:370:7334 is up", "ip", "host [IP] is up"),  # IPv6, compressed
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip", "[IP]"),  # IPv6, in full
    ("link-local fe80::1ff:fe23:4567:890a", "ip", "link-local [IP]"),
    ("mapped ::ffff:192.0.2.128 too", "ip", "mapped [IP] too"),
])
def test_forms_once_missed_are_masked(text, kind, masked):
    assert kind in find_personal_data(text)
    assert mask_personal_data(text) == masked


@pytest.mark.parametrize("text", ["1〜3個", "10:45:30 に出発", "std::vector<int>", "the ratio 3:4:5",
                                  "see section 2.1.3", "pages 12〜15", "::", "Vec::new()"])
def test_look_alikes_of_those_forms_are_left_alone(text):
    assert find_personal_data(text) == []
