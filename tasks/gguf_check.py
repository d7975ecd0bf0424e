"""Is a file a whole GGUF? Checked before llama.cpp opens it, which only says "Failed to load model".

The header is read as the GGUF format defines it (magic, version, tensor and metadata counts, the metadata, the
tensor table) and the file must be at least as long as the tensor data the table describes. A truncated download,
a file cut short by a full disk, or another format renamed .gguf is refused with what was found.
"""

from __future__ import annotations

import math
import mmap
import struct
from pathlib import Path

# ggml type id -> (elements per block, bytes per block), as gguf-py's GGML_QUANT_SIZES
_TYPE_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
               10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
               16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
               22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
               29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17)}
# metadata value type -> struct format of a scalar (8: string, 9: array are read apart)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_LIMIT = 1 << 24  # no real model has this many tensors, metadata entries or array elements


class GGUFError(ValueError):
    """The file is not a complete GGUF; the message says what was found."""


class _Reader:
    def __init__(self, data, shown: str):
        self.data, self.pos, self.shown = data, 0, shown

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise GGUFError(f"{self.shown} is truncated: its header ends at byte {len(self.data)}, inside the "
                            f"metadata or tensor table (it needs at least {self.pos + size} bytes). Re-download or "
                            "re-export the model.")
        value = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value[0]

    def count(self, what: str) -> int:
        n = self.take("Q")
        if n > _LIMIT:
            raise GGUFError(f"{self.shown} is not a valid GGUF: its header claims {n} {what}. The file is damaged; "
                            "re-download or re-export it.")
        return n

    def string(self) -> str:
        n = self.count("bytes in a string")
        return (self.take(f"{n}s") if n else b"").decode("utf-8", "replace")

    def value(self, kind: int):
        if kind == 8:
            return self.string()
        if kind == 9:
            inner, n = self.take("I"), self.count("array elements")
            if inner in _SCALARS:  # skipped in one step: a vocabulary has 10^5 entries
                self.take(f"{n * struct.calcsize('<' + _SCALARS[inner])}s")
                return None
            for _ in range(n):
                self.value(inner)
            return None
        if kind not in _SCALARS:
            raise GGUFError(f"{self.shown} is not a valid GGUF: unknown metadata type {kind} at byte {self.pos}. "
                            "The file is damaged; re-download or re-export it.")
        return self.take(_SCALARS[kind])


def check_gguf_file(path: str | Path, shown: str | None = None) -> None:
    """GGUFError unless ``path`` is a GGUF file whose header is complete and whose length covers its tensor data."""
    path = Path(path)
    shown = shown or str(path)
    size = path.stat().st_size
    if size == 0:
        raise GGUFError(f"{shown} is empty (0 bytes); pass a GGUF model file (e.g. an export's *-BF16.gguf).")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != b"GGUF":
        raise GGUFError(f"{shown} is not a GGUF file (it starts with {head!r}, not b'GGUF'); pass a model file in GGUF "
                        "format (e.g. an export's *-BF16.gguf).")
    if size < 24:
        raise GGUFError(f"{shown} is {size} bytes long; a GGUF file has a 24-byte header at least. Re-download or "
                        "re-export the model.")
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        reader = _Reader(data, shown)
        reader.take("4s")
        version = reader.take("I")
        if version not in (2, 3):
            raise GGUFError(f"{shown}: GGUF version {version}; llama.cpp reads versions 2 and 3.")
        n_tensors, n_kv = reader.count("tensors"), reader.count("metadata entries")
        alignment = 32
        for _ in range(n_kv):
            key, kind = reader.string(), reader.take("I")
            value = reader.value(kind)
            if key == "general.alignment" and isinstance(value, int) and value > 0:
                alignment = value
        end = 0
        for _ in range(n_tensors):
            reader.string()
            dims = [reader.take("Q") for _ in range(reader.take("I"))]
            kind, offset = reader.take("I"), reader.take("Q")
            if kind in _TYPE_SIZES:
                block, nbytes = _TYPE_SIZES[kind]
                end = max(end, offset + math.prod(dims) // block * nbytes)
        start = -(-reader.pos // alignment) * alignment
    if end and start + end > size:
        raise GGUFError(f"{shown} is truncated: it is {size} bytes, but its tensors need {start + end} bytes "
                        f"({start + end - size} missing). Re-download or re-export the model.")


def check_gguf(path: str | Path | None, flag: str, shown: str | None = None) -> None:
    """Before any work: ``path`` (given as ``flag``; None: not given) is an existing, whole GGUF file, checked by its
    magic bytes, header and length, not its name: a truncated file is named before llama.cpp sees it."""
    if path is None:
        return
    path = Path(path)
    shown = shown or f"{flag} {path}"
    if not path.exists():
        raise FileNotFoundError(f"{shown} does not exist; pass a GGUF model file (e.g. an export's *-BF16.gguf).")
    if not path.is_file():
        raise IsADirectoryError(f"{shown} is a folder; pass the GGUF file inside it.")
    check_gguf_file(path, shown)
