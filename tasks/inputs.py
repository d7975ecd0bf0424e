"""Files and folders a command is handed, checked before any work: a bad one fails here, naming its flag and what to
pass instead. (GGUF files: tasks.gguf_check.check_gguf; output folders: tasks.store.check_writable_dir.)"""

from __future__ import annotations

from pathlib import Path

from tasks.store import read_json_object


def check_results_dir(folder: str | Path, shown: str) -> None:
    """``folder`` (given as ``shown``, e.g. "--results linear=runs/x") is a folder of `alphagate eval` results."""
    if not Path(folder).exists():
        raise FileNotFoundError(f"{shown}: that folder does not exist; pass a folder written by `alphagate eval "
                                "--out`.")
    if not Path(folder).is_dir():
        raise NotADirectoryError(f"{shown} is a file; pass the folder that holds the results "
                                 "(NAME.jsonl + NAME.summary.json).")


def check_run_dir(folder: str | Path) -> None:
    """``--out`` of a finished `alphagate run` (the folder whose saved generations are scored again)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--out {folder} is not a folder; pass the --out folder of an `alphagate run`.")


def check_speed_record(path: str | Path) -> None:
    """``--speed``: a speed.json of `alphagate speed` whose models each have their tokens_per_s."""
    speed = read_json_object(path, "speed.json of `alphagate speed`", ("models",),
                             "Pass the --out file of `alphagate speed`, or leave --speed out.")
    if not isinstance(speed["models"], dict) or not all(
            isinstance(m, dict) and "tokens_per_s" in m for m in speed["models"].values()):
        raise ValueError(f"--speed {path}: 'models' must map each label to its 'tokens_per_s'; rerun "
                         "`alphagate speed`.")


def check_degradation_record(path: str | Path) -> None:
    """``--degradation``: a degradation.json of `alphagate degrade`."""
    read_json_object(path, "degradation.json of `alphagate degrade`", ("gates",),
                     "Pass the degradation.json that `alphagate degrade` wrote, or leave --degradation out.")


def check_decision_record(path: str | Path) -> None:
    """``--decision``: a decision.json of `alphagate decide`."""
    read_json_object(path, "decision.json of `alphagate decide`", ("upload", "reason", "models"),
                     "Pass the decision.json that `alphagate decide` wrote.")


def llama_logs(out: str | Path) -> Path | None:
    """The folder of llama.cpp's own output of a run under ``out`` (one file per task, tasks.native_log), if any."""
    logs = Path(out) / "logs" / "llama.cpp"
    return logs if logs.is_dir() else None
