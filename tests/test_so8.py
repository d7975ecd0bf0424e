from __future__ import annotations

import math

import pytest
import torch

from alpha_gate import so8
from alpha_gate.so8 import (
    SO8Gate,
    attach_so8_gates,
    detach_so8_gates,
    fold_so8_gates,
    gate_state_dict,
    get_so8_gates,
    load_gate_state_dict,
    set_blend_alpha,
)
from tests.conftest import tiny_model, tokens


def _randomise(gates, scale=0.5, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in gates:
            gate.A.copy_(torch.randn(gate.A.shape, generator=g) * scale)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _gated_logits(model, ids, alpha):
    """Attach gates with random generators, set blend_alpha, return the gated model's logits."""
    _randomise(attach_so8_gates(model))
    set_blend_alpha(model, alpha)
    return _logits(model, ids)


# -- the rotation itself ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_rotation_is_special_orthogonal(seed):
    gate = SO8Gate(64)
    _randomise([gate], scale=2.0, seed=seed)
    rot = gate.rotation().double()
    eye = torch.eye(8, dtype=torch.float64).expand_as(rot)
    assert torch.allclose(rot.transpose(-1, -2) @ rot, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(8, dtype=torch.float64), atol=1e-5)
    assert not torch.allclose(rot, eye, atol=1e-2)  # a real rotation, not the identity


def test_gate_starts_at_identity_and_blends_linearly():
    gate = SO8Gate(32)
    x = torch.randn(3, 5, 32)
    gate.blend_alpha = 1.0
    assert torch.allclose(gate(x), x, atol=1e-7)  # A = 0 -> R = I
    _randomise([gate])
    full = torch.block_diag(*gate.rotation().detach())
    expected_rot = x @ full.T
    assert torch.allclose(gate(x), expected_rot, atol=1e-5)
    gate.blend_alpha = 0.3
    assert torch.allclose(gate(x), 0.7 * x + 0.3 * expected_rot, atol=1e-5)
    gate.blend_alpha = 0.0
    assert torch.equal(gate(x), x)


def test_gate_gradient_reaches_the_generator():
    gate = SO8Gate(16)
    _randomise([gate], scale=0.1)
    gate.blend_alpha = 0.5
    gate(torch.randn(4, 16)).pow(2).sum().backward()
    assert gate.A.grad is not None and gate.A.grad.abs().sum() > 0


@pytest.mark.parametrize("width", [0, 12, 36])
def test_width_not_divisible_by_8_is_a_clear_error(width):
    with pytest.raises(ValueError, match="multiple of 8"):
        SO8Gate(width)


def test_model_with_o_proj_width_not_divisible_by_8():
    model = tiny_model("llama", hidden_size=48, num_attention_heads=3, num_key_value_heads=1, head_dim=12)
    with pytest.raises(ValueError, match="got 36"):
        attach_so8_gates(model)


# -- attach / alpha / fold on every supported family ------------------------------------------------

def test_alpha_zero_reproduces_the_untouched_model_exactly(family):
    model = tiny_model(family)
    ids = tokens()
    before = _logits(model, ids)
    gates = attach_so8_gates(model)
    assert len(gates) == model.config.num_hidden_layers
    _randomise(gates)
    set_blend_alpha(model, 0.0)
    assert torch.equal(_logits(model, ids), before)
    set_blend_alpha(model, 0.8)
    assert not torch.allclose(_logits(model, ids), before, atol=1e-4)  # the gates do act


def test_fold_is_exact_and_leaves_a_stock_model(family, tmp_path):
    import transformers

    model = tiny_model(family)
    keys_before = set(model.state_dict())
    ids = tokens()
    gated = _gated_logits(model, ids, 0.7)
    fold_so8_gates(model)
    assert get_so8_gates(model) == []
    assert set(model.state_dict()) == keys_before
    assert all(not m._forward_pre_hooks for m in model.modules())
    folded = _logits(model, ids)
    assert (folded - gated).abs().max().item() < 1e-4
    model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(reloaded) is type(model)
    assert (_logits(reloaded, ids) - gated).abs().max().item() < 1e-4


def test_fold_keeps_o_proj_bias():
    model = tiny_model("llama", attention_bias=True)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.bias.normal_()
    ids = tokens()
    gated = _gated_logits(model, ids, 1.0)
    fold_so8_gates(model)
    assert (_logits(model, ids) - gated).abs().max().item() < 1e-4


def test_layer_subset_and_invalid_layers():
    model = tiny_model("qwen2")
    gates = attach_so8_gates(model, layers=[2, 0])
    assert [g.layer_index for g in gates] == [0, 2]
    assert not hasattr(model.model.layers[1].self_attn, so8.GATE_ATTR)
    detach_so8_gates(model)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        attach_so8_gates(model, layers=[5])


def test_unknown_architecture_names_the_supported_ones():
    import transformers

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=64))
    with pytest.raises(ValueError, match="gpt2") as info:
        attach_so8_gates(gpt2)
    for name in ("Llama", "Mistral", "Qwen2", "Qwen3", "Phi-3", "Gemma 2", "Gemma 3"):
        assert name in str(info.value)


def test_double_attach_and_missing_gates_are_errors():
    model = tiny_model("llama")
    with pytest.raises(RuntimeError, match="attach_so8_gates first"):
        set_blend_alpha(model, 0.5)
    with pytest.raises(RuntimeError, match="nothing to fold"):
        fold_so8_gates(model)
    attach_so8_gates(model)
    with pytest.raises(RuntimeError, match="already attached"):
        attach_so8_gates(model)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan, math.inf])
def test_invalid_blend_alpha(alpha):
    model = tiny_model("llama")
    attach_so8_gates(model)
    with pytest.raises(ValueError, match="blend_alpha"):
        set_blend_alpha(model, alpha)


def test_detach_restores_the_original_model():
    model = tiny_model("mistral")
    ids = tokens()
    before = _logits(model, ids)
    _randomise(attach_so8_gates(model))
    set_blend_alpha(model, 1.0)
    detach_so8_gates(model)
    assert torch.equal(_logits(model, ids), before)


def test_gate_state_round_trip():
    model = tiny_model("gemma3")
    gates = attach_so8_gates(model)
    _randomise(gates)
    state = gate_state_dict(model)
    other = tiny_model("gemma3")
    attach_so8_gates(other)
    load_gate_state_dict(other, state)
    for a, b in zip(get_so8_gates(model), get_so8_gates(other), strict=True):
        assert torch.equal(a.A, b.A)
    third = tiny_model("gemma3")
    attach_so8_gates(third, layers=[0])
    with pytest.raises(KeyError, match="same layers"):
        load_gate_state_dict(third, state)


# -- with peft LoRA --------------------------------------------------------------------------------

def _lora_model(family="llama"):
    from peft import LoraConfig, get_peft_model

    model = tiny_model(family)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():  # lora_B starts at zero: give the adapter a real effect
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return peft_model.eval()


def test_fold_with_unmerged_lora_then_merge_is_exact():
    model = _lora_model()
    ids = tokens()
    gated = _gated_logits(model, ids, 0.6)
    merged = fold_so8_gates(model).merge_and_unload()  # folds into base weight and lora_A alike
    assert get_so8_gates(merged) == []
    assert (_logits(merged, ids) - gated).abs().max().item() < 1e-4


def test_merging_lora_before_folding_is_refused():
    # merge_and_unload swaps the base Linear back into the o_proj slot, dropping the gate's hook:
    # folding afterwards would silently lose the rotation, so it must fail loudly.
    model = _lora_model()
    _randomise(attach_so8_gates(model))
    set_blend_alpha(model, 0.6)
    with pytest.raises(RuntimeError, match=r"replaced after its SO\(8\) gate"):
        fold_so8_gates(model.merge_and_unload())


def test_attaching_before_peft_is_detected_at_fold():
    from peft import LoraConfig, get_peft_model

    model = tiny_model("llama")
    attach_so8_gates(model)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["o_proj"]))
    with pytest.raises(RuntimeError, match="Attach gates after wrapping"):
        fold_so8_gates(wrapped)


# -- the Unsloth path's rerouting (its logic runs here without a GPU) --------------------------------

def test_gates_routed_through_a_fused_apply_o_gate_once_and_still_fold():
    """Unsloth's fused LoRA ``apply_o`` computes o_proj without calling the module, so the pre-hook would be
    skipped: the gate is moved into ``apply_o`` and the hook dropped. A module whose ``apply_o`` calls o_proj
    (Unsloth's ``original_apply_o``) keeps its hook, so no path gates twice or not at all; fold still works."""
    import torch.nn.functional as F

    from tasks.train.unsloth_backend import _route_gates_through_apply_o

    model = tiny_model("llama")
    attention = so8._attention_modules(model)

    def fused_apply_o(self, x):  # like Unsloth's LoRA path: the weight, never the module
        return F.linear(x, self.o_proj.weight)

    def original_apply_o(self, x):
        return self.o_proj(x)

    attention[0].apply_o, attention[1].apply_o = fused_apply_o, original_apply_o  # layer 2: no apply_o at all
    gates = attach_so8_gates(model)
    _randomise(gates)
    set_blend_alpha(model, 0.8)
    assert _route_gates_through_apply_o(model) == 1
    x = torch.randn(2, 5, gates[0].width)
    with torch.no_grad():
        for index, attn in attention.items():
            once = F.linear(gates[index](x), attn.o_proj.weight)
            if index == 0:
                assert torch.allclose(attn.apply_o(attn, x), once, atol=1e-6)  # gated in apply_o ...
                assert torch.allclose(attn.o_proj(x), F.linear(x, attn.o_proj.weight), atol=1e-6)  # ... only there
            else:
                call = attn.apply_o(attn, x) if index == 1 else attn.o_proj(x)
                assert torch.allclose(call, once, atol=1e-6)  # the hook still gates, once
                assert not torch.allclose(call, F.linear(x, attn.o_proj.weight), atol=1e-3)
    gated = {i: attn.apply_o(attn, x) if i < 2 else attn.o_proj(x) for i, attn in attention.items()}
    fold_so8_gates(model)  # the unhooked gate folds like the others
    assert not get_so8_gates(model)
    with torch.no_grad():
        for index, attn in attention.items():
            assert torch.allclose(original_apply_o(attn, x), gated[index].detach(), atol=1e-5)
