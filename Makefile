# Sealbox developer entry points. Needs only python3 (>= 3.11) and GNU make.
PYTHON ?= python3
VENV = .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN = $(VENV)/bin

# Test processes in parallel (pytest-xdist): "auto" is one per core.
TEST_WORKERS ?= auto
# Our own packages, compiled to bytecode before serving or testing: with
# PYTHONDONTWRITEBYTECODE set (as on some CI hosts) every CLI and server process the tests
# start would otherwise compile them from source again (0.76x of `sealbox --help`'s time).
PACKAGES = crypto sync server clients migrations

# The server reads its own settings; SEALBOX_DATABASE_URL defaults to SQLite under this directory.
export SEALBOX_DATA_DIR ?= ./data

.DEFAULT_GOAL := help
.PHONY: help install bytecode run test test-slow lint format bench clean

help:
	@echo "make run        create .venv, migrate the database, serve on $(HOST):$(PORT)"
	@echo "make test       run the test suite (without the slow marker)"
	@echo "make test-slow  run the slow soak/fuzz/crash tests"
	@echo "make lint       ruff, ruff format --check, mypy, import-linter"
	@echo "make bench      run the benchmarks"
	@echo "make clean      remove .venv, data/ and caches"

# The stamp is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

bytecode: $(VENV)/.installed
	@$(BIN)/python -m compileall -q -j0 $(PACKAGES)

run: bytecode
	@mkdir -p $(SEALBOX_DATA_DIR)
	$(BIN)/sealbox-server migrate
	exec $(BIN)/sealbox-server serve --host $(HOST) --port $(PORT)

test: bytecode
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow and not browser"

test-slow: bytecode
	$(BIN)/python -m pytest -m slow

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	for b in bench/bench_crypto.py bench/bench_grant.py bench/bench_server.py bench/bench_ceiling.py bench/bench_cli_sync.py bench/bench_attachments.py bench/bench_evidence.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data/ .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
