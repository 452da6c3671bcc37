#!/usr/bin/env bash
# A regular (not editable) install of the full toolkit, used as a user would: a fresh virtual environment gets the
# wheel with the [export] extra, then exports the bundled demo model, generates and evaluates from a working
# directory outside the source tree. The install must add no top-level package but mt5lite.
CHECK=test-wheel
source "$(dirname "$0")/common.sh"
work=build/install/full

fresh_venv "$work" export
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
top=$(tr -d '\r' < "$site"/mt5lite-*.dist-info/top_level.txt 2>/dev/null || true)
[ -z "$top" ] || [ "$top" == "mt5lite" ] || fail "top_level.txt lists: $top"
roots=$(grep -v '\.dist-info/' "$site"/mt5lite-*.dist-info/RECORD | grep -v '^\.\./' | cut -d/ -f1 | cut -d, -f1 | sort -u)
[ "$roots" == "mt5lite" ] || fail "the install wrote top-level names besides mt5lite: $(tr '\n' ' ' <<< "$roots")"
for name in exporters runtimes compression; do
    [ ! -e "$site/$name" ] || fail "$site/$name exists: the install pollutes the global namespace"
done
echo "test-wheel: installed into a new venv; its only top-level package is mt5lite"

cd "$work/elsewhere"
mt5lite=../venv/bin/mt5lite
USE_TF=0 $mt5lite export onnx --output onnx --validate-samples 8 > export.log || fail "export onnx: $(tail -3 export.log)"
out=$($mt5lite generate --model onnx "words fr: 1234")
[ "$out" == "mille deux cent trente-quatre" ] || fail "generate printed '$out'"
USE_TF=0 $mt5lite evaluate --model onnx --report eval.json > eval.log || fail "evaluate: $(tail -3 eval.log)"
grep -q '"exact_match"' eval.json || fail "evaluate wrote no report"
echo "test-wheel: export onnx, generate and evaluate ran from $(pwd): $(head -1 eval.log)"

# The main job after pip install: the bundled model to a gated TFLite int8 export and the pipeline report, then
# a second run that reuses every stage.
start=$(date +%s)
USE_TF=0 $mt5lite pipeline --output out > pipeline.log 2>&1 || fail "pipeline: $(tail -3 pipeline.log)"
first=$(( $(date +%s) - start ))
for file in out/tflite/model.tflite out/tflite/manifest.json out/reports/pipeline.json out/reports/tflite-int8.json \
        out/pipeline.toml; do
    [ -s "$file" ] || fail "pipeline wrote no $file"
done
grep -q '"passed": true' out/reports/tflite-int8.json || fail "the TFLite int8 export did not pass its gate"
start=$(date +%s)
USE_TF=0 $mt5lite pipeline --output out > again.log 2>&1 || fail "pipeline, second run: $(tail -3 again.log)"
again=$(( $(date +%s) - start ))
reused=$(grep -c ': reused$' again.log)
[ "$reused" -eq 6 ] || fail "the second pipeline run reused $reused of 6 stages: $(grep '^\[' again.log)"
echo "test-wheel: pipeline --output out: $first s; the second run reused all 6 stages in $again s"
echo "test-wheel: passed"
