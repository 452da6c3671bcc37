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

.PHONY: help install test test-slow lint export-tflite sensitivity bench-quantization evaluate demo-model \
	mt5-small-fixture parity-mt5-small clean

help:
	@echo "make export-tflite   run the pipeline on MODEL (default: the bundled demo model) into $(BUILD)/"
	@echo "                     (today: ONNX export, validation, parity, QUANTIZE=int8 quantization; TFLite next)"
	@echo "make test            run the test suite (make test-slow: the mt5-small-sized checks too)"
	@echo "make evaluate        score MODEL on the demo task's held-out set"
	@echo "make demo-model      retrain the bundled demo model from scratch (about 20 minutes on 2 cores)"
	@echo "make parity-mt5-small ONNX parity on a random model of google/mt5-small's shape"
	@echo "make sensitivity     quantize one node group at a time and measure each (the default recipe's basis)"
	@echo "make bench-quantization  int8 vs fp32 vs PyTorch speed and size, mt5-small shape"
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

# The main job. TFLite conversion is not built yet (issue 5): until it lands, this runs the furthest stages that
# exist (ONNX export, its validation against PyTorch, the parity report, quantization with its quality report)
# and says so. QUANTIZE: int8 (static, calibrated), dynamic-int8, fp16 or fp32 (no quantization).
QUANTIZE ?= int8
RECIPE_int8 := static-int8
RECIPE_dynamic-int8 := dynamic-int8
RECIPE_fp16 := fp16
export-tflite: install
	@case "$(QUANTIZE)" in int8|dynamic-int8|fp16|fp32) ;; \
	  *) echo "export-tflite: unknown QUANTIZE=$(QUANTIZE); choose int8, dynamic-int8, fp16 or fp32" >&2; exit 2;; esac
	@echo "export-tflite: TFLite conversion is not implemented yet; running the stages that exist:"
	@echo "export-tflite: ONNX export + validation, parity report, $(QUANTIZE) quantization + quality report."
	$(BIN)/mt5lite export onnx --model $(MODEL) --output $(BUILD)/onnx --force
	$(BIN)/mt5lite parity --model $(MODEL) --export $(BUILD)/onnx --report $(BUILD)/reports/parity-onnx.json
ifneq ($(QUANTIZE),fp32)
	$(BIN)/mt5lite quantize --export $(BUILD)/onnx --output $(BUILD)/onnx-$(QUANTIZE) --recipe $(RECIPE_$(QUANTIZE)) \
		--report $(BUILD)/reports/quantize-$(QUANTIZE).json --force
	@echo "export-tflite: fp32 export in $(BUILD)/onnx/, $(QUANTIZE) export in $(BUILD)/onnx-$(QUANTIZE)/"
	@echo "export-tflite: reports in $(BUILD)/reports/parity-onnx.{json,md} and quantize-$(QUANTIZE).{json,md}"
else
	@echo "export-tflite: fp32 export in $(BUILD)/onnx/, parity report in $(BUILD)/reports/parity-onnx.{json,md}"
endif

# The sensitivity analysis the default static int8 recipe is chosen from (one node group quantized at a time).
sensitivity: install
	$(BIN)/mt5lite export onnx --model $(MODEL) --output $(BUILD)/onnx --force
	$(BIN)/mt5lite sensitivity --export $(BUILD)/onnx --report $(BUILD)/reports/sensitivity.json

# int8 vs fp32 vs PyTorch decoding speed and size on a random model of google/mt5-small's shape (side by side).
bench-quantization: mt5-small-fixture
	$(BIN)/python benchmarks/bench_quantization.py --threads 2 --output $(BUILD)/reports/bench-quantization.json

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
