"""SO(8) block-rotation gate on the input of each attention output projection (``o_proj``).

For an ``o_proj`` input x of width d (d divisible by 8) the gate computes

    gate(x) = x + blend_alpha * (R - I) x = ((1 - blend_alpha) I + blend_alpha R) x,
    R = blockdiag(R_1 ... R_{d/8}),  R_i = matrix_exp(A_i - A_i^T),

with A_i a trainable 8x8 parameter initialised to zero (so R = I at start). ``blend_alpha`` is
set from outside by a schedule and is never learned. Because the gate is linear in x, it folds
exactly into the projection: W_o <- W_o ((1 - blend_alpha) I + blend_alpha R).

The gate is attached as a forward pre-hook on whatever module sits in the ``o_proj`` slot when
``attach_so8_gates`` runs. Attach it *after* wrapping the model with peft, so that the LoRA branch
and the frozen base weight both see the gated input; ``fold_so8_gates`` then folds into the base
weight and every ``lora_A`` alike, which keeps the fold exact before and after a LoRA merge.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Iterable

import torch
from torch import nn

BLOCK = 8
GATE_ATTR = "so8_gate"

# config.model_type -> family name shown in errors. Gemma 3 multimodal checkpoints say "gemma3",
# its text-only ones "gemma3_text"; both keep the decoder under ``...layers.N.self_attn.o_proj``.
SUPPORTED_MODEL_TYPES: dict[str, str] = {
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "phi3": "Phi-3",
    "gemma2": "Gemma 2",
    "gemma3": "Gemma 3",
    "gemma3_text": "Gemma 3",
}

_ATTN_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.self_attn$")


class SO8Gate(nn.Module):
    """((1 - blend_alpha) I + blend_alpha R) applied to the last dimension of its input."""

    def __init__(self, width: int, layer_index: int = -1):
        if width <= 0 or width % BLOCK:
            raise ValueError(
                f"SO(8) gate width must be a positive multiple of {BLOCK}; got {width}. "
                "The o_proj input width (num_heads * head_dim) of this model does not split into "
                "8-dimensional blocks: choose layers whose o_proj width is divisible by 8."
            )
        super().__init__()
        self.width = width
        self.n_blocks = width // BLOCK
        self.layer_index = layer_index
        self.A = nn.Parameter(torch.zeros(self.n_blocks, BLOCK, BLOCK))
        self.blend_alpha = 0.0
        self._hook = None
        self._target = None  # weakref to the module whose input is gated

    def unhook(self) -> None:
        """Stop gating through the forward pre-hook on o_proj, for a caller that applies the gate to the
        projection's input itself (Unsloth's fused LoRA ``apply_o`` never calls o_proj, so the hook would be
        skipped there and doubled wherever o_proj is called too). Detaching and folding still remove the gate and
        fold it into o_proj; a forward the caller rerouted through the gate is the caller's to restore."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def extra_repr(self) -> str:
        return f"width={self.width}, blocks={self.n_blocks}, blend_alpha={self.blend_alpha:.6g}"

    def rotation(self) -> torch.Tensor:
        """R_i = matrix_exp(A_i - A_i^T) for every block: shape [d/8, 8, 8], each in SO(8)."""
        return torch.linalg.matrix_exp(self.A - self.A.transpose(-1, -2))

    def blend_matrix(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The blocks of (1 - blend_alpha) I + blend_alpha R, shape [d/8, 8, 8]."""
        rot = self.rotation().to(dtype)
        eye = torch.eye(BLOCK, dtype=dtype, device=rot.device).expand_as(rot)
        return (1.0 - self.blend_alpha) * eye + self.blend_alpha * rot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.blend_alpha == 0.0:
            return x  # exactly the original model, and no work
        if x.shape[-1] != self.width:
            raise ValueError(f"SO(8) gate of width {self.width} got input of width {x.shape[-1]}")
        rot = self.rotation().to(x.dtype)
        rotated = torch.einsum("...bj,bij->...bi", x.unflatten(-1, (self.n_blocks, BLOCK)), rot)
        return x + self.blend_alpha * (rotated.flatten(-2) - x)


def _model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise TypeError(
            f"Expected a transformers model with a .config.model_type; got {type(model).__name__}. "
            "Pass the model returned by AutoModelForCausalLM.from_pretrained (or its peft wrapper)."
        )
    return str(model_type)


def _check_supported(model: nn.Module) -> None:
    model_type = _model_type(model)
    if model_type not in SUPPORTED_MODEL_TYPES:
        families = ", ".join(sorted(set(SUPPORTED_MODEL_TYPES.values())))
        raise ValueError(
            f"SO(8) gates do not support model_type {model_type!r}. Supported families: {families} "
            f"(model_type one of {sorted(SUPPORTED_MODEL_TYPES)})."
        )


def _attention_modules(model: nn.Module) -> dict[int, nn.Module]:
    """Decoder-layer index -> self-attention module that owns an ``o_proj``."""
    _check_supported(model)
    found: dict[int, nn.Module] = {}
    for name, module in model.named_modules():
        match = _ATTN_NAME.search(name)
        if match and isinstance(getattr(module, "o_proj", None), nn.Module):
            index = int(match.group(1))
            if index in found:
                raise ValueError(f"Found two decoder stacks with a layer {index} ({name!r}); "
                                 "pass the language model itself, not a wrapper holding two.")
            found[index] = module
    if not found:
        raise ValueError(f"No '*.layers.N.self_attn.o_proj' modules found in {type(model).__name__}.")
    return dict(sorted(found.items()))


def _width(o_proj: nn.Module) -> int:
    width = getattr(o_proj, "in_features", None)
    if width is None:
        width = o_proj.weight.shape[1]
    return int(width)


def _gate_pre_hook(gate: SO8Gate):
    def hook(_module, args):
        return (gate(args[0]), *args[1:])

    return hook


def attach_so8_gates(model: nn.Module, layers: Iterable[int] | None = None) -> list[SO8Gate]:
    """Attach one SO(8) gate per chosen decoder layer (default: all); returns the gates.

    Gates start at R = I and blend_alpha = 0, so the model's outputs are unchanged.
    """
    attention = _attention_modules(model)
    if get_so8_gates(model):
        raise RuntimeError("SO(8) gates are already attached; fold_so8_gates or "
                           "detach_so8_gates them before attaching again.")
    chosen = sorted(attention) if layers is None else sorted(set(int(i) for i in layers))
    missing = [i for i in chosen if i not in attention]
    if missing or not chosen:
        raise ValueError(f"layers must be decoder-layer indices in 0..{max(attention)}; got "
                         f"{list(layers) if layers is not None else None} (invalid: {missing}).")
    param = next(model.parameters())
    gates = []
    for index in chosen:
        attn = attention[index]
        gate = SO8Gate(_width(attn.o_proj), layer_index=index).to(device=param.device)
        setattr(attn, GATE_ATTR, gate)
        gate._hook = attn.o_proj.register_forward_pre_hook(_gate_pre_hook(gate))
        gate._target = weakref.ref(attn.o_proj)
        gates.append(gate)
    return gates


def get_so8_gates(model: nn.Module) -> list[SO8Gate]:
    """The attached gates in layer order (empty when none are attached)."""
    gates = [m for m in model.modules() if isinstance(m, SO8Gate)]
    return sorted(gates, key=lambda g: g.layer_index)


def set_blend_alpha(model: nn.Module, alpha: float) -> None:
    """Set blend_alpha on every attached gate (0 = original model, 1 = full rotation)."""
    alpha = float(alpha)
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"blend_alpha must be a finite number in [0, 1]; got {alpha}.")
    gates = get_so8_gates(model)
    if not gates:
        raise RuntimeError("No SO(8) gates attached to this model; call attach_so8_gates first.")
    for gate in gates:
        gate.blend_alpha = alpha


def _owned_gates(model: nn.Module) -> list[tuple[nn.Module, SO8Gate]]:
    pairs = []
    for attn in _attention_modules(model).values():
        gate = getattr(attn, GATE_ATTR, None)
        if isinstance(gate, SO8Gate):
            if gate._target is None or gate._target() is not attn.o_proj:
                raise RuntimeError(
                    f"The o_proj of layer {gate.layer_index} was replaced after its SO(8) gate was "
                    "attached (e.g. by peft.get_peft_model), so the gate no longer covers the whole "
                    "projection. Attach gates after wrapping the model with peft."
                )
            pairs.append((attn, gate))
    return pairs


def _remove(attn: nn.Module, gate: SO8Gate) -> None:
    gate.unhook()
    delattr(attn, GATE_ATTR)


def detach_so8_gates(model: nn.Module) -> None:
    """Remove the gates without folding them (the model becomes the original again)."""
    for attn, gate in _owned_gates(model):
        _remove(attn, gate)


def _fold_weight(weight: torch.Tensor, blocks: torch.Tensor) -> None:
    """weight <- weight @ blockdiag(blocks), composed in float64 and cast back in place."""
    if not weight.dtype.is_floating_point:
        raise TypeError(f"Cannot fold an SO(8) gate into a {weight.dtype} weight: merge LoRA into "
                        "16-bit (or 32-bit) base weights before folding.")
    w64 = weight.detach().to(torch.float64).unflatten(1, (blocks.shape[0], BLOCK))
    folded = torch.einsum("obj,bji->obi", w64, blocks.to(weight.device)).flatten(1)
    with torch.no_grad():
        weight.copy_(folded.to(weight.dtype))


def _fold_targets(o_proj: nn.Module) -> list[torch.Tensor]:
    """The weights whose input is the gated x: a plain Linear's, or a peft LoRA layer's base + A."""
    if hasattr(o_proj, "base_layer") and hasattr(o_proj, "lora_A"):
        if any(getattr(o_proj, "use_dora", {}).values()):
            raise NotImplementedError("Folding into a DoRA layer is not supported; merge it first.")
        return [o_proj.base_layer.weight] + [lin.weight for lin in o_proj.lora_A.values()]
    if isinstance(o_proj, nn.Linear):
        return [o_proj.weight]
    raise TypeError(f"Cannot fold into o_proj of type {type(o_proj).__name__}; expected "
                    "torch.nn.Linear or a peft LoRA Linear.")


def fold_so8_gates(model: nn.Module) -> nn.Module:
    """Fold every gate into its o_proj weight and remove the gates; returns the same model.

    Afterwards the model is a stock transformers model (same module tree and state-dict keys as
    before attach_so8_gates) computing what the gated model computed.
    """
    pairs = _owned_gates(model)
    if not pairs:
        raise RuntimeError("No SO(8) gates attached to this model; nothing to fold.")
    for attn, gate in pairs:
        with torch.no_grad():
            blocks = gate.blend_matrix(torch.float64)
        for weight in _fold_targets(attn.o_proj):
            _fold_weight(weight, blocks)
        _remove(attn, gate)
    return model


def gate_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """{"layers.N.A": tensor} for every attached gate (for saving next to a LoRA adapter)."""
    return {f"layers.{g.layer_index}.A": g.A.detach().cpu().clone() for g in get_so8_gates(model)}


def load_gate_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load what gate_state_dict saved into the attached gates; keys must match exactly."""
    gates = {f"layers.{g.layer_index}.A": g for g in get_so8_gates(model)}
    if set(gates) != set(state):
        raise KeyError(f"Gate state keys {sorted(state)} do not match the attached gates "
                       f"{sorted(gates)}; attach gates on the same layers before loading.")
    with torch.no_grad():
        for key, gate in gates.items():
            gate.A.copy_(state[key].to(gate.A.dtype))
