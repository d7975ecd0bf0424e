from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alpha_gate.schedules import PHI_MINUS_2
from flows.cli import main


def test_schedule_table_and_json(capsys):
    assert main(["schedule", "sigmoid", "--k", "8", "--midpoint", "0.4", "--points", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "progress\tblend_alpha" and len(lines) == 7
    assert lines[2] == f"0.0000\t{PHI_MINUS_2:.6f}" and lines[-1] == "1.0000\t1.000000"
    assert main(["schedule", "linear", "--start", "0.2", "--points", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["blend_alpha"] for p in data["points"]] == pytest.approx([0.2, 0.6, 1.0])


def test_bad_schedule_is_a_clear_error(capsys):
    assert main(["schedule", "sigmoid", "--k", "-1"]) == 2
    assert "k (steepness) must be a finite number > 0" in capsys.readouterr().err


def test_tune_ask_tell_show(tmp_path, capsys):
    history = str(tmp_path / "t.json")
    common = ["--history", history, "--k-bounds", "1", "20", "--seed", "3"]
    assert main(["tune", "ask", *common]) == 0
    proposal = json.loads(capsys.readouterr().out)
    assert proposal["kind"] == "sigmoid" and 1 <= proposal["k"] <= 20
    assert main(["tune", "tell", *common, "--k", str(proposal["k"]), "--midpoint", str(proposal["midpoint"]),
                 "--value", "0.75"]) == 0
    assert "recorded trial 1" in capsys.readouterr().out
    assert main(["tune", "show", *common]) == 0
    out = capsys.readouterr().out
    assert "value=0.75" in out and "best:" in out


def test_console_script_help_is_fast_and_works():
    out = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, check=True)
    assert "schedule" in out.stdout and "tune" in out.stdout


def test_train_and_export_from_the_cli(tiny_base_dir, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"name: tiny\nbase_model: {{name: tiny, local_dir: {tiny_base_dir}}}\n"
                      "train: {max_steps: 2, batch_size: 2, eval_every: 2, max_length: 96}\n")
    assert main(["train", "--config", str(config), "--variant", "linear", "--out", str(tmp_path / "run"),
                 "--cache", str(tmp_path / "cache")]) == 0
    assert "linear: validation loss" in capsys.readouterr().out
    assert main(["export", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "gguf"),
                 "--formats", "bf16,q8_0"]) == 0
    out = capsys.readouterr().out
    assert "tiny-linear-BF16.gguf" in out and "tiny-linear-Q8_0.gguf" in out and "manifest:" in out


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--variant", "linear", "--out", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "neither a training run" in capsys.readouterr().err


def test_decide_from_the_cli(tmp_path, capsys):
    for label, correct in (("linear", [1, 0] * 10), ("sigmoid-bayes", [1, 0] * 10)):
        folder = tmp_path / label
        folder.mkdir()
        (folder / "mmlu.jsonl").write_text("".join(json.dumps({"index": i, "correct": bool(c)}) + "\n"
                                                   for i, c in enumerate(correct)))
        (folder / "mmlu.summary.json").write_text(json.dumps({"timings": {"generation_tokens_per_s": 0.0}}))
    assert main(["decide", "--results", f"linear={tmp_path / 'linear'}", f"sigmoid-bayes={tmp_path / 'sigmoid-bayes'}",
                 "--out", str(tmp_path / "d")]) == 0
    assert "tie" in capsys.readouterr().out and (tmp_path / "d" / "decision.md").is_file()
    assert main(["decide", "--results", "oops", "x=y", "--out", str(tmp_path)]) == 2
    assert main(["decide", "--results", "a=x,", "b=y", "--out", str(tmp_path)]) == 2
    assert "LABEL=DIR,DIR" in capsys.readouterr().err


def test_decide_with_seed_replicates_from_the_cli(tmp_path, capsys):
    folders = {}
    for label, scores in (("linear", ([1, 0] * 10, [1, 1, 0, 0] * 5)), ("sigmoid-bayes", ([0, 1] * 10, [1, 0] * 10))):
        folders[label] = []
        for i, correct in enumerate(scores):
            folder = tmp_path / f"{label}-{i}"
            folder.mkdir()
            (folder / "mmlu.jsonl").write_text("".join(json.dumps({"index": j, "correct": bool(c)}) + "\n"
                                                       for j, c in enumerate(correct)))
            (folder / "mmlu.summary.json").write_text(json.dumps({"suite": "mmlu"}))
            folders[label].append(str(folder))
    assert main(["decide", "--results", "linear=" + ",".join(folders["linear"]),
                 "sigmoid-bayes=" + ",".join(folders["sigmoid-bayes"]), "--out", str(tmp_path / "d")]) == 0
    record = json.loads((tmp_path / "d" / "decision.json").read_text())
    assert record["seeds"]["a"] == record["seeds"]["b"] == 2 and record["seeds"]["seed_variance_measured"]
    assert record["results"]["linear"] == [str(Path(f).resolve()) for f in folders["linear"]]
    assert "Minimum detectable" in (tmp_path / "d" / "decision.md").read_text()
    capsys.readouterr()
    # a missing replicate folder is named
    assert main(["decide", "--results", f"linear={folders['linear'][0]},{tmp_path / 'nope'}",
                 "sigmoid-bayes=" + ",".join(folders["sigmoid-bayes"]), "--out", str(tmp_path / "d")]) == 2
    assert "nope" in capsys.readouterr().err


def test_plan_prints_the_detectable_difference_before_any_training(tmp_path, capsys):
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert main(["plan", "--config", str(config), "--data", "hub", "--suites", "mmlu", "gsm8k"]) == 0
    out = capsys.readouterr().out
    assert "mmlu 14042" in out and "gsm8k 1319" in out and "prior" in out and "Fewest seeds per arm" in out
    # the one-seed row (two trained models) stands apart from the rows about the schedules
    assert out.index("These two trained models (one seed per arm") < out.index("The schedules (training seeds")
    assert main(["plan", "--config", str(config), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["suites"]["mmlu"] == 6 and len(result["rows"]) >= 4  # the bundled samples
    # measured variances of an earlier decision replace the priors
    decision = tmp_path / "decision.json"
    decision.write_text(json.dumps({"reason": "x", "variance": {
        "per_item_diff_var": {"mmlu": 0.3}, "n_items": {"mmlu": 400}, "between_seed_var": 0.0009,
        "between_seed_df": 4}}))
    assert main(["plan", "--config", str(config), "--suites", "mmlu", "--history", str(decision), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # as measured: no prior pulls them toward 0.15 per item or SD 0.01 per seed (0.0009 would have become 0.00063)
    assert result["item_diff_var"]["mmlu"] == pytest.approx(0.3)
    assert result["seed_var"] == pytest.approx(0.0009) and result["seed_var_source"] == "measured"
    assert result["seed_component"] == pytest.approx(0.0009)  # no residual recorded: nothing to take out
    # with the seed x item residual recorded, its noise over the 400 items is taken out of the seed component
    decision.write_text(json.dumps({"reason": "x", "variance": {
        "per_item_diff_var": {"mmlu": 0.3}, "per_item_interaction_var": {"mmlu": 0.1},
        "per_item_residual_var": {"mmlu": 0.2}, "n_items": {"mmlu": 400}, "between_seed_var": 0.0009,
        "between_seed_df": 4}}))
    assert main(["plan", "--config", str(config), "--suites", "mmlu", "--history", str(decision), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seed_component"] == pytest.approx(0.0009 - 0.2 / 400)
    assert main(["plan", "--config", str(config), "--history", str(tmp_path / "none")]) == 2
    assert "--history" in capsys.readouterr().err


def test_cli_gives_prefects_ephemeral_server_time_to_migrate_a_fresh_database(monkeypatch, capsys):
    # Prefect's 20 s default is about what a first start (new SQLite database) takes on 2 cores: CI timed out on it
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    assert main(["schedule", "linear", "--points", "2"]) == 0
    assert int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 120
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")  # a user's own setting wins
    assert main(["schedule", "linear", "--points", "2"]) == 0
    assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "45"


def test_cli_turns_off_the_temporary_servers_analytics(monkeypatch):
    # offline, the telemetry heartbeat of Prefect's temporary server logged "ERROR ... Failed to send telemetry" (and a
    # "database is locked" traceback) into a successful `make demo`. The server is a child process that builds its
    # settings from the environment: the variable must be the one Prefect 3 reads for server.analytics_enabled.
    from prefect.settings import Settings

    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "unset")  # so that teardown restores the real state
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED")
    assert Settings().server.analytics_enabled is True  # Prefect's default: on
    assert main(["schedule", "linear", "--points", "2"]) == 0
    assert Settings().server.analytics_enabled is False
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")  # a user's own setting wins
    assert main(["schedule", "linear", "--points", "2"]) == 0
    assert Settings().server.analytics_enabled is True


def _subparsers():
    import argparse

    from flows.cli import build_parser

    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def _option(command: str, dest: str):
    return next(a for a in _subparsers()[command]._actions if a.dest == dest)


def test_choices_come_from_their_single_declarations():
    from tasks.bench.suites import suite_names
    from tasks.export.formats import FORMATS
    from tasks.train.variant import VARIANTS

    assert tuple(_option("train", "variant").choices) == VARIANTS
    assert _option("export", "formats").default.split(",") == list(FORMATS)
    assert all(name in _option("eval", "suite").help for name in suite_names())


def test_the_command_line_and_the_flows_share_one_set_up(tmp_path):
    from flows.setup import checked_params

    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    fields = {"config": str(config), "out": str(tmp_path / "run"), "cache": str(tmp_path / "cache")}
    params, validated = checked_params(fields)  # no formats: the config's export.formats
    assert params.formats == list(validated.export.formats) and params.out == fields["out"]
    with pytest.raises(ValueError, match="--formats: unknown format 'q4_k'"):  # the flag, not a pydantic field
        checked_params({**fields, "formats": ["bf16", "q4_k"]})
