"""The set-up the command line and the flows share: a run's parameters checked, and its config validated once.

    checked_params(fields: dict) -> tuple[CompareParams, PipelineConfig]
        ``fields``: CompareParams fields (a missing one takes its default; ``formats`` missing or None: the config's
        export.formats). Every flag and file the run reads is checked (tasks.validate.validate_run) before the
        parameters are validated, so that an error names the flag (--suites, --formats, --out ...), not a pydantic
        field. Returns the validated parameters and the validated config.

    checked_nightly_params(fields: dict) -> tuple[NightlyParams, PipelineConfig]
        ``fields``: NightlyParams fields. The nightly section of the config says what a night runs (suites, formats,
        data, limit, judge); those and the study's --out and --cache are checked the same way.

No Prefect here: the command line imports this before it starts any server.
"""

from __future__ import annotations

from typing import Any

from flows.params import CompareParams, NightlyParams
from tasks.config import PipelineConfig


def checked_params(fields: dict[str, Any]) -> tuple[CompareParams, PipelineConfig]:
    from tasks.config import load_config
    from tasks.validate import validate_run

    # unchecked until validate_run, whose errors name the flag
    params = CompareParams.model_construct(**{**fields, "formats": fields.get("formats")})
    config = load_config(params.config)  # the one read of the config: everything after is handed this
    if params.formats is None:
        params = params.model_copy(update={"formats": list(config.export.formats)})
    config = validate_run(params.config, params.suites, params.formats, params.data, params.limit, params.judge,
                          out=params.out, cache=params.cache, config=config)
    return CompareParams.model_validate(params.model_dump()), config


def checked_nightly_params(fields: dict[str, Any]) -> tuple[NightlyParams, PipelineConfig]:
    from tasks.config import load_config
    from tasks.validate import validate_run

    params = NightlyParams.model_validate(fields)
    config = load_config(params.config)  # the one read of the config
    spec = config.nightly
    config = validate_run(params.config, spec.suites, spec.formats, spec.data, spec.limit, spec.judge,
                          out=params.out, cache=params.cache, config=config)
    return params, config
