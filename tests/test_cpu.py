"""What the CPU offers an export's kernels: arm64 features from AT_HWCAP, and the one-line warning a weight-int8
export gets on a core without the dot-product instructions its int8 kernels need."""

from __future__ import annotations

from dataclasses import replace

from mt5lite.manifest import Quantization, load_manifest
from mt5lite.runtimes.cpu import ARM64_HWCAPS, arm64_features, missing_features
from mt5lite.runtimes.onnx_runtime import slow_kernel_warning


def test_arm64_features_come_from_the_hwcap_bits():
    assert arm64_features("x86_64", hwcap=0xFFFFFFFF) is None  # another architecture: unknown, never "missing"
    assert arm64_features("aarch64", hwcap=0) == set()  # a Cortex-A72 (ARMv8.0): no dot product, no fp16
    assert arm64_features("aarch64", hwcap=ARM64_HWCAPS["asimddp"]) == {"asimddp"}
    assert arm64_features("arm64", hwcap=ARM64_HWCAPS["asimddp"] | ARM64_HWCAPS["asimdhp"]) == {"asimddp", "asimdhp"}
    assert missing_features(["asimddp"], set()) == ["asimddp"]
    assert missing_features(["asimddp"], None) == [] and missing_features([], set()) == []


def test_only_an_export_that_needs_a_missing_feature_is_warned_about(demo_export):
    manifest = load_manifest(demo_export)
    needs = replace(manifest, quantization=Quantization("weight-int8", details={"arm64_needs": ["asimddp"]}))
    warning = slow_kernel_warning(needs, set())
    assert warning and "\n" not in warning and "asimddp" in warning and "--recipe static-int8" in warning
    assert slow_kernel_warning(needs, {"asimddp"}) is None  # an ARMv8.2 core (Pi 5, most phones)
    assert slow_kernel_warning(needs, None) is None  # x86: MLAS has its own int8 kernels
    assert slow_kernel_warning(manifest, set()) is None  # fp32 needs nothing
