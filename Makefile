# The two commands a new user types: `make demo` and `make test`.
# Each creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@ $(VENV)/.installed $(VENV)/.installed-test

# The API reference (mkdocs.yml) into site/. Strict: any warning fails, so `make test` runs it.
# Not --quiet: it drops warnings before --strict counts them, and the build then passes.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its successor (not a warning).
DOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: $(VENV)/.installed
	$(BIN)/jaxdyn run configs/quickstart.yaml

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(DOCS_BUILD)
	$(BIN)/python -m pytest

docs: $(VENV)/.installed-test
	$(DOCS_BUILD)

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/neural_ode_step.py
	$(BIN)/python benchmarks/neural_sde_step.py
	$(BIN)/python benchmarks/fit_overhead.py
	$(BIN)/python benchmarks/hypergradient.py
	$(BIN)/python benchmarks/generative.py

clean:  # keeps runs/ (results)
	rm -rf $(VENV) .pytest_cache .ruff_cache site
