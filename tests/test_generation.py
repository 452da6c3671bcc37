"""The PyTorch reference: greedy and beam search, batches, undecodable ids, and the demo model's answers."""

from __future__ import annotations

import pytest

from mt5lite.errors import InputError
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.torch_reference import TorchReference


@pytest.fixture(scope="module")
def demo(demo_model):
    return TorchReference(demo_model)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("words en: 42", "forty-two"),
        ("words fr: 1234", "mille deux cent trente-quatre"),
        ("words ru: 305", "триста пять"),
        ("words ja: 2026", "二千二十六"),
        ("words ko: 58", "오십팔"),
        ("words ar: 3", "ثلاثة"),
        ("number de: siebenhundert", "700"),
        ("number he: שלושים", "30"),
        ("number th: สามร้อย", "300"),
    ],
)
def test_demo_model_answers_in_several_languages_and_scripts(demo, source, expected):
    assert demo.generate([source]) == [expected]


def test_beam_search_agrees_with_greedy_on_easy_inputs(demo):
    sources = ["words es: 15", "words en: 300"]
    assert demo.generate(sources, DecodingOptions(num_beams=4)) == demo.generate(sources)


def test_tiny_models_greedy_and_beam(tiny_model):
    reference = TorchReference(tiny_model)
    for options in (DecodingOptions(max_new_tokens=6), DecodingOptions(max_new_tokens=6, num_beams=3)):
        ids = reference.generate_ids(["words en: 12", "number fr: douze"], options)
        assert len(ids) == 2
        for row in ids:
            assert 1 <= len(row) <= 6
            assert all(0 <= t < reference.tokenizer.piece_count for t in row)  # never an undecodable id


def test_undecodable_ids_are_suppressed(tiny_mt5):
    reference = TorchReference(tiny_mt5)
    assert reference.undecodable_ids, "the tiny mT5 has more embedding rows than pieces, like mT5"
    with torch_no_grad():
        bias = reference.model.lm_head.weight
        bias[reference.undecodable_ids] = 50.0  # make the undecodable rows win every argmax
    ids = reference.generate_ids(["words en: 7"], DecodingOptions(max_new_tokens=5))[0]
    assert all(t < reference.tokenizer.piece_count for t in ids)


def torch_no_grad():
    import torch

    return torch.no_grad()


def test_padded_batch_matches_single_inputs(demo):
    sources = ["words de: 9", "number ko: 구천구백구십구", "words th: 4711"]
    batched = demo.generate(sources)
    assert batched == [demo.generate([s])[0] for s in sources]


def test_bad_inputs_are_named(demo):
    with pytest.raises(InputError, match="empty"):
        demo.generate(["  "])
    with pytest.raises(InputError, match="input 1: .*lone surrogate"):
        demo.generate(["ok", "bad \udc80"])
    with pytest.raises(InputError, match="max_new_tokens must be at least 1"):
        demo.generate(["words en: 1"], DecodingOptions(max_new_tokens=0))



def test_over_long_input_errors_or_truncates(demo_model):
    from mt5lite.runtimes.tokenizer import Overflow

    short = TorchReference(demo_model, max_source_length=4)
    with pytest.raises(InputError, match="more than the maximum of 4"):
        short.generate(["words en: 123456"])
    with pytest.warns(UserWarning, match="truncated to 4 tokens"):
        assert len(short.generate(["words en: 123456"], overflow=Overflow.TRUNCATE)) == 1
