"""Serve the flows without a work pool: the nightly study on its schedule plus UI-triggered comparisons.

    .venv/bin/python deployments/serve.py     (with `prefect server start` running, PREFECT_API_URL set)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import serve  # noqa: E402
from prefect.schedules import Cron  # noqa: E402

from flows.compare import compare, nightly  # noqa: E402


def deployments():
    study = nightly.to_deployment(
        name="nightly-study", schedule=Cron("30 2 * * *", timezone="Asia/Tokyo"),
        parameters={"params": {"config": "configs/demo.yaml", "out": "runs/nightly"}}, concurrency_limit=1,
        description="One night of the accumulating study (02:30 Asia/Tokyo): a new seed per arm, a pooled decision "
                    "with alpha spending over nightly.max_looks.")
    on_demand = compare.to_deployment(name="on-demand", concurrency_limit=1)
    return study, on_demand


if __name__ == "__main__":
    serve(*deployments())
