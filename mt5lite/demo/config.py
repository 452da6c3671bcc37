"""The shape and training recipe of the bundled demo model (no heavy imports, so the CLI can show defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of the demo model and its training run."""

    seed: int = 1234
    vocab_pieces: int = 1200  # sentencepiece unigram pieces (special and byte pieces included)
    embedding_multiple: int = 128  # embedding rows are rounded up to this, like mT5's 250112 > 250100 pieces
    d_model: int = 192
    d_kv: int = 32  # 4 heads x 32 = 128 != d_model, as in mT5
    d_ff: int = 512
    num_layers: int = 3
    num_decoder_layers: int = 3
    num_heads: int = 4
    batch_size: int = 64
    steps: int = 6000  # 7500 ran at 4.5-6 steps/s here: 6000 keeps `make demo-model` under 25 minutes
    warmup_steps: int = 300
    peak_lr: float = 5e-4  # measured over 1000 steps: 5e-4 reached loss 0.55, 1e-3 0.67, 2e-3 1.06
    final_lr_fraction: float = 0.02  # cosine decay down to peak_lr * this
    weight_decay: float = 0.01
    threads: int = 2
