from __future__ import annotations

import json
import subprocess
import sys

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
