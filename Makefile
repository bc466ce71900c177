# stash-pipeline: every target sets itself up from nothing (a fresh machine has Python 3.11 and pip).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export STASH_PIPELINE_DB ?= $(CURDIR)/data/stash.duckdb

.PHONY: help setup browser test lint format bench bench-fake bench-sync demo ui clean

help:
	@echo "make demo        set up, start the built-in fake Stash (unless STASH_URL is set), full sync, open the UI"
	@echo "make test        set up and run the test suite (installs Debian's chromium for the UI test when root)"
	@echo "make browser     install Debian's chromium (as root) for the end-to-end UI test"
	@echo "make bench       benchmarks (SCALE=large for 200k scenes / 1M images)"
	@echo "make bench-fake  benchmark of the fake Stash server alone"
	@echo "make bench-sync  full + incremental sync vs the download-and-parse floor, peak RSS, derived tables"
	@echo "make lint        ruff"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the end-to-end UI test (Playwright drives /usr/bin/chromium; no browser download).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "warning: /usr/bin/chromium is missing and we are not root: the end-to-end UI test will fail;" \
	       "install it with: sudo apt-get install chromium" >&2; \
	fi

# One worker per core, each taking whole test files (module fixtures are built once per file).
# TEST_WORKERS=0 runs in this process (e.g. for pdb).
TEST_WORKERS ?= auto
# The tests' temporary files (DuckDB mirrors, Dagster homes) on a tmpfs when the machine has one:
# the same files and code, without waiting for the disk on each of Dagster's SQLite commits (about a
# fifth of the suite's time here).  TEST_TMP= keeps them in the system's temporary directory.
TEST_TMP ?= $(shell [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm)
test: $(STAMP) browser
	$(BIN)/ruff check stash_pipeline stash_pipeline_tests
	$(if $(TEST_TMP),TMPDIR=$(TEST_TMP) )$(BIN)/pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: $(STAMP)
	$(BIN)/ruff check stash_pipeline stash_pipeline_tests
	$(BIN)/ruff format --check stash_pipeline stash_pipeline_tests

format: $(STAMP)
	$(BIN)/ruff format stash_pipeline stash_pipeline_tests
	$(BIN)/ruff check --fix stash_pipeline stash_pipeline_tests

bench-fake: $(STAMP)
	$(BIN)/python -m stash_pipeline_tests.benchmarks.bench_fake $(if $(filter large,$(SCALE)),--scenes 200000 --images 1000000,)

# SCALE=large: 200k scenes / 1M images (the sync benchmark then also runs the default scale as the
# reference of its peak-RSS and incremental-time ratios).
bench-sync: $(STAMP)
	$(BIN)/python -m stash_pipeline_tests.benchmarks.bench_sync $(if $(filter large,$(SCALE)),--scale large,)

# Both benchmarks run even when the first misses a goal; the exit status says whether any did.
bench: $(STAMP)
	@status=0; \
	$(MAKE) --no-print-directory bench-fake || status=1; \
	$(MAKE) --no-print-directory bench-sync || status=1; \
	exit $$status

demo: $(STAMP)
	$(BIN)/stash-pipeline demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) data .dagster_home .pytest_cache .ruff_cache
