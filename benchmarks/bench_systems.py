"""The systems `make bench` compares, one registry entry each: how a system is built from a checkpoint, and how it
decodes.

A system builds its artifact once from the checkpoint (cached under the model's work folder) and is then loaded in
its own worker process (``bench_worker.py``), so no system's thread pool can slow another. Every runner decodes
token ids of the checkpoint's own sentencepiece model:

- ``forced(ids, new_tokens)``: exactly ``new_tokens`` greedy steps for a ``[B, S]`` batch (eos ignored, so every
  system does the same work); returns the seconds taken, encoder included;
- ``greedy(text)``: natural greedy decoding of one input up to eos; returns the text (the quality columns).

A system that cannot run here raises ``Unavailable`` with a one-line reason; the table keeps its row.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mt5lite.registry import Registry
from mt5lite.runtimes.tokenizer import Tokenizer

MAX_NEW_TOKENS = 64  # natural greedy decoding (quality): the demo task's targets are far shorter


class Unavailable(Exception):
    """This system cannot be built or run here; the message is the one-line reason."""


@dataclass(frozen=True)
class System:
    """One benchmarked system: who makes it, the bytes per weight its decoder step reads, and how it is built and
    loaded."""

    family: str  # the project or library: "ours", "PyTorch", "optimum-onnx", "CTranslate2"
    weight_bytes: float  # bytes per weight read by a decoder step (int8: 1, fp16: 2, fp32: 4)
    build: Callable[[Path, Path], Path]  # (checkpoint, work folder) -> artifact, built once
    load: Callable[[Path, int], object]  # (artifact, threads) -> runner with forced() and greedy()
    batched: bool = True  # False: batch-1 graphs (static shapes), no batch-8 row
    environment: str | None = None  # a peer environment of its own (``peer_envs.ENVIRONMENTS``); None: ours


SYSTEMS: Registry[System] = Registry("benchmark system")


def _built(path: Path, make: Callable[[Path], None]) -> Path:
    """``path``, made by ``make(staging)`` first when missing (staged beside it, renamed when complete)."""
    if path.exists():
        return path
    staging = path.with_name(f".{path.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    make(staging)
    staging.rename(path)
    return path


# --- ours --------------------------------------------------------------------------------------------------------


def _onnx_fp32(checkpoint: Path, work: Path, static: bool = False) -> Path:
    from mt5lite.exporters.onnx_export import OnnxExportConfig, export_onnx

    name = "ours-onnx-static" if static else "ours-onnx-fp32"
    return _built(work / name, lambda out: export_onnx(checkpoint, out, OnnxExportConfig(static_shapes=static),
                                                       force=True))


def _onnx_quantized(recipe: str):
    def build(checkpoint: Path, work: Path) -> Path:
        from mt5lite.exporters.quantize import QuantizeConfig, quantize_export

        source = _onnx_fp32(checkpoint, work)
        return _built(work / f"ours-onnx-{recipe}",
                      lambda out: quantize_export(source, out, QuantizeConfig(recipe=recipe), force=True))
    return build


def _tflite(precision: str):
    def build(checkpoint: Path, work: Path) -> Path:
        from mt5lite.exporters.tflite_export import export_tflite

        source = _onnx_fp32(checkpoint, work, static=True)
        return _built(work / f"ours-tflite-{precision}", lambda out: export_tflite(source, out, precision, force=True))
    return build


class ExportRunner:
    """One of our exports on its engine (ONNX Runtime or LiteRT), through the project's decoding loop."""

    def __init__(self, artifact: Path, threads: int):
        from mt5lite.runtimes.generators import open_export

        self.generator = open_export(artifact, threads=threads)

    def _feeds(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = np.ones_like(ids)
        if self.generator.static_shapes:  # batch-1 graphs of a fixed source length: pad to it
            width = self.generator.max_source_length - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, width)), constant_values=self.generator.tokenizer.pad_id)
            mask = np.pad(mask, ((0, 0), (0, width)))
        return ids.astype(np.int64), mask.astype(np.int64)

    def forced(self, ids: np.ndarray, new_tokens: int) -> float:
        """Seconds for the encoder and ``new_tokens`` greedy steps of the batch."""
        from mt5lite.contract import encoder_feeds
        from mt5lite.runtimes.decoding import new_cache, run_step

        backend = self.generator.stepper
        ids, mask = self._feeds(ids)
        started = time.perf_counter()
        encoded = backend.encode(encoder_feeds(ids, mask))
        cross_k, cross_v = encoded["cross_k"], encoded["cross_v"]
        cache_k, cache_v = new_cache(cross_k, len(ids), backend.max_target_length)
        token = np.full(len(ids), self.generator.decoder.decoder_start_id, dtype=np.int64)
        for position in range(new_tokens):
            token = run_step(backend, token, position, mask, cross_k, cross_v, cache_k, cache_v).argmax(axis=-1)
        return time.perf_counter() - started

    def greedy(self, text: str) -> str:
        """Greedy output of one input."""
        from mt5lite.runtimes.options import DecodingOptions

        return self.generator.generate([text], DecodingOptions(max_new_tokens=MAX_NEW_TOKENS))[0]


for _name, _build, _bytes, _batched in (
    ("ours-onnx-fp32", _onnx_fp32, 4, True),
    ("ours-onnx-static-int8", _onnx_quantized("static-int8"), 1, True),
    ("ours-onnx-dynamic-int8", _onnx_quantized("dynamic-int8"), 1, True),
    ("ours-onnx-weight-int8", _onnx_quantized("weight-int8"), 1 + 4 / 128, True),  # an fp32 scale per 128 weights
    ("ours-tflite-fp32", _tflite("fp32"), 4, False),
    ("ours-tflite-fp16", _tflite("fp16"), 2, False),
    ("ours-tflite-int8", _tflite("int8"), 1, False),
):
    SYSTEMS.register(_name, System("ours", _bytes, _build, ExportRunner, _batched))


# --- PyTorch eager -------------------------------------------------------------------------------------------------


class TorchRunner:
    """transformers' ``generate`` in PyTorch eager mode, fp32 or dynamically quantized to int8."""

    def __init__(self, artifact: Path, threads: int, dynamic_int8: bool = False):
        import torch

        from mt5lite.checkpoint import load_model

        torch.set_num_threads(threads)
        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.model = load_model(artifact)
        if dynamic_int8:
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)

    def _generate(self, ids: np.ndarray, **options):
        import torch

        with torch.inference_mode():
            return self.model.generate(input_ids=torch.from_numpy(ids.astype(np.int64)), do_sample=False, num_beams=1,
                                       **options)

    def forced(self, ids: np.ndarray, new_tokens: int) -> float:
        """Seconds for ``generate`` of exactly ``new_tokens`` tokens."""
        started = time.perf_counter()
        self._generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        return time.perf_counter() - started

    def greedy(self, text: str) -> str:
        """Greedy output of one input."""
        out = self._generate(np.asarray([self.tokenizer.encode(text)]), max_new_tokens=MAX_NEW_TOKENS)
        return self.tokenizer.decode(out[0].tolist()[1:])  # without the decoder start token


SYSTEMS.register("pytorch-fp32", System("PyTorch", 4, lambda checkpoint, work: checkpoint, TorchRunner))
SYSTEMS.register("pytorch-dynamic-int8", System(
    "PyTorch", 1, lambda checkpoint, work: checkpoint,
    lambda artifact, threads: TorchRunner(artifact, threads, dynamic_int8=True)))


# --- optimum-onnx's ORTModelForSeq2SeqLM -------------------------------------------------------------------------

OPTIMUM_FILES = ("encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx")


def _optimum_fp32(checkpoint: Path, work: Path) -> Path:
    def make(out: Path) -> None:
        try:
            from optimum.onnxruntime import ORTModelForSeq2SeqLM
        except ImportError as exc:
            raise Unavailable(f"optimum-onnx is not installed ({exc})") from None
        ORTModelForSeq2SeqLM.from_pretrained(checkpoint, export=True).save_pretrained(out)
        shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")
    return _built(work / "optimum-fp32", make)


def _optimum_dynamic_int8(checkpoint: Path, work: Path) -> Path:
    source = _optimum_fp32(checkpoint, work)

    def make(out: Path) -> None:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        config = AutoQuantizationConfig.avx2(is_static=False, per_channel=False)
        shutil.copytree(source, out, ignore=shutil.ignore_patterns("*.onnx"))
        for name in OPTIMUM_FILES:
            scratch = out / f".{name}.quantized"
            ORTQuantizer.from_pretrained(source, file_name=name).quantize(save_dir=scratch,
                                                                          quantization_config=config)
            quantized = next(scratch.glob("*.onnx"))
            quantized.rename(out / name)
            shutil.rmtree(scratch)
    return _built(work / "optimum-dynamic-int8", make)


class OptimumRunner(TorchRunner):
    """optimum-onnx's ``ORTModelForSeq2SeqLM`` (ONNX Runtime sessions, ``generate`` from transformers)."""

    def __init__(self, artifact: Path, threads: int):
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSeq2SeqLM

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.model = ORTModelForSeq2SeqLM.from_pretrained(artifact, session_options=options,
                                                          provider="CPUExecutionProvider")


SYSTEMS.register("optimum-onnx-fp32", System("optimum-onnx", 4, _optimum_fp32, OptimumRunner))
SYSTEMS.register("optimum-onnx-dynamic-int8", System("optimum-onnx", 1, _optimum_dynamic_int8, OptimumRunner))


# --- CTranslate2 -------------------------------------------------------------------------------------------------


def _ctranslate2(quantization: str):
    def build(checkpoint: Path, work: Path) -> Path:
        def make(out: Path) -> None:
            try:
                from ctranslate2.converters import TransformersConverter
            except ImportError as exc:
                raise Unavailable(f"ctranslate2 is not installed ({exc})") from None
            TransformersConverter(str(checkpoint), copy_files=["spiece.model"]).convert(
                str(out), quantization=quantization, force=True)
        return _built(work / f"ctranslate2-{quantization}", make)
    return build


class CTranslate2Runner:
    """CTranslate2's ``Translator`` on sentencepiece pieces (its own encoder-decoder kernels)."""

    def __init__(self, artifact: Path, threads: int):
        import ctranslate2
        import sentencepiece

        self.translator = ctranslate2.Translator(str(artifact), device="cpu", inter_threads=1, intra_threads=threads)
        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.pieces = sentencepiece.SentencePieceProcessor(model_file=str(artifact / "spiece.model"))

    def _tokens(self, ids: np.ndarray) -> list[list[str]]:
        return [[self.pieces.id_to_piece(int(i)) for i in row] for row in ids]

    def forced(self, ids: np.ndarray, new_tokens: int) -> float:
        """Seconds for ``translate_batch`` of exactly ``new_tokens`` tokens."""
        started = time.perf_counter()
        self.translator.translate_batch(self._tokens(ids), beam_size=1, max_decoding_length=new_tokens,
                                        min_decoding_length=new_tokens)
        return time.perf_counter() - started

    def greedy(self, text: str) -> str:
        """Greedy output of one input."""
        result = self.translator.translate_batch(self._tokens(np.asarray([self.tokenizer.encode(text)])), beam_size=1,
                                                 max_decoding_length=MAX_NEW_TOKENS)
        return self.tokenizer.decode([self.pieces.piece_to_id(piece) for piece in result[0].hypotheses[0]])


SYSTEMS.register("ctranslate2-float32", System("CTranslate2", 4, _ctranslate2("float32"), CTranslate2Runner))
SYSTEMS.register("ctranslate2-int8", System("CTranslate2", 1, _ctranslate2("int8"), CTranslate2Runner))


# --- llama.cpp (GGUF), through llama-cpp-python's low-level bindings -----------------------------------------------

GGUF_TYPES = {"q8_0": (7, 34 / 32), "q4_0": (2, 18 / 32)}  # llama_ftype, bytes per weight (blocks of 32 + scale)

QUANTIZE_GGUF = """
import sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = int(sys.argv[3])
if llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params) != 0:
    sys.exit("llama_model_quantize failed")
"""


def _gguf(kind: str):
    def build(checkpoint: Path, work: Path) -> Path:
        import os
        import sys

        from peer_envs import _run, llama_cpp_source, python

        interpreter, source = python("llama-cpp"), llama_cpp_source() / "vendor" / "llama.cpp"

        def convert(out: Path) -> None:  # llama.cpp's converter needs torch: it runs in our environment
            out.mkdir(parents=True)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source / "gguf-py"), str(source)])}
            _run([sys.executable, source / "convert_hf_to_gguf.py", checkpoint, "--outfile", out / "model.gguf",
                  "--outtype", "f32"], "convert_hf_to_gguf.py", env=env)
            shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")

        f32 = _built(work / "llama.cpp-f32", convert)

        def quantize(out: Path) -> None:
            out.mkdir(parents=True)
            _run([interpreter, "-c", QUANTIZE_GGUF, f32 / "model.gguf", out / "model.gguf", GGUF_TYPES[kind][0]],
                 f"llama_model_quantize to {kind}")
            shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")
        return _built(work / f"llama.cpp-{kind}", quantize)
    return build


class LlamaCppRunner:
    """llama.cpp's T5 support: ``llama_encode`` the input, then ``llama_decode`` one token at a time from the
    decoder start token, argmax over the logits (the same host loop as ours)."""

    def __init__(self, artifact: Path, threads: int):
        import llama_cpp

        self.api = llama_cpp
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(str(artifact / "model.gguf").encode(),
                                                          llama_cpp.llama_model_default_params())
        if not self.model:
            raise Unavailable(f"llama.cpp cannot load {artifact / 'model.gguf'}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = threads
        self.context = llama_cpp.llama_init_from_model(self.model, params)
        self.vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.tokenizer = Tokenizer(artifact / "spiece.model")

    def _run(self, ids: list[int], new_tokens: int, stop_at_eos: bool) -> list[int]:
        api = self.api
        api.llama_memory_clear(api.llama_get_memory(self.context), True)
        source = (api.llama_token * len(ids))(*ids)  # kept alive: the batch only points at it
        if api.llama_encode(self.context, api.llama_batch_get_one(source, len(ids))):
            raise RuntimeError("llama_encode failed")
        token, out, step = api.llama_model_decoder_start_token(self.model), [], (api.llama_token * 1)()
        for _ in range(new_tokens):
            step[0] = token
            if api.llama_decode(self.context, api.llama_batch_get_one(step, 1)):
                raise RuntimeError("llama_decode failed")
            logits = np.ctypeslib.as_array(api.llama_get_logits_ith(self.context, -1), shape=(self.vocab,))
            token = int(logits.argmax())
            if stop_at_eos and token == self.tokenizer.eos_id:
                break
            out.append(token)
        return out

    def forced(self, ids: np.ndarray, new_tokens: int) -> float:
        """Seconds for encoding and ``new_tokens`` greedy steps (batch 1: one sequence per context)."""
        started = time.perf_counter()
        for row in ids:
            self._run([int(i) for i in row], new_tokens, stop_at_eos=False)
        return time.perf_counter() - started

    def greedy(self, text: str) -> str:
        """Greedy output of one input."""
        return self.tokenizer.decode(self._run(self.tokenizer.encode(text), MAX_NEW_TOKENS, stop_at_eos=True))


for _kind, (_ftype, _bytes) in GGUF_TYPES.items():
    SYSTEMS.register(f"llama.cpp-{_kind}", System("llama.cpp", _bytes, _gguf(_kind),
                                                  LlamaCppRunner, batched=False, environment="llama-cpp"))


# --- OpenVINO through optimum-intel ------------------------------------------------------------------------------

EXPORT_OPENVINO = """
import sys
from optimum.intel import OVModelForSeq2SeqLM, OVWeightQuantizationConfig
bits = int(sys.argv[3])
config = OVWeightQuantizationConfig(bits=8) if bits == 8 else None  # None and no 8-bit loading: fp32 weights
OVModelForSeq2SeqLM.from_pretrained(sys.argv[1], export=True, quantization_config=config,
                                    load_in_8bit=False).save_pretrained(sys.argv[2])
"""


def _openvino(bits: int):
    def build(checkpoint: Path, work: Path) -> Path:
        from peer_envs import _run, python

        interpreter = python("openvino")

        def export(out: Path) -> None:
            _run([interpreter, "-c", EXPORT_OPENVINO, checkpoint, out, bits], "optimum-intel's OpenVINO export")
            shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")
        return _built(work / f"openvino-{'int8' if bits == 8 else 'fp32'}", export)
    return build


class OpenVinoRunner(TorchRunner):
    """optimum-intel's ``OVModelForSeq2SeqLM`` on OpenVINO's CPU plugin (``generate`` from transformers)."""

    def __init__(self, artifact: Path, threads: int):
        from optimum.intel import OVModelForSeq2SeqLM

        self.tokenizer = Tokenizer(artifact / "spiece.model")
        self.model = OVModelForSeq2SeqLM.from_pretrained(
            artifact, ov_config={"INFERENCE_NUM_THREADS": str(threads), "PERFORMANCE_HINT": "LATENCY"})


SYSTEMS.register("openvino-fp32", System("OpenVINO", 4, _openvino(32), OpenVinoRunner, environment="openvino"))
SYSTEMS.register("openvino-int8", System("OpenVINO", 1, _openvino(8), OpenVinoRunner, environment="openvino"))
