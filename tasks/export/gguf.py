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

from tasks.config import ExportSpec, PipelineConfig
from tasks.export.converter import convert
from tasks.export.formats import FORMAT_NAMES, FORMATS, QUANTIZED, SOURCE_FORMAT
from tasks.store import Ref, atomic_write_json, read_json, seal, sha256_file, staging_dir, verified

logger = logging.getLogger(__name__)
MARKER = "manifest.json"
SUFFIX = FORMAT_NAMES  # <name>-<SUFFIX>.gguf


def merge_and_fold(run_dir: Path, out: Path) -> tuple[PipelineConfig, str]:
    """Write the merged, folded bf16 model of a training run into ``out``; returns (config, variant)."""
    import torch

    from alpha_gate.so8 import fold_so8_gates
    from tasks.data.base_model import load_tokenizer
    from tasks.train.outputs import load_trained

    model, run, config, base_dir = load_trained(run_dir)
    merged = fold_so8_gates(model).merge_and_unload()  # fold first: it covers the LoRA input too
    merged.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    load_tokenizer(base_dir, config.base_model).save_pretrained(out)
    return config, run["variant"]


def quantize(source: Path, target: Path, fmt: str) -> None:
    import llama_cpp

    from tasks.native_log import install

    ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[fmt]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    install()  # a warning per tensor: into the task's llama.cpp log (tasks/native_log.py), never the console
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0 or not target.is_file():
        raise RuntimeError(f"llama_model_quantize({source.name} -> {fmt}) failed with code {code}.")


def _check_formats(formats: list[str]) -> list[str]:
    unknown = [f for f in formats if f not in SUFFIX]
    if unknown:
        raise ValueError(f"Unknown export format(s) {unknown}; choose from {sorted(SUFFIX)}.")
    return [SOURCE_FORMAT] + [f for f in QUANTIZED if f in formats]  # BF16 is the quantizations' source


def export_key(model: Ref, formats: list[str], spec: ExportSpec, name: str) -> tuple[str, dict[str, Any]]:
    """The export depends on the model's content (its ref), the exact format list, the export section and the
    file-name stem; nothing else."""
    from tasks.keys import stage_key

    inputs = {"model": model.sha256, "formats": _check_formats(formats),
              "export": spec.model_dump(mode="json", exclude={"formats"}), "name": name}  # formats: given explicitly
    return stage_key("export", inputs), inputs


def default_name(model_dir: Path) -> str:
    """<config name>-<variant> for a training run, the folder's name for a plain model folder."""
    run = Path(model_dir) / "run.json"
    if run.is_file():
        record = read_json(run)
        return f"{record['name']}-{record['variant']}"
    return Path(model_dir).name


def export_model(model_dir: Path, out_dir: Path, formats: list[str] | None = None, *, name: str | None = None,
                 spec: ExportSpec | None = None, model: Ref | None = None) -> dict[str, Any]:
    """Export ``model_dir`` (a run folder or a transformers folder) into ``out_dir``; an intact export of the same key
    is reused, anything else is rebuilt and replaced in one rename. ``model``: the model's ref when the caller has
    it (the flow), else one is made from the folder (its stamp, or a hash of its files)."""
    from tasks.store import folder_ref

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    is_run = (model_dir / "run.json").is_file()
    if not is_run and not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is neither a training run (run.json) nor a transformers model "
                                "folder (config.json).")
    wanted = _check_formats(formats or list(FORMATS))
    spec = spec or ExportSpec()
    name = name or default_name(model_dir)
    key, inputs = export_key(model or folder_ref(model_dir), wanted, spec, name)
    if verified(out_dir, key):
        return read_json(out_dir / MARKER)
    with staging_dir(out_dir) as tmp:
        merged = tmp / "hf-bf16"
        if is_run:
            merge_and_fold(model_dir, merged)
        else:
            _copy_as_bf16(model_dir, merged)
        paths = {"bf16": tmp / f"{name}-BF16.gguf"}
        convert(merged, paths["bf16"], "bf16")
        for fmt in wanted[1:]:
            paths[fmt] = tmp / f"{name}-{SUFFIX[fmt]}.gguf"
            quantize(paths["bf16"], paths[fmt], fmt)
        files = _verify_files(paths, wanted, merged, model_dir if is_run else None, spec)
        manifest = {"name": name, "key": key, "source": str(model_dir), "kind": "run" if is_run else "model",
                    "parity_tolerance": spec.parity_tolerance, "merged_dir": "hf-bf16",
                    "merged_sha256": {p.name: sha256_file(p) for p in sorted(merged.glob("*.safetensors"))},
                    "files": files}
        atomic_write_json(tmp / MARKER, manifest)
        seal(tmp, "export", key, inputs)
    return manifest


def export_in_process(spec: dict, model_dir: str, out_dir: str, formats: list[str], name: str,
                      model: dict, expected_key: str | None = None) -> dict[str, Any]:
    """The child-process entry of a flow export (tasks.procs.run_in_process; JSON arguments): ``export_model`` with
    the export settings its caller was handed (``spec``, dumped), under the key ``expected_key``; returns the
    manifest."""
    from tasks.keys import check_expected_key

    spec, ref = ExportSpec.model_validate(spec), Ref.model_validate(model)
    check_expected_key("export", export_key(ref, _check_formats(formats), spec, name)[0], expected_key)
    return export_model(Path(model_dir), Path(out_dir), formats, name=name, spec=spec, model=ref)


def _verify_files(paths: dict[str, Path], wanted: list[str], merged: Path, run_dir: Path | None,
                  spec: ExportSpec) -> list[dict[str, Any]]:
    """Metadata + greedy answer per file, and log-prob parity against the merged model and, for a training run,
    against the *gated* model itself (PEFT + gates at their final blend_alpha, nothing folded or merged), so an
    error in the fold or the merge cannot pass: both must hold for BF16."""
    import torch
    from transformers import AutoModelForCausalLM

    from tasks.export.verify import check_parity, parity, verify

    reports = {fmt: verify(paths[fmt], fmt, spec.answer_prompt) for fmt in wanted}
    reference = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    for fmt in wanted:
        reports[fmt]["parity"] = parity(paths[fmt], reference, spec.parity_texts)
    del reference
    check_parity(reports["bf16"]["parity"], spec.parity_tolerance, paths["bf16"].name, "the merged model")
    if run_dir is not None:
        from tasks.train.outputs import load_trained

        gated = load_trained(run_dir)[0].eval()
        for fmt in wanted:
            reports[fmt]["parity_gated"] = parity(paths[fmt], gated, spec.parity_texts)
        del gated
        check_parity(reports["bf16"]["parity_gated"], spec.parity_tolerance, paths["bf16"].name,
                     "the trained (gated, unmerged) model")
    return [{"format": fmt, "path": paths[fmt].name, "bytes": paths[fmt].stat().st_size,
             "sha256": sha256_file(paths[fmt]), "verification": reports[fmt]} for fmt in wanted]


def _copy_as_bf16(model_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if not tokenizer.chat_template:
        raise ValueError(f"{model_dir} has a tokenizer without a chat template; the GGUF would lack one.")
    tokenizer.save_pretrained(out)
