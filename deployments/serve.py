"""Serve the flows without a work pool: the nightly study on its schedule plus UI-triggered comparisons.

    .venv/bin/python deployments/serve.py     (with `prefect server start` running, PREFECT_API_URL set)

The served deployments have their own names (alphagate-compare/on-demand-served, alphagate-nightly/
nightly-study-served): `prefect deploy` (deployments/prefect.yaml) owns on-demand and nightly-study, whose runs a
worker pulls code for, and a served process taking those records over would leave their next runs without code.
Serving the nightly study while the work-pool deployment also schedules it would run two nights at once into the
same study, so this script refuses then and says how to choose.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import serve  # noqa: E402
from prefect.schedules import Cron  # noqa: E402

from flows.compare import compare  # noqa: E402
from flows.nightly import nightly  # noqa: E402

NIGHTLY = "nightly-study-served"
ON_DEMAND = "on-demand-served"
WORK_POOL_NIGHTLY = "alphagate-nightly/nightly-study"  # deployments/prefect.yaml


def deployments():
    study = nightly.to_deployment(
        name=NIGHTLY, schedule=Cron("30 2 * * *", timezone="Asia/Tokyo"),
        parameters={"params": {"config": "configs/demo.yaml", "out": "runs/nightly", "cache": "runs/cache",
                               "upload": False}}, concurrency_limit=1,
        description="Schedule: every night at 02:30, Asia/Tokyo time (cron 30 2 * * *, timezone Asia/Tokyo), served "
                    "by deployments/serve.py. One night of the accumulating study: a new seed per arm, a pooled "
                    "decision with alpha spending over nightly.max_looks. Results: the run's Artifacts tab.")
    on_demand = compare.to_deployment(
        name=ON_DEMAND, concurrency_limit=1,
        description="Compare the linear and sigmoid-bayes schedules on demand, served by deployments/serve.py: Run, "
                    "then Custom run (each field is described on the form). Results: the run's Artifacts tab.")
    return study, on_demand


def conflict() -> str | None:
    """Why serving would double the nightly study, or None: the work-pool deployment exists with an active
    schedule."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_deployment_by_name(WORK_POOL_NIGHTLY)
        except ObjectNotFound:
            return None
    if not any(s.active for s in existing.schedules or []):
        return None
    return (f"The deployment {WORK_POOL_NIGHTLY} (prefect deploy, work pool {existing.work_pool_name}) already runs "
            f"the nightly study at 02:30 Asia/Tokyo; serving {NIGHTLY} too would run two nights at once into the "
            "same study. Choose one: keep the worker (`prefect worker start --pool alphagate-cpu`) and do not run "
            f"this script, or pause its schedule first (`prefect deployment schedule pause {WORK_POOL_NIGHTLY} "
            f"--all`) or delete it (`prefect deployment delete {WORK_POOL_NIGHTLY}`).")


if __name__ == "__main__":
    if (why := conflict()) is not None:
        print(why, file=sys.stderr)
        sys.exit(2)
    serve(*deployments())
