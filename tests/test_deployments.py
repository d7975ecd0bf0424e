from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("prefect")
ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_is_valid_and_points_at_the_flow():
    from prefect.schedules import Cron

    from flows.compare import CompareParams, compare

    spec = yaml.safe_load((ROOT / "deployments/prefect.yaml").read_text())
    names = {d["name"]: d for d in spec["deployments"] if d["entrypoint"].endswith(":compare")}
    assert set(names) == {"nightly-recomparison", "on-demand"}
    for d in names.values():
        path, func = d["entrypoint"].split(":")
        assert (ROOT / path).is_file() and func == compare.fn.__name__
        CompareParams(**d["parameters"]["params"])  # the parameters validate against the flow's model
    nightly = names["nightly-recomparison"]
    schedule = nightly["schedules"][0]
    Cron(schedule["cron"], timezone=schedule["timezone"])  # a valid cron in a real timezone
    assert nightly["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"


def test_serve_script_builds_both_deployments():
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve", ROOT / "deployments/serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nightly, on_demand = module.deployments()
    assert nightly.name == "nightly-recomparison" and on_demand.name == "on-demand"
    assert nightly.schedules and nightly.schedules[0].schedule.timezone == "Asia/Tokyo"
    from prefect.utilities.callables import parameter_schema

    from flows.compare import compare

    schema = parameter_schema(compare).model_dump()  # what the UI renders its run form from
    assert "params" in schema["properties"]
    fields = schema["definitions"]["CompareParams"]["properties"]
    assert {"config", "out", "suites", "formats", "data", "limit", "judge", "upload"} <= set(fields)
