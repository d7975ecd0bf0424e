from __future__ import annotations

import pytest

from tasks.bench.judge import parse_grade
from tasks.bench.metrics import char_f1, number_filters, reasoning_audit, split_thinking, summarize

TAGS = (("<think>", "</think>"), ("<final>", "</final>"))


@pytest.mark.parametrize("text,strict,flexible", [
    ("She makes 9 * 2 = $18.\n#### 18", "18", "18"),
    ("The answer is 1,234.", None, "1234"),
    ("#### -5\nso 7 apples", "-5", "7"),
    ("no numbers here", None, None),
    ("It costs $3.50 in total.", None, "3.50"),
])
def test_gsm8k_filters(text, strict, flexible):
    assert number_filters(text) == (strict, flexible)


def test_char_f1():
    assert char_f1("東京です", "東京です") == 1.0
    assert char_f1("", "東京") == 0.0
    assert char_f1("東京", "京都") == pytest.approx(0.5)
    assert char_f1("a b", "ab") == 1.0  # whitespace ignored


@pytest.mark.parametrize("text,final,reasoning", [
    ("<think>2+2 is 4</think>\n<final>4</final>", "4", "2+2 is 4"),
    ("<think>long thought", "", "long thought"),  # cut off mid-reasoning: nothing final to score
    ("<think>a</think> The answer is 4.", "The answer is 4.", "a"),
    ("Plain answer.", "Plain answer.", ""),
    ("<final>only final", "only final", ""),
    # a <final> inside the reasoning is reasoning: scored "42" as serve returns it, not the first "41"
    ("<think>try 41 <final>41</final> no wait</think><final>42</final>", "42", "try 41 <final>41</final> no wait"),
    ("<final>42 <think>secret</think></final>", "42", "secret"),  # reasoning inside the final section
    ("secret 41</think> 42", "42", "secret 41"),  # a stray </think>: what came before was reasoning
    ("<think>a <think>b</think> 41</think>42", "42", "a <think>b</think> 41"),  # nested reasoning
])
def test_split_thinking_scores_the_final_section_only(text, final, reasoning):
    assert split_thinking(text, *TAGS) == (final, reasoning)


def test_split_thinking_is_what_serve_returns_and_hashes():
    from tasks.final_section import final_section

    for text in ("<think>try 41 <final>41</final> no wait</think><final>42</final>", "a</final>b", "x<think>y",
                 "<final>4<think>s</think>2", "</think></think>1"):
        for opened in (False, True):
            final, reasoning = split_thinking(text, *TAGS, opened=opened)
            served, f = final_section(text, *TAGS, opened=opened)
            assert final == served
            assert reasoning_audit(reasoning, False)["reasoning_sha256"] == f.reasoning_sha256
            assert len(reasoning) == f.reasoning_chars


def test_a_prompt_that_opened_the_reasoning_section():
    """A thinking chat template ends the prompt with <think>: the generated text starts inside it."""
    assert split_thinking("secret 41</think> 42", *TAGS, opened=True) == ("42", "secret 41")
    assert split_thinking("cut off while thinking 41", *TAGS, opened=True) == ("", "cut off while thinking 41")


def test_reasoning_is_hashed_not_kept():
    audit = reasoning_audit("secret chain of thought", keep_text=False)
    assert audit["reasoning_chars"] == 23 and len(audit["reasoning_sha256"]) == 64
    assert "reasoning_text" not in audit and "secret" not in str(audit)
    assert reasoning_audit("x", keep_text=True)["reasoning_text"] == "x"


def test_summaries():
    from statsmodels.stats.proportion import proportion_confint

    s = summarize([1, 0, 1, 1], binary=True)
    assert s["mean"] == 0.75 and s["n"] == 4
    assert s["ci95"] == pytest.approx(list(proportion_confint(3, 4, method="wilson")))
    m = summarize([1.0, 2.0, 3.0], binary=False)
    assert m["mean"] == 2.0 and m["ci95"][0] < 2.0 < m["ci95"][1]
    assert summarize([], True)["mean"] is None


@pytest.mark.parametrize("text,grade", [
    ("丁寧に答えている。\n点数: 4", 4), ("理由\n点数：5", 5), ("Score: 2", 2), ("点数: 7", None),
    ("よい回答です。", None), ("点数: 3 ... 最終的に 点数: 1", 1),
])
def test_parse_grade(text, grade):
    assert parse_grade(text) == grade
