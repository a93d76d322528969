# The two commands of the README: `make run` (the main job) and `make test` (the test suite).
# Each sets up .venv on a fresh machine first; torch is pinned to the CPU build kept on disk.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: run test bench
run: $(BIN)/.installed
	$(BIN)/subgen run

test: $(BIN)/.installed
	$(BIN)/python -m pytest -p no:cacheprovider -x -rs -n 2 --dist loadfile tests

bench: $(BIN)/.installed
	$(BIN)/python -m pytest -q benchmarks --benchmark-only
