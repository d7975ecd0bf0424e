"""The run forms as Prefect's UI builds and validates them: the flow's parameter schema (what the UI renders) run
through the server's own validation (what POST /ui/schemas/validate and run creation apply), so a form that cannot
run is refused before a run exists; and the labels a person reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

pytest.importorskip("prefect")
ROOT = Path(__file__).resolve().parents[1]


def _schema(flow_):
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(flow_.fn).model_dump()


def _errors(flow_, params: dict) -> list[str]:
    """What the UI's form validation reports for ``params``: the server's preprocessing and validator."""
    from prefect.utilities.schema_tools.validation import build_error_obj, preprocess_schema, validate

    schema = preprocess_schema(_schema(flow_))
    obj = build_error_obj(validate({"params": params}, schema, preprocess=False))
    return [] if obj["valid"] else [str(e) for e in obj["errors"]]


def _form(**changes):
    base = {"config": "configs/demo.yaml", "out": "runs/x", "cache": "runs/cache", "suites": ["mmlu"],
            "formats": ["bf16", "q8_0"], "data": "sample", "upload": False}
    return {**base, **changes}


def test_the_form_refuses_formats_without_bf16_before_a_run_exists():
    from flows.compare import CompareParams, compare

    assert _errors(compare, _form()) == []
    assert _errors(compare, _form(formats=["q8_0", "q4_k_m"]))  # no bf16: refused by the form's schema
    assert _errors(compare, _form(formats=[]))
    with pytest.raises(ValueError, match="lack bf16"):  # and by the model, for a caller that skips the form
        CompareParams(formats=["q8_0"])
    assert CompareParams(formats=None).formats is None  # Python callers: None means the config's formats


def test_optional_numbers_and_text_are_plain_inputs_that_may_stay_empty():
    from flows.compare import compare

    fields = _schema(compare)["definitions"]["CompareParams"]["properties"]
    for name, kind in (("limit", "integer"), ("judge", "string")):
        # a plain input, not an anyOf with a null branch the UI shows as `Property is type "None"`
        assert fields[name]["type"] == kind and "anyOf" not in fields[name] and "default" not in fields[name]
    assert _errors(compare, _form(limit=None, judge=None)) == []  # what an emptied field sends
    assert _errors(compare, _form()) == []  # or leaves out
    assert _errors(compare, _form(limit=0))  # and the minimum still holds
    assert _errors(compare, _form(limit=3, judge="configs/judge.yaml")) == []


def test_only_fields_that_may_stay_empty_are_labelled_optional():
    from flows.compare import compare
    from flows.nightly import nightly

    compare_form = _schema(compare)["definitions"]["CompareParams"]
    assert set(compare_form["required"]) == {"config", "out", "cache", "suites", "formats", "data", "upload"}
    assert set(_schema(nightly)["definitions"]["NightlyParams"]["required"]) == {"config", "out", "cache", "upload"}
    assert _errors(compare, {k: v for k, v in _form().items() if k != "suites"})


def test_data_offers_its_known_choices_beside_a_file_path():
    from flows.compare import compare

    data = _schema(compare)["definitions"]["CompareParams"]["properties"]["data"]
    assert data["anyOf"][0]["enum"] == ["sample", "shared", "hub"] and data["anyOf"][1]["type"] == "string"
    for value in ("sample", "shared", "hub", "/data/mmlu.jsonl"):
        assert _errors(compare, _form(data=value)) == []


def test_descriptions_read_as_text():
    from flows.compare import compare
    from flows.nightly import nightly

    for flow_, model in ((compare, "CompareParams"), (nightly, "NightlyParams")):
        definition = _schema(flow_)["definitions"][model]
        texts = [definition["description"], *(p.get("description", "") for p in definition["properties"].values())]
        assert not [t for t in texts if "``" in t], texts  # the UI shows reStructuredText literals as typed


def test_every_deployment_starts_runs_its_form_accepts():
    """A deployment's parameters are what its scheduled and quick runs are validated with at creation."""
    from flows.compare import compare
    from flows.nightly import nightly

    flows_ = {"compare": compare, "nightly": nightly}
    spec = yaml.safe_load((ROOT / "deployments/prefect.yaml").read_text())
    found = 0
    for d in spec["deployments"]:
        func = d["entrypoint"].rsplit(":", 1)[1]
        if func in flows_:
            assert _errors(flows_[func], d["parameters"]["params"]) == [], d["name"]
            found += 1
    assert found == 2
    serve = importlib.util.spec_from_file_location("serve", ROOT / "deployments/serve.py")
    module = importlib.util.module_from_spec(serve)
    serve.loader.exec_module(module)
    for deployment, flow_ in zip(module.deployments(), (nightly, compare), strict=True):
        params = (deployment.parameters or {}).get("params")
        if params is not None:
            assert _errors(flow_, params) == [], deployment.name
