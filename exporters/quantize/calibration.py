"""Calibration data for static quantization: real encoder inputs and real decoder-step inputs.

The encoder sees tokenized multilingual samples. The decoder-step graph sees what it sees in deployment: the
tokens, positions, encoder mask, cross K/V and self-attention caches captured while the fp32 export greedily
decodes those same samples. Both reach ONNX Runtime's quantizer as iterables of feed dicts
(``CalibrationDataReader``).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mt5lite.checked import Checked
from mt5lite.contract import DECODER_OUTPUTS, encoder_feeds, graph_feeds
from mt5lite.data import CALIBRATION_SENTENCES, Sentence
from mt5lite.errors import InputError

MIN_SAMPLES = 100
MIN_LANGUAGE_SHARE = 0.05


class CalibrationWarning(UserWarning):
    """The calibration draw under-represents a language."""


def draw_samples(sentences: list[Sentence], count: int, seed: int = 0, source: str = "calibration data"
                 ) -> list[Sentence]:
    """``count`` samples balanced across languages: each language's lines are shuffled (fixed ``seed``), then
    taken round-robin. Raises ``InputError`` when fewer than ``MIN_SAMPLES`` can be drawn; warns
    (``CalibrationWarning``) for each language under 5% of the draw, or, when so many languages share it that
    an even split is itself under 5%, under half of an even share."""
    if count < MIN_SAMPLES:
        raise InputError(f"--samples is {count}: static calibration needs at least {MIN_SAMPLES} samples "
                         f"({MIN_SAMPLES - count} more)")
    if len(sentences) < MIN_SAMPLES:
        raise InputError(f"{source} has {len(sentences)} samples, {MIN_SAMPLES - len(sentences)} short of the "
                         f"{MIN_SAMPLES} static calibration needs; add lines or use the default data")
    rng = np.random.default_rng(seed)
    by_language: dict[str, list[Sentence]] = {}
    for sentence in sentences:
        by_language.setdefault(sentence.lang, []).append(sentence)
    queues = [[group[i] for i in rng.permutation(len(group))] for group in by_language.values()]
    drawn: list[Sentence] = []
    while len(drawn) < count and any(queues):
        for queue in queues:
            if queue and len(drawn) < count:
                drawn.append(queue.pop())
    counts = Counter(s.lang for s in drawn)
    threshold = min(MIN_LANGUAGE_SHARE, 0.5 / len(counts))
    for lang, n in sorted(counts.items()):
        if n / len(drawn) < threshold:
            warnings.warn(CalibrationWarning(
                f"calibration language {lang!r} is only {n / len(drawn):.1%} of the draw ({n} of {len(drawn)} "
                f"samples); add {lang} lines to {source} so its activations are calibrated"), stacklevel=2)
    return drawn


class FeedReader:
    """A sequence of feed dicts (a list, or a ``FeedStore`` on disk) as ONNX Runtime's ``CalibrationDataReader``
    (``get_next``, ``rewind``): the contract's feeds, or with ``inputs`` the feeds of a graph with those inputs
    (``mt5lite.contract.graph_feeds``: the decoder step's stacked tensors one layer per input)."""

    def __init__(self, feeds, inputs: tuple[str, ...] | None = None):
        self.feeds = feeds
        self.inputs = inputs
        self._next = 0

    def for_graph(self, inputs) -> FeedReader:
        """The same feeds as a graph whose inputs are ``inputs`` takes them."""
        return FeedReader(self.feeds, tuple(inputs))

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed dict, or None at the end."""
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        feed = self.feeds[self._next - 1]
        return feed if self.inputs is None else graph_feeds(self.inputs, feed)

    def rewind(self) -> None:
        """Start again from the first feed."""
        self._next = 0

    def __len__(self) -> int:
        return len(self.feeds)


class FeedStore:
    """Feed dicts of one graph on disk, so a capture need not hold them in memory: one raw ``NAME.bin`` per input
    (feed ``i`` at offset ``i * feed bytes``) and ``feeds.json`` (count, dtypes, shapes). Written slot by slot
    (``put``; a reservoir overwrites slots), read back one feed at a time with plain reads, no memory map."""

    INDEX = "feeds.json"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        index = self.directory / self.INDEX
        self.specs: dict[str, dict] = {}
        self.count = 0
        if index.is_file():
            stored = json.loads(index.read_text(encoding="utf-8"))
            self.specs, self.count = stored["inputs"], stored["count"]

    def put(self, slot: int, feed: dict[str, np.ndarray]) -> None:
        """Write ``feed`` into ``slot`` (at most one past the last written slot)."""
        if slot > self.count:
            raise IndexError(f"slot {slot} of a store holding {self.count} feeds")
        if not self.specs:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.specs = {name: {"dtype": np.asarray(v).dtype.str, "shape": list(np.shape(v))}
                          for name, v in feed.items()}
        for name, value in feed.items():
            data = np.ascontiguousarray(value, dtype=self.specs[name]["dtype"])
            if list(data.shape) != self.specs[name]["shape"]:
                raise ValueError(f"feed {name} has shape {list(data.shape)}; the store holds "
                                 f"{self.specs[name]['shape']}")
            path = self.directory / f"{name}.bin"
            with open(path, "r+b" if path.exists() else "wb") as handle:
                handle.seek(slot * data.nbytes)
                handle.write(data.tobytes())
        self.count = max(self.count, slot + 1)
        (self.directory / self.INDEX).write_text(json.dumps({"count": self.count, "inputs": self.specs}),
                                                 encoding="utf-8")

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        feed = {}
        for name, spec in self.specs.items():
            dtype, shape = np.dtype(spec["dtype"]), spec["shape"]
            size = int(np.prod(shape))
            with open(self.directory / f"{name}.bin", "rb") as handle:
                handle.seek(index * size * dtype.itemsize)
                feed[name] = np.fromfile(handle, dtype=dtype, count=size).reshape(shape)
        return feed


class _MemoryFeeds(list):
    """Feed dicts held in memory, with ``FeedStore``'s ``put``."""

    def put(self, slot: int, feed: dict[str, np.ndarray]) -> None:
        if slot < len(self):
            self[slot] = feed
        else:
            self.append(feed)


class _StepRecorder:
    """A step hook that keeps a uniform random subset (reservoir) of the decoder-step feeds it sees in ``store``,
    copied (the decoding loop writes into its caches in place) or written to disk."""

    def __init__(self, keep: int, seed: int, store):
        self.keep = keep
        self.kept = store
        self.seen = 0
        self.rng = np.random.default_rng(seed)
        self.logits: dict[int, tuple[float, float]] = {}  # each kept step's logits range

    def __call__(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        slot = self.seen if self.seen < self.keep else int(self.rng.integers(0, self.seen + 1))
        self.seen += 1
        if slot < self.keep:
            self.kept.put(slot, {name: np.array(value, copy=True) for name, value in feeds.items()})
            logits = outputs[DECODER_OUTPUTS[0]]
            self.logits[slot] = (float(logits.min()), float(logits.max()))

    def logits_range(self) -> tuple[float, float] | None:
        """The range of the logits over the kept steps (what a calibrator running them would record)."""
        if not self.logits:
            return None
        return min(low for low, _ in self.logits.values()), max(high for _, high in self.logits.values())


@dataclass
class CalibrationData:
    """Feeds for both graphs and where they came from."""

    encoder: FeedReader
    decoder: FeedReader
    languages: dict[str, int]
    decoder_steps_seen: int
    logits_range: tuple[float, float] | None = None  # over the kept decoder steps

    def describe(self, source: Path, seed: int) -> dict:
        """What a manifest records of this calibration (``source``: the file the samples were drawn from)."""
        return {"file": Path(source).name, "samples": len(self.encoder), "languages": self.languages,
                "decoder_steps": len(self.decoder), "decoder_steps_seen": self.decoder_steps_seen, "seed": seed}


def capture_calibration_data(export_dir: Path, samples: list[Sentence], max_decoder_steps: int = 512,
                             max_new_tokens: int = 32, seed: int = 0, progress: bool = False,
                             store: Path | None = None) -> CalibrationData:
    """Tokenize ``samples`` for the encoder and greedily decode them with the fp32 export in ``export_dir`` (on
    the engine its manifest names), keeping up to ``max_decoder_steps`` decoder-step feeds drawn uniformly from
    every step taken. The feeds are held in memory, or with ``store`` written to ``store/encoder`` and
    ``store/decoder`` (``FeedStore``), where mt5-small's 512 decoder steps take 2.4 GB."""
    from tqdm import tqdm

    from mt5lite.runtimes.generators import open_export
    from mt5lite.runtimes.options import DecodingOptions
    from mt5lite.runtimes.tokenizer import Overflow

    # ONNX Runtime, or ExecuTorch for its own int8; at full length, the graphs quantized (buckets get their ranges)
    generator = open_export(export_dir, full_length=True)
    encoder_store = _MemoryFeeds() if store is None else FeedStore(Path(store) / "encoder")
    recorder = _StepRecorder(max_decoder_steps, seed, _MemoryFeeds() if store is None else
                             FeedStore(Path(store) / "decoder"))
    generator.add_step_hook(recorder)
    options = DecodingOptions(max_new_tokens=min(max_new_tokens, generator.backend.max_target_length))
    with warnings.catch_warnings():  # long samples are cut to the export's source length on purpose
        warnings.simplefilter("ignore")
        # Every sample is padded to one length (the export's, if static; else the longest sample's), as a batch
        # would be: histogram calibration (entropy, percentile) needs tensors of one shape.
        longest = generator.encode_batch([s.text for s in samples], Overflow.TRUNCATE)[0].shape[1]
        for sample in tqdm(samples, desc="capturing calibration inputs", disable=not progress, unit="sample"):
            ids, mask = generator.tokenizer.encode_batch([sample.text], generator.max_source_length,
                                                         Overflow.TRUNCATE, pad_to=longest)
            encoder_store.put(len(encoder_store), encoder_feeds(ids, mask))
            generator.decoder.generate(ids, mask, options)
    return CalibrationData(FeedReader(encoder_store), FeedReader(recorder.kept),
                           dict(sorted(Counter(s.lang for s in samples).items())), recorder.seen,
                           recorder.logits_range())


@dataclass(frozen=True)
class CalibrationDraw(Checked):
    """Which calibration data to capture: the representative data of static int8 (``mt5lite quantize``) and of
    full-integer int8 TFLite (``mt5lite export tflite --quantize int8``)."""

    file: Path = field(default=CALIBRATION_SENTENCES)  # lang<TAB>text or task-pair TSV
    samples: int = 256  # calibration samples, balanced across languages
    max_decoder_steps: int = 512  # captured decoder-step feeds kept
    seed: int = 0

    def problems(self) -> list[str]:
        """What is wrong with these settings (the sample count is checked by ``draw_samples``)."""
        return self.draw_problems(self.max_decoder_steps)

    @staticmethod
    def draw_problems(max_decoder_steps: int) -> list[str]:
        """What is wrong with a draw keeping ``max_decoder_steps`` decoder-step feeds."""
        return [] if max_decoder_steps >= 1 else [f"max_decoder_steps must be at least 1, got {max_decoder_steps}"]

    def capture(self, export_dir: Path, progress: bool = False, store: Path | None = None) -> CalibrationData:
        """Draw ``samples`` balanced samples from ``file`` and capture the feeds of both graphs of the fp32
        export in ``export_dir``, in memory or, with ``store``, on disk there. Raises ``InputError`` for bad
        settings or too little data."""
        from mt5lite.data import read_tagged_texts

        drawn = draw_samples(read_tagged_texts(self.file), self.samples, self.seed, source=str(self.file))
        return capture_calibration_data(Path(export_dir), drawn, self.max_decoder_steps, seed=self.seed,
                                        progress=progress, store=store)
