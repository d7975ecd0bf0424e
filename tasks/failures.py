"""What a failed command tells its user: one line, never a traceback.

A failure the user can fix (bad input, a missing or unwritable file, no network) is shown as its message, which says
what to do (exit 2). Anything else is a bug: one line with its type and message, and the traceback kept in a crash
log for the bug report (exit 1). ``ALPHAGATE_DEBUG=1`` (tasks.environment) shows the traceback instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Where the project's own code lives: an error it raises on purpose carries a message meant for the user. The three
# packages sit side by side (in the repository and when installed).
_ROOT = Path(__file__).resolve().parents[1]
PROJECT_DIRS = tuple(str(_ROOT / name) + os.sep for name in ("flows", "tasks", "alpha_gate"))

USER_ERROR = 2
BUG = 1


def is_user_error(exc: BaseException) -> bool:
    """A failure the user can fix whose message says what to do, as opposed to a bug. Files, permissions and the
    network (OSError) are always the user's; ValueError/RuntimeError/ImportError only when the project's own code
    raised them (then the message was written for the user). Decoding errors never name their file, so they are
    bugs: the code should have named it."""
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, (ValueError, RuntimeError, ImportError)) or isinstance(exc, (UnicodeError,
                                                                                        json.JSONDecodeError)):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(PROJECT_DIRS)


def crash_log(exc: BaseException, argv: list[str]) -> Path | None:
    """The traceback of an unexpected error, kept in a file for a bug report (the terminal gets one line): under the
    cache's logs/ folder, else the temporary folder; None when neither can be written."""
    import tempfile
    import time
    import traceback

    from tasks.environment import cache_root

    text = f"alphagate {' '.join(argv)}\n\n" + "".join(traceback.format_exception(exc))
    name = f"alphagate-error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    for folder in (cache_root() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return None


def failure_line(exc: BaseException, argv: list[str]) -> tuple[int, str]:
    """(exit status, the one line to print): the user's errors say what was wrong and what to do (2); anything else
    its type, message and where its traceback was kept (1)."""
    if is_user_error(exc):
        return USER_ERROR, f"alphagate: error: {exc}"
    log = crash_log(exc, argv)
    where = f"the traceback is in {log}" if log else "no log could be written"
    return BUG, (f"alphagate: error: unexpected {type(exc).__name__}: {str(exc)[:300] or '(no message)'} ({where}; "
                 "rerun with ALPHAGATE_DEBUG=1 to see it here, and report it with that file).")
