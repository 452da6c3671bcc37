# Shared by the install checks (sourced): run from the repository root, fail with one clear line, and make a fresh
# virtual environment with mt5lite's wheel, built from a clean copy of the source tree, installed into it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON=${PYTHON:-python3}

fail() { echo "$CHECK: FAILED: $*" >&2; exit 1; }

# fresh_venv DIR [EXTRAS]: DIR/venv with the wheel (plus [EXTRAS]) installed, and an empty DIR/elsewhere to run in.
fresh_venv() {
    local dir=$1 extras=${2:-} wheel
    rm -rf "$dir" && mkdir -p "$dir/elsewhere"
    wheel=$(tests/install/wheel.sh "$dir/dist")
    "$PYTHON" -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "$wheel${extras:+[$extras]}"
}
