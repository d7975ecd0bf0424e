"""ScienceQA items with an image: through the model's vision projector (mmproj) and llama-cpp-python's
generic libmtmd chat handler. The model is asked for the option letter (log-likelihood scoring over image tokens is
not exposed by the handler); what it writes is the item's generation, and the scorer (tasks/bench/score.py) reads the
first letter in it as its pick."""

from __future__ import annotations

import base64
import io
import mimetypes
from pathlib import Path
from typing import Any


def image_path(doc: dict, field: str, image_root: Path | None) -> Path | Any:
    """The image of an item (``field``: its suite's image_field). Original release: <image_root>/<pid>/<image
    file>. Hub rows carry the image object itself."""
    image = doc[field]
    if not isinstance(image, str):
        return image
    if image_root is None:
        raise ValueError(f"ScienceQA item {doc['pid'] or doc['index']} has an image ({image!r}) and an mmproj is "
                         "set, but no --image-root tells where the images are.")
    path = Path(image_root) / doc["pid"] / image
    if not path.is_file():
        raise FileNotFoundError(f"ScienceQA image {path} does not exist (item {doc['pid']}).")
    return path


def _data_uri(image: Path | Any) -> str:
    if isinstance(image, Path):
        mime = mimetypes.guess_type(image.name)[0] or "image/png"
        return f"data:{mime};base64,{base64.b64encode(image.read_bytes()).decode()}"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # a PIL image from the Hub dataset
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _handler_class():
    """libmtmd's chat handler, for text models' chat templates. The handler renders the template with OpenAI-style
    content lists (the image part replaced by libmtmd's media marker); a text model's template, SmolLM2's and so every
    model trained from it, concatenates ``message['content']`` as a string and fails on a list. Content is therefore
    flattened into one string: the parts in order, one per line, the marker where the image was."""
    from llama_cpp.llama_chat_format import MTMDChatHandler

    class FlatContentMTMDChatHandler(MTMDChatHandler):
        @classmethod
        def _convert_message_for_template(cls, message, media_marker: str):
            converted = super()._convert_message_for_template(message, media_marker)
            if isinstance(converted.get("content"), list):
                converted["content"] = "\n".join(part["text"] if isinstance(part, dict) else str(part)
                                                 for part in converted["content"])
            return converted

    return FlatContentMTMDChatHandler


class VisionScorer:
    def __init__(self, gguf: Path, mmproj: Path):
        from tasks.llama_load import STDIO_LOCK, open_llama

        if not Path(mmproj).is_file():
            raise FileNotFoundError(f"mmproj {mmproj} does not exist.")
        self.gguf, self.mmproj = Path(gguf), Path(mmproj)
        with STDIO_LOCK:  # the handler swaps stdout/stderr too (tasks/llama_load.py)
            handler = _handler_class()(clip_model_path=str(mmproj), verbose=False, use_gpu=False)
            self.llm = open_llama(gguf, chat_handler=handler, n_ctx=4096, verbose=False)

    def answer(self, doc: dict, context: str, image) -> str:
        """What the model writes for an image item (a few tokens: the option's letter, if it follows the ask)."""
        content = [{"type": "image_url", "image_url": {"url": _data_uri(image)}},
                   {"type": "text", "text": context + " (answer with the option's letter)"}]
        from tasks.llama_load import STDIO_LOCK

        with STDIO_LOCK:  # the multimodal handler swaps stdout/stderr while it embeds the image
            try:
                reply = self.llm.create_chat_completion([{"role": "user", "content": content}], max_tokens=8,
                                                        temperature=0.0)
            except (ValueError, RuntimeError) as exc:  # libmtmd says no more than "failed" here; its log says why
                raise RuntimeError(
                    f"The vision projector {self.mmproj} could not be used with {self.gguf.name} (ScienceQA item "
                    f"{doc.get('pid') or doc.get('index')}): {exc}. A projector works only with the text model it was "
                    "made for: the same embedding width, and the image tokens its format writes in the vocabulary "
                    "(a SmolVLM/Idefics3 projector needs <fake_token_around_image>, <global-img>, <row_1_col_1>, ...). "
                    "llama.cpp's log of this task has the details.") from exc
        return reply["choices"][0]["message"]["content"] or ""

    def close(self) -> None:
        self.llm.close()
