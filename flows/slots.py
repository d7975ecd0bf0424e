"""How many model-loading stages (trainings, exports, DPO) run at once on a machine: its training slots.

Each such stage runs in a child process of its own (tasks.procs) and holds one slot of this machine's Prefect global
concurrency limit ``alphagate-train-<host>`` while it runs. The limit has ``orchestration.train_slots`` slots (None:
``machine_train_slots()``); the comparison creates it, or sets it to the config's value, before its trainings start,
and a stage that finds none (a training deployment run on its own) creates it. A lease that is not renewed (its
process was killed) frees the slot after ``LEASE_S``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator

logger = logging.getLogger(__name__)

LEASE_S = 300.0  # Prefect renews a held lease; a killed holder's slot comes back after this long
CORES_PER_CPU_SLOT = 8  # on a CPU machine, one training per this many cores (a 2-core machine: one at a time)
MAX_AUTO_SLOTS = 4


def limit_name(host: str | None = None) -> str:
    """``alphagate-train-<host>``: each machine bounds its own trainings (a pool's GPU workers and the orchestrating
    machine each have their own limit). Characters Prefect does not allow in names become '-'."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", host or socket.gethostname()).strip("-") or "localhost"
    return f"alphagate-train-{host}"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cuda() -> bool:
    from tasks.procs import cuda_available  # flows/ is glue: torch is imported under tasks/

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


def ensure_limit(slots: int, *, update: bool) -> str:
    """This machine's limit exists with ``slots`` slots (``update``: set to ``slots`` when it has another value;
    otherwise an existing limit is left as it is). Returns its name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"train_slots must be a whole number >= 1, got {slots!r}")
    name = limit_name()
    with get_client(sync_client=True) as client:
        if update:
            try:
                before = client.read_global_concurrency_limit_by_name(name).limit
            except ObjectNotFound:
                before = None
            client.upsert_global_concurrency_limit_by_name(name, slots)
            if before not in (None, slots):
                logger.info("Concurrency limit %s: %s -> %d slots (orchestration.train_slots)", name, before, slots)
            return name
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another stage created it meanwhile
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
    return name


@contextlib.contextmanager
def model_slot(configured: int | None) -> Iterator[int]:
    """Hold one of this machine's slots for the block (waiting for one when all are taken); yields the torch threads
    the stage should use."""
    from prefect.concurrency.sync import concurrency

    slots = train_slots(configured)
    name = ensure_limit(slots, update=False)
    with concurrency(name, occupy=1, lease_duration=LEASE_S, strict=True):
        yield threads_per_slot(slots)
