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
    from llama_cpp import Llama

    with STDIO_LOCK:
        return Llama(str(path), **kwargs)
