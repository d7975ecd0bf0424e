from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("prefect")
ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_is_valid_and_points_at_the_flow():
    from prefect.schedules import Cron

    from flows.compare import CompareParams, NightlyParams, compare, nightly
    from tasks.config import load_config

    spec = yaml.safe_load((ROOT / "deployments/prefect.yaml").read_text())
    names = {d["name"]: d for d in spec["deployments"] if d["entrypoint"].endswith((":compare", ":nightly"))}
    assert set(names) == {"nightly-study", "on-demand"}
    for d, flow_, model in ((names["on-demand"], compare, CompareParams), (names["nightly-study"], nightly,
                                                                             NightlyParams)):
        path, func = d["entrypoint"].split(":")
        assert (ROOT / path).is_file() and func == flow_.fn.__name__
        model(**d["parameters"]["params"])  # the parameters validate against the flow's model
    study = names["nightly-study"]
    schedule = study["schedules"][0]
    Cron(schedule["cron"], timezone=schedule["timezone"])  # a valid cron in a real timezone
    assert study["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"
    # the nightly study decides on real items, never the 5-item bundled samples
    assert load_config(ROOT / study["parameters"]["params"]["config"]).nightly.data != "sample"


def test_serve_script_builds_both_deployments():
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve", ROOT / "deployments/serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nightly, on_demand = module.deployments()
    assert nightly.name == "nightly-study" and on_demand.name == "on-demand"
    assert nightly.schedules and nightly.schedules[0].schedule.timezone == "Asia/Tokyo"
    from prefect.utilities.callables import parameter_schema

    from flows.compare import compare

    schema = parameter_schema(compare).model_dump()  # what the UI renders its run form from
    assert "params" in schema["properties"]
    fields = schema["definitions"]["CompareParams"]["properties"]
    assert {"config", "out", "suites", "formats", "data", "limit", "judge", "upload"} <= set(fields)


def test_the_nightly_run_form_names_the_study_and_its_folder():
    from prefect.utilities.callables import parameter_schema

    from flows.compare import nightly

    schema = parameter_schema(nightly).model_dump()
    fields = schema["definitions"]["NightlyParams"]["properties"]
    assert {"config", "out", "cache", "date", "upload"} <= set(fields)
    assert all(f.get("description") for f in fields.values())  # every field explained on the form
