"""What this CPU offers an export's kernels (lean: the standard library only).

ONNX Runtime's int8 ``MatMulNBits`` kernels on arm64 are built on the dot-product instructions (``sdot``/``udot``,
ARMv8.2's optional FEAT_DotProd; Linux calls it ``asimddp``). A core without them (Cortex-A72 and A53: Raspberry Pi
4 and 3) gets no int8 kernel: ONNX Runtime then dequantizes each 8-bit weight matrix in full at every call and runs a
float product. The weight-int8 recipe records that need in its manifest (``quantization.arm64_needs``), and the
runtime says so in one line when the CPU it runs on lacks it.
"""

from __future__ import annotations

import ctypes
import platform
import sys

#: ``getauxval``'s key for the CPU's feature bits, and the arm64 Linux bits read, by their ``/proc/cpuinfo`` names.
AT_HWCAP = 16
ARM64_HWCAPS = {"asimdhp": 1 << 10, "asimddp": 1 << 20}


def _hwcap() -> int | None:
    """The AT_HWCAP bits of this process (Linux), None where they cannot be read."""
    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return None
    getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    return int(getauxval(AT_HWCAP))


def arm64_features(machine: str | None = None, hwcap: int | None = None) -> set[str] | None:
    """The arm64 features of ``ARM64_HWCAPS`` this CPU has (by default: this process's machine and AT_HWCAP); None
    on another architecture or where they cannot be read."""
    machine = machine or platform.machine()
    if machine.lower() not in ("aarch64", "arm64") or (hwcap is None and not sys.platform.startswith("linux")):
        return None
    bits = _hwcap() if hwcap is None else hwcap
    if bits is None:
        return None
    return {name for name, bit in ARM64_HWCAPS.items() if bits & bit}


def missing_features(needs: list[str], features: set[str] | None) -> list[str]:
    """The features of ``needs`` (arm64 names) that ``features`` lacks; none where the features are unknown."""
    return [] if features is None else [need for need in needs if need not in features]
