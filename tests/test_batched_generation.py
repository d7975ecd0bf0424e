"""Batched greedy generation (tasks.bench.batched) against the one-at-a-time path, on the real SmolLM2 GGUF."""

from __future__ import annotations

import pytest

from tasks.bench.engine import Engine

PROMPTS = ["Question: What is 12 times 7?\nAnswer:", "The capital of France is", "def fib(n):\n",
           "Once upon a time,", "1, 2, 3, 4,", "Translate to French: cat ->"]


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    with Engine(smollm2_gguf, n_ctx=512) as e:
        yield e


def test_parallel_1_is_the_one_at_a_time_path(engine):
    done = []
    assert engine.generate_many(PROMPTS[:3], 12, ["\n\n"], parallel=1, on_done=done.append) == \
        [engine.generate(p, 12, ["\n\n"]) for p in PROMPTS[:3]]
    assert done == [0, 1, 2] and engine._batched is None  # no batched context was even built
    messages = [[{"role": "user", "content": "Say hello."}]]
    assert engine.chat_many(messages, 8, None, parallel=1) == [engine.chat(messages[0], 8)]


def test_continuous_batching_gives_the_one_at_a_time_completions(engine):
    # more prompts than slots, different lengths (max_tokens per prompt) and early stops (a stop string, EOS)
    max_tokens = [4, 24, 8, 20, 24, 3]
    stops = [["\n"], ["\n\n"], [], [","], ["\n\n"], ["\n"]]
    one = [engine.generate(p, m, s) for p, m, s in zip(PROMPTS, max_tokens, stops, strict=True)]
    done = []
    many = engine.generate_many(PROMPTS, max_tokens, stops, parallel=3, on_done=done.append)
    assert many == one
    assert sorted(done) == list(range(len(PROMPTS))) and done != list(range(len(PROMPTS)))  # finished out of order
    assert engine._batched.stats["steps"] < sum(max_tokens)  # sequences really decoded together
    # the same decoder again (its slots reused, their KV cleared) and one prompt per slot
    assert engine.generate_many(PROMPTS[::-1], 16, [], parallel=3) == [engine.generate(p, 16, []) for p in
                                                                       PROMPTS[::-1]]


def test_stop_strings_across_token_boundaries_cut_where_create_completion_cuts(engine):
    prompt = "1, 2, 3, 4,"
    full = engine.generate(prompt, 16, [])
    assert full.startswith(" 5, 6, 7, 8")
    # stop strings spanning tokens; checked after every token (the one found first ends it); of several found
    # after the same token, the first listed cuts
    cases = [["6, 7"], [" 8", "5, 6"], ["7", ", 7"], [", 7", "7"], ["ri"]]
    expected = [" 5, ", " ", " 5, 6, ", " 5, 6", full]
    for stop, want in zip(cases, expected, strict=True):
        assert engine.generate(prompt, 16, stop) == want
    assert engine.generate_many([prompt] * len(cases), 16, cases, parallel=2) == expected
    paris = engine.generate("The capital of France is", 6, [])
    assert "Paris" in paris  # a stop string inside one token cuts that token
    assert engine.generate_many(["The capital of France is"], 6, ["ari"], parallel=2) == [paris.split("ari")[0]]


def test_batched_chat_gives_the_one_at_a_time_answers(engine):
    conversations = [[{"role": "user", "content": c}] for c in ("Say hello.", "What is 2+2?", "Name a color.")]
    one = [engine.chat(m, 16) for m in conversations]
    assert engine.chat_many(conversations, 16, None, parallel=2) == one


def test_user_errors_are_named(engine, smollm2_gguf, tmp_path):
    from tasks.bench.runner import RunOptions, eval_key, run_suite

    for bad in (0, -1, 1.5, 257, True):
        with pytest.raises(ValueError, match="parallel must be a whole number from 1 to 256"):
            engine.generate_many(PROMPTS[:1], 4, [], parallel=bad)
    with pytest.raises(ValueError, match="max_tokens has 2 entries for 3 prompts"):
        engine.generate_many(PROMPTS[:3], [4, 4], [], parallel=2)
    with pytest.raises(ValueError, match="stop has 1 entries for 2 prompts"):
        engine.generate_many(PROMPTS[:2], 4, [["x"]], parallel=2)
    with pytest.raises(ValueError, match="empty prompt"):
        engine.generate_many(["", "x"], 4, [], parallel=2)
    with pytest.raises(ValueError, match="exceed context window of 512"):
        engine.generate_many(["word " * 600], 4, [], parallel=2)
    with pytest.raises(ValueError, match="parallel must be"):
        run_suite(smollm2_gguf, "gsm8k", tmp_path, RunOptions(parallel=0))
    # batched completions may differ in a near tie: a batched result has its own key; the reference path keeps its
    # key, and multiple choice (never batched) is not affected
    assert eval_key(smollm2_gguf, "gsm8k", RunOptions(parallel=1))[0] == eval_key(smollm2_gguf, "gsm8k",
                                                                                  RunOptions())[0]
    assert eval_key(smollm2_gguf, "gsm8k", RunOptions(parallel=1))[0] != \
        eval_key(smollm2_gguf, "gsm8k", RunOptions(parallel=8))[0]
    assert eval_key(smollm2_gguf, "mmlu", RunOptions(parallel=1))[0] == \
        eval_key(smollm2_gguf, "mmlu", RunOptions(parallel=8))[0]


def test_prompts_sharing_a_long_prefix_give_the_one_at_a_time_completions(engine):
    """Few-shot prompts share a long prefix. Keeping it in a slot's KV stream (or copying it from another stream) and
    decoding that stream together with another one gives wrong logits with this llama.cpp (a naive prefix reuse
    answers ' 164' for ' 16' here); every admitted prompt starts on a cleared stream."""
    from tasks.bench.batched import BatchedDecoder, completion_request

    shots = "".join(f"Question: What is {a} plus {a + 1}?\nAnswer: {2 * a + 1}\n\n" for a in range(1, 9))
    prompts = [f"{shots}Question: What is {q} plus 1?\nAnswer:" for q in (20, 31, 42, 53, 64, 75)]
    requests = [completion_request(engine.llm, p, 6, ["\n"]) for p in prompts]
    decoder = BatchedDecoder(engine.llm, 4)  # more prompts than slots: two slots are used twice
    try:
        many = decoder.run(requests)
        assert decoder.stats["prompt_tokens"] == sum(len(r.tokens) for r in requests)  # nothing reused
    finally:
        decoder.close()
    assert many == [engine.generate(p, 6, ["\n"]) for p in prompts]
