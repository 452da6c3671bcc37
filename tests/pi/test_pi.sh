#!/usr/bin/env bash
# make test-pi: the device install, checked on an emulated 64-bit Raspberry Pi OS (Debian bookworm, arm64) through
# qemu-user. A Debian arm64 root (debootstrap, cached under build/pi/) gets the project's wheel with [litert] in a
# venv, so pip must find aarch64 wheels of onnxruntime, ai-edge-litert, numpy and sentencepiece on PyPI; then
# `mt5lite generate` runs the three exports of `make export-tflite` (fp32 ONNX, static int8 ONNX, full-int8 TFLite)
# inside the root and must print exactly what it prints on this x86 host, line for line. Needs root (chroot, mount).
# Timings under emulation only show that it runs; they say nothing about a real Pi's speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}                   # the same on both sides
# The CPU qemu emulates: a Raspberry Pi 4's Cortex-A72 (ARMv8.0: no dot-product instructions), not qemu's default
# "max", which has them and so runs kernels a Pi 4 never gets (docs/raspberry-pi.md).
PI_CPU=${PI_CPU:-cortex-a72}
pi=$PWD/$BUILD/pi
root=$pi/root                           # the arm64 root; $pi/root.stamp marks it complete
exports=(onnx onnx-int8 tflite)
heavy_re='^(torch|transformers|tensorflow|tensorflow-cpu|tf-keras|keras)=='
say() { echo "test-pi: $*"; }
fail() { echo "test-pi: FAILED: $*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# Everything inside the root runs with a clean environment: nothing from the host's venv or make leaks in.
in_root() { chroot "$root" /usr/bin/env -i HOME=/root LC_ALL=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    QEMU_CPU="$PI_CPU" PIP_CERT=/etc/ssl/host-ca-bundle.crt \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# Unmount whatever is mounted under the root (our /proc; debootstrap's own /proc, /sys and, in a container, bound
# /dev nodes if it died), deepest first, so nothing of the host is ever deleted or left mounted.
unmount_root() {
    local m
    for m in $(findmnt -rn -o TARGET | grep -F "$root/" | sort -r); do umount -l "$m" || true; done
}
trap unmount_root EXIT
[ "$(id -u)" -eq 0 ] || fail "needs root (chroot, mount, debootstrap)"
for e in "${exports[@]}"; do
    [ -f "$BUILD/$e/manifest.json" ] || fail "$BUILD/$e/manifest.json is missing: run make export-tflite first"
done
t_all=$(now)

# 1. Host tools. Only Debian's mirror is reachable: use the one apt already uses (deb822 or one-line sources).
if ! command -v debootstrap > /dev/null || [ ! -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    say "installing qemu-user-static and debootstrap (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static debootstrap \
        > /dev/null || fail "apt-get could not install qemu-user-static debootstrap"
fi
mirror=${PI_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -1 \
    | tr -d '[:space:]' || true)}
[ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources.list{,.d/*}; set PI_MIRROR=URL"

# 2. Run arm64 binaries through qemu: binfmt_misc, with aarch64 registered from qemu-user-static's own line (its
# F flag opens the interpreter now, so it works inside the chroot). There is no update-binfmts here.
binfmt=/proc/sys/fs/binfmt_misc
mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt" || fail "cannot mount binfmt_misc"
if [ ! -e "$binfmt/qemu-aarch64" ]; then
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > "$binfmt/register" || fail "cannot register qemu-aarch64"
fi
grep -q '^enabled' "$binfmt/qemu-aarch64" || fail "binfmt entry qemu-aarch64 is not enabled"

# 3. The root: Debian bookworm arm64 (what Raspberry Pi OS 64-bit is built on), built once and cached.
root_cached=true
if [ ! -f "$pi/root.stamp" ]; then
    unmount_root
    rm -rf --one-file-system "$root"
    mkdir -p "$pi"
    say "debootstrap bookworm arm64 from $mirror into $root (about 3 minutes)"
    t=$(now)
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$root" "$mirror" > "$pi/debootstrap.log" 2>&1 \
        || { tail -20 "$pi/debootstrap.log" >&2; fail "debootstrap failed (log: $pi/debootstrap.log)"; }
    root_cached=false
    since "$t" > "$pi/root.stamp"
    say "root built in $(cat "$pi/root.stamp") s"
else
    say "reusing the root in $root (built in $(cat "$pi/root.stamp") s; rm -rf $BUILD/pi to rebuild)"
fi
# pip inside needs DNS, and the host's CA bundle: PyPI is reached through an egress proxy whose CA only the host's
# bundle has (pip is pointed at the copy; the root's own certificates stay Debian's).
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$root/etc/ssl/host-ca-bundle.crt"
# /proc only: with the host's x86 /sys bound, onnxruntime's cpuinfo segfaults; without it, it only warns.
mountpoint -q "$root/proc" || mount --bind /proc "$root/proc"
[ "$(in_root uname -m)" == aarch64 ] || fail "the root does not run as aarch64: $(in_root uname -m)"

# 4. The device install: the wheel (built from a clean copy of the tree) with [litert], from PyPI's aarch64
# wheels. The venv is kept between runs; mt5lite itself is reinstalled every time, since its version number does
# not change when its code does.
wheel=$(tests/install/wheel.sh "$pi/dist")
rm -rf "$root/opt/wheel" && mkdir -p "$root/opt/wheel" && cp "$wheel" "$root/opt/wheel/"
whl=/opt/wheel/$(basename "$wheel")
say "pip install $(basename "$wheel")[litert] inside the root (a few minutes the first time)"
t=$(now)
[ -x "$root/opt/mt5lite/bin/pip" ] || in_root python3 -m venv /opt/mt5lite
in_root /opt/mt5lite/bin/pip install --quiet "$whl[litert]" > "$pi/pip.log" 2>&1 \
    && in_root /opt/mt5lite/bin/pip install --quiet --force-reinstall --no-deps "$whl" >> "$pi/pip.log" 2>&1 \
    || { tail -20 "$pi/pip.log" >&2; fail "pip install inside the root failed (log: $pi/pip.log)"; }
pip_s=$(since "$t")
in_root /opt/mt5lite/bin/pip list --format=freeze > "$pi/pip-list.txt"
say "installed in $pip_s s: $(tr '\n' ' ' < "$pi/pip-list.txt")"
heavy=$(grep -iE "$heavy_re" "$pi/pip-list.txt" || true)
[ -z "$heavy" ] || fail "the device install has heavy packages: $heavy"
# The wheel tags pip chose, as proof they are aarch64 builds.
site=$(echo "$root"/opt/mt5lite/lib/python3*/site-packages)
grep -H '^Tag:' "$site"/{onnxruntime,ai_edge_litert,numpy,sentencepiece}-*.dist-info/WHEEL \
    | sed -E 's|.*/([^/]+)\.dist-info/WHEEL:Tag: |\1 |' > "$pi/wheel-tags.txt"
grep -q aarch64 "$pi/wheel-tags.txt" || fail "no aarch64 wheel tags in $pi/wheel-tags.txt"

# 5. The exports and the inputs: every 15th held-out pair (40 inputs, 4 per language, both directions).
rm -rf "$root/opt/exports" && mkdir -p "$root/opt/exports"
for e in "${exports[@]}"; do cp -r "$BUILD/$e" "$root/opt/exports/$e"; done
grep -v '^#' data/task/heldout.tsv | awk -F'\t' 'NR % 15 == 1 {print $2}' > "$pi/inputs.txt"
cp "$pi/inputs.txt" "$root/opt/inputs.txt"
n=$(wc -l < "$pi/inputs.txt")

# 6. The same command on x86 and under emulation; every line must match.
: > "$pi/results.tsv"
failed=()
for e in "${exports[@]}"; do
    t=$(now)
    .venv/bin/mt5lite generate --model "$BUILD/$e" --threads "$THREADS" --input-file "$pi/inputs.txt" \
        > "$pi/$e.x86.txt" 2> "$pi/$e.x86.err" \
        || { cat "$pi/$e.x86.err" >&2; fail "$e: mt5lite generate failed on the host (stderr above)"; }
    host_s=$(since "$t")
    t=$(now)
    in_root /opt/mt5lite/bin/mt5lite generate --model "/opt/exports/$e" --threads "$THREADS" \
        --input-file /opt/inputs.txt > "$pi/$e.arm64.txt" 2> "$pi/$e.arm64.err" \
        || { cat "$pi/$e.arm64.err" >&2; fail "$e: mt5lite generate failed inside the root (stderr above)"; }
    pi_s=$(since "$t")
    same=$(awk 'NR == FNR { a[FNR] = $0; next } FNR in a && a[FNR] == $0' "$pi/$e.x86.txt" "$pi/$e.arm64.txt" | wc -l)
    lines=$(wc -l < "$pi/$e.arm64.txt")
    ms=$(awk -v s="$pi_s" -v n="$n" 'BEGIN { printf "%.0f", 1000 * s / n }')
    say "$e: $same of $n outputs identical to x86; emulated: $pi_s s, $ms ms/input (x86: $host_s s)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$e" "$n" "$same" "$lines" "$pi_s" "$host_s" >> "$pi/results.tsv"
    if [ "$same" -ne "$n" ] || [ "$lines" -ne "$n" ]; then
        failed+=("$e")
        diff "$pi/$e.x86.txt" "$pi/$e.arm64.txt" | head -20 >&2 || true
    fi
done

# 7. The summary, for the record.
mkdir -p "$BUILD/reports"
PI="$pi" N="$n" ROOT_CACHED="$root_cached" PIP_S="$pip_s" TOTAL_S="$(since "$t_all")" MIRROR="$mirror" \
THREADS="$THREADS" PI_CPU="$PI_CPU" .venv/bin/python - "$BUILD/reports/test-pi.json" <<'EOF'
import json, os, sys
from pathlib import Path
pi, env = Path(os.environ["PI"]), os.environ
rows = [line.split("\t") for line in (pi / "results.tsv").read_text().splitlines()]
summary = {
    "platform": "Debian bookworm arm64 (debootstrap minbase) under qemu-user, mirror " + env["MIRROR"],
    "emulated_cpu": env["PI_CPU"],  # QEMU_CPU
    "root_cached": env["ROOT_CACHED"] == "true",  # true: this run reused the root built earlier
    "root_build_seconds": float((pi / "root.stamp").read_text()),  # debootstrap, when the root was built
    "pip_install_seconds": float(env["PIP_S"]),
    "total_seconds": float(env["TOTAL_S"]),
    "packages": dict(line.split("==", 1) for line in (pi / "pip-list.txt").read_text().split()),
    "wheel_tags": {},
    "threads": int(env["THREADS"]),
    "inputs": int(env["N"]),
    "exports": {e: {"identical": int(same), "outputs": int(lines), "emulated_seconds": float(pi_s),
                    "emulated_ms_per_input": round(1000 * float(pi_s) / int(n)), "x86_seconds": float(host_s)}
                for e, n, same, lines, pi_s, host_s in rows},
    "note": "emulated timings (process start-up included) only show that it runs; not a Raspberry Pi's speed",
}
for line in (pi / "wheel-tags.txt").read_text().splitlines():
    dist, tag = line.split(" ", 1)
    summary["wheel_tags"].setdefault(dist, []).append(tag)
summary["passed"] = all(r["identical"] == r["outputs"] == summary["inputs"] for r in summary["exports"].values())
Path(sys.argv[1]).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
EOF
[ ${#failed[@]} -eq 0 ] || fail "outputs differ from x86 for: ${failed[*]} (files in $pi/)"
say "passed in $(since "$t_all") s; summary in $BUILD/reports/test-pi.json"
