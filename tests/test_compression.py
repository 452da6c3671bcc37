"""Compression: the pass framework, vocabulary trimming on the trained demo model and on tiny models, the compress
command and its report, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm

from mt5lite.checkpoint import load_model
from mt5lite.compression.compress import compress, read_sentencepiece
from mt5lite.compression.passes import PASSES
from mt5lite.compression.prune import DropLayersConfig, PruneFfnConfig, PruneHeadsConfig
from mt5lite.compression.sharing import ShareLayersConfig, TieEmbeddingsConfig
from mt5lite.compression.sparsity import MagnitudePruneConfig
from mt5lite.compression.training import DistillConfig, FinetuneConfig, training_directory
from mt5lite.compression.trim_vocab import TrimVocabConfig, trim_tokenizer, trim_vocab
from mt5lite.compression.trim_vocab import kept_ids as trim_kept_ids
from mt5lite.data import read_task_pairs
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.torch_reference import TorchReference
from mt5lite.verification.kept_ids import compare_trimmed, kept_ids
from tests.conftest import run_cli

FP32_ATOL = 1e-4  # trimmed vs original logits at the kept ids: the same weights, sliced
#: Every registered pass with a config for a tiny model (tests/test_registries.py checks this covers PASSES).
PASS_CASES = {  # (files, tiny model) -> config; files: a text corpus and a task-pair file
    "trim-vocab": lambda files, model: TrimVocabConfig(corpus=(files["corpus"],)),
    "prune-ffn": lambda files, model: PruneFfnConfig(ffn_keep=0.5, importance_pairs=16),
    "prune-heads": lambda files, model: PruneHeadsConfig(heads_keep=0.5, importance_pairs=16),
    "drop-layers": lambda files, model: DropLayersConfig(encoder_layers_keep=1, decoder_layers_keep=0.5,
                                                         importance_pairs=16),
    "finetune": lambda files, model: FinetuneConfig(train_data=files["pairs"], max_steps=3, batch_size=4),
    "distill": lambda files, model: DistillConfig(train_data=files["pairs"], max_steps=3, batch_size=4,
                                                  teacher=model, unlabelled=files["unlabelled"]),
    "magnitude-prune": lambda files, model: MagnitudePruneConfig(sparsity=0.5),
    "share-layers": lambda files, model: ShareLayersConfig(share_group=2),
    "tie-embeddings": lambda files, model: TieEmbeddingsConfig(),
}
#: Passes that train instead of shrinking: their reports carry a loss curve.
TRAINING_PASSES = ("finetune", "distill")
#: Passes that keep every parameter (zeros are still parameters).
SAME_SIZE = (*TRAINING_PASSES, "magnitude-prune")


@pytest.fixture(scope="module")
def training_corpus(tmp_path_factory) -> Path:
    """Every training text of the demo task: the languages the demo model was trained on."""
    from mt5lite.demo.task import training_pairs

    path = tmp_path_factory.mktemp("corpus") / "training.tsv"
    path.write_text("".join(f"{p.lang}\t{p.source}\t{p.target}\n" for p in training_pairs({})), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trimmed(demo_model, training_corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("compressed") / "demo-trimmed"
    config = TrimVocabConfig(corpus=(training_corpus,))
    report = compress(demo_model, out, ["trim-vocab"], {"trim-vocab": config}, pairs=read_task_pairs()[::6])
    return out, report


def _id_map(original: Path, trimmed: Path) -> dict[int, int]:
    """New id -> original id, by piece string."""
    old = read_sentencepiece(original / "spiece.model")
    new = read_sentencepiece(trimmed / "spiece.model")
    index = {piece.piece: i for i, piece in enumerate(old.pieces)}
    return {i: index[piece.piece] for i, piece in enumerate(new.pieces)}


def test_trimmed_demo_tokenizes_every_heldout_text_the_same_up_to_the_id_map(demo_model, trimmed):
    out, _ = trimmed
    id_map = _id_map(demo_model, out)
    old = spm.SentencePieceProcessor(model_file=str(demo_model / "spiece.model"))
    new = spm.SentencePieceProcessor(model_file=str(out / "spiece.model"))
    texts = [text for p in read_task_pairs() for text in (p.source, p.target)]
    assert len(texts) == 1200
    assert [[id_map[i] for i in ids] for ids in new.encode(texts)] == old.encode(texts)
    assert [new.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]  # the special ids keep their ids


def test_trimmed_demo_generates_the_same_greedy_and_beam_outputs(demo_model, trimmed):
    out, report = trimmed
    original, smaller = TorchReference(demo_model), TorchReference(out)
    sources = [p.source for p in read_task_pairs()]
    for options, inputs in ((DecodingOptions(), sources), (DecodingOptions(num_beams=4), sources[::6])):
        assert smaller.generate(inputs, options) == original.generate(inputs, options), options
    assert report["passes"][0]["vocabulary"] == [1200, 1109]
    assert report["passes"][0]["embedding_rows"] == [1280, 1109]


def test_trimmed_demo_logits_at_the_kept_ids_equal_the_originals(demo_model, trimmed):
    out, _ = trimmed
    assert kept_ids(demo_model, out).tolist() == [old for _, old in sorted(_id_map(demo_model, out).items())]
    found = compare_trimmed(demo_model, out, [p.source for p in read_task_pairs()[::10]])
    assert set(found.max_abs_diff) == {"encoder_hidden_states", "cross_k", "cross_v", "logits"}
    assert max(found.max_abs_diff.values()) <= FP32_ATOL, found.max_abs_diff


def test_a_model_trimmed_from_another_is_not_compared(demo_model, trimmed, tiny_mt5):
    with pytest.raises(ValueError, match="pieces are not in .*it was not trimmed from that model"):
        kept_ids(trimmed[0], tiny_mt5)


def test_trimmed_checkpoint_is_an_ordinary_hugging_face_checkpoint(demo_model, trimmed, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, T5Tokenizer

    out, _ = trimmed
    model = AutoModelForSeq2SeqLM.from_pretrained(out, local_files_only=True)
    tokenizer = T5Tokenizer.from_pretrained(out, local_files_only=True)
    text = "words ja: 2026"
    sp = spm.SentencePieceProcessor(model_file=str(out / "spiece.model"))
    assert tokenizer(text).input_ids == sp.encode(text) + [1]
    assert model.config.vocab_size == 1109 and model.lm_head.weight.shape[0] == 1109
    result = run_cli("export", "onnx", "--model", str(out), "--output", str(tmp_path / "onnx"), "--validate-samples",
                     "4")
    assert result.returncode == 0, result.stderr.decode()
    onnx_out = run_cli("generate", "--model", str(tmp_path / "onnx"), text)
    assert onnx_out.stdout.decode().strip() == TorchReference(demo_model).generate([text])[0]


def test_report_has_parameters_bytes_vocabulary_and_quality_per_language(trimmed):
    out, report = trimmed
    written = json.loads((out / "compress_report.json").read_text())
    assert written == json.loads(json.dumps(report))
    row = written["passes"][0]
    assert row["name"] == "trim-vocab" and row["parameters"][1] < row["parameters"][0]
    assert row["bytes"] == [4 * row["parameters"][0], 4 * row["parameters"][1]]
    before, after = written["quality"]["before"], row["quality_after"]
    assert set(before["per_language"]) == set(after["per_language"]) and len(before["per_language"]) == 10
    assert after["exact_match"] == before["exact_match"]  # identical outputs
    assert "| trim-vocab |" in (out / "compress_report.md").read_text()


def test_tied_lm_head_stays_tied(tiny_model, tmp_path):
    model = load_model(tiny_model)
    tokenizer = read_sentencepiece(tiny_model / "spiece.model")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("words en: 12\nnumber fr: douze\n", encoding="utf-8")
    model, tokenizer, report = trim_vocab(model, tokenizer, TrimVocabConfig(corpus=(corpus,), keep_top=10))
    assert model.config.vocab_size == len(tokenizer.pieces) == report.vocabulary[1]
    assert model.get_input_embeddings().weight.shape[0] == model.lm_head.weight.shape[0] == len(tokenizer.pieces)
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.get_input_embeddings().weight
    else:
        assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert report.details["kept_by_score"] <= 10 and report.details["special_and_byte_pieces"] == 259


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.needs("train")) if n in TRAINING_PASSES else n
                                  for n in PASS_CASES])
def test_every_pass_keeps_a_working_model_and_reports_what_changed(tiny_mt5, tmp_path, name):
    files = {"corpus": tmp_path / "corpus.txt", "pairs": tmp_path / "pairs.tsv", "unlabelled": tmp_path / "in.tsv"}
    files["corpus"].write_text("words en: 12\nnumber fr: douze\nwords ja: 2026\n", encoding="utf-8")
    files["pairs"].write_text("en\twords en: 12\ttwelve\nfr\tnumber fr: douze\t12\n" * 4, encoding="utf-8")
    files["unlabelled"].write_text("de\twords de: 7\nja\twords ja: 31\n", encoding="utf-8")
    model, tokenizer = load_model(tiny_mt5), read_sentencepiece(tiny_mt5 / "spiece.model")
    with training_directory(tmp_path / "training"):
        model, tokenizer, report = PASSES[name].run(model, tokenizer, PASS_CASES[name](files, tiny_mt5))
    assert report.name == name and report.summary and report.bytes == tuple(4 * p for p in report.parameters)
    if name in SAME_SIZE:
        assert report.parameters[1] == report.parameters[0]
    if name in TRAINING_PASSES:
        assert report.details["steps"] == 3 and len(report.details["losses"]) == 3
        assert not (tmp_path / "training" / name).exists()
    elif name not in SAME_SIZE:
        assert report.parameters[1] < report.parameters[0]
    assert report.non_embedding_parameters[1] <= report.non_embedding_parameters[0] < report.parameters[0]
    assert report.vocabulary[1] == len(tokenizer.pieces) and report.embedding_rows[1] == model.config.vocab_size
    ids = TorchReference.from_model(model, _tokenizer(tokenizer, tmp_path)).generate_ids(["words en: 12"])
    assert ids and all(0 <= t < len(tokenizer.pieces) for row in ids for t in row)


def _tokenizer(proto, directory: Path):
    from mt5lite.runtimes.tokenizer import Tokenizer

    path = directory / "spiece.model"
    path.write_bytes(proto.SerializeToString())
    return Tokenizer(path)


def test_unknown_pass_lists_the_known_ones(tmp_path):
    result = run_cli("compress", "--output", str(tmp_path / "out"), "--passes", "trim-vocab,prune-everything")
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "unknown compression pass 'prune-everything'; known: " in stderr
    assert all(name in stderr for name in PASSES)
    assert not (tmp_path / "out").exists() and "trim-vocab" in PASSES


@pytest.mark.parametrize("keep_spelled", [False, True])
def test_keep_spelled_keeps_the_pieces_of_unseen_words_in_the_corpus_letters(demo_model, tmp_path, keep_spelled):
    # Corpus: 10 German number words; the other 20 of the held-out set are unseen. Those spelled with the corpus's
    # letters tokenize as before only when the pieces spelled in those letters are kept.
    tokenizer = read_sentencepiece(demo_model / "spiece.model")
    words = [p.target for p in read_task_pairs() if p.lang == "de" and p.source.startswith("words")]
    corpus, unseen = words[:10], words[10:]
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus), encoding="utf-8")
    keep, details = trim_kept_ids(tokenizer, corpus, TrimVocabConfig(corpus=(corpus_file,), keep_spelled=keep_spelled))
    original = spm.SentencePieceProcessor(model_proto=tokenizer.SerializeToString())
    trimmed = spm.SentencePieceProcessor(model_proto=trim_tokenizer(tokenizer, keep).SerializeToString())
    letters = set("".join(corpus)) | {" "}
    spelled_so = [word for word in unseen if set(word) <= letters]
    same = [original.encode(w) == [keep[i] for i in trimmed.encode(w)] for w in spelled_so]
    assert len(spelled_so) >= 10
    assert all(same) if keep_spelled else not any(same)
    assert (details["kept_by_spelling"] > 0) == keep_spelled


def test_keep_spelled_is_a_switch_on_the_command_line(tmp_path):
    assert "smaller than the 259 special and byte pieces" in _refused(tmp_path, "--keep-spelled", "--max-pieces", "100")


def _refused(tmp_path, *args) -> str:
    result = run_cli("compress", "--output", str(tmp_path / "out"), "--passes", "trim-vocab", "--no-quality", *args)
    stderr = result.stderr.decode().strip()
    assert result.returncode == 2, stderr
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return stderr


def test_a_corpus_that_covers_nothing_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    assert "uses no learned piece" in _refused(tmp_path, "--corpus", str(empty))


def test_a_vocabulary_smaller_than_the_special_and_byte_pieces_is_refused(tmp_path):
    assert "smaller than the 259 special and byte pieces" in _refused(tmp_path, "--max-pieces", "100")


def test_a_tokenizer_that_is_not_sentencepiece_is_refused(demo_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    (model / "spiece.model").write_text('{"model": {"type": "BPE"}}', encoding="utf-8")
    assert "not a readable sentencepiece model" in _refused(tmp_path, "--model", str(model))


def test_a_model_with_fewer_rows_than_its_tokenizer_is_refused(tmp_path):
    from tests.fixtures import build_random_model, tiny_config

    model = build_random_model(tiny_config("google/mt5-small", vocab_size=1000), tmp_path / "model")
    assert "1000 embedding rows but its tokenizer 1200 pieces" in _refused(tmp_path, "--model", str(model))
