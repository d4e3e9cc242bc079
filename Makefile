# lpt: every target does real work. `make demo` and `make test` are the README's first commands.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
WEIGHTS ?= build/weights
SEED ?= 0
ONNX ?= build/onnx

.PHONY: install demo weights check onnx parity test clean

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

# `make onnx` writes synthetic weights first, unless WEIGHTS holds checkpoints that `lpt weights synth` did not
# write (real ones: `make onnx WEIGHTS=path/to/pretrained_weights`), which are used as they are.
REAL_WEIGHTS := $(if $(wildcard $(WEIGHTS)/SYNTHETIC_WEIGHTS.txt $(WEIGHTS)/.lpt-synth-in-progress),,$(wildcard $(WEIGHTS)/liveportrait $(WEIGHTS)/base_models))

onnx: $(if $(REAL_WEIGHTS),install,weights)  ## ONNX of every graph from WEIGHTS, both grid-sample variants (TensorRT 10 and 11)
	$(BIN)/lpt export --weights $(WEIGHTS) --out $(ONNX) --grid-sample both --trt 10

parity: onnx  ## every ONNX file against PyTorch through Polygraphy: a table, $(ONNX)/parity.json, exit 1 on a failure
	$(BIN)/lpt parity --weights $(WEIGHTS) --onnx $(ONNX)

demo: weights check  ## install, write synthetic weights, load and run every network

test: install  ## the test suite (CPU only)
	$(BIN)/python -m pytest -q

clean:
	rm -rf build .pytest_cache
