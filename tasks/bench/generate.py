"""Generation records: what a model produces for a suite's items, keyed by what produces them.

A generation record holds, per item, the canonical document, the prompt's sha256 and what the model made of it: the
completion (and, for chat suites, the rendered chat prompt, whose end says whether the model started inside a
reasoning section) for generation suites; each choice's log-likelihood (and whether it is the greedy continuation)
for multiple-choice suites; an image item's few generated tokens, or why it was skipped. Its key hashes the model
file, the suite's prompt and decoding settings (SuiteSpec.prompt_hash: templates, few-shot layout, max_tokens, until,
chat), the items, how they were decoded (n_ctx, parallel, packed layout, mmproj) and the code that generates. It does
*not* hash how answers are scored (answer filters, metrics, the judge): those make the score key
(tasks/bench/score.py), so a scorer change rescores these records and regenerates nothing.

The records are the store's own (``<store>/generate/<key>/``): they keep the raw completion, reasoning included, so
that a change of the reasoning tags rescores too; the per-item results that leave the store (NAME.jsonl) keep only
the reasoning's hash unless asked (RunOptions.keep_reasoning).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.bench.options import RunOptions
from tasks.bench.prompts import build_context, choices_of, sha
from tasks.bench.suites import SuiteSpec, load_docs, load_suite, resolve_data
from tasks.progress import Progress
from tasks.store import (
    atomic_write_json,
    atomic_write_text,
    keyed_dir,
    read_json,
    read_jsonl,
    seal,
    sha256_file,
    staging_dir,
    verified,
)

GENERATIONS = "generations.jsonl"
META = "generation.json"
NO_MMPROJ = "image item, no mmproj given"


def generation_inputs(gguf: Path, suite: SuiteSpec, opts: RunOptions) -> dict[str, Any]:
    """Everything a suite's generations depend on: the model file's content, the suite's prompts and decoding
    (prompt hash), the items' content (bundled, shared or local file sha256; Hub commit), how many items and shots,
    the context size, and the batch layout or vision projector where the suite uses one."""
    from tasks.bench.suites import hub_commit

    source = resolve_data(suite, opts.data)
    if isinstance(source, Path):
        data = {"kind": "file", "name": source.name, "sha256": sha256_file(source)}
    else:
        data = {"kind": "hub", "hub_id": suite.dataset.hub_id, "config": suite.dataset.hub_config,
                "split": suite.dataset.split, "commit": hub_commit(suite)}
    if opts.mmproj is not None and not Path(opts.mmproj).is_file():
        raise FileNotFoundError(f"--mmproj file {opts.mmproj} does not exist.")
    mmproj = None
    if opts.mmproj is not None and suite.image_field is not None:
        mmproj = {"sha256": sha256_file(opts.mmproj), "image_root": str(opts.image_root)}
    return {"model_sha256": sha256_file(gguf), "suite": suite.name, "prompt_sha256": suite.prompt_hash(),
            "num_fewshot": suite.num_fewshot if opts.num_fewshot is None else opts.num_fewshot,
            "limit": opts.limit, "data": data, "mmproj": mmproj, "n_ctx": opts.n_ctx,
            # batched decoding can turn a near tie in the logits the other way: a result made with it is its own
            # (parallel 1, the reference path, keeps the key it always had)
            **({"parallel": opts.parallel} if opts.parallel > 1 and suite.kind != "multiple_choice" else {}),
            **({"mc_scoring": "packed"} if opts.packed_mc and suite.kind == "multiple_choice" else {})}


def generation_key(gguf: Path, suite_name: str, opts: RunOptions) -> tuple[str, dict[str, Any]]:
    from tasks.keys import stage_key

    if not Path(gguf).is_file():
        raise FileNotFoundError(f"GGUF {gguf} does not exist.")
    inputs = generation_inputs(Path(gguf), load_suite(suite_name), opts)
    return stage_key("generate", inputs), inputs


def generation_folder(store: Path, key: str) -> Path:
    """Where the generations of ``key`` live under a store root (the flow's --out, or an eval --out)."""
    return keyed_dir(store, "generate", key)


def ensure_generations(gguf: Path, suite_name: str, opts: RunOptions, folder: Path, key: str,
                       inputs: dict[str, Any]) -> Path:
    """The generations of ``key`` at ``folder``: found and verified, or generated (written whole, then sealed)."""
    if verified(folder, key) is None:
        with staging_dir(folder) as tmp:
            _generate(Path(gguf), load_suite(suite_name), opts, inputs, tmp)
            seal(tmp, "generate", key, inputs)
    return folder


def read_generations(folder: Path, key: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(meta, per-item records) of an intact generation output; an error saying what to do otherwise."""
    if verified(folder, key) is None:
        raise FileNotFoundError(f"{folder} holds no intact generations" + (f" of key {key[:12]}…" if key else "")
                                + ": they are missing or were changed. Run `alphagate run` (or `alphagate eval`) "
                                "with the same model and settings to generate them again.")
    return read_json(folder / META), read_jsonl(folder / GENERATIONS)


def _stored(doc: dict, image_field: str | None) -> dict:
    """The document as JSON (a Hub image object becomes ``True``: the scorer needs only whether there was one)."""
    return {k: (v if k != image_field or v is None or isinstance(v, str) else True) for k, v in doc.items()}


def generate_all(engine, suite: SuiteSpec, contexts: list[str], parallel: int, on_done=None) -> list[str]:
    """The completions of ``contexts``, ``parallel`` at a time (1: the one-at-a-time reference path)."""
    gen = suite.generation
    if gen.chat:
        return engine.chat_many([[{"role": "user", "content": c}] for c in contexts], gen.max_tokens,
                                gen.until or None, parallel, on_done)
    return engine.generate_many(contexts, gen.max_tokens, gen.until, parallel, on_done)


def generate_one(engine, suite: SuiteSpec, context: str, text: str | None = None) -> dict[str, Any]:
    """One generation item's record: its completion (``text`` when already generated) and the prompt the model
    continued (a chat suite's rendered chat prompt): the scorer reads whether it opened a reasoning section."""
    gen = suite.generation
    if gen.chat:
        messages = [{"role": "user", "content": context}]
        if text is None:
            text = engine.chat(messages, gen.max_tokens, gen.until or None)
        return {"completion": text, "prompt": engine.chat_prompt(messages)}
    if text is None:
        text = engine.generate(context, gen.max_tokens, gen.until)
    return {"completion": text, "prompt": context}


def choice_pairs(engine, suite: SuiteSpec, doc: dict, context: str) -> list[tuple[list[int], list[int]]]:
    return [engine.encode_pair(context, suite.target_delimiter + c) for c in choices_of(suite, doc)]


def choose_one(engine, suite: SuiteSpec, doc: dict, context: str, scored=None) -> dict[str, Any]:
    """One multiple-choice item's record: each choice's log-likelihood (``scored``: already computed, packed)."""
    if scored is None:
        scored = [engine.loglikelihood(ctx, cont) for ctx, cont in choice_pairs(engine, suite, doc, context)]
    return {"loglikelihoods": [s.loglikelihood for s in scored], "is_greedy": [s.is_greedy for s in scored]}


def _image_item(suite: SuiteSpec, doc: dict) -> bool:
    return suite.has_image(doc)


def _batched(engine, suite, docs, contexts, opts, progress) -> tuple[dict[int, str], dict[int, list]]:
    """What is computed for all items at once: completions (parallel > 1) or packed choice scores."""
    texts: dict[int, str] = {}
    packed: dict[int, list] = {}
    if suite.kind != "multiple_choice" and opts.parallel > 1:  # generate every item first
        done = generate_all(engine, suite, contexts, opts.parallel, lambda i: progress.update())
        texts = {doc["index"]: t for doc, t in zip(docs, done, strict=True)}
    if suite.kind == "multiple_choice" and opts.packed_mc:  # score every text item first, packed
        pairs = [(d, choice_pairs(engine, suite, d, c)) for d, c in zip(docs, contexts, strict=True)
                 if not _image_item(suite, d)]
        scores = engine.loglikelihood_many([p for _, p in pairs], packed=True, on_done=lambda i: progress.update())
        packed = {d["index"]: s for (d, _), s in zip(pairs, scores, strict=True)}
    return texts, packed


def _records(engine, suite, docs, opts, num_fewshot, gguf, progress) -> list[dict[str, Any]]:
    from tasks.bench.vision import VisionScorer, image_path

    contexts = [build_context(suite, doc, docs, num_fewshot) for doc in docs]
    texts, packed = _batched(engine, suite, docs, contexts, opts, progress)
    vision, records = None, []
    try:
        for doc, context in zip(docs if texts or packed else progress.iterate(docs), contexts, strict=True):
            record = {"index": doc["index"], "doc": _stored(doc, suite.image_field), "prompt_sha256": sha(context)}
            if _image_item(suite, doc):
                if packed:
                    progress.update()
                if opts.mmproj is None:
                    record.update({"skipped": True, "skip_reason": NO_MMPROJ})
                else:
                    vision = vision or VisionScorer(gguf, opts.mmproj)
                    image = image_path(doc, suite.image_field, opts.image_root)
                    record["vision_text"] = vision.answer(doc, context, image)
            elif suite.kind == "multiple_choice":
                record.update(choose_one(engine, suite, doc, context, packed.get(doc["index"])))
            else:
                record.update(generate_one(engine, suite, context, texts.get(doc["index"])))
            records.append(record)
    finally:
        if vision is not None:
            vision.close()
    return records


def _generate(gguf: Path, suite: SuiteSpec, opts: RunOptions, inputs: dict[str, Any], out: Path) -> None:
    from tasks.bench.engine import Engine

    source = resolve_data(suite, opts.data)
    docs = load_docs(suite, opts.data, opts.limit, commit=inputs["data"].get("commit"))
    with Engine(gguf, n_ctx=opts.n_ctx) as engine, Progress(len(docs), f"{suite.name} on {gguf.name}") as progress:
        engine.reset_timings()
        records = _records(engine, suite, docs, opts, inputs["num_fewshot"], gguf, progress)
        timings = engine.timings()
    atomic_write_text(out / GENERATIONS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    atomic_write_json(out / META, {
        "suite": suite.name, "model": str(gguf), "data": str(source), "num_fewshot": inputs["num_fewshot"],
        "items": len(records), "timings": timings,
        "parallel": opts.parallel if suite.kind != "multiple_choice" else 1,
        **({"mc_scoring": "packed" if opts.packed_mc else "single"} if suite.kind == "multiple_choice" else {})})
