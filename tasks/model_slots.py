"""How many model-loading stages (trainings, exports, DPO) run at once on a machine: its training slots.

Each such stage runs in a child process of its own (tasks.procs) and holds one of this machine's slots while it runs
(tasks.slots: a flock on a file per slot, which the kernel frees the instant its holder dies). There are
``orchestration.train_slots`` of them (None: ``machine_train_slots()``). Slots bound one machine's memory, so they
are never shared between machines: a work pool's worker holds its own machine's slots, and no Prefect concurrency
limit (whose leases a killed server or holder could leave taken) is involved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

CORES_PER_CPU_SLOT = 8  # on a CPU machine, one training per this many cores (a 2-core machine: one at a time)
MAX_AUTO_SLOTS = 4


def _cores() -> int:
    from tasks.environment import cpu_cores

    return cpu_cores()


def _cuda() -> bool:
    from tasks.procs import cuda_available

    return cuda_available()


def machine_train_slots(cores: int | None = None, cuda: bool | None = None) -> int:
    """The default slot count for this machine: on a CUDA machine 1 (one training per card; two small ones fit on a
    large card: raise train_slots); on CPU one per CORES_PER_CPU_SLOT cores, at least 1 and at most MAX_AUTO_SLOTS
    (torch already uses every core for one training, so a 2-core machine gains nothing from two)."""
    cuda = _cuda() if cuda is None else cuda
    if cuda:
        return 1
    cores = _cores() if cores is None else cores
    return max(1, min(MAX_AUTO_SLOTS, cores // CORES_PER_CPU_SLOT))


def train_slots(configured: int | None) -> int:
    return configured if configured is not None else machine_train_slots()


def threads_per_slot(slots: int, cores: int | None = None, cuda: bool | None = None) -> int | None:
    """torch threads for one CPU training when ``slots`` run at once (the cores shared out); None on a CUDA machine
    (the library's default)."""
    cuda = _cuda() if cuda is None else cuda
    if cuda:
        return None
    cores = _cores() if cores is None else cores
    return max(1, cores // slots)


@dataclasses.dataclass(frozen=True)
class Grant:
    """A held model slot: the torch threads its stage should use, and the lock's descriptor (hand it to the stage's
    process, ``keep_fds``, so that the slot stays taken until that process is gone too)."""

    threads: int | None
    fd: int


@contextlib.contextmanager
def model_slot(configured: int | None, stage: str, *, export: bool = False,
               journal: Path | None = None) -> Iterator[Grant]:
    """Hold one of this machine's model slots for the block (tasks.slots: a flock the kernel frees when its holder
    dies; while all are taken the task's log names their holders). ``export``: an export goes before the trainings
    waiting in this process (it unblocks evaluations)."""
    from tasks.environment import slots_root
    from tasks.procs import output_sink
    from tasks.slots import EXPORT, TRAIN, hold

    slots = train_slots(configured)
    with hold(slots_root(), slots, stage, priority=EXPORT if export else TRAIN, journal=journal,
              log=output_sink().info) as slot:
        yield Grant(threads_per_slot(slots), slot.fd)


def eval_threads(orchestration) -> int | None:
    """Each evaluation's llama.cpp threads: this machine's cores shared by the ``eval_workers`` that run side by side
    (threads or a local Dask cluster); None for a remote Dask cluster, whose workers know their own cores."""
    if orchestration.eval_runner != "threads" and orchestration.dask_address:
        return None
    return max(1, _cores() // orchestration.eval_workers)
