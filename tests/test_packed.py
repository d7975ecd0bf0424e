"""Packed multiple-choice scoring (tasks/bench/packed.py) against the single-item path."""

from __future__ import annotations

import pytest

from tasks.bench.packed import plan_group

# -- the plan (no model) -------------------------------------------------------------------------


def _decoded(plan):
    return [(n.depth, n.token, tuple(n.seqs), n.output) for n in plan.nodes]


def test_plan_decodes_a_shared_context_once_and_each_choice_on_its_own_sequence():
    ctx = [10, 11, 12]
    plan = plan_group([(ctx, [20, 21]), (ctx, [20, 22, 23]), (ctx, [30])], kept=[])
    # the context once with all three seq_ids; " 20" shared by choices 0 and 1; the last token of each choice is
    # never decoded (nothing reads the logits after it)
    assert _decoded(plan) == [(0, 10, (0, 1, 2), False), (1, 11, (0, 1, 2), False), (2, 12, (0, 1, 2), True),
                              (3, 20, (0, 1), True), (4, 22, (1,), True)]
    assert plan.reuse == [0, 0, 0]
    assert [len(p) for p in plan.paths] == [4, 5, 3]


def test_plan_keeps_each_sequence_in_position_order_in_the_batch():
    # preorder: a node comes after its parent, so each sequence's positions increase through the batch (llama.cpp
    # refuses a batch whose positions of one sequence decrease)
    plan = plan_group([([1, 2], [3, 4, 5]), ([1, 2], [6, 7]), ([1, 9], [3])], kept=[])
    seen: dict[int, int] = {}
    for node in plan.nodes:
        for s in node.seqs:
            assert node.depth == seen.get(s, -1) + 1
            seen[s] = node.depth


def test_plan_takes_the_kept_prefix_but_never_the_position_whose_logits_are_read():
    kept = [1, 2, 3, 4, 5]
    # the same context as kept: its last position is decoded again (its logits are not kept)
    plan = plan_group([([1, 2, 3, 4, 5], [6])], kept)
    assert plan.reuse == [4] and _decoded(plan) == [(4, 5, (0,), True)]
    # a context that shares 3 tokens with kept
    plan = plan_group([([1, 2, 3, 9, 9], [6])], kept)
    assert plan.reuse == [3] and [n.depth for n in plan.nodes] == [3, 4]


def test_plan_decodes_a_shared_node_again_when_one_of_its_sequences_cannot_reuse_it():
    # counterexample to reusing per sequence: item 0's context is kept[:3] (reuse capped at 2), item 1 shares all of
    # kept (reuse 4). Their common nodes at depths 0-2 must have the same cells for both sequences (llama.cpp requires
    # it of sequences sharing a batch token): depth 2 is decoded for both, so item 1 reuses only depths 0-1.
    kept = [1, 2, 3, 4, 5]
    plan = plan_group([([1, 2, 3], [7]), ([1, 2, 3, 4, 5, 6], [8])], kept)
    assert plan.reuse == [2, 2]
    assert _decoded(plan)[0] == (2, 3, (0, 1), True)


def test_plan_of_choices_whose_contexts_differ_after_a_merge_across_the_boundary():
    # encode_pair: a continuation whose first token merges with the context's end gives that choice other context
    # tokens; each choice reads its logits at its own context end
    plan = plan_group([([1, 2, 3], [4]), ([1, 2, 33], [5, 6])], kept=[])
    assert _decoded(plan) == [(0, 1, (0, 1), False), (1, 2, (0, 1), False), (2, 3, (0,), True),
                              (2, 33, (1,), True), (3, 5, (1,), True)]


def test_plan_refuses_empty_pairs():
    with pytest.raises(ValueError, match="non-empty context and continuation"):
        plan_group([([1], [])], kept=[])


# -- against the single-item path on real models ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_f32_gguf(tiny_base_dir, tmp_path_factory):
    """The tiny model (SmolLM2's tokenizer) as an F32 GGUF: llama.cpp computes it without rounding its activations
    to 8 or 16 bits, so a different batch layout changes its logits only in the last bits."""
    from tasks.export.converter import convert

    out = tmp_path_factory.mktemp("tiny-f32") / "tiny-F32.gguf"
    convert(tiny_base_dir, out, "f32")
    return out


def _suite_items(engine, limit_per_suite: int = 5):
    from tasks.bench.runner import build_context, choices_of
    from tasks.bench.suites import load_docs, load_suite

    items = []
    for name, shots in [("mmlu", 0), ("mmlu", 2), ("hellaswag", 0), ("arc_challenge", 1), ("scienceqa", 0)]:
        suite = load_suite(name)
        docs = [d for d in load_docs(suite, None) if not d.get("image")][:limit_per_suite]
        for doc in docs:
            context = build_context(suite, doc, docs, shots)
            items.append([engine.encode_pair(context, suite.target_delimiter + c) for c in choices_of(suite, doc)])
    return items


def _hand_made_items(engine):
    items = []
    # choices sharing leading tokens and differing in length; two identical choices
    ctx = "Question: Which planet is closest to the Sun?\nAnswer:"
    items.append([engine.encode_pair(ctx, c) for c in [" The planet Mercury", " The planet Mars is red", " Venus",
                                                        " The planet Mercury"]])
    # a context ending in a space (encode_pair moves it) and a continuation that merges with the context's end
    items.append([engine.encode_pair("The answer is: 4", c) for c in ["2", "5 apples", ".0"]])
    items.append([engine.encode_pair("Count to three: one two thr", c) for c in ["ee four", "ice"]])
    items.append([engine.encode_pair("He said hel", c) for c in ["lo there", "p me", " lo"]])
    # larger than a small packed cache (llama.cpp rounds a context up to 256 cells)
    items.append([engine.encode_pair("one two three four five " * 70 + "six", c) for c in [" seven", " eight"]])
    return items


def _compare(engine, items, **packer):
    from tasks.bench.packed import PackedScorer

    single = [[engine.loglikelihood(c, t) for c, t in item] for item in items]
    scorer = PackedScorer(engine.llm, **{"n_ctx": engine.n_ctx, **packer})
    try:
        packed = scorer.score(items, fallback=engine.loglikelihood)
        calls = scorer.decode_calls, scorer.fallback_items
    finally:
        scorer.close()
    gaps = [abs(a.loglikelihood - b.loglikelihood) for x, y in zip(single, packed, strict=True)
            for a, b in zip(x, y, strict=True)]
    assert [[s.n_tokens for s in x] for x in packed] == [[s.n_tokens for s in x] for x in single]
    return single, packed, max(gaps), calls


def test_packed_scores_equal_the_single_item_path_on_every_choice(tiny_f32_gguf):
    from tasks.bench.engine import Engine

    with Engine(tiny_f32_gguf, n_ctx=2048) as engine:
        items = _suite_items(engine) + _hand_made_items(engine)
        n_pairs = sum(len(i) for i in items)
        single, packed, gap, calls = _compare(engine, items)
        assert gap < 1e-4
        assert [[s.is_greedy for s in x] for x in packed] == [[s.is_greedy for s in x] for x in single]
        assert calls[0] < n_pairs / 4 and calls[1] == 0  # several items per decode
        # small batches: an item's context + choices span several llama_decode calls; one group per item
        single, packed, gap, calls = _compare(engine, items, n_batch=16, n_seq=8, tokens=1)
        assert gap < 1e-4 and calls[0] > len(items)
        # items with more choices than sequences, and items larger than the cache (a kept prefix dropped to make
        # room, or the item scored by the single-item path): every choice still scored
        for packer in (dict(n_seq=3), dict(n_ctx=96, tokens=32)):
            _, _, gap, (_, fallbacks) = _compare(engine, items, **packer)
            assert gap < 1e-4 and 0 < fallbacks < len(items)


def test_runner_packed_mc_gives_the_single_item_records_under_its_own_key(tiny_f32_gguf, tmp_path):
    import json

    from tasks.bench.runner import RunOptions, eval_key, run_suite

    for suite in ("mmlu", "scienceqa"):  # scienceqa: an image item (skipped without a projector) among text items
        single = run_suite(tiny_f32_gguf, suite, tmp_path / "single", RunOptions())
        packed = run_suite(tiny_f32_gguf, suite, tmp_path / "packed", RunOptions(packed_mc=True))
        assert (single["mc_scoring"], packed["mc_scoring"]) == ("single", "packed")
        assert single["key"] != packed["key"] and "mc_scoring" not in single["inputs"]  # the single path's keys stay
        assert packed["timings"]["prompt_tokens"] > 0
        rows = [[json.loads(line) for line in (tmp_path / d / f"{suite}.jsonl").read_text().splitlines()]
                for d in ("single", "packed")]
        assert len(rows[0]) == len(rows[1]) and any(r.get("skipped") for r in rows[0]) == (suite == "scienceqa")
        for a, b in zip(*rows, strict=True):
            assert a.keys() == b.keys() and a.get("pred") == b.get("pred") and a.get("is_greedy") == b.get("is_greedy")
            assert max((abs(x - y) for x, y in zip(a.get("loglikelihoods", []), b.get("loglikelihoods", []),
                                                    strict=True)), default=0) < 1e-4
    assert eval_key(tiny_f32_gguf, "gsm8k", RunOptions())[0] == eval_key(tiny_f32_gguf, "gsm8k",
                                                                       RunOptions(packed_mc=True))[0]
