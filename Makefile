# Set-up is part of every target: on a fresh machine `make demo` or `make test` alone does everything:
# creates .venv, installs the CPU torch wheel first (a looser spec would pull CUDA), then the project.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Which tests `make test` runs; CI widens it to "not gpu" so the slow tests run too.
MARK ?= not slow and not gpu
# pytest-xdist: two workers, each running whole test files (--dist loadfile: a file's module fixtures and its Prefect
# runs stay in one process). The flow tests spend much of their time in orchestration, server start-ups and process
# start-ups, so two side by side use a 2-core machine better than one. --no-loadscope-reorder: files in the order
# tests/conftest.py sets (the longest first), not by their number of tests. WORKERS=0: one process.
WORKERS ?= 2

.PHONY: install lock demo test lint bench-gates bench-train bench-engine bench-serve clean

# constraints.txt: the exact versions the tests ran with (`make lock` writes it from the venv); every install uses it.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -c constraints.txt torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	$(BIN)/python -m tasks.export.converter fetch
	touch $(STAMP)

install: $(STAMP)

# After `make test` passed (on new versions, a new dependency): record the venv's versions for every install after.
lock:
	$(BIN)/python tools/lock.py > constraints.txt.new
	mv constraints.txt.new constraints.txt

# The main job: the whole comparison flow on the embedded default (CPU, offline, no token; upload is a dry run).
demo: $(STAMP)
	$(BIN)/alphagate run --config configs/demo.yaml --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check .

# --durations: the slowest tests in every run's output (CI's time is a budget: 30 minutes for `bash .ci/run`)
test: lint
	$(BIN)/python -m pytest -m "$(MARK)" --durations=25 -n $(WORKERS) --dist loadfile --no-loadscope-reorder

bench-gates: $(STAMP)
	$(BIN)/python benchmarks/gate_overhead.py

bench-train: $(STAMP)
	$(BIN)/python benchmarks/train_demo.py

bench-engine: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

bench-serve: $(STAMP)
	$(BIN)/python benchmarks/serve_load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
