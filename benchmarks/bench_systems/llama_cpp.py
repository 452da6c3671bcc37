"""llama.cpp (GGUF Q8_0 and Q4_0), through llama-cpp-python's low-level bindings, in its own environment."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_systems import MAX_NEW_TOKENS, SYSTEMS, System, Unavailable, built
from mt5lite.runtimes.tokenizer import Tokenizer

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

        from benchmarks.peer_envs import llama_cpp_source, python, run_command

        interpreter, source = python("llama-cpp"), llama_cpp_source() / "vendor" / "llama.cpp"

        def convert(out: Path) -> None:  # llama.cpp's converter needs torch: it runs in our environment
            out.mkdir(parents=True)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source / "gguf-py"), str(source)])}
            run_command([sys.executable, source / "convert_hf_to_gguf.py", checkpoint, "--outfile", out / "model.gguf",
                  "--outtype", "f32"], "convert_hf_to_gguf.py", env=env)
            shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")

        f32 = built(work / "llama.cpp-f32", convert, checkpoint)

        def quantize(out: Path) -> None:
            out.mkdir(parents=True)
            run_command([interpreter, "-c", QUANTIZE_GGUF, f32 / "model.gguf", out / "model.gguf", GGUF_TYPES[kind][0]],
                 f"llama_model_quantize to {kind}")
            shutil.copy2(checkpoint / "spiece.model", out / "spiece.model")
        return built(work / f"llama.cpp-{kind}", quantize, checkpoint)
    return build


class LlamaCppRunner:
    """llama.cpp's T5 support: ``llama_encode`` the input, then ``llama_decode`` one token at a time from the
    decoder start token, argmax over the logits (the same host loop as ours)."""

    #: No ``beams``: what the table says instead.
    no_beam_search = ("llama.cpp has no beam search: it left its API in June 2024 (ggml-org/llama.cpp#7736, "
                      "'to be implemented in user code')")

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
