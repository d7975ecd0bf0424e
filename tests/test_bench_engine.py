from __future__ import annotations

import pytest

from tasks.bench.engine import Engine


def _hf_loglikelihood(model, ctx, cont) -> float:
    import torch

    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ctx + cont])).logits[0].double(), -1)
    return sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))


def test_loglikelihood_aligns_with_transformers_on_a_model_without_bos(tiny_gguf):
    import torch
    from transformers import AutoModelForCausalLM

    gguf, hf_dir = tiny_gguf
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with Engine(gguf, n_ctx=512) as engine:
        assert engine.add_bos is False  # the trap: echo=True log-probs shift by one token on such models
        ctx_text = "Question: Which planet is closest to the Sun?\nAnswer:"
        for cont in [" Mercury", " Venus", " The planet Mars"]:
            ctx, tokens = engine.encode_pair(ctx_text, cont)
            assert engine.tokenize(ctx_text) == ctx
            ours = engine.loglikelihood(ctx, tokens).loglikelihood
            assert ours == pytest.approx(_hf_loglikelihood(model, ctx, tokens), abs=2e-3)


def test_kv_reuse_gives_exactly_what_a_fresh_engine_gives(smollm2_gguf):
    ctx_text = "The following are multiple choice questions.\n\nWhat is 2+2?\nA. 3\nB. 4\nAnswer:"
    conts = [" A", " B", " The answer is four", " B"]
    with Engine(smollm2_gguf, n_ctx=512) as engine:
        reused = [engine.loglikelihood(*engine.encode_pair(ctx_text, c)) for c in conts]
        decoded = engine.decoded_tokens
    fresh = []
    for cont in conts:
        with Engine(smollm2_gguf, n_ctx=512) as engine:
            fresh.append(engine.loglikelihood(*engine.encode_pair(ctx_text, cont)))
    assert [r.loglikelihood for r in reused] == [f.loglikelihood for f in fresh]
    assert [r.is_greedy for r in reused] == [f.is_greedy for f in fresh]
    assert decoded < 2 * 30  # the context once, then only continuation tokens (no per-choice re-evaluation)


def test_encode_pair_moves_trailing_space_into_the_continuation(smollm2_gguf):
    with Engine(smollm2_gguf, n_ctx=256) as engine:
        assert engine.encode_pair("Answer: ", "B") == engine.encode_pair("Answer:", " B")


def test_engine_errors(smollm2_gguf, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Engine(tmp_path / "none.gguf")
    with Engine(smollm2_gguf, n_ctx=32) as engine:
        with pytest.raises(ValueError, match="exceed the engine's n_ctx=32"):
            engine.loglikelihood(engine.tokenize("word " * 40), engine.tokenize(" end"))
        with pytest.raises(ValueError, match="non-empty"):
            engine.loglikelihood([], [1])


def test_isolated_speed_benchmark_interleaves_and_records_samples(tiny_gguf, tmp_path):
    import json

    from tasks.bench.speed import measure_speed

    gguf, _ = tiny_gguf
    record = measure_speed({"a": gguf, "b": gguf}, repeats=2, max_tokens=8, out=tmp_path / "speed.json")
    assert json.loads((tmp_path / "speed.json").read_text()) == record
    for m in record["models"].values():
        assert len(m["tokens_per_s"]) == 2 and all(v > 0 for v in m["tokens_per_s"])
        assert m["architecture"] == "llama" and m["file_type"] is not None  # what decides speed's place
    assert record["design"] == "interleaved"  # rounds pair the models (tasks/decide/speed.py)
    with pytest.raises(ValueError, match="repeats"):
        measure_speed({"a": gguf}, repeats=1)


def test_an_evaluations_thread_share_changes_no_result(smollm2_gguf):
    """Evaluations side by side run at a share of the cores (tasks.model_slots.eval_threads) and no key records the
    count: that is sound only while llama.cpp gives the same numbers at any thread count, which this checks bit for bit
    (log-likelihoods and greedy text, on the quantized model whose activations are rounded to 8 bits)."""
    import threading

    from tasks.bench.engine import _THREADS, engine_threads

    ctx_text = "The following are multiple choice questions.\n\nWhat is 2+2?\nA. 3\nB. 4\nAnswer:"
    prompt = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:"
    outcomes, opened = [], []
    for threads in (1, 2, 3):
        with engine_threads(threads), Engine(smollm2_gguf, n_ctx=512) as engine:
            opened.append(engine.llm.context_params.n_threads)
            outcomes.append(([engine.loglikelihood(*engine.encode_pair(ctx_text, c)).loglikelihood
                              for c in (" A", " B", " The answer is four")],
                             engine.generate(prompt, max_tokens=24, stop=["\n\n"])))
    assert opened == [1, 2, 3] and outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]
    seen = []  # the share is the task's (a context variable), not the process's: another thread keeps its own
    with engine_threads(1):
        other = threading.Thread(target=lambda: seen.append(_THREADS.get()))
        other.start()
        other.join()
    assert seen == [None] and _THREADS.get() is None
    with pytest.raises(ValueError, match="threads must be a whole number"):
        with engine_threads(0):
            pass


def test_each_evaluation_gets_its_share_of_the_cores(monkeypatch):
    """cores // eval_workers, never 0 (3 workers on 2 cores: 1 each, not 0, which llama.cpp would read as its own
    default); a remote Dask cluster's workers keep their own count."""
    from tasks.config import OrchestrationSpec
    from tasks.model_slots import eval_threads

    monkeypatch.setenv("ALPHAGATE_THREADS", "2")
    assert eval_threads(OrchestrationSpec(eval_workers=2)) == 1
    assert eval_threads(OrchestrationSpec(eval_workers=1)) == 2
    assert eval_threads(OrchestrationSpec(eval_workers=3)) == 1
    assert eval_threads(OrchestrationSpec(eval_runner="dask", eval_workers=2)) == 1  # a LocalCluster on this machine
    assert eval_threads(OrchestrationSpec(eval_runner="dask", dask_address="tcp://127.0.0.1:8786")) is None
    monkeypatch.setenv("ALPHAGATE_THREADS", "16")
    assert eval_threads(OrchestrationSpec(eval_workers=4)) == 4
