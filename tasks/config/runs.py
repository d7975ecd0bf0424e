"""How runs are orchestrated, and the nightly study."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.config.common import Strict
from tasks.export.formats import SOURCE_FORMAT, Format


def _default_suites(which: str) -> list[str]:
    from tasks.bench.catalog import default_suites

    return default_suites(which)


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
    # own, bounded by this machine's model slots (tasks/model_slots.py: flocks the kernel frees with their holder).
    # None: chosen for the machine (1 on a CUDA machine or a CPU with fewer than 16 cores; raise it when two fit on
    # one card)
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
    """The nightly study (flows/nightly.py): each night adds one replicate (a new seed) per arm, tuned the
    same way every night (``tuning``), evaluates on real items and decides on every replicate so far with a
    correction for the repeated looks."""

    max_looks: int = Field(14, ge=2, le=365, description="nights the alpha is spent over; the study ends after them")
    # obrien_fleming: almost nothing spent early (early stops need overwhelming evidence); pocock: evenly spent
    spending: Literal["obrien_fleming", "pocock"] = "obrien_fleming"
    data: str = Field("shared", description="'shared' (../shared/benchmarks), 'hub' or a file; never the 5-item "
                                            "bundled samples")
    limit: int | None = Field(None, ge=1, description="items per suite (None: every item of the source)")
    # default: the suites whose YAML puts them in the nightly set (configs/suites/<name>.yaml: default)
    suites: list[str] = Field(default_factory=lambda: _default_suites("nightly"), min_length=1)
    formats: list[Format] = Field(default_factory=lambda: [SOURCE_FORMAT], min_length=1)
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
