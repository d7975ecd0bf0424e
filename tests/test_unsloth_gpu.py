"""The Unsloth path: runs only on a CUDA machine with the gpu extra (pytest -m gpu). It must fail if Unsloth's fast
attention bypasses the SO(8) gates: the gates must learn, change the model's output, and be in the exported GGUF."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


def test_unsloth_trains_and_gates_act(tiny_base_dir, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("unsloth")
    from safetensors.torch import load_file

    from alpha_gate.so8 import set_blend_alpha
    from tasks.config import LinearSpec
    from tasks.export.gguf import export_model
    from tasks.train.outputs import load_trained
    from tasks.train.variant import train_variant
    from tests.conftest import tiny_pipeline_config

    # start at blend_alpha 0.5: at 0 the gate's gradient is exactly zero on the first step, by construction
    config = tiny_pipeline_config(tiny_base_dir, linear=LinearSpec(start=0.5))
    run = train_variant(config, "linear", tmp_path / "linear", cache_dir=tmp_path)
    assert run["backend"] == "unsloth" and run["final_blend_alpha"] == 1.0
    gates = load_file(str(tmp_path / "linear" / "gates.safetensors"))
    assert gates and any(float(a.abs().max()) > 0 for a in gates.values())  # the gates received gradient

    model = load_trained(tmp_path / "linear")[0].eval()
    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25]])
    with torch.no_grad():
        gated = model(input_ids=ids).logits
        set_blend_alpha(model, 0.0)
        ungated = model(input_ids=ids).logits
    assert not torch.allclose(gated, ungated, atol=1e-5)  # the gates change what the trained model computes

    manifest = export_model(tmp_path / "linear", tmp_path / "export", ["bf16"])  # raises if the GGUF is not it
    parity = manifest["files"][0]["verification"]["parity_gated"]
    assert parity["mean_abs_logprob_diff"] < manifest["parity_tolerance"]
