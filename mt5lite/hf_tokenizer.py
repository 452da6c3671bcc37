"""Write a ``tokenizer.json`` that makes transformers' fast tokenizer tokenize exactly like sentencepiece.

Without ``tokenizer.json``, ``AutoTokenizer.from_pretrained`` converts ``spiece.model`` itself
(``transformers.convert_slow_tokenizer.T5Converter``), and the conversion gets this project's models wrong: it drops
byte fallback (unseen characters become ``<unk>``), its normalizer strips trailing tabs and newlines (sentencepiece
keeps them) and keeps leading spaces (sentencepiece drops them), and its decoder does not turn byte pieces back into
text. Fixing the converted tokenizer would replace its model, normalizer and decoder, so this module builds the
tokenizer from the sentencepiece protobuf instead, reading every setting from it:

- model: ``Unigram`` with the pieces and scores in id order, the unk id, and ``byte_fallback`` as trained;
- normalizer: the precompiled character map (none for ``identity``), then what sentencepiece does to spaces
  (``remove_extra_whitespaces``: no leading or repeated ``" "``, no trailing ``"▁"``; ``escape_whitespaces``;
  ``add_dummy_prefix``: a ``"▁"`` before non-empty text);
- pre-tokenizer: a split before each ``"▁"`` when no piece has one past its first character (so each word is
  looked up once, as on the Hugging Face Hub's mT5 tokenizers); the same pieces come out either way;
- post-processor: T5's, which appends ``</s>``; control pieces and ``<unk>`` become special added tokens;
- decoder: ``"▁"`` to space, byte pieces to UTF-8, and the leading spaces dropped as sentencepiece drops them.

Measured on the demo model: the converted tokenizer matched sentencepiece's ids on 1,199 of 1,890 project texts (the
sentences, 1 of 690, and the held-out task's sources and targets, 1,198 of 1,200) and 8 of 30 edge cases; this
``tokenizer.json`` matches all of them, and its decode equals ``SentencePieceProcessor.decode`` on every one
(``tests/test_hf_tokenizer.py``).

What still differs, by design or in ``tokenizers`` itself:

- text that spells a special token (``"</s>"``, ``"<pad>"``, ``"<unk>"``) becomes that token, as with transformers'
  slow ``T5Tokenizer``; sentencepiece reads such text as characters. Text that spells a byte piece (``"<0x41>"``)
  becomes that piece; sentencepiece never matches byte pieces against text;
- decoding ``<unk>``: sentencepiece writes ``" ⁇ "``, transformers writes ``"<unk>"`` or, with
  ``skip_special_tokens=True``, nothing. A byte-fallback model such as the demo never emits ``<unk>``;
- models with a precompiled character map (``nmt_nfkc``, e.g. google/mt5-*): when a rule of the map covers only the
  start of a grapheme, ``tokenizers``' ``Precompiled`` normalizer drops the rest (``"a\\u0308\\u0304"`` gives
  ``"ä"``, sentencepiece ``"ǟ"``; ``"Ｍ\\u0332"`` gives ``"M"``; huggingface/tokenizers#2334). The demo model uses
  ``identity`` and is not affected.

Transformers' ``T5TokenizerFast`` ignores ``tokenizer.json`` and converts ``spiece.model`` again whenever
``tokenizer_config.json`` sets ``add_prefix_space``, which the slow ``T5Tokenizer`` always writes; so
``write_tokenizer_json`` removes that key from a ``tokenizer_config.json`` beside it (the slow tokenizer's default,
``True``, is the same value).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mt5lite.errors import CheckpointError
from mt5lite.spiece import CONTROL, NORMAL, SPACE, UNKNOWN, UNUSED, USER_DEFINED, read_sentencepiece

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"

#: sentencepiece ``TrainerSpec.ModelType`` value used here (the piece types are ``mt5lite.spiece``'s).
UNIGRAM = 1


def _problems(proto) -> list[str]:
    """Every setting of ``proto`` that a ``tokenizer.json`` built here would not reproduce."""
    problems = []
    if proto.trainer_spec.model_type != UNIGRAM:
        problems.append(f"model type {proto.trainer_spec.model_type} (only unigram, type {UNIGRAM}, is supported)")
    if not proto.normalizer_spec.escape_whitespaces:
        problems.append("escape_whitespaces is off")
    if proto.trainer_spec.treat_whitespace_as_suffix:
        problems.append("treat_whitespace_as_suffix is on")
    if proto.denormalizer_spec.precompiled_charsmap:
        problems.append("a denormalizer character map")
    if any(piece.type == UNUSED for piece in proto.pieces):
        problems.append("UNUSED pieces")
    eos_id = proto.trainer_spec.eos_id
    if not 0 <= eos_id < len(proto.pieces):
        problems.append(f"eos id {eos_id} is not a piece (T5 appends </s> to every input)")
    if not 0 <= proto.trainer_spec.unk_id < len(proto.pieces):
        problems.append(f"unk id {proto.trainer_spec.unk_id} is not a piece")
    return problems


def _normalizer(spec):
    """Sentencepiece's normalization: the character map, then the handling of spaces, then the dummy prefix."""
    from tokenizers import Regex, normalizers

    steps = [normalizers.Precompiled(spec.precompiled_charsmap)] if spec.precompiled_charsmap else []
    if spec.remove_extra_whitespaces:
        # Only " " counts (not tabs or newlines); a literal "▁" at the end goes too, as sentencepiece strips the
        # trailing escaped spaces after escaping.
        steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Replace(Regex(r"\A "), "")]
    steps.append(normalizers.Replace(" ", SPACE))
    if spec.remove_extra_whitespaces:
        steps.append(normalizers.Replace(Regex(f"{SPACE}+\\z"), ""))
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPACE))  # leaves empty text empty, as sentencepiece does
    return normalizers.Sequence(steps)


def _decoder(proto):
    """Pieces back to text: escaped spaces, then byte pieces, then sentencepiece's dropped leading spaces."""
    from tokenizers import Regex, decoders

    steps = [decoders.Replace(SPACE, " ")]
    if proto.trainer_spec.byte_fallback:
        steps.append(decoders.ByteFallback())
    steps.append(decoders.Fuse())
    spec = proto.normalizer_spec
    if spec.remove_extra_whitespaces:  # sentencepiece drops a leading "▁" from each piece until text appears
        steps.append(decoders.Replace(Regex(r"\A +"), ""))
    elif spec.add_dummy_prefix:  # ... or only the first one
        steps.append(decoders.Replace(Regex(r"\A "), ""))
    return decoders.Sequence(steps)


def build_tokenizer(spiece_path: str | os.PathLike):
    """A ``tokenizers.Tokenizer`` that encodes and decodes like the sentencepiece model at ``spiece_path`` (plus
    T5's ``</s>``); raise ``CheckpointError`` listing every setting it could not reproduce."""
    from tokenizers import AddedToken, Tokenizer, pre_tokenizers, processors
    from tokenizers.models import Unigram

    path = Path(spiece_path)
    proto = read_sentencepiece(path, CheckpointError)
    problems = _problems(proto)
    if problems:
        raise CheckpointError(f"{path}: tokenizer.json cannot reproduce this sentencepiece model: "
                              + "; ".join(problems))
    pieces = proto.pieces
    tokenizer = Tokenizer(Unigram([(piece.piece, piece.score) for piece in pieces],
                                  unk_id=proto.trainer_spec.unk_id, byte_fallback=proto.trainer_spec.byte_fallback))
    tokenizer.normalizer = _normalizer(proto.normalizer_spec)
    if not any(SPACE in piece.piece[1:] for piece in pieces if piece.type in (NORMAL, USER_DEFINED)):
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=True)
    tokenizer.decoder = _decoder(proto)
    eos = pieces[proto.trainer_spec.eos_id].piece
    tokenizer.post_processor = processors.TemplateProcessing(
        single=["$A", eos], pair=["$A", eos, "$B", eos], special_tokens=[(eos, proto.trainer_spec.eos_id)])
    tokenizer.add_special_tokens([AddedToken(piece.piece, normalized=False, special=True)
                                  for piece in pieces if piece.type in (CONTROL, UNKNOWN)])
    # as transformers' converter does; sentencepiece matches them in normalized text, these in the raw text
    tokenizer.add_tokens([AddedToken(piece.piece, normalized=False) for piece in pieces if piece.type == USER_DEFINED])
    return tokenizer


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, renamed into place."""
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


def write_tokenizer_json(spiece_path: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Write ``output_dir/tokenizer.json`` built from ``spiece_path`` (see ``build_tokenizer``) and return its path.

    A ``tokenizer_config.json`` in ``output_dir`` loses its ``add_prefix_space`` key, which would make
    ``T5TokenizerFast`` ignore ``tokenizer.json``; nothing else in it changes.
    """
    output = Path(output_dir)
    target = output / TOKENIZER_JSON
    _replace_file(target, build_tokenizer(spiece_path).to_str(pretty=True))
    config_path = output / TOKENIZER_CONFIG
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if "add_prefix_space" in config:
            del config["add_prefix_space"]
            _replace_file(config_path, json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return target
