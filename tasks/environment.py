"""Every environment variable the project reads, in one place: the pipeline's folders, cores and Hub token
(cache_root, slots_root, cpu_cores, hf_token_from_env) and the command line's own (debug, API key, the settings of
Prefect's temporary server)."""

from __future__ import annotations

import os
from pathlib import Path

DEBUG = "ALPHAGATE_DEBUG"  # set: a failure shows its traceback instead of one line
API_KEY = "ALPHAGATE_API_KEY"  # `alphagate serve`'s API key, unless --api-key-env names another variable
# Prefect waits 20 s for its ephemeral API server; a first start migrates a new SQLite database, slower on 2 cores
EPHEMERAL_STARTUP_TIMEOUT_S = "300"


def debug_requested() -> bool:
    return bool(os.environ.get(DEBUG))


def api_key(variable: str | None = None) -> str | None:
    """The API key in ``variable`` (default ALPHAGATE_API_KEY); None when unset or empty."""
    return os.environ.get(variable or API_KEY) or None


def hub_endpoint() -> str:
    """The Hugging Face Hub the client talks to (HF_ENDPOINT, as huggingface_hub reads it)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set (huggingface_hub then makes no request)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def prefect_child_defaults() -> None:
    """Settings for the temporary server Prefect starts for a run (a child process, which reads its settings from
    this environment); a user's own value in the environment wins.

    It gets time to migrate a fresh database, and sends no usage analytics: offline, its heartbeat logs an ERROR (and
    a "database is locked" traceback) into an otherwise successful run."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def hf_token_from_env() -> str | None:
    """The Hub token from HF_TOKEN (the one other env var we read); never logged or written anywhere."""
    import os

    return os.environ.get("HF_TOKEN") or None


def slots_root() -> Path:
    """The folder of this machine's model slots (tasks.slots): ALPHAGATE_SLOTS_DIR, else a folder of this user's in
    the machine's temporary directory (local to the machine: slots bound one machine's memory)."""
    import os
    import tempfile

    if folder := os.environ.get("ALPHAGATE_SLOTS_DIR"):
        return Path(folder).expanduser()
    return Path(tempfile.gettempdir()) / f"alphagate-slots-{os.getuid()}"


def cpu_cores() -> int:
    """The cores this process may use: ALPHAGATE_THREADS when set (a cap: a user's, or a test worker's share of the
    machine when tests run side by side), else the CPUs it may run on (its affinity: taskset, a container's cpuset).
    Every thread count (llama.cpp's, torch's in a stage process, the model slots') comes from here."""
    import os

    if value := os.environ.get("ALPHAGATE_THREADS", "").strip():
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"ALPHAGATE_THREADS must be a whole number of cores >= 1; found {value!r}. Unset it "
                             "to use every CPU this process may run on.")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cache_root() -> Path:
    """Where dequantized base models and assembled GGUFs are cached (ALPHAGATE_CACHE)."""
    import os

    return Path(os.environ.get("ALPHAGATE_CACHE", "~/.cache/alphagate")).expanduser()
