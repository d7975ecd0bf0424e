"""Checks on an exported GGUF: it loads in llama-cpp-python, carries the metadata a user needs, answers a
prompt, and (BF16) computes the same token log-probabilities as the merged transformers model.

Log-probabilities are taken from the logits after ``eval`` of the GGUF's own tokenization, and the same
token ids are fed to transformers, so the comparison isolates the weights and the arithmetic.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from tasks.export.formats import FILE_TYPES  # each format's general.file_type (llama.cpp's llama_ftype enum)

REQUIRED_METADATA = ("general.architecture", "tokenizer.ggml.model", "tokenizer.chat_template")


def open_gguf(path: Path, n_ctx: int = 512, logits_all: bool = False):
    import llama_cpp._logger

    from tasks.environment import cpu_cores
    from tasks.llama_load import open_llama

    llama_cpp._logger.logger.setLevel(logging.ERROR)
    threads = cpu_cores()
    return open_llama(path, n_ctx=n_ctx, logits_all=logits_all, verbose=False, n_threads=threads,
                      n_threads_batch=threads, seed=0)


def gguf_token_logprobs(llm, text: str) -> tuple[list[int], list[float]]:
    """Token ids of ``text`` and log p(token_i | tokens_<i) for i >= 1, from the logits after eval."""
    import numpy as np

    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    llm.reset()
    llm.eval(tokens)
    logits = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return tokens, [float(logp[i - 1, tokens[i]]) for i in range(1, len(tokens))]


def hf_token_logprobs(model, tokens: list[int]) -> list[float]:
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[i - 1, tokens[i]]) for i in range(1, len(tokens))]


def parity(gguf_path: Path, hf_model, texts: list[str]) -> dict[str, Any]:
    """Mean and max |log p_gguf - log p_hf| over every scored token of ``texts``."""
    llm = open_gguf(gguf_path, logits_all=True)
    diffs = []
    for text in texts:
        tokens, lp_gguf = gguf_token_logprobs(llm, text)
        lp_hf = hf_token_logprobs(hf_model, tokens)
        diffs += [abs(a - b) for a, b in zip(lp_gguf, lp_hf, strict=True)]
    del llm
    return {"tokens": len(diffs), "mean_abs_logprob_diff": sum(diffs) / len(diffs), "max_abs_logprob_diff": max(diffs)}


def verify(path: Path, fmt: str, prompt: str) -> dict[str, Any]:
    """Load, check metadata and file type, answer ``prompt`` greedily; raise on any failure."""
    llm = open_gguf(path)
    meta = llm.metadata
    missing = [k for k in REQUIRED_METADATA if not meta.get(k)]
    if missing:
        raise ValueError(f"{path.name}: GGUF metadata lacks {missing}; the converter did not get a complete "
                         "tokenizer (chat template included) from the merged model folder.")
    file_type = int(meta.get("general.file_type", -1))
    if file_type != FILE_TYPES[fmt]:
        raise ValueError(f"{path.name}: general.file_type is {file_type}, expected {FILE_TYPES[fmt]} for {fmt}.")
    # Through the GGUF's own chat template; an immediate end-of-turn is recorded, not hidden (an untrained
    # toy model may do that; a real one answering nothing shows up as empty_answer in the manifest).
    reply = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=32, temperature=0.0)
    answer = reply["choices"][0]["message"]["content"] or ""
    del llm
    return {"architecture": meta["general.architecture"], "file_type": file_type,
            "tokenizer": meta["tokenizer.ggml.model"], "chat_template": True, "prompt": prompt, "answer": answer,
            "completion_tokens": reply["usage"]["completion_tokens"], "empty_answer": not answer.strip(), "ok": True}


def check_parity(result: dict[str, Any], tolerance: float, name: str, against: str = "the merged model") -> None:
    mean = result["mean_abs_logprob_diff"]
    if not math.isfinite(mean) or mean > tolerance:
        raise ValueError(f"{name}: BF16 GGUF log-probabilities differ from {against} (transformers) by "
                         f"{mean:.4f} nats per token on average (max {result['max_abs_logprob_diff']:.4f}), above "
                         f"export.parity_tolerance = {tolerance}. The conversion is wrong; nothing was published.")
