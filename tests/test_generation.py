"""Generation: the PyTorch reference (greedy and beam search, batches, undecodable ids, the demo model's answers)
checked against the model's own forward pass, and the one decoding loop on ONNX Runtime checked against
transformers' ``generate`` over every beam-search option."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import fields

import pytest

from mt5lite.data import HELDOUT_SENTENCES, read_sentences, read_task_pairs
from mt5lite.errors import InputError
from mt5lite.runtimes.onnx_runtime import OnnxGenerator
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.torch_reference import TorchReference

#: The smallest score gap allowed between a choice of the independent reference and the runner-up: PyTorch fp32
#: with a KV cache (``generate``) and without one (a full forward pass per step) differ by about 1e-6, so a gap of
#: 1e-4 cannot be flipped by that noise and the two can be compared token for token.
DECISION_MARGIN = 1e-4


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


def _next_log_probs(reference: TorchReference, input_ids, attention_mask, prefixes: list[list[int]]):
    """Next-token log-probabilities after each decoder prefix (decoder start token included), from one full forward
    pass of the model without a cache and without ``generate``, undecodable ids suppressed. ``input_ids`` and
    ``attention_mask`` hold one row per prefix."""
    import torch

    with torch.no_grad():
        logits = reference.model(input_ids=input_ids, attention_mask=attention_mask,
                                 decoder_input_ids=torch.tensor(prefixes)).logits[:, -1].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    log_probs[:, reference.undecodable_ids] = -float("inf")
    return log_probs


def _step_by_step_greedy(reference: TorchReference, texts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy search written out: the argmax of a full forward pass at every step, until eos."""
    input_ids, mask = reference.encode_batch(texts)
    start, eos = reference.model.config.decoder_start_token_id, reference.tokenizer.eos_id
    sequences, done = [[start] for _ in texts], [False for _ in texts]
    for _ in range(max_new_tokens):
        top = _next_log_probs(reference, input_ids, mask, sequences).topk(2, dim=-1)
        for row, sequence in enumerate(sequences):
            if done[row]:  # finished rows are padded with eos, their logits unused
                sequence.append(eos)
                continue
            gap = float(top.values[row, 0] - top.values[row, 1])
            assert gap > DECISION_MARGIN, f"greedy choice within {gap:.2e} of the runner-up: pick other inputs"
            sequence.append(int(top.indices[row, 0]))
            done[row] = sequence[-1] == eos
        if all(done):
            break
    generated = [sequence[1:] for sequence in sequences]
    return [ids[: ids.index(eos) + 1] if eos in ids else ids for ids in generated]


def _textbook_beam_search(reference: TorchReference, text: str, beams: int, max_new_tokens: int) -> list[int]:
    """Beam search written out (length penalty 1, no early stopping), scores from full forward passes: at each step
    the best ``2 x beams`` continuations of all beams; those among the best ``beams`` that end in eos become
    finished hypotheses (score / length), the best ``beams`` that do not continue; the answer is the best finished
    or final hypothesis."""
    import torch

    input_ids, mask = reference.encode_batch([text])
    start, eos = reference.model.config.decoder_start_token_id, reference.tokenizer.eos_id
    vocab = reference.model.config.vocab_size
    running: list[tuple[list[int], float]] = [([start], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_new_tokens):
        rows = len(running)
        log_probs = _next_log_probs(reference, input_ids.expand(rows, -1), mask.expand(rows, -1),
                                    [seq for seq, _ in running])
        scores = (torch.tensor([score for _, score in running])[:, None] + log_probs).flatten()
        top = scores.topk(2 * beams + 1)
        margin = float((top.values[:-1] - top.values[1:]).min())
        assert margin > DECISION_MARGIN, f"beam candidates within {margin:.2e} of each other: pick other inputs"
        candidates = [(running[i // vocab][0] + [i % vocab], score)
                      for score, i in zip(top.values[:-1].tolist(), top.indices[:-1].tolist(), strict=True)]
        finished += [(seq, score / (len(seq) - 1)) for seq, score in candidates[:beams] if seq[-1] == eos]
        running = [(seq, score) for seq, score in candidates if seq[-1] != eos][:beams]
    finished += [(seq, score / (len(seq) - 1)) for seq, score in running]
    return max(finished, key=lambda hypothesis: hypothesis[1])[0][1:]


def test_tiny_models_greedy_and_beam(tiny_model):
    """``generate`` (KV cache, transformers' loops) against the model's own forward pass without a cache: greedy
    is the argmax at every step, beam search the textbook search over the same scores."""
    reference = TorchReference(tiny_model)
    sources = ["words en: 12", "number fr: douze", "Привет, мир! 👋", "東京は近い"]
    greedy = reference.generate_ids(sources, DecodingOptions(max_new_tokens=6))
    assert greedy == _step_by_step_greedy(reference, sources, max_new_tokens=6)
    beam = reference.generate_ids(sources, DecodingOptions(max_new_tokens=6, num_beams=3))
    assert beam == [_textbook_beam_search(reference, text, beams=3, max_new_tokens=6) for text in sources]
    assert beam != greedy  # so the two references are two different checks


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


# The one decoding loop (ONNX Runtime) against transformers' generate, option for option. Beam search is where the
# two can drift apart: candidate selection, length-normalised finished hypotheses, early stopping and the
# max-length cut all have to agree, and random models, whose scores nearly tie, are the hard case.

BEAM_SETTINGS = [dict(num_beams=beams, length_penalty=penalty, early_stopping=early)
                 for beams, penalty, early in itertools.product((2, 4), (0.6, 1.0, 2.0), (True, False))]
SHORT = 5  # max_new_tokens that cuts most outputs short, so that unfinished beams reach the final step


def _held_out_sources() -> list[str]:
    """12 held-out task inputs over every language and both directions."""
    return [pair.source for pair in read_task_pairs()[::50]]


def _compare_with_generate(generator: OnnxGenerator, reference: TorchReference, sources: list[str],
                           full_length: int) -> dict[DecodingOptions, list[list[int]]]:
    """Decode ``sources`` with every beam setting at ``SHORT`` and ``full_length`` new tokens on both; fail listing
    every difference; return the reference's ids per options."""
    found, differences = {}, []
    for max_new_tokens, setting in itertools.product((SHORT, full_length), BEAM_SETTINGS):
        options = DecodingOptions(max_new_tokens=max_new_tokens, **setting)
        ours, theirs = generator.generate_ids(sources, options), reference.generate_ids(sources, options)
        differences += [f"{options}: {text!r}: ONNX Runtime {a} != generate {b}"
                        for text, a, b in zip(sources, ours, theirs, strict=True) if a != b]
        found[options] = theirs
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences)
    return found


def _options_that_matter(found: dict[DecodingOptions, list[list[int]]]) -> set[str]:
    """The options whose value alone changes the reference's output for some input."""
    names = [f.name for f in fields(DecodingOptions)]
    matter = set()
    for name in names:
        outputs: dict[tuple, set] = {}
        for options, ids in found.items():
            rest = tuple(getattr(options, other) for other in names if other != name)
            for row, sequence in enumerate(ids):
                outputs.setdefault((rest, row), set()).add(tuple(sequence))
        if any(len(distinct) > 1 for distinct in outputs.values()):
            matter.add(name)
    return matter


def _cut_short(found: dict[DecodingOptions, list[list[int]]], eos: int) -> bool:
    """Whether some output at ``SHORT`` tokens is an unfinished hypothesis (``SHORT`` tokens, no eos)."""
    return any(len(ids) == SHORT and ids[-1] != eos
               for options, rows in found.items() if options.max_new_tokens == SHORT for ids in rows)


def test_beam_search_matches_generate_on_the_demo_model(demo_model, demo_export):
    # Out-of-task sentences make the trained model unsure, so that length penalty and early stopping change
    # which hypothesis wins on some of them.
    sources = _held_out_sources() + [s.text for s in read_sentences(HELDOUT_SENTENCES)[::20]]
    generator, reference = OnnxGenerator(demo_export), TorchReference(demo_model)
    found = _compare_with_generate(generator, reference, sources, DecodingOptions().max_new_tokens)
    assert _options_that_matter(found) == {f.name for f in fields(DecodingOptions)}
    assert _cut_short(found, reference.tokenizer.eos_id)


def test_beam_search_matches_generate_on_tiny_models(tiny_model, tiny_export):
    # Random weights never produce eos within the cache here (so length penalty and early stopping cannot
    # matter), but their near-tied scores reorder the beams at every step.
    generator, reference = OnnxGenerator(tiny_export), TorchReference(tiny_model)
    found = _compare_with_generate(generator, reference, _held_out_sources(), generator.backend.max_target_length)
    assert {"num_beams", "max_new_tokens"} <= _options_that_matter(found)
    assert _cut_short(found, reference.tokenizer.eos_id)


@pytest.fixture(scope="module")
def eos_prone(tiny_model, tmp_path_factory):
    """Each tiny random model with the eos row of its output projection scaled up 4x, so that hypotheses end at
    every length and length penalty and early stopping decide between them; and its ONNX export."""
    import torch

    from mt5lite.checkpoint import load_model
    from mt5lite.exporters.onnx.export import OnnxExportConfig, export_onnx

    root = tmp_path_factory.mktemp("eos_prone")
    model_dir = root / "model"
    shutil.copytree(tiny_model, model_dir)
    model = load_model(model_dir)
    with torch.no_grad():  # tied T5: this scales eos's input embedding too, still a random model
        model.get_output_embeddings().weight[model.config.eos_token_id] *= 4.0
    model.save_pretrained(model_dir, safe_serialization=True)
    export_onnx(model_dir, root / "onnx", OnnxExportConfig(max_source_length=32, max_target_length=12))
    return model_dir, root / "onnx"


def test_beam_search_matches_generate_when_hypotheses_end_early(eos_prone):
    model_dir, export_dir = eos_prone
    generator, reference = OnnxGenerator(export_dir), TorchReference(model_dir)
    found = _compare_with_generate(generator, reference, _held_out_sources(), generator.backend.max_target_length)
    assert _options_that_matter(found) == {f.name for f in fields(DecodingOptions)}
    lengths = {len(ids) for rows in found.values() for ids in rows if ids[-1] == reference.tokenizer.eos_id}
    assert len(lengths) >= 5, lengths  # finished hypotheses of many lengths compete
