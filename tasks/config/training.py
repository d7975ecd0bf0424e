"""The training sections: LoRA, gates, PET, the training itself, the tuner, the linear schedule, DPO."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from tasks.config.common import Strict


class LoRASpec(Strict):
    r: int = Field(16, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # groups ("attention", "mlp") or module names ("q_proj", ...); resolved per architecture
    targets: list[str] = Field(default_factory=lambda: ["attention", "mlp"], min_length=1)


class GateSpec(Strict):
    layers: list[int] | None = None
    learning_rate: float = Field(1e-3, gt=0.0)


class PETSpec(Strict):
    phases: list[tuple[float, float]] = Field(default_factory=lambda: [(0.2, 0.01), (0.6, 0.05), (1.0, 0.1)])
    # "per_dim" divides ||.||^2 by the hidden width. On SmolLM2 the literal ("sum") penalty of the last hidden
    # states measured ~4600 against an LM loss of ~2.6, so lambda = 0.01 would already dominate training.
    scale: Literal["sum", "per_dim"] = "per_dim"


class TrainSpec(Strict):
    max_steps: int = Field(30, ge=1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0.0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_length: int = Field(384, ge=16)
    eval_every: int = Field(10, ge=1)
    seed: int = Field(1234, ge=0, le=2**32 - 1)  # numpy's range: -1 passed validation, then training died
    # training seeds as replicates of each arm: each arm is trained, exported and evaluated once per seed, and the
    # decision treats seeds (not items) as the replicates of a schedule. None: one seed, ``seed``.
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] | None = Field(None, min_length=1)
    bf16_on_gpu: bool = True
    load_in_4bit: bool = True  # Unsloth path only (QLoRA); the CPU path trains on fp32 weights

    @model_validator(mode="after")
    def _distinct_seeds(self):
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"train.seeds repeats a seed ({self.seeds}); replicates need distinct seeds")
        return self

    @property
    def replicate_seeds(self) -> list[int]:
        """The seeds each arm is trained with: ``seeds``, or ``[seed]``."""
        return list(self.seeds) if self.seeds is not None else [self.seed]


class TunerSpec(Strict):
    n_trials: int = Field(4, ge=1)
    proxy_steps: int = Field(8, ge=1)
    k_bounds: tuple[float, float] = (1.0, 30.0)
    midpoint_bounds: tuple[float, float] = (0.1, 0.9)
    base: Literal["phi", "zero"] = "phi"
    n_initial_points: int = Field(3, ge=1)
    history_path: Path | None = Field(None, description="shared history (nightly warm start); default: in the run dir")
    # False: the tuner runs once per experiment and every seed's sigmoid training uses its choice (trials are shared
    # across seeds); True: each seed tunes on its own (the seed joins the experiment fingerprint)
    per_seed: bool = False


class LinearSpec(Strict):
    start: float = Field(0.0, ge=0.0, le=1.0)


class DPOSpec(Strict):
    """Optional preference stage after SFT (tasks/train/dpo.py): off unless enabled."""

    enabled: bool = False
    samples_per_question: int = Field(4, ge=2, le=64)
    temperature: float = Field(0.9, gt=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(160, ge=8)
    beta: float = Field(0.1, gt=0.0)
    learning_rate: float = Field(5e-5, gt=0.0)
    max_steps: int = Field(10, ge=1)
    batch_size: int = Field(2, ge=1)
    min_pairs: int = Field(2, ge=1, description="fewer pairs than this: the stage fails with a clear error")
