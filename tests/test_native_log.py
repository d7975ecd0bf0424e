"""llama.cpp's own log goes to the running task's file, never to the console (tasks/native_log.py)."""

from __future__ import annotations

import logging
import shutil
import sys
import threading

import pytest

from tasks.native_log import native_log, run_logged, task_native_log


def test_quantization_warnings_go_to_each_threads_file_and_not_to_stderr(tiny_gguf, tmp_path, capfd):
    """The tiny model's rows (64 wide) are not a multiple of Q4_K's 256: a warning per tensor, at ggml's WARN level,
    which llama-cpp-python's own callback printed as an ERROR. Two quantizations in threads at once (the flow runs
    tasks side by side): each file holds its own source's messages only."""
    from tasks.export.gguf import quantize

    capfd.readouterr()
    errors = []

    def work(name: str) -> None:
        try:
            source = tmp_path / f"{name}-BF16.gguf"
            shutil.copy(tiny_gguf[0], source)
            with native_log(tmp_path / "logs" / f"{name}.log"):
                quantize(source, tmp_path / f"{name}-Q4_K_M.gguf", "q4_k_m")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    out, err = capfd.readouterr()
    assert "falling back" not in out + err and "llama_model" not in out + err
    for name, other in (("first", "second"), ("second", "first")):
        text = (tmp_path / "logs" / f"{name}.log").read_text()
        assert "falling back to" in text and "required fallback quantization" in text
        assert f"{name}-BF16.gguf" in text and f"{other}-BF16.gguf" not in text


def test_a_model_load_logs_to_the_file_even_when_verbose(smollm2_gguf, tmp_path, capfd):
    # verbose=True makes llama-cpp-python print every load message itself (and swap no file descriptors)
    from tasks.llama_load import open_llama

    capfd.readouterr()
    with native_log(tmp_path / "load.log") as path:
        open_llama(smollm2_gguf, n_ctx=256, verbose=True).close()
    out, err = capfd.readouterr()
    assert "llama_model_loader" not in out + err
    assert "llama_model_loader: loaded meta data" in path.read_text()


def test_outside_a_file_only_ggml_errors_reach_python_logging(caplog):
    """ggml's levels are DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (include/ggml.h): a WARN is not an error, and a
    continuation keeps the level of the message it continues."""
    from tasks.native_log import _on_message

    with caplog.at_level(logging.DEBUG, logger="llama.cpp"):
        for level, text in ((3, b"warning: blk.0 - ncols not divisible "), (5, b"-> falling back\n"),
                            (2, b"llama_model_loader: loaded\n"), (4, b"llama_model_load: error "),
                            (5, b"loading model: bad magic\n")):
            _on_message(level, text, None)
    assert [r.getMessage() for r in caplog.records if r.name == "llama.cpp"] == [
        "llama_model_load: error loading model: bad magic"]


def test_a_logged_subprocess_writes_into_the_file_and_fails_with_its_tail(tmp_path, capfd):
    script = "import sys; print('INFO: tensor 1 of 2'); sys.stderr.write('boom: bad tensor\\n'); sys.exit(3)"
    with native_log(tmp_path / "convert.log") as path, pytest.raises(RuntimeError) as caught:
        run_logged([sys.executable, "-c", script], "the converter")
    text = path.read_text()
    assert "INFO: tensor 1 of 2" in text and "boom: bad tensor" in text
    assert "exit 3" in str(caught.value) and "boom: bad tensor" in str(caught.value) and str(path) in str(caught.value)
    out, err = capfd.readouterr()
    assert "tensor 1 of 2" not in out + err
    # without a file the output is only kept for the message
    with pytest.raises(RuntimeError, match="boom: bad tensor"):
        run_logged([sys.executable, "-c", script], "the converter")
    assert "tensor 1 of 2" not in "".join(capfd.readouterr())


def test_the_task_decorator_places_the_file_under_root_and_names_it_on_failure(smollm2_gguf, tmp_path):
    from tasks.llama_load import open_llama

    @task_native_log
    def load(gguf: str, root: str) -> None:
        open_llama(gguf, n_ctx=256, verbose=False).close()
        raise ValueError("the task failed after the load")

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # Prefect's logging set-up may replace the root's handlers (caplog's) meanwhile
    here = logging.getLogger("tasks.native_log")
    here.addHandler(handler)
    level, here.level = here.level, logging.INFO
    try:
        with pytest.raises(ValueError):
            load(str(smollm2_gguf), root=str(tmp_path))
    finally:
        here.removeHandler(handler)
        here.setLevel(level)
    (log,) = (tmp_path / "logs" / "llama.cpp").glob("load-*.log")
    assert "llama_model_loader" in log.read_text()
    named = [r for r in records if str(log) in r.getMessage()]
    assert [r.levelno for r in named] == [logging.INFO, logging.WARNING]  # where it is; again, louder, on failure
    with pytest.raises(TypeError, match="root"):
        task_native_log(lambda gguf: None)
