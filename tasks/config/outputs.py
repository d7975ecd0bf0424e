"""What a run makes of its models: export, vision, the decision, the upload."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tasks.config.common import Strict
from tasks.export.formats import FORMATS, Format


class ExportSpec(Strict):
    formats: list[Format] = Field(default_factory=lambda: list(FORMATS))
    # mean |log p_gguf - log p_hf| over the parity texts' tokens, BF16 GGUF vs the merged model
    parity_tolerance: float = Field(0.05, gt=0.0)
    parity_texts: list[str] = Field(default_factory=lambda: [
        "The capital of France is Paris, and the capital of Japan is Tokyo.",
        "If a train travels 60 kilometres in one hour, it travels 180 kilometres in three hours.",
        "日本の首都は東京です。",
    ], min_length=1)
    answer_prompt: str = "What is 12 plus 30?"


class VisionSpec(Strict):
    """ScienceQA's image items. ``mmproj``: the base model's vision projector, a llama.cpp mmproj GGUF (e.g. the
    mmproj-*.gguf published beside a SmolVLM GGUF); the fine-tuned variants share the base model's embedding space, so
    one projector serves every model of the run. ``image_root``: the images of the original ScienceQA release
    (<image_root>/<pid>/<file>; rows from the Hub carry their image and need none). Without an mmproj the image items
    are skipped, and the results and the report say how many."""

    mmproj: Path | None = None
    image_root: Path | None = None

    @model_validator(mode="after")
    def _root_needs_a_projector(self):
        if self.image_root is not None and self.mmproj is None:
            raise ValueError(f"vision.image_root is set ({self.image_root}) but vision.mmproj is not: without a "
                             "projector the image items are skipped. Set vision.mmproj too, or remove image_root")
        return self


def _default_weights() -> dict[str, float]:
    from tasks.bench.catalog import default_weights

    return default_weights()


class DecisionSpec(Strict):
    """Composite weights, statistics and the not-significant rule. The weights' groups and their defaults (the
    original design's) are declared once, in configs/suites/groups.yaml (tasks/bench/catalog.py)."""

    weights: dict[str, float] = Field(default_factory=_default_weights)
    speed_reference_tok_s: float = Field(100.0, gt=0.0)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    bootstrap: int = Field(2000, ge=100)
    seed: int = 0
    on_not_significant: Literal["no_upload", "upload_best"] = "no_upload"
    required_suites: list[str] = Field(default_factory=list)
    # suites whose absence on one side of a degradation/quantization comparison does not hold the upload back
    # (any other suite missing on either side blocks it: a missing comparison is not evidence of no loss)
    optional_suites: list[str] = Field(default_factory=list)
    # the speed difference in the composite: auto = only between models of another architecture or format (the same
    # build's timings differ by machine noise only); always; never. It is always reported.
    speed_in_composite: Literal["auto", "always", "never"] = "auto"
    # a judged suite (ELYZA) is compared on judge grades only; when the judge failed on more than this share of
    # either side's items the suite is marked failed (never scored by another metric for one side)
    max_judge_failure_share: float = Field(0.2, ge=0.0, le=1.0)
    # upload gates: a format is held back when its composite is significantly below the base model's by more
    # than max_drop_vs_base (composite points), or a quantization lost more than max_quant_loss of its BF16 score
    max_drop_vs_base: float = Field(0.02, ge=0.0)
    max_quant_loss: float = Field(0.05, ge=0.0, lt=1.0)
    # power: the smallest composite difference worth detecting, and the power asked for (decision.json, report and
    # `alphagate plan` give the minimum detectable difference and the items/seeds that would detect target_effect)
    target_effect: float = Field(0.02, gt=0.0, lt=1.0)
    power: float = Field(0.8, gt=0.5, lt=1.0)

    @model_validator(mode="after")
    def _all_weights(self):
        from tasks.bench.catalog import SPEED, groups, groups_path

        declared = list(groups())
        if set(self.weights) != {*declared, SPEED} or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"decision.weights needs {', '.join(declared)} and {SPEED}, each >= 0; got "
                             f"{self.weights}. Give every composite group declared in {groups_path()} a weight, "
                             f"and {SPEED} one")
        return self


class UploadSpec(Strict):
    """Hub upload of the winner: <org>/<name>-bf16 (safetensors + BF16 GGUF), -q8_0, -q4_k_m."""

    enabled: bool = False  # off: a dry run writes exactly what would be uploaded
    org: str = Field("alphagate", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # default: the config's name
    private: bool = False
    endpoint: str | None = None  # a Hub mirror or stand-in; default: huggingface.co
    token_secret_block: str | None = None  # Prefect Secret block holding the token, when HF_TOKEN is unset
    formats: list[Format] = Field(default_factory=lambda: list(FORMATS))
    # where this project's code can be installed from with pip (pip install git+<url>): the cards then show how to
    # serve the model with `alphagate serve`; None: the cards show llama.cpp / llama-cpp-python only
    project_git_url: str | None = Field(None, pattern=r"^https://[^\s@]+$",
                                        description="https URL of this project's git repository, for the model "
                                                    "cards' install line (pip install git+<url>)")
