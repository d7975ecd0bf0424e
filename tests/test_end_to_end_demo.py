"""The embedded default for real: SmolLM2-135M from PyPI, both variants, export, GGUFs that answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config import TrainSpec, TunerSpec, load_config
from tasks.export.gguf import export_model
from tasks.train.variant import train_variant

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_both_variants_train_from_the_embedded_default_and_export(tmp_path):
    config = load_config(ROOT / "configs/demo.yaml")
    # Fewer steps than the demo (benchmarks/train_demo.py times the full one); same model, data and code.
    config = config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 4, "eval_every": 2}),
                                       "tuner": TunerSpec(n_trials=2, proxy_steps=2, n_initial_points=1)})
    assert isinstance(config.train, TrainSpec)
    cache = tmp_path / "cache"
    for variant in ("linear", "sigmoid-bayes"):
        run = train_variant(config, variant, tmp_path / variant, cache_dir=cache)
        assert run["base_model"]["name"] == "smollm2-135m-instruct"
        manifest = export_model(tmp_path / variant, tmp_path / f"export-{variant}")
        assert [f["format"] for f in manifest["files"]] == ["bf16", "q8_0", "q4_k_m"]
        for entry in manifest["files"]:
            v = entry["verification"]
            assert v["ok"] and not v["empty_answer"] and v["architecture"] == "llama", (entry["path"], v)
        assert manifest["files"][0]["verification"]["parity"]["mean_abs_logprob_diff"] < 0.05
