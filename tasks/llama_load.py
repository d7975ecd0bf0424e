"""One way to open a llama.cpp model in this project.

llama-cpp-python with ``verbose=False`` swaps ``sys.stdout``/``sys.stderr`` and file descriptors 1/2 for
/dev/null while it loads a model (its ``suppress_stdout_stderr``). Two threads doing that at once can leave
the whole process writing to /dev/null for good: the second one saves the first one's /dev/null as "the
original" and restores it last. (Seen here: the flow's two evaluation threads silenced every later log line
and the final "report: ..." message of `make demo`.) Every Llama is therefore built under one process-wide
lock, as are the few other calls that do the same swap (the multimodal chat handler).
"""

from __future__ import annotations

import threading
from pathlib import Path

STDIO_LOCK = threading.RLock()


def open_llama(path: str | Path, **kwargs):
    """A ``Llama`` built under the lock; llama.cpp's messages about the load go to the calling task's llama.cpp log
    (tasks/native_log.py), ERRORs only to Python logging outside one."""
    from llama_cpp import Llama

    from tasks.gguf_check import check_gguf_file
    from tasks.native_log import install

    check_gguf_file(path)  # llama.cpp says only "Failed to load model"; this says why (not GGUF, truncated)

    install(mtmd=kwargs.get("chat_handler") is not None)
    with STDIO_LOCK:
        return Llama(str(path), **kwargs)


def chat_formatter(llm):
    """The formatter llama-cpp-python builds from a GGUF's ``tokenizer.chat_template`` (its "chat_template.default"
    chat format): ``formatter(messages=...).prompt`` is the prompt text a chat completion sends, generation prompt
    included. None when the GGUF has no chat template."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    model = llm._model
    eos, bos = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(template, model.token_get_text(eos) if eos != -1 else "",
                               model.token_get_text(bos) if bos != -1 else "")
