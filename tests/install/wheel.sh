#!/usr/bin/env bash
# wheel.sh [OUT]: build mt5lite's wheel into OUT (default build/dist, emptied first) from a clean copy of the source
# tree (tracked and new, not ignored, files only), so no stale build/lib content can slip into it. Prints the
# wheel's path. Used by test-lean, test-wheel and test-pi, each with its own OUT so they can run side by side.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
out=${1:-build/dist}
src=$out/src
rm -rf "$out"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$src"
if ! "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$out" "$src" > "$out/build.log" 2>&1; then
    cat "$out/build.log" >&2
    echo "wheel.sh: building the wheel failed (log above)" >&2
    exit 1
fi
rm -rf "$src"
ls "$out"/mt5lite-*.whl
