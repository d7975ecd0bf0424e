"""The GGUF formats the export writes, declared once: the command line's choices, the run form, the config's types,
file names and repo names all come from here.

BF16 is the source of the quantizations and the format the decision compares, so every run's formats include it.
"""

from __future__ import annotations

from typing import Literal

# each format and the general.file_type (llama.cpp's LLAMA_FTYPE_*) its GGUF must carry; the order is the export's
FILE_TYPES = {"bf16": 32, "q8_0": 7, "q4_k_m": 15}
FORMATS = tuple(FILE_TYPES)
SOURCE_FORMAT = "bf16"  # the quantizations are made from it; the decision compares the BF16 models
QUANTIZED = tuple(f for f in FORMATS if f != SOURCE_FORMAT)
# how a format is written in file names (<name>-Q4_K_M.gguf), model cards and messages
FORMAT_NAMES = {fmt: fmt.upper() for fmt in FORMATS}

Format = Literal[FORMATS]  # type: ignore[valid-type]
