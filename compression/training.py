"""``finetune`` and ``distill``: training passes on transformers' ``Trainer``, one process or data-parallel.

The same ``mt5lite compress`` command trains in one process by default and data-parallel, unchanged, under
``torchrun --nproc_per_node N`` or ``accelerate launch --num_processes N`` (gloo on CPUs, NCCL on GPUs: the
``Trainer`` picks it). Only rank 0 writes the output (``mt5lite.compression.compress``).

- ``finetune``: cross-entropy on labelled pairs.
- ``distill``: the student (the model the earlier passes made) learns a teacher checkpoint's token distributions:
  ``KL(teacher || student)`` at temperature ``T``, times ``T^2``, plus ``alpha`` x the label cross-entropy, on
  labelled pairs plus, optionally, unlabelled inputs whose targets the teacher generates.

Training checkpoints go to ``<output>.training/`` beside the output (not the system's temporary directory); a run
that was killed resumes from the last one when the same command is run again, and the folder is removed when the
pass finishes. Seeds are fixed; losses are logged and kept in the report.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from mt5lite.checked import Checked
from mt5lite.compression.passes import PASSES, CompressionPass, make_report, measure
from mt5lite.errors import InputError

#: Where training checkpoints go: ``training_directory`` sets it for the block of one ``compress`` run (a context
#: variable, so nested or concurrent runs each see their own).
_CHECKPOINTS: ContextVar[Path] = ContextVar("training_checkpoints", default=Path(".mt5lite-training"))


@contextmanager
def training_directory(path: Path) -> Iterator[Path]:
    """Keep the training checkpoints of the passes run inside the block in ``path`` (beside the output)."""
    token = _CHECKPOINTS.set(Path(path))
    try:
        yield Path(path)
    finally:
        _CHECKPOINTS.reset(token)
        if is_main_process() and Path(path).is_dir() and not any(Path(path).iterdir()):
            Path(path).rmdir()


def is_main_process() -> bool:
    """Whether this is rank 0 (or the only process): the one that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def end_data_parallel() -> None:
    """Wait for every rank, then close the process group the ``Trainer`` opened (data-parallel runs only). A rank
    that exits with the group still open can abort in gloo's threads ("terminate called without an active
    exception") while rank 0 is still writing, and torchrun then fails the whole run."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@dataclass(frozen=True)
class TrainingOptions(Checked):
    """How to train (shared by ``finetune`` and ``distill``)."""

    train_data: Path | None = field(default=None, metadata={
        "help": "labelled training pairs (lang<TAB>source<TAB>target)"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "pairs per step and process"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate (linear decay)"})
    save_steps: int = field(default=50, metadata={"help": "steps between training checkpoints (for resuming)"})
    train_seed: int = field(default=0, metadata={"help": "seed of initialisation order and data shuffling"})
    eval_data: Path | None = field(default=None, metadata={
        "help": "labelled pairs held out from training: their loss (distill: the distillation loss) is measured "
                "every save_steps and the checkpoint with the lowest one is kept (default: the last)"})
    dropout: float | None = field(default=None, metadata={
        "help": "dropout rate while training (default: the checkpoint's dropout_rate)", "type": float})

    def problems(self) -> list[str]:
        """What is wrong with the training options."""
        problems = []
        if self.train_data is None:
            problems.append("training needs labelled pairs: give --train-data PAIRS")
        elif not Path(self.train_data).is_file():
            problems.append(f"{self.train_data}: no such training data file")
        for name in ("max_steps", "batch_size", "save_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate}")
        if self.eval_data is not None and not Path(self.eval_data).is_file():
            problems.append(f"{self.eval_data}: no such evaluation data file")
        if self.eval_data is not None and self.save_steps >= 1 and self.max_steps % self.save_steps:
            problems.append(f"with eval_data, max_steps ({self.max_steps}) must be a multiple of save_steps "
                            f"({self.save_steps}), so that the last step is evaluated too")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        return problems


class PairDataset:
    """Tokenized pairs as the ``Trainer`` wants them: dicts of ``input_ids``, ``attention_mask`` and ``labels``."""

    def __init__(self, pairs, tokenizer, max_length: int = 128):
        from mt5lite.runtimes.tokenizer import Overflow

        self.rows = [(tokenizer.encode(p.source, max_length, Overflow.TRUNCATE),
                      tokenizer.encode(p.target, max_length, Overflow.TRUNCATE)) for p in pairs]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        source, target = self.rows[index]
        return {"input_ids": source, "labels": target}


def collate(rows: list[dict]) -> dict:
    """Right-pad a batch: pad id 0 for inputs (mask 0), -100 for labels (ignored by the loss)."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    target = max(len(r["labels"]) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), target), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
        mask[i, : len(row["input_ids"])] = 1
        labels[i, : len(row["labels"])] = torch.tensor(row["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass(frozen=True)
class Teacher:
    """What distillation learns from: the teacher model, the temperature of both distributions, the weight of the
    label cross-entropy, and ``ids`` (the teacher's id of each student piece, when the student's vocabulary was
    trimmed from the teacher's; None when they share it)."""

    model: object
    temperature: float = 2.0
    alpha: float = 0.5
    ids: object = None


def _trainer_class(distilling: Teacher | None = None):
    """transformers' ``Trainer``, or one whose loss is the distillation loss against ``distilling``'s teacher.
    With ``ids`` the teacher reads the same text and its distribution is taken over the student's pieces."""
    import torch
    from torch.nn import functional
    from transformers import Trainer

    if distilling is None:
        return Trainer
    teacher, temperature, alpha, teacher_ids = (distilling.model, distilling.temperature, distilling.alpha,
                                                distilling.ids)

    class DistillationTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            valid = inputs["labels"] != -100
            device = outputs.logits.device
            teacher.to(device)  # the student's device (a GPU under data-parallel training); a no-op once there
            ids = None if teacher_ids is None else teacher_ids.to(device)
            with torch.no_grad():
                seen = inputs
                if ids is not None:
                    labels = torch.where(valid, ids[inputs["labels"].clamp(min=0)], inputs["labels"])
                    seen = {**inputs, "input_ids": ids[inputs["input_ids"]], "labels": labels}
                reference = teacher(**seen).logits
                if ids is not None:
                    reference = reference[..., ids]
            student = functional.log_softmax(outputs.logits[valid] / temperature, dim=-1)
            target = functional.log_softmax(reference[valid] / temperature, dim=-1)
            kl = functional.kl_div(student, target, log_target=True, reduction="batchmean") * temperature**2
            loss = kl + alpha * outputs.loss
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer


def _fingerprint(model, options: TrainingOptions, name: str, examples: int) -> str:
    """What a training run's checkpoints belong to: the pass, its options, the data size and the model's config."""
    import hashlib

    described = {"pass": name, "options": repr(options), "examples": examples, "config": model.config.to_dict()}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _complete(checkpoint: Path) -> bool:
    """Whether the Trainer finished writing ``checkpoint``: its state, written last, is there and parses."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _resumable(scratch: Path, fingerprint: str) -> bool:
    """Whether ``scratch`` holds checkpoints of this very run (same fingerprint) to resume from; checkpoints of
    another run (other options, data or model) are cleared rather than resumed. The checkpoints, optimizer state
    included, are the ones this command wrote itself. A checkpoint the kill cut short (the Trainer writes
    ``trainer_state.json`` last) is removed first, so the run resumes from the last complete one."""
    stamp = scratch / "run.sha256"
    if is_main_process():
        for checkpoint in scratch.glob("checkpoint-*"):
            if not _complete(checkpoint):
                shutil.rmtree(checkpoint, ignore_errors=True)
    if scratch.is_dir() and any(scratch.glob("checkpoint-*")):
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == fingerprint:
            return True
        if is_main_process():
            shutil.rmtree(scratch, ignore_errors=True)
    if is_main_process():
        scratch.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint, encoding="utf-8")
    return False


def train(model, tokenizer_bytes: bytes, pairs, options: TrainingOptions, name: str,
          teacher: Teacher | None = None) -> dict:
    """Train ``model`` in place on ``pairs`` (against ``teacher``'s distributions when given); returns the loss
    curve, steps and seconds, and with ``options.eval_data`` the held-out losses and the step whose checkpoint was
    kept (the lowest held-out loss)."""
    import importlib.util
    import time

    if importlib.util.find_spec("accelerate") is None:  # transformers' Trainer needs it; say which extra brings it
        raise ModuleNotFoundError("No module named 'accelerate'", name="accelerate")
    import torch
    from transformers import TrainingArguments, set_seed

    from mt5lite.data import read_task_pairs
    from mt5lite.runtimes.tokenizer import Tokenizer

    scratch = _CHECKPOINTS.get() / name
    set_seed(options.train_seed)
    evaluating = options.eval_data is not None
    arguments = TrainingArguments(
        output_dir=str(scratch), max_steps=options.max_steps, per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate, lr_scheduler_type="linear", weight_decay=0.0, seed=options.train_seed,
        data_seed=options.train_seed, logging_steps=max(1, options.max_steps // 20), save_steps=options.save_steps,
        save_total_limit=2, save_strategy="steps", report_to=[], dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),  # GPUs when there are (NCCL under torchrun), else the CPU (gloo)
        remove_unused_columns=False, disable_tqdm=not is_main_process(), save_safetensors=True,
        ddp_find_unused_parameters=False, per_device_eval_batch_size=options.batch_size,
        # With held-out pairs: their loss at every checkpoint, and the best checkpoint loaded at the end (the
        # Trainer keeps it beside the last two)
        eval_strategy="steps" if evaluating else "no", eval_steps=options.save_steps if evaluating else None,
        load_best_model_at_end=evaluating, metric_for_best_model="eval_loss" if evaluating else None,
        greater_is_better=False if evaluating else None, prediction_loss_only=True)
    tokenizer = Tokenizer.from_bytes(tokenizer_bytes)
    dataset = PairDataset(pairs, tokenizer)
    held_out = PairDataset(read_task_pairs(options.eval_data), tokenizer) if evaluating else None
    trainer_class = _trainer_class(teacher)
    trainer = trainer_class(model=model, args=arguments, train_dataset=dataset, eval_dataset=held_out,
                            data_collator=collate)
    resume = _resumable(scratch, _fingerprint(model, options, name, len(dataset)))
    started = time.perf_counter()
    rate = model.config.dropout_rate
    _set_dropout(model, rate if options.dropout is None else options.dropout)
    model.train()
    try:
        trainer.train(resume_from_checkpoint=True if resume else None)
    finally:
        model.eval()
        _set_dropout(model, rate)  # the checkpoint keeps the dropout rate it came with
    model.to("cpu")  # what comes next (quality, the next pass, saving) runs on the CPU
    if teacher is not None:
        teacher.model.to("cpu")
    history = trainer.state.log_history
    losses = [{"step": row["step"], "loss": row["loss"]} for row in history if "loss" in row]
    if is_main_process():
        shutil.rmtree(scratch, ignore_errors=True)
    curve = {"steps": trainer.state.global_step, "resumed": resume, "losses": losses,
             "processes": trainer.args.world_size, "seconds": round(time.perf_counter() - started, 1)}
    if evaluating:
        curve["eval_losses"] = [{"step": row["step"], "loss": row["eval_loss"]} for row in history
                                if "eval_loss" in row]
        curve["kept_step"] = trainer.state.best_global_step
    return curve


def _kept(curve: dict, options: TrainingOptions) -> str:
    """The summary's note of the checkpoint kept, where held-out pairs chose it (else nothing)."""
    return f"; kept step {curve['kept_step']}, the lowest loss on {options.eval_data}" if "kept_step" in curve else ""


def _set_dropout(model, rate: float) -> None:
    """Set every dropout layer of ``model`` (and its config) to ``rate``."""
    import torch

    model.config.dropout_rate = rate
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate


@dataclass(frozen=True)
class FinetuneConfig(TrainingOptions):
    """Fine-tuning on labelled pairs."""


def finetune(model, tokenizer, config: FinetuneConfig):
    """The ``finetune`` pass: cross-entropy training on labelled pairs."""
    from mt5lite.data import read_task_pairs

    before = measure(model, tokenizer)
    curve = train(model, tokenizer.SerializeToString(), read_task_pairs(config.train_data), config, "finetune")
    summary = (f"fine-tuned {curve['steps']} steps on {config.train_data} ({curve['processes']} process(es))"
               f"{_kept(curve, config)}")
    return model, tokenizer, make_report("finetune", summary, before, measure(model, tokenizer), curve)


@dataclass(frozen=True)
class DistillConfig(TrainingOptions):
    """Distillation from a teacher checkpoint."""

    teacher: Path | None = field(default=None, metadata={"help": "the teacher checkpoint (same tokenizer)"})
    temperature: float = field(default=2.0, metadata={"help": "softmax temperature T of the KL term"})
    alpha: float = field(default=0.5, metadata={"help": "weight of the label cross-entropy"})
    unlabelled: Path | None = field(default=None, metadata={
        "help": "inputs without targets (lang<TAB>text); the teacher generates their targets"})

    def problems(self) -> list[str]:
        """The training options' problems, and the teacher's, temperature's, alpha's and unlabelled file's."""
        problems = super().problems()
        if self.teacher is None:
            problems.append("distill needs a teacher: give --teacher CHECKPOINT")
        elif not (Path(self.teacher) / "config.json").is_file():
            problems.append(f"{self.teacher}: the teacher is not a checkpoint directory (no config.json)")
        if not self.temperature > 0:
            problems.append(f"temperature must be positive, got {self.temperature}")
        if self.alpha < 0:
            problems.append(f"alpha must be at least 0, got {self.alpha}")
        if self.unlabelled is not None and not Path(self.unlabelled).is_file():
            problems.append(f"{self.unlabelled}: no such file of unlabelled inputs")
        return problems


def _teacher_ids(teacher_dir: Path, tokenizer):
    """``None`` when student and teacher share the tokenizer; else the teacher's id of each student piece (the
    student's vocabulary was trimmed from the teacher's)."""
    import torch

    from mt5lite.spiece import pieces
    from mt5lite.verification.kept_ids import id_map

    original, own = pieces(teacher_dir), [piece.piece for piece in tokenizer.pieces]
    if original == own:
        return None
    try:
        return torch.from_numpy(id_map(original, own, "the student's tokenizer"))
    except ValueError as exc:
        raise InputError(f"{exc}; distil from the checkpoint the student was made from") from None


def _teacher_pairs(teacher, teacher_dir: Path, path: Path) -> list:
    """``path``'s inputs with the teacher's greedy outputs (in the teacher's own tokenizer) as targets."""
    from mt5lite.data import TaskPair, read_tagged_texts
    from mt5lite.runtimes.tokenizer import Tokenizer
    from mt5lite.runtimes.torch_reference import TorchReference
    from mt5lite.verification.evaluation import generate_in_batches

    texts = read_tagged_texts(path)
    reference = TorchReference.from_model(teacher, Tokenizer(Path(teacher_dir) / "spiece.model"))
    outputs = generate_in_batches(reference.generate, [t.text for t in texts], 32)
    return [TaskPair(t.lang, t.text, out) for t, out in zip(texts, outputs, strict=True) if out.strip()]


def distill(model, tokenizer, config: DistillConfig):
    """The ``distill`` pass: the model learns the teacher's token distributions (KL at T, x T^2, + alpha x CE)."""
    from mt5lite.checkpoint import load_model
    from mt5lite.data import read_task_pairs

    before = measure(model, tokenizer)
    teacher = load_model(config.teacher)
    teacher_ids = _teacher_ids(config.teacher, tokenizer)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    data = tokenizer.SerializeToString()
    pairs = read_task_pairs(config.train_data)
    generated = _teacher_pairs(teacher, config.teacher, config.unlabelled) if config.unlabelled else []
    curve = train(model, data, pairs + generated, config, "distill",
                  Teacher(teacher, config.temperature, config.alpha, teacher_ids))
    curve.update({"teacher": str(config.teacher), "labelled_pairs": len(pairs), "teacher_generated_pairs":
                  len(generated), "temperature": config.temperature, "alpha": config.alpha})
    summary = (f"distilled from {config.teacher} for {curve['steps']} steps (T={config.temperature}, "
               f"alpha={config.alpha}; {len(pairs)} labelled + {len(generated)} teacher-labelled pairs)"
               f"{_kept(curve, config)}")
    return model, tokenizer, make_report("distill", summary, before, measure(model, tokenizer), curve)


PASSES.register("finetune", CompressionPass(finetune, FinetuneConfig, "train on labelled pairs to win back accuracy"))
PASSES.register("distill", CompressionPass(distill, DistillConfig,
                                           "learn a teacher's token distributions (KL at T, x T^2, + alpha x CE)"))
