# stash-pipeline: every target sets itself up from nothing (a fresh machine has Python 3.11 and pip).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export STASH_PIPELINE_DB ?= $(CURDIR)/data/stash.duckdb

.PHONY: help setup test lint format bench bench-fake demo ui clean

help:
	@echo "make demo        set up, start the built-in fake Stash (unless STASH_URL is set), full sync, open the UI"
	@echo "make test        set up and run the test suite"
	@echo "make bench       benchmarks (SCALE=large for 200k scenes / 1M images)"
	@echo "make bench-fake  benchmark of the fake Stash server alone"
	@echo "make lint        ruff"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check stash_pipeline stash_pipeline_tests
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check stash_pipeline stash_pipeline_tests
	$(BIN)/ruff format --check stash_pipeline stash_pipeline_tests

format: $(STAMP)
	$(BIN)/ruff format stash_pipeline stash_pipeline_tests
	$(BIN)/ruff check --fix stash_pipeline stash_pipeline_tests

bench-fake: $(STAMP)
	$(BIN)/python -m stash_pipeline_tests.benchmarks.bench_fake $(if $(filter large,$(SCALE)),--scenes 200000 --images 1000000,)

bench: bench-fake

demo: $(STAMP)
	$(BIN)/stash-pipeline demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) data .dagster_home .pytest_cache .ruff_cache
