# One-command set-up: `make demo` installs and runs the main job on built-in data,
# `make test` installs and runs the test suite. Both create .venv on first use
# and install the full set (the `train` extra: torch & co., and `dev`: pytest,
# ruff); `pip install serenesense` alone is the lean edge install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e '.[train,dev]'
	touch $@

demo: install
	bash scripts/demo.sh $(DEMO_DIR)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check serenesense_cli tests benchmarks
	$(BIN)/ruff format --check serenesense_cli tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
