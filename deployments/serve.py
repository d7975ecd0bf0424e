"""Serve the comparison flow without a work pool: the nightly schedule plus UI-triggered runs.

    .venv/bin/python deployments/serve.py     (with `prefect server start` running, PREFECT_API_URL set)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import serve  # noqa: E402
from prefect.schedules import Cron  # noqa: E402

from flows.compare import compare  # noqa: E402


def deployments():
    nightly = compare.to_deployment(
        name="nightly-recomparison", schedule=Cron("30 2 * * *", timezone="Asia/Tokyo"),
        parameters={"params": {"config": "configs/demo.yaml", "out": "runs/nightly"}}, concurrency_limit=1)
    on_demand = compare.to_deployment(name="on-demand", concurrency_limit=1)
    return nightly, on_demand


if __name__ == "__main__":
    serve(*deployments())
