from __future__ import annotations

import csv
import json

import pytest

from tasks.config import TunerSpec
from tasks.store import read_json
from tasks.train import fit as fit_mod
from tasks.train.fit import resolve_lora_targets
from tasks.train.variant import train_variant
from tests.conftest import tiny_model, tiny_pipeline_config


@pytest.mark.parametrize("family,expected", [
    ("llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("qwen3", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("gemma3", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("phi3", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]),
])
def test_lora_targets_resolve_per_architecture(family, expected):
    assert resolve_lora_targets(tiny_model(family), ["attention", "mlp"]) == expected


def test_a_target_that_matches_nothing_fails():
    with pytest.raises(ValueError, match=r"\['q_proj'\] match no Linear module of this phi3 model"):
        resolve_lora_targets(tiny_model("phi3"), ["q_proj", "o_proj"])
    assert resolve_lora_targets(tiny_model("llama"), ["attention"]) == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_linear_variant_trains_and_writes_everything(tiny_base_dir, tmp_path):
    config = tiny_pipeline_config(tiny_base_dir)
    out = tmp_path / "linear"
    run = train_variant(config, "linear", out, cache_dir=tmp_path / "cache")
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "gates.safetensors",
                 "alpha_trajectory.json", "alpha_trajectory.csv", "loss_curves.json", "train_loss.csv",
                 "val_loss.csv", "run.json"):
        assert (out / name).is_file(), name
    assert run["steps"] == 3 and run["schedule"] == {"kind": "linear", "start": 0.0}
    assert run["final_blend_alpha"] == 1.0 and run["seed"] == config.train.seed
    assert set(run["versions"]) >= {"torch", "transformers", "peft", "trl"}
    traj = list(csv.DictReader(open(out / "alpha_trajectory.csv")))
    assert [float(r["blend_alpha"]) for r in traj] == [0.0, 0.5, 1.0]
    curves = read_json(out / "loss_curves.json")
    assert len(curves["train"]) == 3 and [v["step"] for v in curves["validation"]] == [2, 3]
    assert all("lm_loss" in r and "pet" in r for r in curves["train"])  # PET on (default phases)
    adapter = json.loads((out / "adapter/adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == sorted(run["lora_targets"])
    stamp = (out / "run.json").stat().st_mtime_ns
    assert train_variant(config, "linear", out, cache_dir=tmp_path / "cache") == run  # finished: reused
    assert (out / "run.json").stat().st_mtime_ns == stamp
    decided = config.model_copy(update={"decision": config.decision.model_copy(update={"bootstrap": 500})})
    assert train_variant(decided, "linear", out, cache_dir=tmp_path / "cache") == run  # not a training change
    longer = config.model_copy(update={"train": config.train.model_copy(update={"max_steps": 4})})
    assert train_variant(longer, "linear", out, cache_dir=tmp_path / "cache")["steps"] == 4  # trained again


def test_sigmoid_bayes_tunes_then_trains_and_warm_starts(tiny_base_dir, tmp_path):
    history = tmp_path / "shared" / "tuner.json"
    config = tiny_pipeline_config(tiny_base_dir, tuner=TunerSpec(n_trials=2, proxy_steps=2, n_initial_points=1,
                                                                 history_path=history))
    run = train_variant(config, "sigmoid-bayes", tmp_path / "night1" / "sb", cache_dir=tmp_path / "cache")
    trials = read_json(history)["trials"]
    assert len(trials) == 2 and all(t["meta"]["proxy_steps"] == 2 for t in trials)
    assert {t["meta"]["fingerprint"] for t in trials} == {run["tuner"]["fingerprint"]}
    best = min(trials, key=lambda t: t["value"])
    assert run["schedule"] == {"kind": "sigmoid", "k": best["k"], "midpoint": best["midpoint"], "base": best["base"]}
    assert run["tuner"]["trials_this_run"] == 2
    compute = run["compute"]  # what this training cost, tuner proxies included
    assert compute["tuner_trials"] == 2 and compute["tuner_proxy_steps"] == 4
    assert compute["total_steps"] == config.train.max_steps + 4 and compute["experiment_tuner_trials"] == 2
    assert compute["total_seconds"] >= compute["train_seconds"] > 0
    same = train_variant(config, "sigmoid-bayes", tmp_path / "night2" / "sb", cache_dir=tmp_path / "cache")
    assert same["tuner"]["trials_total"] == 2  # the same inputs (same key): its trials are done, none added
    reseeded = config.model_copy(update={"train": config.train.model_copy(update={"seed": 99})})
    run2 = train_variant(reseeded, "sigmoid-bayes", tmp_path / "night3" / "sb", cache_dir=tmp_path / "cache")
    # another seed is a replicate of the same experiment (same fingerprint): its trials count, none are re-measured
    assert run2["tuner"]["trials_total"] == 2 and run2["tuner"]["fingerprint"] == run["tuner"]["fingerprint"]
    assert run2["schedule"] == run["schedule"] and run2["key"] != run["key"]
    assert run2["compute"]["tuner_proxy_steps"] == 0 and run2["compute"]["experiment_tuner_proxy_steps"] == 4


def test_a_replicate_has_the_key_of_a_one_seed_run_so_adding_seeds_retrains_nothing(tiny_base_dir):
    from tasks.store import Ref
    from tasks.train.variant import replicate_config, train_key

    base, data = Ref(kind="base", key="b" * 64, path="/b", sha256="1" * 64), Ref(kind="data", key="d" * 64,
                                                                                  path="/d", sha256="2" * 64)
    config = tiny_pipeline_config(tiny_base_dir)
    one = config.model_copy(update={"train": config.train.model_copy(update={"seed": 7})})
    listed = config.model_copy(update={"train": config.train.model_copy(update={"seeds": [5, 6, 7]})})
    grown = config.model_copy(update={"train": config.train.model_copy(update={"seeds": [5, 6, 7, 8]})})
    for variant in ("linear", "sigmoid-bayes"):
        key = train_key(one, variant, base, data)[0]
        assert train_key(replicate_config(listed, 7), variant, base, data)[0] == key
        assert train_key(replicate_config(grown, 7), variant, base, data)[0] == key
        assert train_key(replicate_config(grown, 8), variant, base, data)[0] != key
    # a larger tuner budget is another sigmoid training (its schedule may differ), not another linear one
    assert train_key(replicate_config(one, 7, 5), "linear", base, data)[0] == train_key(one, "linear", base, data)[0]
    assert train_key(replicate_config(one, 7, 5), "sigmoid-bayes", base, data)[0] != \
        train_key(one, "sigmoid-bayes", base, data)[0]


def test_interrupted_tuning_resumes_without_redoing_trials(tiny_base_dir, tmp_path, monkeypatch):
    config = tiny_pipeline_config(tiny_base_dir, tuner=TunerSpec(n_trials=3, proxy_steps=2, n_initial_points=1))
    out = tmp_path / "sb"
    real_fit, calls = fit_mod.fit, []

    def crashing_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(fit_mod, "fit", crashing_fit)
    with pytest.raises(KeyboardInterrupt):
        train_variant(config, "sigmoid-bayes", out, cache_dir=tmp_path / "cache")
    assert not out.exists() and len(read_json(tmp_path / "tuner_history.json")["trials"]) == 1
    calls.clear()
    monkeypatch.setattr(fit_mod, "fit", lambda *a, **k: (calls.append(1), real_fit(*a, **k))[1])
    run = train_variant(config, "sigmoid-bayes", out, cache_dir=tmp_path / "cache")
    assert len(calls) == 3  # two remaining proxies + the full run
    assert run["tuner"]["trials_total"] == 3


def test_unknown_variant_and_gpu_only_config(tiny_base_dir, tmp_path):
    config = tiny_pipeline_config(tiny_base_dir)
    with pytest.raises(ValueError, match="Unknown variant"):
        train_variant(config, "cosine", tmp_path / "x", cache_dir=tmp_path)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            gpu_only = config.model_copy(update={"requires_gpu": True})
            train_variant(gpu_only, "linear", tmp_path / "y", cache_dir=tmp_path)
