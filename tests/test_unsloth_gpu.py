"""The Unsloth path: runs only on a CUDA machine with the gpu extra (pytest -m gpu)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


def test_unsloth_trains_and_gates_act(tiny_base_dir, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("unsloth")
    from tasks.train import train_variant
    from tests.conftest import tiny_pipeline_config

    run = train_variant(tiny_pipeline_config(tiny_base_dir), "linear", tmp_path / "linear", cache_dir=tmp_path)
    assert run["backend"] == "unsloth" and run["final_blend_alpha"] == 1.0
