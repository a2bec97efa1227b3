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

FLOOR := .venv-floor

.PHONY: demo test check typecheck-public test-floor bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cli,speedups]' $(COMPAT) --group dev
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

# The suite against the lowest versions pyproject.toml allows (build backend, runtime, extras, dev
# tools), installed from the source distribution into its own venv and run from the unpacked sdist:
# this checks the declared floors and that the sdist carries everything the tests need.
test-floor:
	rm -rf $(FLOOR)
	$(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python .ci/floors.py pyproject.toml > $(FLOOR)/floors.txt
	$(FLOOR)/bin/python -m pip install --quiet -c $(FLOOR)/floors.txt setuptools
	$(FLOOR)/bin/python -c "from setuptools.build_meta import build_sdist; build_sdist('$(FLOOR)/dist')"
	mkdir $(FLOOR)/src
	tar -xzf $(FLOOR)/dist/aiocontainer-*.tar.gz -C $(FLOOR)/src --strip-components=1
	cd $(FLOOR)/src && ../bin/python -m pip install --quiet --no-build-isolation \
		-c ../floors.txt '.[cli,speedups]' --group dev
	$(FLOOR)/bin/python -m pip freeze --exclude aiocontainer > $(FLOOR)/installed.txt
	cd $(FLOOR)/src && ../bin/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench.py

clean:
	rm -rf $(VENV) $(FLOOR) bench-results.json .pytest_cache .mypy_cache .ruff_cache
