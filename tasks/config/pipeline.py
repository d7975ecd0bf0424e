"""The whole pipeline config, and reading it: a YAML file validated once, its relative paths made absolute."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from tasks.config.common import Strict
from tasks.config.model import BaseModelSpec, DataSpec
from tasks.config.outputs import DecisionSpec, ExportSpec, UploadSpec, VisionSpec
from tasks.config.runs import NightlySpec, OrchestrationSpec
from tasks.config.training import DPOSpec, GateSpec, LinearSpec, LoRASpec, PETSpec, TrainSpec, TunerSpec


class PipelineConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    base_model: BaseModelSpec
    data: DataSpec = DataSpec()
    lora: LoRASpec = LoRASpec()
    gates: GateSpec = GateSpec()
    pet: PETSpec = PETSpec()
    train: TrainSpec = TrainSpec()
    tuner: TunerSpec = TunerSpec()
    linear: LinearSpec = LinearSpec()
    export: ExportSpec = ExportSpec()
    vision: VisionSpec = VisionSpec()
    decision: DecisionSpec = Field(default_factory=DecisionSpec)  # its defaults read from the suites' folder
    upload: UploadSpec = UploadSpec()
    dpo: DPOSpec = DPOSpec()
    orchestration: OrchestrationSpec = OrchestrationSpec()
    nightly: NightlySpec = Field(default_factory=NightlySpec)
    requires_gpu: bool = False

    @model_validator(mode="after")
    def _publishable(self):
        if self.upload.enabled and not self.base_model.card_id:
            raise ValueError("upload.enabled is true but base_model has no Hub repo id for the model cards' base_model "
                             "(the Hub refuses a local name such as "
                             f"{self.base_model.name!r}); set base_model.hub_repo_id to the original model's id, "
                             "e.g. HuggingFaceTB/SmolLM2-135M-Instruct")
        return self


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML config; errors name the file and each offending field."""
    from tasks.yamlfile import field_errors, read_yaml_mapping

    path = Path(path)
    raw = read_yaml_mapping(path, "Config file", "; see configs/ for examples")
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid pipeline config:\n{field_errors(exc)}") from None
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: PipelineConfig, root: Path) -> PipelineConfig:
    """Relative paths in a config are relative to the config file's folder."""
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (root / p).resolve()

    base = config.base_model.model_copy(update={"local_dir": fix(config.base_model.local_dir),
                                                "gguf_file": fix(config.base_model.gguf_file)})
    sources = [s.model_copy(update={"path": fix(s.path)}) for s in config.data.sources]
    tuner = config.tuner.model_copy(update={"history_path": fix(config.tuner.history_path)})
    vision = config.vision.model_copy(update={"mmproj": fix(config.vision.mmproj),
                                              "image_root": fix(config.vision.image_root)})
    return config.model_copy(update={"base_model": base, "data": config.data.model_copy(update={"sources": sources}),
                                     "tuner": tuner, "vision": vision})
