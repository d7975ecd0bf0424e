"""The one final-answer extractor (tasks/final_section.py): nested and stray tags, a prompt that opened the
reasoning section, every chunking of a stream, and that evaluation, the DPO answer check and serve agree."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest

from tasks.final_section import FinalSectionFilter, final_section, opens_reasoning

TAGS = (("<think>", "</think>"), ("<final>", "</final>"))

# (text, opened, shown, reasoning)
CASES = [
    # a final section inside the reasoning is reasoning; the real one follows
    ("<think>try 41 <final>41</final> no wait</think><final>42</final>", False, "42",
     "try 41 <final>41</final> no wait"),
    # reasoning inside the final section stays hidden
    ("<final>42 <think>secret</think></final>", False, "42", "secret"),
    ("<final>4<think>secret</think>2</final> after", False, "42", "secret"),
    ("<final>42 <think>secret never closed", False, "42", "secret never closed"),
    # a stray </think>: reasoning that was opened without a tag ends there
    ("secret</think> 42", False, "42", "secret"),
    ("a<think>b</think>c</think>d", False, "d", "bac"),
    ("plan</think><final>42</final>", False, "42", "plan"),
    # reasoning sections nest
    ("<think>a <think>b</think> c</think>42", False, "42", "a <think>b</think> c"),
    ("<think>a <think>b</think> c", False, "", "a <think>b</think> c"),
    # unclosed sections
    ("<think>never closed, all private", False, "", "never closed, all private"),
    ("<final>unclosed final", False, "unclosed final", ""),
    ("<final>cut in a tag </thi", False, "cut in a tag </thi", ""),
    # stray and repeated final tags
    ("the answer</final> ignored", False, "the answer", ""),
    ("<final>a<final>b</final>c", False, "ab", ""),
    ("<final>x</think>y</final>", False, "xy", ""),
    # the prompt opened the reasoning section
    ("secret</think> 42", True, "42", "secret"),
    ("secret that never closes", True, "", "secret that never closes"),
    ("s<think>t</think>u</think><final>42</final>", True, "42", "s<think>t</think>u"),
    # plain and ordinary answers
    ("no tags at all", False, "no tags at all", ""),
    ("lead <final>x < y</final> trailing", False, "x < y", ""),
    ("<think>2+2 is 4</think>\n<final>4</final>", False, "4", "2+2 is 4"),
    ("a <thin b", False, "a <thin b", ""),
]


def _streamed(text: str, cuts: tuple[int, ...], opened: bool) -> tuple[list[str], FinalSectionFilter]:
    f = FinalSectionFilter(*TAGS, opened=opened)
    bounds = [0, *cuts, len(text)]
    pieces = [f.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return pieces + [f.finish()], f


@pytest.mark.parametrize("text, opened, shown, reasoning", CASES)
def test_the_whole_text(text, opened, shown, reasoning):
    answer, f = final_section(text, *TAGS, opened=opened, keep_reasoning=True)
    assert answer == shown
    assert f.reasoning_text == reasoning and f.reasoning_chars == len(reasoning)
    assert f.reasoning_sha256 == (hashlib.sha256(reasoning.encode()).hexdigest() if reasoning else None)
    assert final_section(text, *TAGS, opened=opened)[1].reasoning_text is None  # kept only when asked


@pytest.mark.parametrize("text, opened, shown, reasoning", CASES)
def test_every_split_into_two_and_three_pieces_gives_the_same(text, opened, shown, reasoning):
    splits = [(i,) for i in range(len(text) + 1)]
    splits += list(itertools.combinations(range(1, len(text)), 2))
    for cuts in splits:
        pieces, f = _streamed(text, cuts, opened)
        assert "".join(pieces).strip() == shown, cuts
        assert f.reasoning_sha256 == final_section(text, *TAGS, opened=opened)[1].reasoning_sha256, cuts
        if reasoning.strip():
            assert all(reasoning not in p for p in pieces)
            assert not any(w in "".join(pieces) for w in ("secret", "never closed")), cuts


def test_every_chunk_boundary_at_once():
    """One character per feed: every tag is split at every one of its positions."""
    for text, opened, shown, _ in CASES:
        pieces, _ = _streamed(text, tuple(range(1, len(text))), opened)
        assert "".join(pieces).strip() == shown


def test_done_when_the_final_section_closes():
    f = FinalSectionFilter(*TAGS)
    f.feed("<think>x</think><final>42")
    assert not f.done and f.state == "final"
    f.feed("</fin")
    assert not f.done
    assert f.feed("al> more text") == "" and f.done


@pytest.mark.parametrize("prompt, opened", [
    ("<|im_start|>assistant\n<think>\n", True),
    ("<|im_start|>assistant\n<think>", True),
    ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),  # a template that closes it (thinking off)
    ("<|im_start|>assistant\n", False),
    ("user: what does <think> mean?\nassistant:", False),
])
def test_opens_reasoning(prompt, opened):
    assert opens_reasoning(prompt) is opened


def test_evaluation_dpo_and_serve_agree():
    """The counterexample: a <final> inside the reasoning is scored by none of them."""
    from tasks.bench.metrics import split_thinking
    from tasks.train.preferences import final_answer, is_correct

    text = "<think>try 41 <final>41</final> no wait</think><final>42</final>"
    served, _ = final_section(text)
    assert split_thinking(text, *TAGS)[0] == served == "42"

    class Data:
        think_tags, final_tags = TAGS

    class Config:
        data = Data

    assert final_answer(text, Config) == "42"
    answer = final_answer(text, Config)
    assert is_correct("number", "42", answer) and not is_correct("number", "41", answer)
    assert final_answer("secret 41</think> 42", Config, opened=True) == "42"
    assert final_answer("still thinking 41", Config, opened=True) == ""  # never the reasoning's number


def test_dpo_reads_answers_as_their_prompt_opened_them():
    from tasks.train.dpo import build_pairs

    class Data:
        think_tags, final_tags = TAGS

    class Config:
        data = Data

    records = [{"prompt": [{"role": "user", "content": "What is 6 times 7, please tell me?"}],
                "completion": [{"role": "assistant", "content": "<think>6*7</think>\n<final>42</final>"}]}]

    def sample(prompt, n):  # the template opened <think>: reasoning first, no opening tag of its own
        return ["6*7 is 42</think> 41", "hmm 41</think> 42"][:n]

    sample.prompt_text = lambda prompt: "<|im_start|>assistant\n<think>\n"
    pairs, counts = build_pairs(records, sample, 2, Config, set())
    assert counts["pairs"] == 1
    assert pairs[0]["chosen"][0]["content"] == "hmm 41</think> 42"
    assert pairs[0]["rejected"][0]["content"] == "6*7 is 42</think> 41"


class _ThinkingEngine:
    """An engine whose chat template opens the reasoning section: the answer starts inside it."""

    def __init__(self, text: str, prompt_end: str):
        self.text, self.prompt_end = text, prompt_end

    def chat(self, messages, max_tokens, stop=None):
        return self.text

    def chat_prompt(self, messages):
        return "<|im_start|>user\n" + messages[-1]["content"] + "<|im_end|>\n<|im_start|>assistant\n" + self.prompt_end

    def generate(self, prompt, max_tokens, stop):
        return self.text


@pytest.mark.parametrize("prompt_end, text, final, reasoning", [
    ("<think>\n", "secret 41</think> 42", "42", "secret 41"),
    ("<think>\n", "cut off while thinking 41", "", "cut off while thinking 41"),  # never the reasoning's 41
    ("", "secret 41</think> 42", "42", "secret 41"),  # a stray </think> ends reasoning all the same
    ("", "plain 41", "plain 41", ""),
])
def test_evaluation_reads_answers_as_the_prompt_opened_them(prompt_end, text, final, reasoning):
    """A chat suite on a thinking template that ends the prompt with <think>: the answer is read as starting
    inside the reasoning section, as serve reads it."""
    from tasks.bench.runner import RunOptions, score_generation
    from tasks.bench.suites import load_suite

    suite = load_suite("gsm8k")
    suite = suite.model_copy(update={"generation": suite.generation.model_copy(update={"chat": True})})
    engine = _ThinkingEngine(text, prompt_end)
    record = score_generation(engine, suite, {"gold": "42"}, "Q: 6*7?", RunOptions(), None)
    assert record["final_answer"] == final == final_section(text, opened=bool(prompt_end))[0]
    assert record["exact_match_flexible"] is (final == "42")
    assert record["reasoning_chars"] == len(reasoning) and "reasoning_text" not in record
    if reasoning:
        assert "secret" not in json.dumps(record) and "cut off" not in json.dumps(record)
    kept = score_generation(engine, suite, {"gold": "42"}, "Q", RunOptions(keep_reasoning=True), None)
    assert kept["reasoning_text"] == reasoning


def test_the_engine_renders_the_prompt_chat_sends(smollm2_gguf):
    from tasks.bench.engine import Engine

    with Engine(smollm2_gguf, n_ctx=256) as engine:
        prompt = engine.chat_prompt([{"role": "user", "content": "What is 6 times 7?"}])
    assert prompt.rstrip().endswith("<|im_start|>assistant") and "What is 6 times 7?" in prompt
    assert not opens_reasoning(prompt)  # SmolLM2's template does not open a reasoning section
