from __future__ import annotations

import pytest

from tasks.config import ExportSpec
from tasks.export import gguf as export_mod
from tasks.export.gguf import export_model
from tasks.store import read_json, sha256_file
from tasks.train.variant import train_variant
from tests.conftest import tiny_pipeline_config


@pytest.fixture(scope="module")
def tiny_run(tiny_base_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    train_variant(tiny_pipeline_config(tiny_base_dir), "linear", root / "linear", cache_dir=root / "cache")
    return root / "linear"


def test_export_writes_three_verified_ggufs(tiny_run, tmp_path):
    out = tmp_path / "export"
    manifest = export_model(tiny_run, out)
    names = [f["path"] for f in manifest["files"]]
    assert names == ["tiny-linear-BF16.gguf", "tiny-linear-Q8_0.gguf", "tiny-linear-Q4_K_M.gguf"]
    for entry in manifest["files"]:
        path = out / entry["path"]
        assert path.stat().st_size == entry["bytes"] and sha256_file(path) == entry["sha256"]
        v = entry["verification"]
        assert v["ok"] and v["architecture"] == "llama" and v["chat_template"] and v["tokenizer"] == "gpt2"
        assert v["parity"]["tokens"] > 20
    bf16 = manifest["files"][0]["verification"]["parity"]
    assert bf16["mean_abs_logprob_diff"] < manifest["parity_tolerance"]
    sizes = [f["bytes"] for f in manifest["files"]]
    assert sizes[0] > sizes[1] > sizes[2]  # really quantized
    assert (out / "hf-bf16" / "model.safetensors").is_file() and read_json(out / "manifest.json") == manifest
    assert export_model(tiny_run, out) == manifest  # finished: nothing redone


def test_merged_model_is_stock_and_folded(tiny_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from alpha_gate.so8 import get_so8_gates

    export_mod.merge_and_fold(tiny_run, tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32)
    assert get_so8_gates(model) == [] and not any("lora" in k or "so8" in k for k in model.state_dict())
    assert next(model.parameters()).dtype == torch.float32  # loaded as asked; saved as bf16:
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").dtype == torch.bfloat16


def test_a_failed_quantization_leaves_no_half_export(tiny_run, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "quantize", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(tiny_run, tmp_path / "e")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a staging folder


def test_parity_beyond_tolerance_refuses(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="parity_tolerance"):
        export_model(tiny_run, tmp_path / "e", ["bf16"], spec=ExportSpec(parity_tolerance=1e-12))
    assert not (tmp_path / "e").exists()


def test_plain_model_folder_and_bad_inputs(tiny_base_dir, tmp_path):
    manifest = export_model(tiny_base_dir, tmp_path / "base", ["bf16", "q8_0"], name="tiny-base")
    assert [f["path"] for f in manifest["files"]] == ["tiny-base-BF16.gguf", "tiny-base-Q8_0.gguf"]
    with pytest.raises(FileNotFoundError, match="neither a training run"):
        export_model(tmp_path, tmp_path / "x")
    with pytest.raises(ValueError, match="Unknown export format"):
        export_model(tiny_base_dir, tmp_path / "y", ["q2_k"])


def _strongly_gated_copy(tiny_run, folder):
    """The tiny run with large gate parameters, so that a bypassed gate changes the model's output a lot."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_run, folder)
    state = load_file(str(folder / "gates.safetensors"))
    generator = torch.Generator().manual_seed(0)
    save_file({k: torch.randn(v.shape, generator=generator) * 0.6 for k, v in state.items()},
              str(folder / "gates.safetensors"), metadata={"blend_alpha": "1.0"})
    return folder


def test_export_parity_is_checked_against_the_gated_model_so_a_bypassed_fold_fails(tiny_run, tmp_path,
                                                                                  monkeypatch):
    import alpha_gate.so8 as so8

    run = _strongly_gated_copy(tiny_run, tmp_path / "gated-run")
    manifest = export_model(run, tmp_path / "ok", ["bf16"])  # the real fold: the GGUF is the gated model
    parity_gated = manifest["files"][0]["verification"]["parity_gated"]
    assert parity_gated["mean_abs_logprob_diff"] < manifest["parity_tolerance"]

    def bypass(model):  # a broken fold: the gates are dropped, not folded; merged == GGUF, both wrong
        so8.detach_so8_gates(model)
        return model

    monkeypatch.setattr(so8, "fold_so8_gates", bypass)
    with pytest.raises(ValueError, match=r"differ from the trained \(gated, unmerged\) model"):
        export_model(run, tmp_path / "broken", ["bf16"])
    assert not (tmp_path / "broken").exists()


def test_export_is_reused_only_under_the_same_key(tiny_run, tmp_path):
    out = tmp_path / "export"
    first = export_model(tiny_run, out, ["bf16"])
    assert export_model(tiny_run, out, ["bf16"]) == first  # same inputs: reused
    both = export_model(tiny_run, out, ["bf16", "q8_0"])  # a format list that is a superset is another key
    assert [f["format"] for f in both["files"]] == ["bf16", "q8_0"] and both["key"] != first["key"]
    again = export_model(tiny_run, out, ["bf16"])  # and a subset is not "covered" by it: rebuilt to the key
    assert [f["format"] for f in again["files"]] == ["bf16"]
    (out / again["files"][0]["path"]).write_bytes(b"damaged")  # a damaged file is never reused
    repaired = export_model(tiny_run, out, ["bf16"])
    assert sha256_file(out / repaired["files"][0]["path"]) == repaired["files"][0]["sha256"]


def test_the_converter_in_this_process_writes_the_subprocess_bytes_and_leaves_the_process_as_it_was(tiny_base_dir,
                                                                                                     tmp_path):
    """convert() runs llama.cpp's script inside an export's process (no second interpreter start-up): the GGUF must be
    byte for byte the script's own, and argv, sys.path, the root logger and the loaded modules must come back as they
    were, so that a later conversion, or the pip ``gguf`` package, is unaffected. A failure still names the script's
    last lines. (In a fresh process, as an export's is: this test process has loaded the pip gguf package.)"""
    import subprocess
    import sys
    from pathlib import Path

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.export import converter

    folder = tmp_path / "hf"
    AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.bfloat16).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_base_dir).save_pretrained(folder)
    subprocess.run([sys.executable, str(converter.converter_script()), str(folder), "--outtype", "bf16", "--outfile",
                    str(tmp_path / "sub.gguf")], check=True, capture_output=True)
    check = f"""
import hashlib, logging, sys
from pathlib import Path
import pytest
from tasks.export import converter
tmp, folder = Path({str(tmp_path)!r}), Path({str(folder)!r})
assert converter.in_process_ok()
state = lambda: (list(sys.argv), list(sys.path), list(logging.getLogger().handlers), logging.getLogger().level)
before, modules = state(), set(sys.modules)
for _ in range(2):  # twice: the second run must find nothing the first one left behind
    (tmp / "here.gguf").unlink(missing_ok=True)
    converter.convert(folder, tmp / "here.gguf", "bf16")
    assert (tmp / "here.gguf").read_bytes() == (tmp / "sub.gguf").read_bytes()
assert state() == before, (state(), before)
assert not {{m for m in set(sys.modules) - modules if m.split(".")[0] in ("gguf", "conversion")}}
with pytest.raises(RuntimeError, match=r"convert_hf_to_gguf on .*failed \\(exit 1\\)"):
    converter.convert(tmp / "missing", tmp / "x.gguf", "bf16")
assert state() == before
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", check], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_process_that_loaded_the_pip_gguf_package_converts_in_a_subprocess(monkeypatch, tmp_path):
    """The converter needs its own gguf-py; with another ``gguf`` already imported it must not run in this process."""
    import types

    from tasks.export import converter

    monkeypatch.setitem(__import__("sys").modules, "gguf", types.SimpleNamespace(__file__="/site-packages/gguf/x.py"))
    assert not converter.in_process_ok()
    calls = []
    monkeypatch.setattr("tasks.native_log.run_logged", lambda cmd, what: calls.append(cmd))
    monkeypatch.setattr(converter, "_convert_here", lambda *a: pytest.fail("converted in process"))
    with pytest.raises(RuntimeError, match="wrote no"):
        converter.convert(tmp_path, tmp_path / "x.gguf")
    assert len(calls) == 1 and calls[0][1] == str(converter.converter_script())


def test_the_converters_output_capture_takes_only_its_own_threads_writes(capsys):
    """While llama.cpp's script runs in this process its print()s go to the conversion's log, but only its own: another
    thread writing meanwhile (a Prefect log line) still reaches the real stream, and whoever picked up sys.stderr
    during the conversion (Prefect sets up its console handler on first use) keeps a stream that works afterwards,
    where a plain redirect_stderr would have handed them the log file, closed after the conversion."""
    import io
    import sys
    import threading

    from tasks.export.converter import _this_thread_to

    sink, kept = io.StringIO(), []
    with _this_thread_to(sink):
        print("from the script")
        other = threading.Thread(target=lambda: (print("from another thread"), kept.append(sys.stderr)))
        other.start()
        other.join()
    assert sink.getvalue() == "from the script\n"
    sink.close()
    kept[0].write("after the conversion\n")
    captured = capsys.readouterr()
    assert captured.out == "from another thread\n" and captured.err == "after the conversion\n"
    assert sys.stdout is not kept[0] and not isinstance(sys.stdout, type(kept[0]))
