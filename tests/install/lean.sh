#!/usr/bin/env bash
# The lean (device) install, checked for real: a fresh virtual environment gets only `pip install mt5lite` (the
# wheel), then runs an ONNX export made by the full install and must print the same text; commands that need an
# extra say which one and exit 2, writing nothing.
CHECK=test-lean
source "$(dirname "$0")/common.sh"
work=build/install/lean

fresh_venv "$work"
installed=$("$work/venv/bin/pip" list --format=freeze --disable-pip-version-check)
echo "$installed" > "$work/pip-list.txt"
heavy=$(grep -iE '^(torch|transformers|tensorflow|tensorflow-cpu|tf-keras|onnx|sacrebleu|num2words)==' \
    <<< "$installed" || true)
[ -z "$heavy" ] || fail "the lean install pulled in: $heavy"
echo "test-lean: lean install has $(wc -l < "$work/pip-list.txt") packages: $(tr '\n' ' ' < "$work/pip-list.txt")"

# An export made by the full install, run by both installs from another working directory.
.venv/bin/mt5lite export onnx --output "$work/onnx" --validate-samples 4 --force > /dev/null
grep -v '^#' data/task/heldout.tsv | awk -F'\t' 'NR % 20 == 1 {print $2}' > "$work/inputs.txt"
full=$(.venv/bin/mt5lite generate --model "$work/onnx" --num-beams 2 --input-file "$work/inputs.txt")
lean=$(cd "$work/elsewhere" && ../venv/bin/mt5lite generate --model ../onnx --num-beams 2 --input-file ../inputs.txt)
[ "$full" == "$lean" ] || fail "the lean install printed other text than the full install"
echo "test-lean: generate: $(wc -l < "$work/inputs.txt") of $(wc -l < "$work/inputs.txt") outputs identical"

# The Python front door: mt5lite.load(...).generate gives the CLI's text, stream() the same text piece by piece,
# and neither imports torch.
api=$(cd "$work/elsewhere" && ../venv/bin/python - ../onnx ../inputs.txt <<'PY'
import sys

import mt5lite

model = mt5lite.load(sys.argv[1])
texts = open(sys.argv[2], encoding="utf-8").read().splitlines()
outputs = model.generate(texts, num_beams=2)
greedy = model.generate(texts)
streamed = ["".join(model.stream(text)) for text in texts]
assert streamed == greedy, [(s, g) for s, g in zip(streamed, greedy) if s != g]
assert "torch" not in sys.modules and "transformers" not in sys.modules, "the front door imported torch"
assert (model.engine, model.precision) == ("onnxruntime", "fp32"), model
print("\n".join(outputs))
PY
) || fail "mt5lite.load in the lean install: $api"
[ "$full" == "$api" ] || fail "mt5lite.load(...).generate printed other text than the CLI"
echo "test-lean: mt5lite.load: generate gives the CLI's text, stream() joins to generate's, torch never imported"

# Commands that need an extra say which one, exit 2, and write nothing.
expect_extra() {  # expect_extra EXTRA ARGS...
    local extra=$1 out code; shift
    set +e; out=$(cd "$work/elsewhere" && ../venv/bin/mt5lite "$@" 2>&1); code=$?; set -e
    [ "$code" -eq 2 ] || fail "mt5lite $* exited $code, expected 2: $out"
    grep -qF "pip install 'mt5lite[$extra]'" <<< "$out" || fail "mt5lite $* did not name the $extra extra: $out"
    [ "$(wc -l <<< "$out")" -eq 1 ] || fail "mt5lite $* printed more than one line: $out"
    echo "test-lean: mt5lite $1 ${2:-} -> exit 2, '$out'"
}
expect_extra export export onnx --output out
expect_extra executorch export executorch --output out
expect_extra export generate "words fr: 12"  # the default model is a checkpoint: PyTorch
expect_extra eval evaluate --model ../onnx
[ -z "$(ls -A "$work/elsewhere")" ] || fail "a refused command left files behind: $(ls -A "$work/elsewhere")"
echo "test-lean: passed"
