"""The CUDA path: load and wrap the model through Unsloth with its recommended settings (QLoRA).

Imported only when CUDA is present and the ``gpu`` extra is installed (``import unsloth`` raises
without a GPU). Unsloth's fast attention computes o_proj through ``self.apply_o``; when o_proj carries
LoRA it runs fused LoRA matmuls that never call the module, so a forward pre-hook on o_proj would be
skipped. We therefore route the gate through ``apply_o`` in that case (and only then: the plain
``original_apply_o`` calls o_proj, whose hook already applies the gate).
"""

from __future__ import annotations

from pathlib import Path

from tasks.config import PipelineConfig

UNSLOTH_RANDOM_STATE = 3407  # Unsloth's documented default


def _route_gates_through_apply_o(model) -> int:
    from alpha_gate.so8 import GATE_ATTR

    routed = 0
    for module in model.modules():
        gate = getattr(module, GATE_ATTR, None)
        apply_o = getattr(module, "apply_o", None)
        if gate is None or apply_o is None or getattr(apply_o, "__name__", "") == "original_apply_o":
            continue

        def gated_apply_o(self, x, _inner=apply_o, _gate=gate):
            return _inner(self, _gate(x))

        module.apply_o = gated_apply_o
        gate.unhook()  # o_proj's own forward is not called on this path; never gate twice
        routed += 1
    return routed


def load_unsloth(config: PipelineConfig, base_dir: Path, resolve_targets):
    import unsloth  # noqa: F401  (must be imported before transformers/peft to patch them)
    from unsloth import FastLanguageModel

    from alpha_gate.so8 import attach_so8_gates
    from tasks.data.base_model import chat_template_text

    t, lora = config.train, config.lora
    model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(base_dir), max_seq_length=t.max_length,
                                                         dtype=None, load_in_4bit=t.load_in_4bit)
    targets = resolve_targets(model, lora.targets)
    model = FastLanguageModel.get_peft_model(model, r=lora.r, target_modules=targets, lora_alpha=lora.lora_alpha,
                                             lora_dropout=lora.lora_dropout, bias="none",
                                             use_gradient_checkpointing="unsloth",
                                             random_state=UNSLOTH_RANDOM_STATE)
    attach_so8_gates(model, config.gates.layers)
    _route_gates_through_apply_o(model)
    if not tokenizer.chat_template and config.base_model.chat_template:
        tokenizer.chat_template = chat_template_text(config.base_model.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, targets
