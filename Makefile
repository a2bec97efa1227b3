# Entry points: `make demo`, `make test`, `make check`, `make bench`.
# Each target creates .venv and installs the project into it when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
CLI_STAMP := $(VENV)/.installed-cli

.PHONY: demo test check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,cli,speedups]'
	touch $(STAMP)

$(CLI_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli,speedups]'
	touch $(CLI_STAMP)

demo: $(CLI_STAMP)
	$(BIN)/aiocontainer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check aiocontainer tests examples
	$(BIN)/ruff format --check aiocontainer tests examples
	$(BIN)/mypy --strict aiocontainer

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench.py

clean:
	rm -rf $(VENV) bench-results.json .pytest_cache .mypy_cache .ruff_cache
