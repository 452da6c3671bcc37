"""transformers' fast tokenizer, read from the ``tokenizer.json`` every checkpoint ships, tokenizes like sentencepiece.

The reference is what the runtimes use: ``SentencePieceProcessor.encode(text) + [eos]`` and
``SentencePieceProcessor.decode``. Checked on every project text (the sentences and the held-out task's sources and
targets) and on edge cases, for the bundled demo model and for a checkpoint written by ``save_checkpoint``.
Known differences (see ``mt5lite/hf_tokenizer.py``): text spelling a special or byte piece (``"</s>"``,
``"<0x41>"``), the surface of ``<unk>`` in decode, and ``tokenizers``' ``Precompiled`` normalizer dropping combining
marks after a rewritten character; none of these occurs in the texts below.
"""

from __future__ import annotations

import json
import shutil

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from mt5lite.checkpoint import load_model, save_checkpoint
from mt5lite.data import CALIBRATION_SENTENCES, HELDOUT_SENTENCES, read_sentences, read_task_pairs
from mt5lite.errors import CheckpointError
from mt5lite.hf_tokenizer import TOKENIZER_JSON, build_tokenizer, write_tokenizer_json

EOS_ID = 1
UNK_ID = 2
#: Texts that sentencepiece's settings decide: byte fallback, split digits, identity normalization, spaces.
EDGE_CASES = (
    "Hello 👋🏽 world 🇯🇵!", "👨\u200d👩\u200d👧 family", "😀😃😄",  # emoji, skin tone, flag, ZWJ sequence
    "e\u0301 cafe\u0301 n\u0303", "a\u0308\u0304",  # combining marks (NFD; identity normalization keeps them)
    "Mixed Ελληνικά русский 中文 العربية עברית हिन्दी ไทย",  # mixed scripts
    "12345", "call 0123456789 now", "3.14159 and 1,000,000",  # digit runs (split_digits)
    "  leading spaces", "trailing spaces   ", "a   b    c", "   ", "",  # extra spaces
    "tab\there", "\tleading tab", "new\nline", "line\r\nbreak", "\t x \n",  # tabs and newlines stay
    "ქართული ენა", "ግዕዝ ፊደል", "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",  # unseen scripts: Georgian, Ethiopic, Cherokee (byte fallback)
    "x\u00a0y", "ideographic\u3000space", "zero\u200bwidth", "ＡＢＣ full width", "ﬁ ligature",
    "\u2581x", "x \u2581", "\u2581",  # sentencepiece's own space symbol typed as text
)


def project_texts() -> list[str]:
    """Every sentence of the calibration and held-out sets and every source and target of the held-out task."""
    texts = [s.text for path in (CALIBRATION_SENTENCES, HELDOUT_SENTENCES) for s in read_sentences(path)]
    pairs = read_task_pairs()
    return texts + [p.source for p in pairs] + [p.target for p in pairs]


ALL_TEXTS = project_texts() + list(EDGE_CASES)


def differences(model_dir, texts=ALL_TEXTS) -> tuple[list, list]:
    """``(text, sentencepiece, transformers)`` for every text whose ids, and whose decoded ids, differ."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.is_fast
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spiece.model"))
    wrong_ids, wrong_text = [], []
    for text in texts:
        expected = sp.encode(text) + [EOS_ID]
        got = tokenizer(text)["input_ids"]
        if got != expected:
            wrong_ids.append((text, expected, got))
        decoded = tokenizer.decode(expected, skip_special_tokens=True)
        if decoded != sp.decode(expected[:-1]):
            wrong_text.append((text, sp.decode(expected[:-1]), decoded))
    return wrong_ids, wrong_text


def test_the_edge_cases_need_byte_fallback(demo_model):
    sp = spm.SentencePieceProcessor(model_file=str(demo_model / "spiece.model"))
    for text in ("ქართული ენა", "ግዕዝ ፊደል", "Hello 👋🏽 world 🇯🇵!"):
        pieces = sp.encode(text, out_type=str)
        assert any(p.startswith("<0x") for p in pieces), pieces
    assert len(ALL_TEXTS) > 1800


def test_the_demo_model_tokenizes_like_sentencepiece(demo_model):
    wrong_ids, wrong_text = differences(demo_model)
    assert wrong_ids == []
    assert wrong_text == []


def test_a_saved_checkpoint_tokenizes_like_sentencepiece(tiny_mt5, tmp_path):
    out = tmp_path / "saved"
    save_checkpoint(load_model(tiny_mt5), (tiny_mt5 / "spiece.model").read_bytes(), out)
    assert (out / TOKENIZER_JSON).is_file()
    assert "add_prefix_space" not in json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    wrong_ids, wrong_text = differences(out)
    assert wrong_ids == []
    assert wrong_text == []


@pytest.mark.filterwarnings("ignore:The sentencepiece tokenizer that you are converting")
def test_without_tokenizer_json_transformers_converts_spiece_model_wrongly(demo_model, tmp_path):
    """The bug this module fixes, and proof that the checks above can fail: transformers' own conversion."""
    for name in ("spiece.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(demo_model / name, tmp_path / name)
    wrong_ids, wrong_text = differences(tmp_path)
    assert len(wrong_ids) > 600 and len(wrong_text) > 600
    assert any(UNK_ID in got for _, _, got in wrong_ids)  # byte fallback lost


@pytest.mark.filterwarnings("ignore:The sentencepiece tokenizer that you are converting")
def test_add_prefix_space_in_the_config_hides_tokenizer_json_until_removed(demo_model, tmp_path):
    for name in ("spiece.model", "special_tokens_map.json", TOKENIZER_JSON):
        shutil.copy2(demo_model / name, tmp_path / name)
    config = json.loads((demo_model / "tokenizer_config.json").read_text(encoding="utf-8"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "add_prefix_space": True}), "utf-8")
    texts = ["ქართული ენა"]
    assert differences(tmp_path, texts)[0] != []  # T5TokenizerFast converted spiece.model again
    write_tokenizer_json(tmp_path / "spiece.model", tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8")) == config
    assert differences(tmp_path, texts) == ([], [])


def test_the_bundled_tokenizer_json_is_current(demo_model, tmp_path):
    written = write_tokenizer_json(demo_model / "spiece.model", tmp_path)
    assert written == tmp_path / TOKENIZER_JSON
    assert json.loads(written.read_text(encoding="utf-8")) == json.loads(
        (demo_model / TOKENIZER_JSON).read_text(encoding="utf-8"))


#: sentencepiece training options whose effect the tokenizer must read from the model (the demo model: identity,
#: dummy prefix, extra whitespace removed, byte fallback).
SETTINGS = {
    "no-dummy-prefix-keep-spaces": dict(normalization_rule_name="identity", add_dummy_prefix=False,
                                        remove_extra_whitespaces=False, byte_fallback=True),
    "keep-spaces": dict(normalization_rule_name="identity", remove_extra_whitespaces=False, byte_fallback=True),
    "nmt-nfkc-no-byte-fallback": dict(normalization_rule_name="nmt_nfkc", byte_fallback=False),  # as google/mt5-*
}
#: Texts that ``tokenizers``' ``Precompiled`` normalizer gets wrong (huggingface/tokenizers#2334): NFKC composes
#: a + U+0308 + U+0304 into U+01DF; ``Precompiled`` applies the shorter rule (a + U+0308) and drops U+0304.
PRECOMPILED_BUG = {"nmt-nfkc-no-byte-fallback": {"a\u0308\u0304"}}


@pytest.mark.parametrize("name", SETTINGS)
def test_settings_are_read_from_the_model(name, tmp_path):
    prefix = tmp_path / "sp"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(project_texts()), model_prefix=str(prefix),
                                   vocab_size=1000, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=0.98, split_digits=True, minloglevel=2, **SETTINGS[name])
    path = tmp_path / "sp.model"
    sp = spm.SentencePieceProcessor(model_file=str(path))
    tokenizer = build_tokenizer(path)
    wrong_ids = {text for text in ALL_TEXTS if tokenizer.encode(text).ids != sp.encode(text) + [EOS_ID]}
    assert wrong_ids <= PRECOMPILED_BUG.get(name, set())
    # sentencepiece decodes <unk> as " ⁇ ", transformers as "<unk>" or nothing: compare only texts without one
    known = [ids for ids in map(sp.encode, ALL_TEXTS) if UNK_ID not in ids]
    assert len(known) > 100
    wrong_text = [ids for ids in known if tokenizer.decode(ids) != sp.decode(ids)]
    assert wrong_text == []


def test_unsupported_settings_are_all_listed(demo_model, tmp_path):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((demo_model / "spiece.model").read_bytes())
    proto.trainer_spec.model_type = 2  # BPE
    proto.trainer_spec.treat_whitespace_as_suffix = True
    (tmp_path / "spiece.model").write_bytes(proto.SerializeToString())
    with pytest.raises(CheckpointError) as info:
        write_tokenizer_json(tmp_path / "spiece.model", tmp_path)
    assert "only unigram" in str(info.value) and "treat_whitespace_as_suffix" in str(info.value)
    assert not (tmp_path / TOKENIZER_JSON).exists()


def test_a_file_that_is_not_a_sentencepiece_model(tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"\xff not a protobuf")
    with pytest.raises(CheckpointError, match="not a readable sentencepiece model"):
        build_tokenizer(tmp_path / "spiece.model")
