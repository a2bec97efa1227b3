# Entry points: `make demo`, `make test`, `make check`, `make bench`.
# Each target creates .venv and installs the project into it when needed. The install is editable
# in compat mode (a plain path entry, not an import hook) so that type checkers (mypy, pyright)
# run on a program of yours in this venv find the package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
CLI_STAMP := $(VENV)/.installed-cli

COMPAT := --config-settings editable_mode=compat

.PHONY: demo test check typecheck-public bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,cli,speedups]' $(COMPAT)
	touch $(STAMP)

$(CLI_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli,speedups]' $(COMPAT)
	touch $(CLI_STAMP)

demo: $(CLI_STAMP)
	$(BIN)/aiocontainer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check aiocontainer tests examples
	$(BIN)/ruff format --check aiocontainer tests examples
	$(BIN)/mypy --strict aiocontainer
	$(MAKE) --no-print-directory typecheck-public

# Every public name fully typed, as a user's pyright sees the installed package (100% or fail).
# pyright finds the package through the `python` first on PATH, hence the venv's bin in front.
typecheck-public: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pyright --verifytypes aiocontainer --ignoreexternal

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench.py

clean:
	rm -rf $(VENV) bench-results.json .pytest_cache .mypy_cache .ruff_cache
