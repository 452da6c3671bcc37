"""A random model with google/mt5-small's exact config (slow: builds and caches about 1.2 GB once)."""

from __future__ import annotations

import pytest

from mt5lite.fixtures import REAL_CONFIGS, mt5_small_random
from runtimes.options import DecodingOptions
from runtimes.torch_reference import TorchReference

pytestmark = pytest.mark.slow


def test_mt5_small_random_has_the_real_shape_and_generates():
    reference = TorchReference(mt5_small_random())
    config = reference.model.config
    for key, value in REAL_CONFIGS["google/mt5-small"].items():
        if key not in ("model_type", "dropout_rate"):
            assert getattr(config, key) == value, key
    assert sum(p.numel() for p in reference.model.parameters()) == 300_176_768
    ids = reference.generate_ids(["words en: 12"], DecodingOptions(max_new_tokens=4))[0]
    assert 1 <= len(ids) <= 4 and all(t < reference.tokenizer.piece_count for t in ids)
