"""Random-weight models derived from real configs, for tests and benchmarks (no model hub needed).

``REAL_CONFIGS`` holds the published configs of ``google/mt5-small``, ``google/mt5-base``, ``t5-small``,
``google/flan-t5-small`` and ``google/umt5-small`` (the model-defining keys, transcribed from their config.json).
``tiny_config`` shrinks one to a few layers and a small vocabulary while keeping its quirks (``d_kv`` !=
``d_model / heads``, gated-GELU or ReLU FFN, tied or untied ``lm_head``), so tests run the real code path in
seconds. ``random_real_model`` builds a model of one config's exact shape once and caches it (``mt5_small_random``:
google/mt5-small's); ``mt5_small_250k`` is the same model with a
tokenizer of mT5's size (``large_tokenizer``: mT5's own cannot be downloaded here).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mt5lite.paths import BUILD_DIR, DEMO_MODEL

REAL_CONFIGS: dict[str, dict] = {
    "google/mt5-small": {
        "model_type": "mt5",
        "vocab_size": 250112,
        "d_model": 512,
        "d_kv": 64,
        "d_ff": 1024,
        "num_layers": 8,
        "num_decoder_layers": 8,
        "num_heads": 6,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    },
    "t5-small": {
        "model_type": "t5",
        "vocab_size": 32128,
        "d_model": 512,
        "d_kv": 64,
        "d_ff": 2048,
        "num_layers": 6,
        "num_decoder_layers": 6,
        "num_heads": 8,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "feed_forward_proj": "relu",
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    },
}


#: google/mt5-base's published config: mt5-small's with wider and more layers and heads.
REAL_CONFIGS["google/mt5-base"] = {**REAL_CONFIGS["google/mt5-small"], "d_model": 768, "d_ff": 2048, "num_layers": 12,
                                   "num_decoder_layers": 12, "num_heads": 12}
#: google/flan-t5-small's published config (T5 v1.1's shape): mt5-small's architecture with T5's 32k vocabulary.
REAL_CONFIGS["google/flan-t5-small"] = {**REAL_CONFIGS["google/mt5-small"], "model_type": "t5", "vocab_size": 32128}
#: google/umt5-small's published config: mt5-small's shape with a 256k vocabulary (and, in transformers' UMT5
#: classes, a relative-position bias in every self-attention layer).
REAL_CONFIGS["google/umt5-small"] = {**REAL_CONFIGS["google/mt5-small"], "model_type": "umt5", "vocab_size": 256384}


def tiny_config(name: str, vocab_size: int = 1280) -> dict:
    """``name``'s real config shrunk to 2+2 layers, d_model 64 and ``vocab_size`` rows, its quirks kept."""
    if name not in REAL_CONFIGS:
        raise KeyError(f"unknown config {name!r}; known: {', '.join(REAL_CONFIGS)}")
    config = dict(REAL_CONFIGS[name])
    config.update(vocab_size=vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                  num_heads=2, dropout_rate=0.0)  # 2 heads x 16 = 32 != d_model, as mT5's 6 x 64 != 512
    return config


def build_random_model(config: dict, output_dir: Path, seed: int = 0, tokenizer_from: Path = DEMO_MODEL) -> Path:
    """Write a randomly initialised checkpoint of ``config`` (safetensors) with ``tokenizer_from``'s tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    config = dict(config)
    hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
    model = AutoModelForSeq2SeqLM.from_config(hf_config)
    model.eval()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    for name in ("spiece.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json",
                 "generation_config.json"):
        if (tokenizer_from / name).is_file():
            shutil.copy2(tokenizer_from / name, output_dir / name)
    return output_dir


def random_real_model(name: str, cache_dir: Path = BUILD_DIR / "fixtures") -> Path:
    """A random-init model with the exact config ``name`` of ``REAL_CONFIGS``, built once and cached as
    ``cache_dir/<name without its owner>-random``."""
    target = Path(cache_dir) / f"{name.split('/')[-1]}-random"
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        build_random_model(REAL_CONFIGS[name], Path(tmp) / "model")
        shutil.rmtree(target, ignore_errors=True)
        (Path(tmp) / "model").rename(target)
    return target


def mt5_small_random(cache_dir: Path = BUILD_DIR / "fixtures") -> Path:
    """A random-init model with ``google/mt5-small``'s exact config (about 1.2 GB), built once and cached."""
    return random_real_model("google/mt5-small", cache_dir)


#: google/mt5-small's sentencepiece model has 250,100 pieces (its embedding 250,112 rows).
MT5_PIECES = 250_100
#: Character ranges the synthetic pieces are drawn from: the scripts of the project's languages and mT5's others.
SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyzàáâäçèéêëíîïñóôöùúûüßœ",
    "cyrillic": "".join(map(chr, range(0x430, 0x450))),
    "greek": "".join(map(chr, range(0x3B1, 0x3CA))),
    "arabic": "".join(map(chr, range(0x621, 0x64B))),
    "hebrew": "".join(map(chr, range(0x5D0, 0x5EB))),
    "devanagari": "".join(map(chr, range(0x905, 0x940))),
    "thai": "".join(map(chr, range(0xE01, 0xE3A))),
    "hangul": "".join(map(chr, range(0xAC00, 0xD7A4))),
    "kana": "".join(map(chr, range(0x3041, 0x30FB))),
    "han": "".join(map(chr, range(0x4E00, 0x9FA6))),
}


def large_tokenizer(pieces: int = MT5_PIECES, seed: int = 0) -> bytes:
    """A serialized sentencepiece unigram model of ``pieces`` pieces, shaped like mT5's: pad 0, eos 1, unk 2, byte
    fallback, a few thousand pieces learned from the project's multilingual text, the rest synthetic words over
    the scripts mT5 covers (``SCRIPTS``), scored below the learned ones and appended through sentencepiece's own
    protobuf schema. Text in the project's languages then uses a few thousand of its pieces, as it would with
    mT5's own tokenizer."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    from mt5lite.compression.trim_vocab import default_corpus, read_corpus

    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(read_corpus(default_corpus())), model_writer=writer, model_type="unigram",
        vocab_size=8000, hard_vocab_limit=False, character_coverage=1.0, byte_fallback=True,
        normalization_rule_name="identity", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(writer.getvalue())
    seen = {piece.piece for piece in proto.pieces}
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    lowest = min(piece.score for piece in proto.pieces if piece.type == normal)
    rng = np.random.default_rng(seed)
    alphabets = list(SCRIPTS.values())
    while len(proto.pieces) < pieces:
        alphabet = alphabets[rng.integers(len(alphabets))]
        word = "".join(alphabet[i] for i in rng.integers(len(alphabet), size=rng.integers(1, 6)))
        word = "\u2581" + word if rng.random() < 0.5 else word
        if word not in seen:
            seen.add(word)
            proto.pieces.add(piece=word, score=float(lowest - rng.uniform(0.5, 8.0)), type=normal)
    proto.trainer_spec.vocab_size = len(proto.pieces)
    return proto.SerializeToString()


def mt5_small_250k(cache_dir: Path = BUILD_DIR / "fixtures") -> Path:
    """``mt5_small_random``'s weights (google/mt5-small's exact shape) with ``large_tokenizer``'s 250,100 pieces
    and the tokenizer files transformers reads, built once and cached (about 1.2 GB)."""
    from mt5lite.checkpoint import load_model, save_checkpoint

    target = Path(cache_dir) / "mt5-small-250k"
    if (target / "model.safetensors").is_file():
        return target
    source = mt5_small_random(cache_dir)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mt5-small-250k-") as tmp:
        save_checkpoint(load_model(source), large_tokenizer(), Path(tmp) / "model")
        shutil.rmtree(target, ignore_errors=True)
        (Path(tmp) / "model").rename(target)
    return target
