"""The per-item details dataset (tasks/publish/details.py): one Parquet split per model × format × suite through
``datasets``, the decision record and the suite YAMLs beside them, a card whose configs let ``load_dataset`` find
every split; published idempotently to the local Hub stand-in with the real huggingface_hub client; read back, it
reproduces the decision's per-suite means."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tasks.publish.details import publish_details, sources, split_name, write_details
from tasks.store import sha256_file
from tests.hub_standin import HubStandIn

TOKEN = "hf_standin_details_TOKEN"
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a pinned Hub revision, as a summary records it


def fake_result_set(folder: Path, outcomes: dict[str, list]) -> Path:
    """A result folder as the eval stage writes it: <suite>.jsonl (per-item records) and <suite>.summary.json.
    ``outcomes``: suite -> per item True/False (scored), None (skipped). MMLU and GSM8K records differ in fields
    and in the type of ``gold`` (int / str), as the real ones do."""
    from tasks.bench.suites import suite_path

    folder.mkdir(parents=True, exist_ok=True)
    for suite, items in outcomes.items():
        rows = []
        for i, ok in enumerate(items):
            if ok is None:
                rows.append({"index": i, "skipped": True, "reason": "prompt longer than n_ctx"})
            elif suite == "gsm8k":
                rows.append({"index": i, "final_answer": f"The answer is {i if ok else -1}.", "gold": str(i),
                             "extracted_strict": None, "extracted_flexible": str(i if ok else -1),
                             "exact_match_strict": False, "exact_match_flexible": ok})
            else:
                rows.append({"index": i, "prompt_sha256": f"{i:064x}", "loglikelihoods": [-1.0, -2.0, -3.0, -4.0],
                             "pred": 0 if ok else 1, "pred_norm": 0, "gold": 0, "acc": ok, "acc_norm": True})
        (folder / f"{suite}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        summary = {"inputs": {"suite": suite, "suite_yaml_sha256": sha256_file(suite_path(suite)),
                              "data": {"kind": "hub", "hub_id": "x/y", "config": None, "split": "test",
                                       "commit": COMMIT}}}
        (folder / f"{suite}.summary.json").write_text(json.dumps(summary))
    return folder


def decision_for(root: Path, arms: dict[str, Path], upload: bool = True, **extra) -> Path:
    """A decision record whose suite table is computed by the decision's own code (tasks.decide.decision.compare)
    from the two result folders."""
    from tasks.config import DecisionSpec
    from tasks.decide.decision import compare
    from tasks.decide.scores import load_results

    (a, fa), (b, fb) = arms.items()
    table = compare(load_results(fa), load_results(fb), DecisionSpec(bootstrap=200))["suites"]
    record = {"models": [a, b], "winner": a, "upload": upload, "reason": f"{a} beats {b}.", "suites": table,
              "scope_note": "these two trained models (one training seed per arm)",
              "results": {a: str(fa), b: str(fb)}, "replicates": {a: [a], b: [b]}, **extra}
    path = root / "decision.json"
    path.write_text(json.dumps(record, default=float))
    return path


# item 3 is scored for linear only (sigmoid-bayes skipped it): the decision's means are over the items both scored
OUTCOMES = {"linear": {"mmlu": [True, True, False, True, True], "gsm8k": [True, False, True, True]},
            "sigmoid-bayes": {"mmlu": [True, False, False, None, False], "gsm8k": [False, False, True, True]}}


@pytest.fixture
def decided(tmp_path):
    arms = {label: fake_result_set(tmp_path / "results" / label, outcomes) for label, outcomes in OUTCOMES.items()}
    return decision_for(tmp_path, arms)


def read_back(folder: Path, cache: Path) -> dict[str, list[dict]]:
    """load_dataset on the dataset folder, offline: split -> rows."""
    import datasets

    loaded = datasets.load_dataset(str(folder), cache_dir=str(cache))
    return {name: list(split) for name, split in loaded.items()}


def decision_means(splits: dict[str, list[dict]], decision: dict) -> dict[str, tuple[float, float]]:
    """Each suite's (mean A, mean B) from the published records, as the dataset card says: ``score`` over the items
    both models scored. The scores are re-derived from ``record`` by the project's own scoring and must equal
    ``score``."""
    from tasks.decide.scores import item_scores

    out = {}
    a, b = decision["models"]
    for row in decision["suites"]:
        sides = []
        for label in (a, b):
            rows = splits[split_name(label, "bf16", row["suite"])]
            scores = {r["index"]: r["score"] for r in rows if r["score"] is not None}
            rescored, _, _ = item_scores([json.loads(r["record"]) for r in rows], row["suite"], row["metric"])
            assert rescored == scores
            sides.append(scores)
        common = sorted(set(sides[0]) & set(sides[1]))
        out[row["suite"]] = tuple(sum(s[i] for i in common) / len(common) for s in sides)
    return out


def test_written_dataset_reproduces_the_decision_and_holds_its_record_and_suites(decided, tmp_path):
    decision = json.loads(decided.read_text())
    folder = tmp_path / "ds"
    written = write_details(decided, folder, "alphagate/demo-details")
    assert sorted(written["files"]) == ["README.md", "data/linear__bf16__gsm8k.parquet",
                                        "data/linear__bf16__mmlu.parquet", "data/sigmoid_bayes__bf16__gsm8k.parquet",
                                        "data/sigmoid_bayes__bf16__mmlu.parquet", "decision.json",
                                        "suites/gsm8k.yaml", "suites/mmlu.yaml"]
    assert (folder / "decision.json").read_bytes() == decided.read_bytes()
    from tasks.bench.suites import suite_path

    assert (folder / "suites" / "mmlu.yaml").read_bytes() == suite_path("mmlu").read_bytes()
    splits = read_back(folder, tmp_path / "cache")
    assert set(splits) == {"linear__bf16__gsm8k", "linear__bf16__mmlu", "sigmoid_bayes__bf16__gsm8k",
                           "sigmoid_bayes__bf16__mmlu"}
    means = decision_means(splits, decision)
    for row in decision["suites"]:
        assert means[row["suite"]] == pytest.approx((row["a"], row["b"]), abs=1e-12)
    # the counterexample the pairing rule guards against: linear's plain mean over its own scored MMLU items (4/5)
    # is not the decision's (3/4, over the four items both scored)
    plain = [r["score"] for r in splits["linear__bf16__mmlu"] if r["score"] is not None]
    mmlu = next(r for r in decision["suites"] if r["suite"] == "mmlu")
    assert sum(plain) / len(plain) == 0.8 and mmlu["a"] == 0.75
    # the whole per-item record survives, its own types included (gold: str for GSM8K, int for MMLU)
    first = json.loads(splits["linear__bf16__gsm8k"][0]["record"])
    assert first["gold"] == "0" and json.loads(splits["linear__bf16__mmlu"][0]["record"])["gold"] == 0
    skipped = splits["sigmoid_bayes__bf16__mmlu"][3]
    assert skipped["skipped"] and skipped["score"] is None
    card = (folder / "README.md").read_text()
    assert "which speaks for these two trained models" in card and 'load_dataset("alphagate/demo-details")' in card


def test_same_inputs_same_bytes(decided, tmp_path):
    one = write_details(decided, tmp_path / "one", "o/n-details")
    write_details(decided, tmp_path / "two", "o/n-details")
    for name in one["files"]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_split_names_are_ones_datasets_accepts_and_never_collide(tmp_path):
    from datasets.splits import NamedSplit

    name = split_name("sigmoid-bayes+dpo", "q4_k_m", "elyza_tasks_100")
    assert name == "sigmoid_bayes_dpo__q4_k_m__elyza_tasks_100" and re.fullmatch(r"\w+(\.\w+)*", name)
    NamedSplit(name)  # datasets' own check
    # counterexample: two labels that differ only in a character a split cannot hold
    arms = {"a-b": fake_result_set(tmp_path / "x", {"mmlu": [True]}),
            "a_b": fake_result_set(tmp_path / "y", {"mmlu": [False]})}
    decision = json.loads(decision_for(tmp_path, arms).read_text())
    with pytest.raises(ValueError, match="would share the dataset split 'a_b__bf16__mmlu'"):
        sources(decision)


def test_only_result_sets_the_decision_used_or_a_card_shows_become_splits(decided, tmp_path):
    """Counterexample to "publish every result set handed over": the losing arm's quantization and a format the
    gates held back (not in ``published``) are left out, though their folders are handed over."""
    decision = json.loads(decided.read_text())
    q8 = fake_result_set(tmp_path / "q8", {"mmlu": [True, True, False, True, True]})
    handed = {"linear/q8_0": q8, "sigmoid-bayes/q8_0": q8, "linear/q4_k_m": q8}
    published = {"linear/bf16": {"mmlu": "acc"}, "linear/q8_0": {"mmlu": "acc"}}  # q4_k_m held back
    names = {s.split for s in sources(decision, published, handed)}
    assert names == {"linear__bf16__gsm8k", "linear__bf16__mmlu", "sigmoid_bayes__bf16__gsm8k",
                     "sigmoid_bayes__bf16__mmlu", "linear__q8_0__mmlu"}
    # a suite the decision did not compare has no split, though its records lie in the same folder
    fake_result_set(Path(decision["results"]["linear"]), {"hellaswag": [True]})
    assert not any("hellaswag" in s.split for s in sources(decision))


def test_each_seed_replicate_is_its_own_split(decided, tmp_path):
    """With seed replicates the decision records one result folder per replicate, in its replicate labels' order."""
    decision = json.loads(decided.read_text())
    s2 = fake_result_set(tmp_path / "s2", {"mmlu": [False] * 5, "gsm8k": [False] * 4})
    replicated = {**decision, "results": {"linear": [decision["results"]["linear"], str(s2)],
                                          "sigmoid-bayes": [decision["results"]["sigmoid-bayes"]]},
                  "replicates": {"linear": ["linear-s1", "linear-s2"], "sigmoid-bayes": ["sigmoid-bayes-s1"]}}
    by_split = {s.split: s.folder for s in sources(replicated)}
    assert by_split["linear_s2__bf16__mmlu"] == s2 and "sigmoid_bayes_s1__bf16__gsm8k" in by_split
    replicated["replicates"]["linear"] = ["linear-s1"]  # an inconsistent record is refused, not half-published
    with pytest.raises(ValueError, match="lists 2 result folder.* but 1 replicate label"):
        sources(replicated)


def test_a_suite_yaml_changed_since_the_evaluation_is_refused(decided, tmp_path):
    """The published suite YAML must be the one the records were made with (the summary's sha256)."""
    decision = json.loads(decided.read_text())
    summary = Path(decision["results"]["linear"]) / "mmlu.summary.json"
    record = json.loads(summary.read_text())
    record["inputs"]["suite_yaml_sha256"] = "f" * 64
    summary.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"mmlu.yaml changed after linear/bf16 was evaluated on it"):
        write_details(decided, tmp_path / "ds", "o/n-details")


def test_a_missing_record_file_names_what_to_do(decided, tmp_path):
    decision = json.loads(decided.read_text())
    (Path(decision["results"]["sigmoid-bayes"]) / "gsm8k.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"sigmoid-bayes/bf16: gsm8k.jsonl .* Rerun"):
        write_details(decided, tmp_path / "ds", "o/n-details")


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS, not Xet
    with HubStandIn(TOKEN) as server:
        yield server


def test_published_to_the_hub_stand_in_idempotently_and_read_back_with_datasets(decided, tmp_path, hub):
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    folder = tmp_path / "ds"
    write_details(decided, folder, "alphagate-org/demo-details")
    publish_details(api, folder, "alphagate-org/demo-details", private=False, message="details")
    stored = hub.state.repos["datasets/alphagate-org/demo-details"]
    assert {"decision.json", "README.md", "suites/mmlu.yaml", "data/linear__bf16__mmlu.parquet"} <= set(stored)
    assert "alphagate-org/demo-details" not in hub.state.repos  # a dataset repo, not a model repo
    commits = len(hub.state.commits["datasets/alphagate-org/demo-details"])
    # the same evidence, written again from scratch: no new commit
    write_details(decided, tmp_path / "again", "alphagate-org/demo-details")
    publish_details(api, tmp_path / "again", "alphagate-org/demo-details", private=False, message="details")
    assert len(hub.state.commits["datasets/alphagate-org/demo-details"]) == commits
    local = snapshot_download("alphagate-org/demo-details", repo_type="dataset", endpoint=hub.endpoint, token=TOKEN,
                              cache_dir=tmp_path / "hf")
    decision = json.loads((Path(local) / "decision.json").read_text())
    means = decision_means(read_back(Path(local), tmp_path / "cache"), decision)
    assert means == {r["suite"]: pytest.approx((r["a"], r["b"])) for r in decision["suites"]}
    assert hub.state.dataset_cards and "configs" in hub.state.dataset_cards[-1]


def test_a_decision_that_uploads_nothing_still_stages_its_details_in_the_flow(decided, tmp_path):
    """flows/stages.py:details_task: the evidence of a no-upload decision, staged locally under the upload stage's
    store (nothing is sent); found by key the second time; a decision that compared no suite stages nothing."""
    import shutil

    from flows.stages import details_task
    from tasks.config import load_config
    from tasks.store import seal, staging_dir, verified

    def decision_ref(record: Path, where: Path):
        with staging_dir(where) as tmp:
            shutil.copy(record, tmp / "decision.json")
            seal(tmp, "decide", "k", {})
        return verified(where)

    record = json.loads(decided.read_text())
    decided.write_text(json.dumps({**record, "upload": False}))
    config = tmp_path / "c.yaml"
    config.write_text("name: smoke\nbase_model: {name: tiny, local_dir: /nonexistent}\n")
    spec = load_config(config)
    ref = details_task.fn(spec.upload, spec.name, decision_ref(decided, tmp_path / "decision"), str(tmp_path / "root"))
    folder = Path(ref.path) / "alphagate__smoke-details"
    assert (folder / "data" / "linear__bf16__mmlu.parquet").is_file() and (folder / "decision.json").is_file()
    root = str(tmp_path / "root")
    assert details_task.fn(spec.upload, spec.name, decision_ref(decided, tmp_path / "decision"), root) == ref
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**record, "upload": False, "suites": []}))
    assert details_task.fn(spec.upload, spec.name, decision_ref(empty, tmp_path / "d2"), str(tmp_path / "root")) is None


@pytest.mark.slow
def test_a_finished_runs_details_reproduce_its_decision_and_its_dry_run_upload_stages_the_same(smoke_store, tmp_path,
                                                                                              tiny_base_dir,
                                                                                              monkeypatch):
    """The session's smoke run (`alphagate run`, as `make demo` runs, on its tie decision): its details dataset is
    staged beside it (<out>/details), and load_dataset on it reproduces the decision's per-suite means. A dry-run
    upload of that run's winner (its decision turned into an upload) stages the same splits, byte for byte."""
    from tasks.config import BaseModelSpec
    from tasks.publish.upload import upload
    from tests.conftest import tiny_pipeline_config

    decision = json.loads((smoke_store / "decision" / "decision.json").read_text())
    assert not decision["upload"] and decision["suites"]
    (folder,) = (smoke_store / "details").glob("*-details")
    means = decision_means(read_back(folder, tmp_path / "cache"), decision)
    assert means == {r["suite"]: pytest.approx((r["a"], r["b"]), abs=1e-12) for r in decision["suites"]}
    monkeypatch.delenv("HF_TOKEN", raising=False)
    as_upload = tmp_path / "decision.json"
    as_upload.write_text(json.dumps({**decision, "upload": True, "winner": "linear"}))
    config = tiny_pipeline_config(tiny_base_dir, name="smoke", base_model=BaseModelSpec(
        name="tiny", local_dir=tiny_base_dir, hub_repo_id="HuggingFaceTB/SmolLM2-135M-Instruct"))
    config = config.model_copy(update={"upload": config.upload.model_copy(update={"formats": ["bf16"]})})
    staged = Path(upload(as_upload, tmp_path / "stage", config)["details"]["folder"])
    assert staged.name == folder.name
    for parquet in sorted((folder / "data").iterdir()):
        assert (staged / "data" / parquet.name).read_bytes() == parquet.read_bytes(), parquet.name
