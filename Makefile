# mT5 Lite. Every target installs what it needs first (an idempotent virtual-environment step).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MODEL ?= models/demo
BUILD ?= build

# transformers must not import TensorFlow (importing it beside LiteRT can abort the process).
export USE_TF := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install test test-slow lint export-tflite evaluate demo-model mt5-small-fixture parity-mt5-small clean

help:
	@echo "make export-tflite   run the pipeline on MODEL (default: the bundled demo model) into $(BUILD)/"
	@echo "                     (today: ONNX export, validation, parity; quantization and TFLite come next)"
	@echo "make test            run the test suite (make test-slow: the mt5-small-sized checks too)"
	@echo "make evaluate        score MODEL on the demo task's held-out set"
	@echo "make demo-model      retrain the bundled demo model from scratch (about 22 minutes on 2 cores)"
	@echo "make parity-mt5-small ONNX parity on a random model of google/mt5-small's shape"
	@echo "make lint            ruff"

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[export,dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check .

# The main job. Int8 quantization and TFLite conversion are not built yet (issues 4, 5): until they land, this
# runs the furthest stage that exists (ONNX export, its validation against PyTorch, and the parity report) and
# says so.
export-tflite: install
	@echo "export-tflite: int8 quantization and TFLite conversion are not implemented yet;"
	@echo "export-tflite: running the furthest stage that exists: ONNX export + validation + parity report."
	$(BIN)/mt5lite export onnx --model $(MODEL) --output $(BUILD)/onnx --force
	$(BIN)/mt5lite parity --model $(MODEL) --export $(BUILD)/onnx --report $(BUILD)/reports/parity-onnx.json
	@echo "export-tflite: ONNX export in $(BUILD)/onnx/, parity report in $(BUILD)/reports/parity-onnx.{json,md}"

evaluate: install
	$(BIN)/mt5lite evaluate --model $(MODEL) --report $(BUILD)/eval_report.json

demo-model: install
	$(BIN)/mt5lite train-demo --output $(MODEL) --force

mt5-small-fixture: install
	$(BIN)/python -c "from mt5lite.fixtures import mt5_small_random; print(mt5_small_random())"

# ONNX parity on a random model of google/mt5-small's exact shape (about 1.2 GB; several minutes on 2 cores).
parity-mt5-small: mt5-small-fixture
	$(BIN)/mt5lite export onnx --model $(BUILD)/fixtures/mt5-small-random --output $(BUILD)/onnx-mt5-small --force
	$(BIN)/mt5lite parity --model $(BUILD)/fixtures/mt5-small-random --export $(BUILD)/onnx-mt5-small \
		--beam-samples 60 --report $(BUILD)/reports/parity-onnx-mt5-small.json

clean:
	rm -rf $(BUILD)
