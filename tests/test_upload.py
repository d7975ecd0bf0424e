from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from tasks.config import UploadSpec
from tasks.export.gguf import export_model
from tasks.publish.upload import UploadRefusedError, upload
from tasks.train.variant import train_variant
from tests.conftest import tiny_pipeline_config
from tests.hub_standin import HubStandIn
from tests.test_details import COMMIT

TOKEN = "hf_standin_SECRET_do_not_leak_123"


@pytest.fixture(scope="module")
def exported(tiny_base_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("up")
    run = root / "linear"
    train_variant(tiny_pipeline_config(tiny_base_dir), "linear", run, cache_dir=root / "cache")
    export_model(run, root / "export-linear")
    return root


HUB_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the cards name as base_model (base_model.hub_repo_id)


@pytest.fixture(scope="module")
def config(tiny_base_dir):
    from tasks.config import BaseModelSpec

    return tiny_pipeline_config(tiny_base_dir, base_model=BaseModelSpec(name="tiny", local_dir=tiny_base_dir,
                                                                        hub_repo_id=HUB_BASE))


def _with(config, spec):
    return config.model_copy(update={"upload": spec})


def _decision(root: Path, upload_ok=True, degradation=None) -> Path:
    """The arms' MMLU results (per-item records and summaries, the items read from the Hub at a pinned commit): the
    decision's table says what they score (linear 0.5, sigmoid-bayes 0.4)."""
    from tests.test_details import fake_result_set

    results = {"linear": fake_result_set(root / "results-linear", {"mmlu": [True, False] * 5}),
               "sigmoid-bayes": fake_result_set(root / "results-sigmoid-bayes", {"mmlu": [True, False, False] * 3
                                                                                 + [True]})}
    record = {"models": ["linear", "sigmoid-bayes"], "winner": "linear", "upload": upload_ok,
              "reason": "linear beats sigmoid-bayes by 0.1 composite points (95% CI [0.05, 0.15]), significant.",
              "suites": [{"suite": "mmlu", "metric": "acc", "a": 0.5, "b": 0.4, "p_holm": 0.01}],
              "results": {k: str(v) for k, v in results.items()},
              "exports": {"linear": str(root / "export-linear")}, "runs": {"linear": str(root / "linear")},
              "degradation": str(degradation) if degradation else None}
    path = root / f"decision-{upload_ok}-{bool(degradation)}.json"
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS, not Xet
    with HubStandIn(TOKEN) as server:
        yield server


def _all_text(folder: Path) -> str:
    return "".join(p.read_text(errors="ignore") for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_dry_run_writes_exactly_what_would_be_uploaded(exported, config, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    result = upload(_decision(exported), tmp_path / "stage", config)
    assert result["dry_run"] and result["repos"] == ["alphagate/tiny-bf16", "alphagate/tiny-q8_0",
                                                     "alphagate/tiny-q4_k_m"]
    bf16 = tmp_path / "stage" / "alphagate__tiny-bf16"
    assert sorted(p.name for p in bf16.iterdir()) == ["README.md", "config.json", "generation_config.json",
                                                      "model.safetensors", "tiny-linear-BF16.gguf",
                                                      "tokenizer.json", "tokenizer_config.json"] or \
        {"README.md", "model.safetensors", "tiny-linear-BF16.gguf"} <= {p.name for p in bf16.iterdir()}
    card = (bf16 / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["license"] == "apache-2.0" and "model-index" in meta and "alpha-gate" in meta["tags"]
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.5
    # the evidence beside it: the details dataset, and the card's result pointing at its split, at the items' commit
    details = tmp_path / "stage" / "alphagate__tiny-details"
    assert {"README.md", "decision.json", "suites/mmlu.yaml", "data/linear__bf16__mmlu.parquet",
            "data/sigmoid_bayes__bf16__mmlu.parquet"} == {str(p.relative_to(details)) for p in details.rglob("*")
                                                         if p.is_file()}
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["revision"] == COMMIT and result["dataset"]["type"] == "cais/mmlu"
    assert result["source"]["url"] == "https://huggingface.co/datasets/alphagate/tiny-details/viewer/default/" \
                                      "linear__bf16__mmlu"
    assert "[details dataset](https://huggingface.co/datasets/alphagate/tiny-details)" in card
    plan = json.loads((tmp_path / "stage" / "plan.json").read_text())
    assert plan["details"]["repo_type"] == "dataset" and [s["mean"] for s in plan["details"]["splits"]] == [0.5, 0.4]
    assert "Llama(model_path=" in card and "linear, blend_alpha from 0.0 to 1" in card
    assert "pip install alpha-gate" not in card and "llama-server --hf-repo alphagate/tiny-bf16" in card
    from tasks.publish.cards import card_problems

    for folder, base, relation in (("alphagate__tiny-bf16", HUB_BASE, "finetune"),
                                   ("alphagate__tiny-q8_0", "alphagate/tiny-bf16", "quantized"),
                                   ("alphagate__tiny-q4_k_m", "alphagate/tiny-bf16", "quantized")):
        text = (tmp_path / "stage" / folder / "README.md").read_text()
        assert card_problems(text) == []
        assert (yaml.safe_load(text.split("---\n")[1])["base_model"], yaml.safe_load(
            text.split("---\n")[1])["base_model_relation"]) == (base, relation)
    assert "alphagate upload --decision" in (tmp_path / "stage" / "HOW_TO_PUBLISH.txt").read_text()


def test_upload_round_trip_idempotence_and_no_token_leak(exported, config, tmp_path, hub, monkeypatch, caplog, capsys):
    from huggingface_hub import hf_hub_download

    from tasks.store import sha256_file

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    spec = UploadSpec(enabled=True, org="alphagate-org", endpoint=hub.endpoint)
    decision = _decision(exported)
    result = upload(decision, tmp_path / "stage", _with(config, spec))
    assert not result["dry_run"] and len(hub.state.repos) == 4  # three models and the details dataset
    assert result["details"]["repo_id"] == "alphagate-org/tiny-details"
    dataset = hub.state.repos["datasets/alphagate-org/tiny-details"]
    assert {"decision.json", "suites/mmlu.yaml", "data/linear__bf16__mmlu.parquet", "README.md"} <= set(dataset)
    # the dataset went up first: the cards that link to it never point at nothing
    commits_in_order = [r[1] for r in hub.state.requests if r[0] == "POST" and "/commit/" in r[1]]
    assert commits_in_order[0].startswith("/api/datasets/alphagate-org/tiny-details/")
    commits = {r: len(c) for r, c in hub.state.commits.items()}
    for repo in [r for r in hub.state.repos if not r.startswith("datasets/")]:
        files = hub.state.repos[repo]
        gguf = next(p for p in files if p.endswith(".gguf"))
        local = hf_hub_download(repo, gguf, endpoint=hub.endpoint, token=TOKEN, cache_dir=tmp_path / "dl")
        manifest = json.loads((exported / "export-linear" / "manifest.json").read_text())
        expected = next(f["sha256"] for f in manifest["files"] if f["path"] == gguf)
        assert sha256_file(local) == expected  # arrived intact
        assert "README.md" in files
    assert "model.safetensors" in hub.state.repos["alphagate-org/tiny-bf16"]
    assert len(hub.state.cards) >= 3 and all(c["license"] == "apache-2.0" for c in hub.state.cards)
    upload(decision, tmp_path / "stage", _with(config, spec))  # unchanged content: no new commit
    assert {r: len(c) for r, c in hub.state.commits.items()} == commits
    outputs = _all_text(tmp_path) + caplog.text + "".join(capsys.readouterr())
    assert TOKEN not in outputs and TOKEN not in json.dumps(hub.state.cards)


def test_checks_happen_before_the_first_byte(exported, config, tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    spec = UploadSpec(enabled=True, org="alphagate-org", endpoint=hub.endpoint)
    with pytest.raises(Exception, match="Invalid user token|401"):
        upload(_decision(exported), tmp_path / "s", _with(config, spec))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(UploadRefusedError, match="cannot write to 'someone-else'"):
        upload(_decision(exported), tmp_path / "s", _with(config, spec.model_copy(update={"org": "someone-else"})))
    assert not [r for r in hub.state.requests if r[0] in ("POST", "PUT") and "whoami" not in r[1]]


def test_preflight(hub, monkeypatch):
    from tasks.publish.upload import preflight

    spec = UploadSpec(enabled=True, org="alphagate-org", endpoint=hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert preflight(spec) == "tester" and preflight(spec.model_copy(update={"enabled": False})) is None
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UploadRefusedError, match="no Hub token"):
        preflight(spec)


def test_refusals(exported, config, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(UploadRefusedError, match="decision says not to upload"):
        upload(_decision(exported, upload_ok=False), tmp_path / "a", config)
    with pytest.raises(UploadRefusedError, match="needs a Hub token"):
        upload(_decision(exported), tmp_path / "b", config, dry_run=False)
    gates = tmp_path / "deg.json"
    gates.write_text(json.dumps({"vs_base": {}, "gates": {"linear/q4_k_m": {"upload": False, "reasons": ["lost 9%"]}}}))
    result = upload(_decision(exported, degradation=gates), tmp_path / "c", config)
    assert "alphagate/tiny-q4_k_m" not in result["repos"] and len(result["repos"]) == 2
    # a local name is not a Hub id: the card would be refused by the Hub, so nothing is staged
    from tasks.config import BaseModelSpec

    local = config.model_copy(update={"base_model": BaseModelSpec(name="tiny", local_dir=config.base_model.local_dir)})
    with pytest.raises(UploadRefusedError, match=r"'tiny' is a local name.*base_model\.hub_repo_id"):
        upload(_decision(exported), tmp_path / "d", local)
    # the BF16 repo held back: a quantization cannot point at it, so it names the upstream model as a finetune
    gates.write_text(json.dumps({"vs_base": {}, "gates": {"linear/bf16": {"upload": False, "reasons": ["lost"]}}}))
    upload(_decision(exported, degradation=gates), tmp_path / "e", config)
    meta = yaml.safe_load((tmp_path / "e" / "alphagate__tiny-q8_0" / "README.md").read_text().split("---\n")[1])
    assert (meta["base_model"], meta["base_model_relation"]) == (HUB_BASE, "finetune")


def test_a_changed_file_is_refused_before_upload(exported, config, tmp_path, monkeypatch):
    import shutil

    monkeypatch.delenv("HF_TOKEN", raising=False)
    copy = tmp_path / "root"
    shutil.copytree(exported / "export-linear", copy / "export-linear")
    shutil.copytree(exported / "linear", copy / "linear")
    gguf = copy / "export-linear" / "tiny-linear-Q8_0.gguf"
    gguf.write_bytes(gguf.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(UploadRefusedError, match="does not match the export manifest"):
        upload(_decision(copy), tmp_path / "stage", config)


def test_the_current_config_names_the_repos_not_the_one_recorded_at_training(exported, config, tmp_path,
                                                                              monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    edited = config.model_copy(update={"upload": config.upload.model_copy(update={"org": "new-org",
                                                                                  "formats": ["q8_0"]})})
    result = upload(_decision(exported), tmp_path / "stage", edited)
    assert result["repos"] == ["new-org/tiny-q8_0"]  # run.json still says org alphagate and three formats


def test_the_flow_upload_stage_is_keyed_by_the_current_upload_section(exported, tiny_base_dir, tmp_path,
                                                                      monkeypatch):
    import shutil

    from flows.stages import upload_task
    from tasks.config import load_config
    from tasks.store import folder_ref, seal, staging_dir, verified

    monkeypatch.delenv("HF_TOKEN", raising=False)
    exports, runs = {"linear": folder_ref(exported / "export-linear")}, {"linear": folder_ref(exported / "linear")}
    with staging_dir(tmp_path / "decision") as tmp:
        shutil.copy(_decision(exported), tmp / "decision.json")
        seal(tmp, "decide", "k", {})
    decision = verified(tmp_path / "decision")
    config = tmp_path / "c.yaml"
    config.write_text(f"name: tiny\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}, hub_repo_id: {HUB_BASE}}}\n")
    first = upload_task.fn(load_config(config), decision, exports, runs, str(tmp_path / "root"), True)
    assert first["repos"][0].startswith("alphagate/")
    config.write_text(config.read_text() + "upload: {org: edited-org}\n")  # edited after training
    second = upload_task.fn(load_config(config), decision, exports, runs, str(tmp_path / "root"), True)
    assert second["ref"].key != first["ref"].key and second["repos"][0].startswith("edited-org/")
    plan = json.loads((Path(second["ref"].path) / "plan.json").read_text())
    assert {r["repo_id"] for r in plan["repos"]} == {"edited-org/tiny-bf16", "edited-org/tiny-q8_0",
                                                     "edited-org/tiny-q4_k_m"}


def test_a_published_quantization_brings_its_records_and_the_losing_arm_does_not(exported, config, tmp_path,
                                                                               monkeypatch):
    """The Q8_0 card's score comes from the degradation analysis: its per-item records (handed over by the flow)
    become a split its card links to; the losing arm's Q8_0 records, handed over too, do not."""
    from tests.test_details import fake_result_set

    monkeypatch.delenv("HF_TOKEN", raising=False)
    gates = tmp_path / "deg.json"
    gates.write_text(json.dumps({"gates": {}, "vs_base": {"linear/q8_0": {"suites": [
        {"suite": "mmlu", "metric": "acc", "b": 0.6}]}}}))
    q8 = fake_result_set(tmp_path / "q8", {"mmlu": [True, True, False, True, False] * 2})
    result = upload(_decision(exported, degradation=gates), tmp_path / "stage", config,
                    results={"linear/q8_0": q8, "sigmoid-bayes/q8_0": q8})
    folder = Path(result["details"]["folder"])
    assert sorted(p.name for p in (folder / "data").iterdir()) == [
        "linear__bf16__mmlu.parquet", "linear__q8_0__mmlu.parquet", "sigmoid_bayes__bf16__mmlu.parquet"]
    meta = yaml.safe_load((tmp_path / "stage" / "alphagate__tiny-q8_0" / "README.md").read_text().split("---\n")[1])
    measured = meta["model-index"][0]["results"][0]
    assert measured["metrics"][0]["value"] == 0.6 and measured["source"]["url"].endswith("/linear__q8_0__mmlu")
    q4 = yaml.safe_load((tmp_path / "stage" / "alphagate__tiny-q4_k_m" / "README.md").read_text().split("---\n")[1])
    assert "model-index" not in q4  # nothing measured on Q4_K_M here: nothing claimed
