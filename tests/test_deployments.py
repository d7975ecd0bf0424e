from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("prefect")
ROOT = Path(__file__).resolve().parents[1]


def test_prefect_yaml_is_valid_and_points_at_the_flow():
    from prefect.schedules import Cron

    from flows.compare import CompareParams, NightlyParams, compare
    from flows.nightly import nightly
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
    assert nightly.name == "nightly-study-served" and on_demand.name == "on-demand-served"
    assert nightly.schedules and nightly.schedules[0].schedule.timezone == "Asia/Tokyo"
    from prefect.utilities.callables import parameter_schema

    from flows.compare import compare

    schema = parameter_schema(compare).model_dump()  # what the UI renders its run form from
    assert "params" in schema["properties"]
    fields = schema["definitions"]["CompareParams"]["properties"]
    assert {"config", "out", "suites", "formats", "data", "limit", "judge", "upload"} <= set(fields)


def test_the_nightly_run_form_names_the_study_and_its_folder():
    from prefect.utilities.callables import parameter_schema

    from flows.nightly import nightly

    schema = parameter_schema(nightly).model_dump()
    fields = schema["definitions"]["NightlyParams"]["properties"]
    assert {"config", "out", "cache", "date", "upload"} <= set(fields)
    assert all(f.get("description") for f in fields.values())  # every field explained on the form


def _yaml(name: str) -> list[dict]:
    return yaml.safe_load((ROOT / "deployments" / name).read_text())["deployments"]


def _readme_block(heading: str) -> list[str]:
    """The commands of the first bash block after ``heading`` in README.md (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(heading):].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and
            not line.lstrip().startswith("#")]


def test_every_pool_a_deployment_file_names_is_created_by_the_readme_commands_that_deploy_it():
    """`prefect deploy --all` of a file whose deployment names a pool the README never creates exits 1 (the GPU
    deployment once sat in prefect.yaml): each file's pools are created by the block that deploys it."""
    for heading, name in (("## Prefect:", "prefect.yaml"), ("### Beyond one machine", "prefect-gpu.yaml")):
        commands = _readme_block(heading)
        deploy = next(i for i, c in enumerate(commands) if f"--prefect-file deployments/{name}" in c)
        created = {c.split()[3] for c in commands[:deploy] if c.startswith(".venv/bin/prefect work-pool create")}
        pools = {d["work_pool"]["name"] for d in _yaml(name)}
        assert pools <= created, (name, pools, created)
    assert {d["name"] for d in _yaml("prefect.yaml")} == {"nightly-study", "on-demand"}  # no GPU pool with --all
    # trainings take slots of a limit the flow creates itself (tasks/model_slots.py): no manual `gcl create` step
    assert not [c for c in _readme_block("### Beyond one machine") if " gcl " in c]


def test_served_and_deployed_names_differ_and_schedules_say_their_timezone():
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve", ROOT / "deployments/serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    served = module.deployments()
    deployed = _yaml("prefect.yaml") + _yaml("prefect-gpu.yaml")
    assert not {d.name for d in served} & {d["name"] for d in deployed}  # serve never takes over a deploy record
    for d in deployed:
        for schedule in d.get("schedules", []):
            assert schedule["timezone"] in d["description"]
    for d in served:
        for schedule in d.schedules:
            assert schedule.schedule.timezone in d.description


def test_the_run_form_offers_suites_and_formats_as_choices_with_visible_defaults():
    from prefect.utilities.callables import parameter_schema
    from pydantic import ValidationError

    from flows.compare import CompareParams, compare
    from tasks.bench.suites import DEFAULT_SUITES, suite_names
    from tasks.validate import FORMATS

    schema = parameter_schema(compare).model_dump()["definitions"]["CompareParams"]
    fields = schema["properties"]
    # a default built by a factory is absent from the schema: the form showed "No items in this list"
    assert fields["suites"]["default"] == list(DEFAULT_SUITES)
    assert fields["suites"]["items"]["enum"] == suite_names()
    formats = fields["formats"]  # the form always sends a list (tests/test_run_form.py: bf16 required)
    assert formats["type"] == "array" and formats["default"] == list(FORMATS)
    assert formats["items"]["enum"] == list(FORMATS)
    assert all(f.get("description") for f in fields.values())  # every field explained on the form
    assert "UI" not in schema["description"] and "pydantic" not in schema["description"]  # written for users
    for bad in ({"suites": ["mmlu", "nope"]}, {"suites": []}, {"formats": ["q4_k"]}, {"limit": 0}):
        with pytest.raises(ValidationError):
            CompareParams(**bad)
    assert CompareParams(formats=None).formats is None  # still: the config's export.formats (CLI, no --formats)


def test_the_cli_without_formats_still_uses_the_configs_export_formats(tmp_path, monkeypatch):
    """The form's default lists every format; `alphagate run` without --formats keeps the config's."""
    import flows.cli
    import flows.compare

    config = tmp_path / "c.yaml"
    config.write_text((ROOT / "configs/demo.yaml").read_text().replace("formats: [bf16, q8_0, q4_k_m]",
                                                                        "formats: [bf16, q8_0]", 1))
    seen = {}
    monkeypatch.setattr(flows.compare, "compare", lambda params: seen.setdefault("params", params) and {
        "report": "r", "decision_record": "d", "decision": "x"})
    monkeypatch.setattr("tasks.layout.sweep_staging", lambda out: None)
    flows.cli.main(["run", "--config", str(config), "--out", str(tmp_path / "run")])
    assert seen["params"].formats == ["bf16", "q8_0"]


def test_tasks_with_retries_have_a_delay_the_ui_can_show():
    """The task page shows "Retry Delay NaNs" for a list of delays (and for none, "None"): one number each."""
    from prefect import Task

    import flows.stages

    tasks = [t for t in vars(flows.stages).values() if isinstance(t, Task) and t.retries]
    assert {t.name for t in tasks} >= {"eval_task", "train_task", "export_task"}
    for t in tasks:
        assert isinstance(t.retry_delay_seconds, int | float) and t.retry_delay_seconds > 0, t.name


def test_figures_are_embedded_so_the_ui_shows_them(tmp_path):
    import base64

    from tasks.publish.run_view import embed_figures

    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5E"
                           "rkJggg==")
    (tmp_path / "a.png").write_bytes(png)
    (tmp_path / "b.png").write_bytes(png)
    md = "![a.png](a.png)\n![b.png](b.png)\n![gone](gone.png)\n![web](https://x.org/c.png)\n"
    out = embed_figures(md, tmp_path, budget=len(png) + 1)
    lines = out.splitlines()
    assert lines[0] == f"![a.png](data:image/png;base64,{base64.b64encode(png).decode()})"
    assert "data:" not in lines[1] and str(tmp_path / "b.png") in lines[1]  # over the budget: named, not broken
    assert "missing" in lines[2] and lines[3] == "![web](https://x.org/c.png)"


def test_a_run_with_suites_failed_for_good_is_partial_and_names_them():
    from prefect.states import StateType

    from flows.run_results import finish_run

    ok = {"decision": "linear wins", "failed_evaluations": []}
    assert finish_run(ok) is ok
    state = finish_run({"decision": "x", "failed_evaluations": ["base/bf16/hellaswag", "linear/bf16/hellaswag",
                                                                "linear/q8_0/gsm8k"]})
    assert state.type == StateType.COMPLETED and state.name == "Partial"
    assert "hellaswag (base/bf16, linear/bf16)" in state.message and "gsm8k (linear/q8_0)" in state.message


def test_a_cache_key_that_cannot_be_computed_is_quietly_none(caplog):
    """A bad input (a missing GGUF) means no cache key, silently: the task body then raises the one real error."""
    import logging

    from flows.stages import keyed_cache
    from tasks.stages.evaluation import eval_plan

    with caplog.at_level(logging.DEBUG):
        assert keyed_cache(eval_plan)(None, {"gguf": "/nowhere/x.gguf", "suite": "mmlu", "root": "/tmp", "data": None,
                                          "limit": None, "judge": None}) is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
