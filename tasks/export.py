"""Export: merge LoRA, fold the SO(8) gates, save bf16 safetensors ("BF16"), convert to a BF16 GGUF with
llama.cpp's converter, quantize to Q8_0 and Q4_K_M with llama-cpp-python, verify, write a manifest.

Input is either a training run folder (run.json + adapter/ + gates.safetensors; the LoRA is merged into
the 16-bit base weights even when training ran on a 4-bit base) or a plain transformers folder (e.g. the
untouched base model, exported the same way so that it can be benchmarked beside the variants).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.store import atomic_write_json, is_complete, read_json, sha256_file, staging_dir

logger = logging.getLogger(__name__)
MARKER = "manifest.json"
SUFFIX = {"bf16": "BF16", "q8_0": "Q8_0", "q4_k_m": "Q4_K_M"}


def merge_and_fold(run_dir: Path, out: Path) -> tuple[PipelineConfig, str]:
    """Write the merged, folded bf16 model of a training run into ``out``; returns (config, variant)."""
    import torch

    from alpha_gate.so8 import fold_so8_gates
    from tasks.base_model import load_tokenizer
    from tasks.train_outputs import load_trained

    model, run, config, base_dir = load_trained(run_dir)
    merged = fold_so8_gates(model).merge_and_unload()  # fold first: it covers the LoRA input too
    merged.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    load_tokenizer(base_dir, config.base_model).save_pretrained(out)
    return config, run["variant"]


def quantize(source: Path, target: Path, fmt: str) -> None:
    import llama_cpp
    import llama_cpp._logger

    ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[fmt]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    llama_cpp._logger.logger.setLevel(logging.ERROR)  # one log line per tensor otherwise
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0 or not target.is_file():
        raise RuntimeError(f"llama_model_quantize({source.name} -> {fmt}) failed with code {code}.")


def _check_formats(formats: list[str]) -> list[str]:
    unknown = [f for f in formats if f not in SUFFIX]
    if unknown:
        raise ValueError(f"Unknown export format(s) {unknown}; choose from {sorted(SUFFIX)}.")
    return ["bf16"] + [f for f in ("q8_0", "q4_k_m") if f in formats]  # BF16 is the quantizations' source


def export_model(model_dir: Path, out_dir: Path, formats: list[str] | None = None, *, name: str | None = None,
                 parity_tolerance: float | None = None) -> dict[str, Any]:
    """Export ``model_dir`` (a run folder or a transformers folder) into ``out_dir``; resumes when done."""
    import torch
    from transformers import AutoModelForCausalLM

    from tasks.converter import convert
    from tasks.gguf_verify import check_parity, parity, verify

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    is_run = (model_dir / "run.json").is_file()
    if not is_run and not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is neither a training run (run.json) nor a transformers model "
                                "folder (config.json).")
    wanted = _check_formats(formats or ["bf16", "q8_0", "q4_k_m"])
    if is_complete(out_dir, MARKER):
        manifest = read_json(out_dir / MARKER)
        if set(wanted) <= {f["format"] for f in manifest["files"]}:
            return manifest
    with staging_dir(out_dir) as tmp:
        merged = tmp / "hf-bf16"
        if is_run:
            config, variant = merge_and_fold(model_dir, merged)
            name = name or f"{config.name}-{variant}"
            tolerance, texts, prompt = (config.export.parity_tolerance, config.export.parity_texts,
                                        config.export.answer_prompt)
        else:
            _copy_as_bf16(model_dir, merged)
            name = name or model_dir.name
            defaults = PipelineConfig.model_fields["export"].default
            tolerance, texts, prompt = defaults.parity_tolerance, defaults.parity_texts, defaults.answer_prompt
        tolerance = parity_tolerance if parity_tolerance is not None else tolerance
        paths = {"bf16": tmp / f"{name}-BF16.gguf"}
        convert(merged, paths["bf16"], "bf16")
        for fmt in wanted[1:]:
            paths[fmt] = tmp / f"{name}-{SUFFIX[fmt]}.gguf"
            quantize(paths["bf16"], paths[fmt], fmt)
        reference = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
        files = []
        for fmt in wanted:
            report = {**verify(paths[fmt], fmt, prompt), "parity": parity(paths[fmt], reference, texts)}
            if fmt == "bf16":
                check_parity(report["parity"], tolerance, paths[fmt].name)
            files.append({"format": fmt, "path": paths[fmt].name, "bytes": paths[fmt].stat().st_size,
                          "sha256": sha256_file(paths[fmt]), "verification": report})
        manifest = {"name": name, "source": str(model_dir), "kind": "run" if is_run else "model",
                    "parity_tolerance": tolerance, "merged_dir": "hf-bf16",
                    "merged_sha256": {p.name: sha256_file(p) for p in sorted(merged.glob("*.safetensors"))},
                    "files": files}
        atomic_write_json(tmp / MARKER, manifest)
    return manifest


def _copy_as_bf16(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise ValueError(f"{model_dir} has a tokenizer without a chat template; the GGUF would lack one.")
    tokenizer.save_pretrained(out)
