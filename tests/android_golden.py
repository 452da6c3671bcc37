"""Golden files for the Kotlin core's JVM tests (android_demo/core/src/test), written by the Python side.

- ``tokenizer.json``: sentencepiece models (the demo's, mT5-sized, nmt_nfkc-normalised, without byte fallback) and,
  per model, multilingual texts with the ids and decoded text Python's sentencepiece gives.
- ``decoding.json`` + ``decoding.f32``: generations by the Python LiteRT runtime, greedy and 4-beam, with every
  decoder step it ran (the tokens, positions and position-weighted cache sums it fed, the logits and K/V it got
  back), so that a Kotlin backend can replay them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from mt5lite.data import CALIBRATION_SENTENCES, HELDOUT_SENTENCES, read_sentences, read_task_pairs
from mt5lite.paths import DEMO_MODEL
from mt5lite.runtimes.options import DecodingOptions

#: Texts that exercise normalisation, whitespace handling, byte fallback and unknown pieces.
EDGE_CASES = [
    "  leading and trailing spaces  ", "tab\tand\nnewline", "many     spaces", "\u3000ideographic space",
    "ＦＵＬＬ ｗｉｄｔｈ １２３", "ligature ﬁ and ﬂ", "Ⅻ ① ㎏ ℃", "e\u0301 combining e\u0301\u0301", "ǅ ǈ ǋ",
    "emoji 🦊 👩\u200d👩\u200d👧 🇫🇷", "\u200frtl mark\u200e", "no\u00a0break\u00a0space", "zero\u200bwidth",
    "Русский 日本語 عربى עברית ภาษาไทย 한국어 हिन्दी Ελληνικά", "x" * 300, "1234567890 3.14159", "ﷺ ﷽",
    "\U0001d400\U0001d401 math bold", "control\u0007bell",
]


def _train(texts: list[str], **options) -> bytes:
    import sentencepiece as spm

    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=writer, model_type="unigram",
                                   vocab_size=800, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
                                   hard_vocab_limit=False, **options)
    return writer.getvalue()


def write_tokenizer_golden(directory: Path) -> dict:
    """Write the tokenizer models and ``tokenizer.json``; returns the case counts per model."""
    import sentencepiece as spm

    from tests.fixtures import large_tokenizer

    sentences = read_sentences(CALIBRATION_SENTENCES) + read_sentences(HELDOUT_SENTENCES)
    training = [s.text for s in read_sentences(CALIBRATION_SENTENCES)]
    models = {
        "demo": (DEMO_MODEL / "spiece.model").read_bytes(),
        "mt5-sized": large_tokenizer(),
        "nmt-nfkc": _train(training, normalization_rule_name="nmt_nfkc", byte_fallback=True, character_coverage=0.98),
        "no-byte-fallback": _train(training, normalization_rule_name="identity", character_coverage=0.98),
    }
    texts = [(s.lang, s.text) for s in sentences]
    texts += [(p.lang, text) for p in read_task_pairs()[::3] for text in (p.source, p.target)]
    texts += [("edge", text) for text in EDGE_CASES]
    paths, cases = {}, []
    for name, data in models.items():
        path = directory / f"{name}.model"
        path.write_bytes(data)
        paths[name] = str(path)
        processor = spm.SentencePieceProcessor(model_proto=data)
        for lang, text in texts:
            ids = processor.encode(text)
            cases.append({"model": name, "lang": lang, "text": text, "ids": ids, "decoded": processor.decode(ids)})
    (directory / "tokenizer.json").write_text(json.dumps({"models": paths, "cases": cases}, ensure_ascii=False),
                                              encoding="utf-8")
    return {name: len(texts) for name in models}


def _position_weighted_sum(cache: np.ndarray) -> float:
    """A checksum of one row's cache ``[L,H,T,d_kv]`` that depends on where each K/V was written: each value
    weighted by its position + 1."""
    weights = np.arange(1, cache.shape[2] + 1, dtype=np.float64)[None, None, :, None]
    return float((cache.astype(np.float64) * weights).sum())


def write_decoding_golden(export: Path, directory: Path, greedy_every: int = 10, beam_every: int = 30,
                          max_new_tokens: int = 32) -> dict:
    """Run the Python LiteRT generator on held-out task inputs and record every decoder step for replay."""
    from mt5lite.runtimes.litert import LiteRTGenerator

    generator = LiteRTGenerator(export)
    decoder_outputs = {t.name: t.shape for t in generator.manifest.graphs["decoder"].outputs}
    kv = int(np.prod(decoder_outputs["new_self_k"])) // decoder_outputs["new_self_k"][1]
    floats: list[np.ndarray] = []
    offset = 0
    calls: list[dict] = []

    def record(feeds: dict, outputs: dict) -> None:
        nonlocal offset
        for row in range(len(feeds["decoder_input_ids"])):
            parts = [outputs["logits"][row].ravel(), outputs["new_self_k"][:, row].ravel(),
                     outputs["new_self_v"][:, row].ravel()]
            calls.append({"token": int(feeds["decoder_input_ids"][row, 0]), "position": int(feeds["position"][0]),
                          "k_sum": _position_weighted_sum(feeds["self_k_cache"][:, row]),
                          "v_sum": _position_weighted_sum(feeds["self_v_cache"][:, row]), "offset": offset})
            for part in parts:
                floats.append(np.asarray(part, np.float32))
                offset += part.size

    generator.add_step_hook(record)
    pairs = read_task_pairs()
    cases = []
    for beams, every in ((1, greedy_every), (4, beam_every)):
        for pair in pairs[::every]:
            calls.clear()
            options = DecodingOptions(max_new_tokens=max_new_tokens, num_beams=beams)
            ids, _ = generator.encode_batch([pair.source])
            generated = generator.generate_ids([pair.source], options)[0]
            cases.append({"text": pair.source, "lang": pair.lang, "beams": beams, "max_new_tokens": max_new_tokens,
                          "input_ids": ids[0].tolist(), "calls": list(calls), "ids": generated,
                          "output": generator.tokenizer.decode(generated)})
    np.concatenate(floats).astype("<f4").tofile(directory / "decoding.f32")
    golden = {"export": str(export), "floats": "decoding.f32", "logits": decoder_outputs["logits"][-1], "kv": kv,
              "cases": cases}
    (directory / "decoding.json").write_text(json.dumps(golden, ensure_ascii=False), encoding="utf-8")
    return {"greedy": len(pairs[::greedy_every]), "beam": len(pairs[::beam_every])}


def litert_library() -> Path:
    """The ``libLiteRt.so`` of the installed ai-edge-litert wheel (it exports LiteRT's C API)."""
    import importlib.util

    return Path(importlib.util.find_spec("ai_edge_litert").origin).parent / "libLiteRt.so"


def write_real_golden(exports: dict[str, Path], directory: Path, beam_every: int = 6, max_new_tokens: int = 32) -> dict:
    """The Python LiteRT runtime's ids on every held-out task input (greedy) and every ``beam_every``-th (4 beams),
    per export, for the Kotlin core to reproduce on the real models through LiteRT's C API (``real.json``)."""
    from mt5lite.runtimes.litert import LiteRTGenerator

    pairs = read_task_pairs()
    cases, counts = [], {}
    for name, export in exports.items():
        generator = LiteRTGenerator(export)
        for beams, chosen in ((1, pairs), (4, pairs[::beam_every])):
            options = DecodingOptions(max_new_tokens=max_new_tokens, num_beams=beams)
            for pair, ids in zip(chosen, generator.generate_ids([p.source for p in chosen], options), strict=True):
                cases.append({"export": name, "text": pair.source, "lang": pair.lang, "beams": beams,
                              "max_new_tokens": max_new_tokens, "ids": ids,
                              "output": generator.tokenizer.decode(ids)})
            counts[f"{name}-{beams}"] = len(chosen)
    golden = {"library": str(litert_library()), "exports": {k: str(v) for k, v in exports.items()}, "cases": cases}
    (directory / "real.json").write_text(json.dumps(golden, ensure_ascii=False), encoding="utf-8")
    return counts
