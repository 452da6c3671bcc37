"""The checkpoints `make bench` measures besides the bundled demo model, each built once and cached under
``build/`` (the experiments that study them build on the same functions, so both share one cache):

- ``mt5_small()``: random weights of google/mt5-small's shape with a 250,100-piece tokenizer
  (``tests.fixtures.mt5_small_250k``; the wheel does not ship ``tests``, so run from the checkout's root);
- ``trimmed_mt5_small(...)``: that model with its vocabulary trimmed to the project's data (``trim-vocab``);
- ``lite_stages(...)``: the "lite" recipe's stages on the demo model (trim, drop layers + prune FFN, distil,
  fine-tune), ``"student"`` the last; trained on ``training_file(...)``, the demo task's training pairs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from mt5lite.paths import DEMO_MODEL


def _finished(path: Path) -> bool:
    """Whether ``path`` holds a finished export this version of the runtimes reads (its ``manifest.json`` of this
    format version), or a finished checkpoint (its ``compress_report.json``)."""
    from mt5lite.manifest import FORMAT_VERSION, MANIFEST_NAME

    if (path / MANIFEST_NAME).is_file():
        return json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8")).get("format_version") == FORMAT_VERSION
    return (path / "compress_report.json").is_file()


#: The files of a checkpoint that make what it computes (not its card or reports): a checkpoint given as an input
#: of a build is known by these.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "spiece.model")


def input_hash(path: Path) -> str:
    """sha256 of what a build reads from ``path``: a checkpoint's ``CHECKPOINT_FILES``, or any other file or
    folder whole; a missing path is an error, never the hash of nothing."""
    from mt5lite.workflow.stamps import content_hash

    if not path.exists():
        raise FileNotFoundError(f"{path}: an input of a build is missing")
    if (path / "config.json").is_file():
        return hashlib.sha256("".join(content_hash(path / name) for name in CHECKPOINT_FILES
                                      if (path / name).is_file()).encode()).hexdigest()
    return content_hash(path)


def _made_by(name: str, inputs: tuple[Path, ...], options: object) -> str:
    """The key of what a build is made by: the toolkit's code (``stage_key``), the benchmarks' own code and the
    bundled data (default corpora and calibration sets), the content of each input, and the options."""
    from mt5lite.paths import DATA_DIR
    from mt5lite.workflow.stamps import content_hash, stage_key

    def files(folder: Path, pattern: str) -> dict[str, str]:  # never the bytecode caches beside them
        return {str(path.relative_to(folder)): content_hash(path) for path in sorted(folder.rglob(pattern))}

    context = {"benchmarks": files(Path(__file__).parent, "*.py"), "data": files(DATA_DIR, "*.tsv"), "options": options}
    return stage_key(name, context, {str(index): input_hash(path) for index, path in enumerate(inputs)})


def once(path: Path, make: Callable[[Path], object], inputs: tuple[Path, ...] = (), options: object = None) -> Path:
    """``make(path)`` unless ``path`` already holds a finished export or checkpoint (``_finished``) made by this
    code from these ``inputs`` (their content: ``input_hash``) with these ``options``: a stamp beside ``path``
    keeps the key, so new code, new data, a changed input or other options build it again (``make`` overwrites;
    the old stamp goes first, so a failed build is never taken for a finished one). Prints how long a build took."""
    from mt5lite.reports import atomic_write

    stamp, key = path.parent / f".{path.name}.made-by", _made_by(path.name, inputs, options)
    if not (_finished(path) and stamp.is_file() and stamp.read_text(encoding="utf-8") == key):
        stamp.unlink(missing_ok=True)
        started = time.perf_counter()
        make(path)
        atomic_write(stamp, key)
        print(f"{path.name}: {time.perf_counter() - started:.0f} s")
    return path


def mt5_small() -> Path:
    """Random weights of google/mt5-small's shape with a tokenizer of mT5's size (250,100 pieces), built once."""
    from tests.fixtures import mt5_small_250k

    return mt5_small_250k()


def trimmed_mt5_small(original: Path, work: Path) -> Path:
    """``original`` with ``trim-vocab`` on the project's multilingual data (the default corpus), at
    ``work / "trimmed"`` (reused when made by this code from the same model: ``once``)."""
    from mt5lite.compression.compress import compress

    return once(work / "trimmed", lambda path: compress(original, path, ["trim-vocab"], {}, force=True,
                                                        progress=True), inputs=(original,))


def training_file(path: Path) -> Path:
    """The demo task's training pairs (every number but the held-out ones), as the demo model was trained, written
    to ``path`` (``lang<TAB>source<TAB>target`` lines) unless it is there."""
    from mt5lite.demo.task import heldout_numbers, training_pairs

    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = training_pairs(heldout_numbers())
        path.write_text("".join(f"{p.lang}\t{p.source}\t{p.target}\n" for p in rows), encoding="utf-8")
    return path


def lite_stages(work: Path, train: Path, steps: int, pairs, teacher: Path = DEMO_MODEL) -> dict[str, Path]:
    """The "lite" recipe's checkpoint after each stage, by stage (``teacher``: the demo model by default, then
    ``trimmed``, ``pruned``, ``distilled``, ``student``), each a ``compress`` run under ``work`` trained on ``train``
    for ``steps`` distillation steps (fine-tuning: half) and scored on ``pairs``; reused when made by this code
    from the same inputs with the same options (``once``)."""
    from mt5lite.compression.compress import compress
    from mt5lite.compression.prune import DropLayersConfig, PruneFfnConfig
    from mt5lite.compression.training import DistillConfig, FinetuneConfig
    from mt5lite.compression.trim_vocab import TrimVocabConfig

    paths = {"teacher": teacher}
    training = {"max_steps": steps, "batch_size": 32, "learning_rate": 1e-3, "save_steps": 500, "train_data": train}
    plan = [
        ("trimmed", {"trim-vocab": TrimVocabConfig(corpus=(train,))}),
        ("pruned", {"drop-layers": DropLayersConfig(encoder_layers_keep=0.5, decoder_layers_keep=0.5,
                                                    importance_data=train, importance_pairs=400),
                    "prune-ffn": PruneFfnConfig(ffn_keep=0.5, importance_data=train, importance_pairs=400)}),
        ("distilled", {"distill": DistillConfig(teacher=teacher, **training)}),
        # Fine-tuning is gentle: at the distillation's learning rate it traded German for nothing (measured).
        ("student", {"finetune": FinetuneConfig(**{**training, "max_steps": steps // 2, "learning_rate": 2e-4})}),
    ]
    source = teacher
    for name, configs in plan:
        paths[name] = once(work / name, lambda out, s=source, c=configs: compress(
            s, out, list(c), c, pairs=pairs, force=True, progress=True), inputs=(source, teacher, train),
            options={"configs": configs, "pairs": pairs})
        source = paths[name]
    return paths
