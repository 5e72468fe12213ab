# The two commands a new user types: `make demo` and `make test`.
# Each creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs bench results clean

# uv installs the project and its test extra (45 s on a fresh clone here, bytecode compiled,
# against several minutes with pip); the bench extra keeps pip, which honours the
# machine's pip configuration (a local CPU build of torch instead of a 3 GB CUDA download).
# --compile-bytecode as pip does: otherwise a dependency's invalid escape sequence (POT's
# datasets.py) warns at its first import, and the tests turn that warning into an error.
# The venv's own pip (python 3.11's: 23.2) installs uv and the bench extra; upgrading it first
# cost a few seconds of every fresh `make test`.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv

UV_INSTALL := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

# Stamps re-install when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	$(UV_INSTALL) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/uv
	$(UV_INSTALL) -e ".[test]"
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
	$(BIN)/python benchmarks/scaling.py

# The experiments behind RESULTS.md at their reported settings and seeds, each into
# benchmarks/records/NAME.json, and RESULTS.md's generated table rebuilt from the records.
results: $(VENV)/.installed
	$(BIN)/python benchmarks/reproduce.py

clean:  # keeps runs/ (results)
	rm -rf $(VENV) .pytest_cache .ruff_cache site
