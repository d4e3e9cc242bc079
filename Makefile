# lpt: every target does real work. `make demo` and `make test` are the README's first commands.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
WEIGHTS ?= build/weights
SEED ?= 0

.PHONY: install demo weights check test clean

$(BIN)/lpt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(BIN)/lpt  ## virtualenv with lpt and the CPU build of torch

$(WEIGHTS)/SYNTHETIC_WEIGHTS.txt: | $(BIN)/lpt
	$(BIN)/lpt weights synth $(WEIGHTS) --seed $(SEED)

weights: $(WEIGHTS)/SYNTHETIC_WEIGHTS.txt  ## seeded synthetic weights in the official layout

check: install  ## load every network from WEIGHTS and run it once
	$(BIN)/lpt weights check $(WEIGHTS)

demo: weights check  ## install, write synthetic weights, load and run every network

test: install  ## the test suite (CPU only)
	$(BIN)/python -m pytest -q

clean:
	rm -rf build .pytest_cache
