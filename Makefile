# lpt: every target does real work. `make demo` and `make test` are the README's first commands.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
WEIGHTS ?= build/weights
SEED ?= 0
ONNX ?= build/onnx
CALIB ?= build/calib
ENGINES ?= build/engines
ASSETS ?= ../shared/assets

.PHONY: install demo weights check onnx parity calib int8-onnx engines typecheck-trt bench test clean

$(BIN)/lpt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev,bench,triton]"
	$(BIN)/pip install --quiet --no-deps "nvidia-pytriton==0.7.0"  # only its tritonserver binary (Python backend), for the Triton tests
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

calib: onnx  ## calibration set: the inputs every graph sees on the sample images and videos (held-out part kept apart)
	$(BIN)/lpt calib build --weights $(WEIGHTS) --images $(ASSETS)/source --videos $(ASSETS)/driving --out $(CALIB)

int8-onnx: calib  ## INT8 graphs from the calibration set: Q/DQ for TensorRT and <graph>.int8-cpu.onnx for ONNX Runtime, with an accuracy report
	$(BIN)/lpt quantize --weights $(WEIGHTS) --onnx $(ONNX) --calib $(CALIB)

engines: onnx  ## TensorRT engines (FP32, FP16, INT8 where its graph exists) for this GPU and TensorRT; needs `pip install -e .[trt]`
	$(BIN)/lpt build --onnx $(ONNX) --out $(ENGINES)

typecheck-trt: install  ## mypy over the TensorRT code against TensorRT 10.16 and 11.4 (bindings from PyPI; no TensorRT, no GPU)
	$(BIN)/python -m tools.trt_typecheck

# `make bench` exports the ONNX graphs first (nothing when they are up to date) so ONNX Runtime is measured too.
BENCH_FRAMES ?= 3
bench: install  ## per-graph and end-to-end speed, memory and fidelity, original vs lpt: tables, build/bench/bench.{json,md,png}
	$(MAKE) --no-print-directory onnx
	$(BIN)/lpt bench --weights $(WEIGHTS) --onnx $(ONNX) --engines $(ENGINES) \
		-s $(ASSETS)/source/s0.jpg -d $(ASSETS)/driving/d18.mp4 --frames $(BENCH_FRAMES) --out build/bench $(BENCH_ARGS)

demo: weights  ## install, write synthetic weights, animate the drawn demo face with lpt-run: build/demo.mp4
	$(BIN)/lpt-run --weights $(WEIGHTS) -o build/demo.mp4 --overwrite

test: install  ## the test suite (CPU only)
	$(BIN)/python -m pytest -q

clean:
	rm -rf build .pytest_cache
