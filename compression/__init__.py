"""Compression passes (layer 4), each ``(model, tokenizer, config) -> (model, tokenizer, report)``, registered by
name in ``mt5lite.compression.passes.PASSES``; ``mt5lite.compression.compress`` runs them on a checkpoint."""

from mt5lite.compression import prune, sharing, sparsity, training, trim_vocab  # noqa: F401  (importing a pass module registers its pass)
