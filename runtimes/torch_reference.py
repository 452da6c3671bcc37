"""The PyTorch reference: the original model run by transformers, the yardstick for every exported stage."""

from __future__ import annotations

import os
from collections.abc import Iterator

from mt5lite.contract import through_eos
from mt5lite.runtimes.options import DecodingOptions
from mt5lite.runtimes.tokenizer import Overflow, Tokenizer


class TorchReference:
    """Tokenize and generate with a Hugging Face T5/mT5 checkpoint (greedy or beam search)."""

    def __init__(self, model_dir: str | os.PathLike, allow_pickle: bool = False, threads: int | None = None,
                 max_source_length: int | None = 512):
        import torch

        from mt5lite.checkpoint import inspect_checkpoint, load_model

        files = inspect_checkpoint(model_dir, allow_pickle=allow_pickle)
        if threads:
            torch.set_num_threads(threads)
        self._setup(load_model(files.root, allow_pickle=allow_pickle), Tokenizer(files.tokenizer), max_source_length)

    @classmethod
    def from_model(cls, model, tokenizer: Tokenizer, max_source_length: int | None = 512) -> TorchReference:
        """A reference over a model already in memory (eval mode) and its tokenizer, e.g. between compression
        passes."""
        reference = cls.__new__(cls)
        reference._setup(model, tokenizer, max_source_length)
        return reference

    def _setup(self, model, tokenizer: Tokenizer, max_source_length: int | None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_source_length = max_source_length  # longer inputs raise, or are truncated on request
        # Embedding rows past the tokenizer's pieces cannot be decoded: never emit them.
        self.undecodable_ids = list(range(self.tokenizer.piece_count, model.config.vocab_size))

    def encode_batch(self, texts: list[str], overflow: Overflow = Overflow.ERROR):
        """Tokenize and right-pad a batch; returns ``(input_ids, attention_mask)`` tensors."""
        import torch

        ids, mask = self.tokenizer.encode_batch(texts, self.max_source_length, overflow)
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def generate_ids(self, texts: list[str], options: DecodingOptions | None = None,
                     overflow: Overflow = Overflow.ERROR) -> list[list[int]]:
        """Generated ids per input, without the decoder start token, up to and including eos."""
        import torch

        options = options or DecodingOptions()
        input_ids, attention_mask = self.encode_batch(texts, overflow)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=options.max_new_tokens,
                num_beams=options.num_beams,
                length_penalty=options.length_penalty,
                early_stopping=options.early_stopping,
                do_sample=False,
                suppress_tokens=self.undecodable_ids or None,
                decoder_start_token_id=self.model.config.decoder_start_token_id,
                eos_token_id=self.tokenizer.eos_id,
                pad_token_id=self.tokenizer.pad_id,
            )
        return [through_eos(row[1:], self.tokenizer.eos_id) for row in out.tolist()]  # without the start token

    def stream_ids(self, text: str, options: DecodingOptions | None = None,
                   overflow: Overflow = Overflow.ERROR) -> Iterator[int]:
        """Greedy decoding of ``text`` through the one decoding loop over the model's own modules
        (``TorchBackend``), each id yielded as soon as its step has run (eos last)."""
        import torch

        from mt5lite.runtimes.decoding import Decoder
        from mt5lite.runtimes.torch_backend import TorchBackend

        options = options or DecodingOptions()
        ids, mask = self.tokenizer.encode_batch([text], self.max_source_length, overflow)
        decoder = Decoder(TorchBackend(self.model, options.max_new_tokens), self.tokenizer.eos_id,
                          int(self.model.config.decoder_start_token_id), self.undecodable_ids)
        # inference mode around each step only (a decorated generator re-enters it on every resume), never left on
        # in the caller's code between tokens
        yield from torch.inference_mode()(decoder.stream)(ids, mask, options)

    def generate(self, texts: list[str], options: DecodingOptions | None = None,
                 overflow: Overflow = Overflow.ERROR) -> list[str]:
        """Generated text per input."""
        return [self.tokenizer.decode(ids) for ids in self.generate_ids(texts, options, overflow)]
