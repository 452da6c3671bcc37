# mT5 Lite. Every target installs what it needs first (an idempotent virtual-environment step).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
MODEL ?= models/demo
BUILD ?= build
# make test's pytest workers (pytest-xdist; a test file stays on one worker): 2 took the suite from 22 to 15.5
# minutes on 2 cores, 2026-12-06.
TEST_WORKERS ?= 2

# transformers must not import TensorFlow (importing it beside LiteRT can abort the process).
export USE_TF := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install jvm-toolchain test test-quick test-slow test-faults test-lean test-wheel test-pi docs test-docs results lint export-tflite sensitivity bench-quantization \
	evaluate demo-model natural-model natural-demo device-speed outliers-demo outliers-mt5-small mt5-small-fixture parity-mt5-small tflite-mt5-small conversion-memory trim-mt5-small executorch-mt5-small lite-demo families-demo importance-demo sparsity-demo bench android-assets clean

help:
	@echo "make export-tflite   run the pipeline on MODEL (default: the bundled demo model) into $(BUILD)/"
	@echo "                     (ONNX export, parity, int8 ONNX, TFLite at QUANTIZE=int8|dynamic-int8|fp16|fp32, parity)"
	@echo "make test            run the test suite (make test-slow: the mt5-small- and umt5-small-sized checks too)"
	@echo "make test-faults     the fault matrix in full (seeded): 1,000 corrupted model files, 8 threads x 100 requests,"
	@echo "                     version skew; figures in $(BUILD)/reports/faults.json (make test runs a quick subset)"
	@echo "make test-lean       the device install in a fresh venv: lean, same outputs, clear extra errors"
	@echo "make test-wheel      a regular install of the wheel with [export], used from another directory"
	@echo "make test-pi         the [litert] install on an emulated 64-bit Raspberry Pi OS (bookworm arm64, qemu-user;"
	@echo "                     root): the three exports must print exactly what they print on x86"
	@echo "make evaluate        score MODEL on the demo task's held-out set"
	@echo "make demo-model      retrain the bundled demo model from scratch (about 20 minutes on 2 cores)"
	@echo "make natural-model   train the natural model (span corruption, then CLDR names in 64 languages) from"
	@echo "                     scratch into models/natural (about 110 minutes on 2 cores)"
	@echo "make natural-demo    every stage on the natural model (parity, int8 per language, trimming, scripts, outliers,"
	@echo "                     the lite student): $(BUILD)/reports/natural-demo.{json,md}"
	@echo "make device-speed    on mt5-small's shape: 4-beam against greedy ms/token (the beams in one call of the"
	@echo "                     batch-4 step and row by row), time to first token with and without source-length"
	@echo "                     buckets: $(BUILD)/reports/device-speed.json; then trimmed: device-speed-trimmed.json"
	@echo "make parity-mt5-small ONNX parity on a random model of google/mt5-small's shape"
	@echo "make tflite-mt5-small TFLite fp32 + full int8 of that model: conversion, sizes, speed"
	@echo "make conversion-memory  full-int8 TFLite conversion's peak memory against the checkpoint, mt5-small and"
	@echo "                     mt5-base shapes: $(BUILD)/reports/conversion-memory.{json,md}"
	@echo "make executorch-mt5-small  ExecuTorch fp32 + int8 of that model: sizes, conversion memory, speed vs ONNX/TFLite"
	@echo "make trim-mt5-small  that model with a 250k-piece tokenizer, trimmed: kept-id parity, sizes, int8 speed"
	@echo "make sensitivity     quantize one node group at a time and measure each (the default recipe's basis)"
	@echo "make outliers-demo   every int8 recipe on the demo model and on activation-outlier checkpoints (rescaled,"
	@echo "                     trained): agreement, per language, size, speed: $(BUILD)/reports/outliers-demo.{json,md}"
	@echo "make outliers-mt5-small  the int8 recipes on mt5-small's shape, plain against outliers: ms/token, size"
	@echo "make bench           ours against PyTorch, optimum-onnx, CTranslate2, llama.cpp and OpenVINO on four models,"
	@echo "                     with the bandwidth floor: $(BUILD)/bench/bench.{json,md} and plots (first run about an hour)"
	@echo "make bench-quantization  int8 vs fp32 vs PyTorch speed and size, mt5-small shape"
	@echo "make lite-demo       the lite recipe (trim, prune, distil, fine-tune) on the demo model: the stage table"
	@echo "make families-demo   the demo model as a Flan-T5 (T5 v1.1) and a umT5 checkpoint: parity, int8 gates per language"
	@echo "make importance-demo pruning by importance against random pruning (five seeds) on the demo model"
	@echo "make sparsity-demo   magnitude pruning on the demo model: sparsity, sizes, zipped sizes, speed"
	@echo "make android-assets  bundle $(BUILD)/tflite into the Android demo app (android_demo/), hashes checked"
	@echo "make docs            the documentation site (MkDocs, strict) into $(BUILD)/site/"
	@echo "make results         refresh docs/results/ (the result pages) from the reports in $(BUILD)/reports/"
	@echo "make test-docs       every shell and Python snippet of the README and the docs, run for real"
	@echo "make lint            ruff"

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,executorch,dev,docs]'
	touch $(STAMP)

test: install jvm-toolchain
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The Android app's Kotlin core is tested on the JVM: Debian's kotlin (1.3.31), junit4 and libjna-java. Installed
# when missing and apt-get can (root); otherwise the JVM tests skip and say so in one line.
jvm-toolchain:
	@if command -v kotlinc >/dev/null && [ -f /usr/share/java/junit4.jar ] && [ -f /usr/share/java/jna.jar ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kotlin junit4 libjna-java \
	    >/dev/null) || echo "jvm-toolchain: apt-get could not install kotlin junit4 libjna-java; JVM tests will skip"; \
	else echo "jvm-toolchain: not root or no apt-get; install kotlin junit4 libjna-java to run the JVM tests"; fi

test-quick: install  ## the inner loop: every test file, without the tests of 4 s or more (make test runs all)
	$(BIN)/python -m pytest -m "not slow and not faults and not docs and not heavy"

test-slow: install
	$(BIN)/python -m pytest -m slow

# The fault matrix (issue 15) in full: the tests marked `faults` (make test runs their quick subsets). A few minutes.
test-faults: install
	rm -f $(BUILD)/reports/faults.json
	$(BIN)/python -m pytest -m faults tests/test_faults.py

# The result pages of the docs (docs/results/): each report in build/ that exists, copied with when and where it was
# measured, and its page rendered from it (tests/test_docs.py checks every committed page against its JSON).
results: install
	$(BIN)/python -m benchmarks.results_pages

# The documentation site (docs/, mkdocs.yml) into $(BUILD)/site/, strict: a broken link or API reference fails.
docs: install
	NO_MKDOCS_2_WARNING=1 USE_TF=0 $(BIN)/mkdocs build --strict --site-dir $(BUILD)/site

# Every shell and Python snippet of the README and the docs, run for real in a scratch directory (about 12 minutes;
# make test checks them cheaply: commands parse, targets exist, blocks compile).
test-docs: install
	$(BIN)/python -m pytest -m docs tests/test_docs.py -s

# The lean (device) install in a fresh venv: no torch/transformers/TensorFlow, same text as the full install on an
# export the full install made, and a one-line "install the extra" error for what needs more (about 20 s).
test-lean: install
	PYTHON=$(PYTHON) tests/install/lean.sh

# A regular (not editable) install of the wheel with [export] into a fresh venv, used from outside the source tree:
# export the bundled model, generate, evaluate; only mt5lite is installed at the top level (a few minutes).
test-wheel: install
	PYTHON=$(PYTHON) tests/install/full.sh

# The device install on an emulated 64-bit Raspberry Pi OS (Debian bookworm arm64 through qemu-user; needs root):
# the wheel with [litert] from PyPI's aarch64 wheels in a cached debootstrap root under $(BUILD)/pi/, then the fp32
# ONNX, int8 ONNX and int8 TFLite exports must print the same text as on x86 (here: about 12 minutes the first
# time, 9.5 after; the fp32 ONNX export dominates under qemu, 12.5 s per input against 1.1 s for int8 ONNX and 0.2 s
# for TFLite).
test-pi: install $(BUILD)/tflite/manifest.json
	BUILD=$(BUILD) tests/pi/test_pi.sh

# The exports test-pi runs, made only when missing (export-tflite writes $(BUILD)/tflite last).
$(BUILD)/tflite/manifest.json:
	$(MAKE) export-tflite

lint: install
	$(BIN)/ruff check .

# The main job, on MODEL (default: the bundled demo model), into $(BUILD)/: `mt5lite pipeline`, which a pip user
# runs the same way. Its stages (each reused when its inputs, options and the code are unchanged):
#   1. compression passes, when COMPRESS names some (COMPRESS_ARGS: their options, e.g. COMPRESS_ARGS="--corpus
#      my.tsv"); the compressed checkpoint in $(BUILD)/compressed/ is then what is exported and compared with
#   2. ONNX export with static shapes (batch 1, for TFLite), validated against PyTorch; parity report
#   3. static int8 ONNX export (calibrated on multilingual samples), gated, for ONNX Runtime
#   4. TFLite at QUANTIZE precision, validated against ONNX, gated below fp32; parity report in $(BUILD)/tflite/
#   5. the pipeline report, $(BUILD)/reports/pipeline.{json,md,png}: every stage of the run in one table
# QUANTIZE: int8 (full integer, calibrated on multilingual samples; the default), dynamic-int8, fp16 or fp32.
# CONFIG: a pipeline TOML file (mt5lite pipeline --print-config prints one); MODEL, QUANTIZE, COMPRESS and
# CALIBRATION given on the command line override it.
QUANTIZE ?= int8
COMPRESS ?=
COMPRESS_ARGS ?=
export-tflite: install
	$(BIN)/mt5lite pipeline $(if $(CONFIG),--config $(CONFIG),--output $(BUILD)) \
		$(if $(or $(filter-out file,$(origin MODEL)),$(if $(CONFIG),,x)),--model $(MODEL)) \
		$(if $(or $(filter-out file,$(origin QUANTIZE)),$(if $(CONFIG),,x)),--tflite $(QUANTIZE)) \
		$(if $(COMPRESS),--compress $(COMPRESS) $(COMPRESS_ARGS)) $(if $(CALIBRATION),--calibration $(CALIBRATION))
	@echo "export-tflite: TFLite ($(QUANTIZE)) in $(BUILD)/tflite/ (model.tflite: encoder + decoder signatures, manifest.json,"
	@echo "export-tflite:   parity.json + parity.md: PyTorch vs TFLite)"
	@echo "export-tflite: ONNX fp32 in $(BUILD)/onnx/, ONNX int8 in $(BUILD)/onnx-int8/; the run's config: $(BUILD)/pipeline.toml"
	@echo "export-tflite: reports in $(BUILD)/reports/: pipeline.{md,json,png} (every stage in one table; read it first),"
	@echo "export-tflite:   parity-onnx, quantize-static-int8, tflite-$(QUANTIZE) unless fp32"

# The sensitivity analysis the default static int8 recipe is chosen from (one node group quantized at a time).
sensitivity: install
	$(BIN)/mt5lite export onnx --model $(MODEL) --output $(BUILD)/onnx --force
	$(BIN)/mt5lite sensitivity --export $(BUILD)/onnx --report $(BUILD)/reports/sensitivity.json

evaluate: install
	$(BIN)/mt5lite evaluate --model $(MODEL) --report $(BUILD)/eval_report.json

demo-model: install
	$(BIN)/mt5lite train-demo --output $(MODEL) --force

natural-model: install
	$(BIN)/mt5lite train-natural --output models/natural --force

# Every stage of the toolkit measured on the natural model (issue 29; about an hour on 2 cores, the student's
# training included): one JSON and Markdown report, on the committed models/natural.
natural-demo: install
	$(BIN)/python -m benchmarks.experiments.natural_demo --threads 2 --output $(BUILD)/reports/natural-demo.json

# Static exports of a random model of mt5-small's shape, static int8 and weight-int8 ONNX and full-int8 TFLite: beam
# search with the 4 beams in one call of the batch-4 step against row by row, beside greedy, time to first token with
# and without source-length buckets, and the decoder step over its floor; then the same on that model trimmed to the
# project's data (about 70 minutes the first time, building the exports under $(BUILD)/device-speed/; built again
# whenever the toolkit's code, the benchmarks' or the bundled data change: benchmarks.models.once).
device-speed: install
	$(BIN)/python -m benchmarks.experiments.device_speed --exports static-int8 weight-int8 tflite-int8 --threads 2 \
		--output $(BUILD)/reports/device-speed.json
	$(BIN)/python -m benchmarks.experiments.device_speed --model mt5-small-trimmed \
		--exports static-int8 weight-int8 tflite-int8 --threads 2 --output $(BUILD)/reports/device-speed-trimmed.json

mt5-small-fixture: install
	$(BIN)/python -c "from tests.fixtures import mt5_small_random; print(mt5_small_random())"

# ONNX parity on a random model of google/mt5-small's exact shape (about 1.2 GB; several minutes on 2 cores).
parity-mt5-small: mt5-small-fixture
	$(BIN)/mt5lite export onnx --model $(BUILD)/fixtures/mt5-small-random --output $(BUILD)/onnx-mt5-small --force
	$(BIN)/mt5lite parity --model $(BUILD)/fixtures/mt5-small-random --export $(BUILD)/onnx-mt5-small \
		--beam-samples 60 --report $(BUILD)/reports/parity-onnx-mt5-small.json

# TFLite fp32 and full int8 of the same random mt5-small-shaped model (about 15 minutes, 4 GB peak). Random weights
# give near-tied logits, so int8 agreement means nothing here (no gate): this shows conversion, size and speed.
tflite-mt5-small: mt5-small-fixture
	$(BIN)/mt5lite export onnx --model $(BUILD)/fixtures/mt5-small-random --output $(BUILD)/onnx-mt5-small-static \
		--static-shapes --validate-samples 2 --force
	$(BIN)/mt5lite export tflite --export $(BUILD)/onnx-mt5-small-static --output $(BUILD)/tflite-mt5-small --force
	awk 'NR % 30 == 2' data/task/heldout.tsv > $(BUILD)/heldout-20.tsv
	$(BIN)/mt5lite export tflite --export $(BUILD)/onnx-mt5-small-static --output $(BUILD)/tflite-mt5-small-int8 \
		--quantize int8 --samples 128 --max-decoder-steps 256 --data $(BUILD)/heldout-20.tsv --no-gate --force \
		--report $(BUILD)/reports/tflite-int8-mt5-small.json

# Every system on every model, side by side, each in its own worker process (python -m benchmarks.bench; its
# modules are benchmarks/*.py and benchmarks/bench_systems/); BENCH_ARGS narrows it, e.g.
# BENCH_ARGS="--models demo --systems pytorch-fp32 ours-onnx-static-int8".
BENCH_ARGS ?=
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[train,dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.bench --threads 2 --output $(BUILD)/bench $(BENCH_ARGS)

# The one-off experiments (benchmarks/experiments/, run as python -m benchmarks.experiments.NAME), from here to
# sparsity-demo: each answers one question once, with a target of its own; make bench runs none of them.

# Every int8 recipe with default flags on the demo model and on checkpoints with activation outliers (issue 25;
# tests/outlier_fixtures.py builds them, the trained one in about 3 minutes), each against its own fp32 export.
outliers-demo: install
	$(BIN)/python -m benchmarks.experiments.outliers_demo --output $(BUILD)/reports/outliers-demo.json

# The same recipes on mt5-small's shape (random weights, the demo's vocabulary), plain and with outliers, decoded
# side by side: what the outlier step costs in ms/token and bytes (about an hour on 2 cores the first time).
outliers-mt5-small: install
	$(BIN)/python -m benchmarks.experiments.outliers_demo --mt5-small --output $(BUILD)/reports/outliers-mt5-small.json

# int8 vs fp32 vs PyTorch decoding speed and size on a random model of google/mt5-small's shape (side by side).
bench-quantization: mt5-small-fixture
	$(BIN)/python -m benchmarks.experiments.bench_quantization --threads 2 \
		--output $(BUILD)/reports/bench-quantization.json

# Peak memory of the full-int8 TFLite conversion (the whole process tree, and time -v's largest process) against
# the checkpoint's size, on random models of google/mt5-small's and google/mt5-base's shapes (about 40 minutes).
conversion-memory: install
	$(BIN)/python -m benchmarks.experiments.conversion_memory --output $(BUILD)/reports/conversion-memory.json

# Vocabulary trimming on mt5-small's shape with a 250,100-piece tokenizer (tests.fixtures.mt5_small_250k): trimmed
# with the project's data, compared at the kept ids, exported (fp32, static int8 ONNX, full-int8 TFLite, sizes) and
# the untrimmed and trimmed int8 ONNX decoded side by side (about 40 minutes on 2 cores the first time).
trim-mt5-small: mt5-small-fixture
	$(BIN)/python -m benchmarks.experiments.trim_mt5_small --threads 2 --output $(BUILD)/reports/trim-mt5-small.json

# ExecuTorch on mt5-small's shape (make bench's mt5-small model): fp32 and int8 .pte, sizes, conversion peak memory,
# and ms/token side by side with make bench's ONNX and TFLite int8 builds of the same model (when built).
executorch-mt5-small: mt5-small-fixture
	$(BIN)/python -m benchmarks.experiments.executorch_mt5_small --threads 2 \
		--output $(BUILD)/reports/executorch-mt5-small.json

# The "lite" recipe on the demo model, stage by stage (trim, drop layers + prune FFN, distil, fine-tune), each stage
# exported to ONNX, int8 ONNX and int8 TFLite and measured side by side (about 30 minutes on 2 cores).
lite-demo: install
	$(BIN)/python -m benchmarks.experiments.lite_demo --threads 2 --output $(BUILD)/reports/lite-demo.json

# The trained demo model through each family's path (mt5lite.families): re-expressed as a T5 v1.1 / Flan-T5 and a
# umT5 checkpoint (then fine-tuned, so every layer's bias table is its own), each exported like export-tflite, with
# fp32 parity and both int8 exports held to the quantization gate per language (about 25 minutes on 2 cores).
families-demo: install
	$(BIN)/python -m benchmarks.experiments.families_demo --output $(BUILD)/reports/families-demo.json

# Importance against random pruning on the demo model (dev-set exact match right after pruning, five random seeds).
importance-demo: install
	$(BIN)/python -m benchmarks.experiments.importance_demo --output $(BUILD)/reports/importance-demo.json

# Unstructured magnitude pruning on the demo model: sparsity, sizes (plain and zipped), speed side by side, quality.
sparsity-demo: install
	$(BIN)/python -m benchmarks.experiments.sparsity_demo --threads 2 --output $(BUILD)/reports/sparsity-demo.json

# The Android demo app's assets: the TFLite export (every file checked against its manifest), sample inputs, and the
# Python runtime's outputs for the app's instrumented test. Then open android_demo/ in Android Studio.
android-assets: install $(BUILD)/tflite/manifest.json
	$(BIN)/mt5lite android-assets --export $(BUILD)/tflite --app android_demo/app

clean:
	rm -rf $(BUILD)
