"""Checks of a whole run's inputs before any work: every flag and every file the run will read."""

from __future__ import annotations

import difflib
from pathlib import Path

from tasks.config import PipelineConfig, load_config
from tasks.export.formats import FORMATS


def _did_you_mean(value: str, known: list[str]) -> str:
    close = difflib.get_close_matches(value, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_run(config_path: str | Path, suites: list[str], formats: list[str], data: str | None,
                 limit: int | None, judge: str | None, *, out: str | Path | None = None,
                 cache: str | Path | None = None, config: PipelineConfig | None = None) -> PipelineConfig:
    """The validated config; a ValueError/FileNotFoundError naming the flag or file otherwise. ``out``/``cache``:
    the run's artifact root and cache, which must be (or become) folders it can write. ``config``: the config at
    ``config_path`` when the caller has already read it (it is read once)."""
    from tasks.bench.suites import load_docs, load_suite, resolve_data, suite_names
    from tasks.store import check_writable_dir

    for flag, folder in (("--out", out), ("--cache", cache)):
        if folder is not None:
            check_writable_dir(folder, flag)  # an existing file there failed 20 s into the run

    config = config or load_config(config_path)
    known = suite_names()
    for suite in suites:
        if suite not in known:
            raise ValueError(f"--suites: unknown suite {suite!r}{_did_you_mean(suite, known)}; known: {known}.")
    if not suites:
        raise ValueError(f"--suites: no suite given; choose from {known}.")
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"--formats: unknown format {fmt!r}{_did_you_mean(fmt, list(FORMATS))}; "
                             f"choose from {list(FORMATS)}.")
    if "bf16" not in formats:
        raise ValueError(f"--formats {formats} lacks bf16: the decision compares the BF16 models and the other "
                         "formats are quantized from it. Add bf16.")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 (items per suite); got {limit}. Omit it to use every item.")
    for name in suites:
        suite = load_suite(name)
        if resolve_data(suite, data) != "hub":  # names the missing file or folder
            load_docs(suite, data, limit)  # a bad item is refused here, before any training
    if judge:
        from tasks.bench.judge import load_judge_spec

        spec = load_judge_spec(judge)
        if spec.path is not None and not Path(spec.path).is_file():
            raise FileNotFoundError(f"--judge {judge}: its model file {spec.path} does not exist.")
    _check_config_files(config, Path(config_path))
    return config


def _check_config_files(config: PipelineConfig, path: Path) -> None:
    base = config.base_model
    if base.gguf_file is not None and not base.gguf_file.is_file():
        raise FileNotFoundError(f"{path}: base_model.gguf_file {base.gguf_file} does not exist.")
    if base.local_dir is not None and not (base.local_dir / "config.json").is_file():
        raise FileNotFoundError(f"{path}: base_model.local_dir {base.local_dir} holds no config.json.")
    for i, source in enumerate(config.data.sources):
        if source.kind == "jsonl" and not source.path.is_file():
            raise FileNotFoundError(f"{path}: data.sources[{i}].path {source.path} does not exist.")
    vision = config.vision
    if vision.mmproj is not None and not vision.mmproj.is_file():
        raise FileNotFoundError(f"{path}: vision.mmproj {vision.mmproj} does not exist (the base model's vision "
                                "projector GGUF; remove vision.mmproj to skip ScienceQA's image items).")
    if vision.image_root is not None and not vision.image_root.is_dir():
        raise FileNotFoundError(f"{path}: vision.image_root {vision.image_root} is not a folder (ScienceQA's images, "
                                "<image_root>/<pid>/<file>).")
