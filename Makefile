PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-integration lint bench bench-batch typecheck

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

## main job end to end: simulate -> features -> train (MLflow, SQLite) -> promote -> explain a lead
demo: setup
	$(BIN)/leadscore demo

## the test suite
test: setup
	$(BIN)/pytest

## PostgreSQL-backed MLflow and Spark tests only (PostgreSQL and Java from Debian: see .ci/run)
test-integration: setup
	$(BIN)/pytest tests/integration

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_features.py

## batch scoring of 1M leads with reasons, pandas vs Spark local[2] (~15 min on 2 cores)
bench-batch: setup
	$(BIN)/python benchmarks/bench_batch.py

## mypy cannot follow setuptools' editable import hook, so type-check a symlinked view of the package
typecheck: setup
	rm -rf build/typecheck && mkdir -p build/typecheck/leadscore
	cp -rs $(CURDIR)/leadscore/. build/typecheck/leadscore/
	ln -s $(CURDIR)/features build/typecheck/leadscore/features
	ln -s $(CURDIR)/training build/typecheck/leadscore/training
	ln -s $(CURDIR)/serving build/typecheck/leadscore/serving
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy -p leadscore --config-file $(CURDIR)/pyproject.toml
