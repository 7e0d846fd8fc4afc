PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# OpenMP threads spin briefly, then sleep: no starving of test servers on small machines (see .ci/run)
export GOMP_SPINCOUNT ?= 1000

.PHONY: setup demo test test-integration lint imports bench bench-batch typecheck pkgview docs

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

## mypy and import-linter read files, not setuptools' editable import hook (features/ training/ serving/
## are mapped to leadscore.*): both read a symlinked view of the package
pkgview: setup
	rm -rf build/pkgview && mkdir -p build/pkgview/leadscore
	cp -rs $(CURDIR)/leadscore/. build/pkgview/leadscore/
	ln -s $(CURDIR)/features build/pkgview/leadscore/features
	ln -s $(CURDIR)/model build/pkgview/leadscore/model
	ln -s $(CURDIR)/training build/pkgview/leadscore/training
	ln -s $(CURDIR)/serving build/pkgview/leadscore/serving
	ln -s $(CURDIR)/ledger build/pkgview/leadscore/ledger

typecheck: pkgview
	cd build/pkgview && $(CURDIR)/$(BIN)/mypy -p leadscore --config-file $(CURDIR)/pyproject.toml

## the import contract (pyproject.toml [tool.importlinter]): features < model < ledger < training | serving < cli
imports: pkgview
	cd build/pkgview && PYTHONPATH=$(CURDIR)/build/pkgview $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml

## the documentation site (MkDocs + Material, API reference from docstrings) into build/site; --strict: no
## broken links or references. Tables from results files and the mapping schema are rendered by
## benchmarks/render_results.py and docs/gen_reference.py; tests/test_docs.py fails when they are stale
docs: pkgview
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
