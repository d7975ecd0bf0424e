"""A real, tiny vision-language model for tests: a random SmolVLM (Idefics3: SigLIP-style tower, pixel-shuffle
connector, Llama text model), converted by llama.cpp's own converter (the one the export uses) into a text GGUF and
an mmproj GGUF, which llama-cpp-python and libmtmd load as they would a published SmolVLM pair. No VLM GGUF small
enough ships on PyPI; these are a few MB and build in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

IMAGE_SIZE = 32  # pixels; 8-pixel patches: 16 patches, 4 image tokens after the 2x2 pixel shuffle


# the special tokens SmolVLM's tokenizer adds and libmtmd writes around an Idefics3 image (absent from SmolLM2's)
SPECIAL_TOKENS = ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>",
                  *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))]


def _convert(model_dir: Path, outfile: Path, *flags: str) -> Path:
    from tasks.export.converter import converter_script

    proc = subprocess.run([sys.executable, str(converter_script()), str(model_dir), *flags, "--outtype", "f32",
                           "--outfile", str(outfile)], capture_output=True, text=True)
    if proc.returncode != 0 or not outfile.is_file():
        raise RuntimeError(f"converting the tiny VLM failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return outfile


def build_vlm(out_dir: Path, tokenizer_dir: Path, text_hidden: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """(text GGUF, mmproj GGUF) of one random Idefics3 model, both made by llama.cpp's converter from the same folder,
    as a published SmolVLM pair is. ``tokenizer_dir``: a SmolLM2 tokenizer (the tests' tiny base folder); SmolVLM's
    special tokens are added to it."""
    import torch
    from transformers import (
        AutoTokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        LlamaConfig,
        LlamaForCausalLM,
    )

    model_dir = out_dir / "hf-idefics3"
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": IMAGE_SIZE, "patch_size": 8}
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                       num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=text_hidden // 4, max_position_embeddings=512,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = Idefics3Config(vision_config=vision, text_config=text.to_dict(), scale_factor=2,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    vlm = Idefics3ForConditionalGeneration(config)
    vlm.save_pretrained(model_dir)
    (model_dir / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Idefics3ImageProcessor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "size": {"longest_edge": IMAGE_SIZE}, "max_image_size": {"longest_edge": IMAGE_SIZE}}))
    # the converter takes the text half of a SmolVLM as a plain Llama folder: the same weights, saved as one
    text_dir = out_dir / "hf-text"
    llama = LlamaForCausalLM(text)
    llama.model.load_state_dict(vlm.model.text_model.state_dict())
    llama.lm_head.load_state_dict(vlm.lm_head.state_dict())
    llama.save_pretrained(text_dir)
    tokenizer.save_pretrained(text_dir)
    return (_convert(text_dir, out_dir / "tiny-vlm-F32.gguf"),
            _convert(model_dir, out_dir / "mmproj-tiny-vlm-F32.gguf", "--mmproj"))


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 40), colour).save(path)
    return path
