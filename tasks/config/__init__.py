"""Pydantic models for every config section. A YAML file is validated once, at the boundary (flows/setup.py, the
command line); functions downstream take the sub-model they need. Unknown keys are errors (a typo must not silently
change an experiment).

- common.py: the strict base model, the Hub id check
- model.py: base_model, data
- training.py: lora, gates, pet, train, tuner, linear, dpo
- outputs.py: export, vision, decision, upload
- runs.py: orchestration, nightly
- pipeline.py: the whole config (PipelineConfig) and load_config
"""

from tasks.config.common import Strict, hub_repo_id_problem
from tasks.config.model import BaseModelSpec, DataSource, DataSpec, FieldMap
from tasks.config.outputs import DecisionSpec, ExportSpec, UploadSpec, VisionSpec
from tasks.config.pipeline import PipelineConfig, load_config
from tasks.config.runs import NightlySpec, OrchestrationSpec
from tasks.config.training import DPOSpec, GateSpec, LinearSpec, LoRASpec, PETSpec, TrainSpec, TunerSpec

__all__ = ["Strict", "hub_repo_id_problem", "BaseModelSpec", "DataSource", "DataSpec", "FieldMap", "DecisionSpec",
           "ExportSpec", "UploadSpec", "VisionSpec", "PipelineConfig", "load_config", "NightlySpec",
           "OrchestrationSpec", "DPOSpec", "GateSpec", "LinearSpec", "LoRASpec", "PETSpec", "TrainSpec", "TunerSpec"]
