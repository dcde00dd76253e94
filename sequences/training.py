r"""Fitting and evaluating language models on text and on synthetic tasks.

Any model that follows the language-model protocol (:class:`~fwdlearn.sequences.nn.language_model.LanguageModel`:
``forward(tokens, state) -> (logits, state)``, a ``rule``, a ``config`` dataclass) is served: the
recurrent LMs, the causal convolution, and any model registered in ``LM_KINDS``.

Language modelling minimises the mean next-token cross-entropy over a window,

.. math::
    \mathcal{L} = \frac{1}{BT}\sum_{b,t} -\log p_\theta(w_{b,t+1} \mid w_{b,\le t}),

reported as perplexity :math:`e^{\mathcal{L}}` and bits per token (per character at char
level) :math:`\mathcal{L} / \ln 2`. Training walks :math:`B` contiguous streams with the
state carried (detached) from one window to the next; one :class:`fwdlearn.fit.Trainer` step is
one optimizer step (:func:`fwdlearn.schedules.end_to_end_step`: the model's rule lives in its
graph, so the update is the same for every rule), and the Trainer's progress bar, evaluation,
best-state selection, checkpoints and resume all count steps. Checkpoints hold the model config, its
weights, the vocabulary, the optimizer, the stream position and the carried state, and the best
weights once more only when the best evaluation is not the last one (see :class:`fwdlearn.fit.Trainer`).

**Resuming** needs the same model, vocabulary, corpus (its token ids), batch size, context and number
of processes: a checkpoint that differs in any of them is refused, naming each difference. A new
learning rate, weight decay, clip or ``eval_tokens`` applies from the resumed step on, and
``FitReport.resumed`` lists what changed.

**Data parallel.** Inside a ``torch.distributed`` process group (``torchrun``, see
:func:`fwdlearn.distributed.init_from_env`) :func:`fit_lm` wraps the model in
``DistributedDataParallel``: process :math:`r` of :math:`W` walks its own contiguous shard of the
training tokens (``B`` streams each, so the global batch is :math:`WB`), gradients are averaged
across processes and every replica takes the same update. Rank 0 owns the progress bar and the
checkpoint; rank :math:`r > 0` keeps its own ``<checkpoint>.rank<r>`` (its stream position) so a
resumed run restarts every process at the same step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fwdlearn.distributed import is_distributed, rank, shard_bounds, world_size
from fwdlearn.errors import UsageError, check_range
from fwdlearn.fit import FitResult, Trainer, evaluating, load_optimizer_state, seed_everything, tensor_fingerprint
from fwdlearn.schedules import end_to_end_step

from fwdlearn.sequences.data.text import Corpus, StreamBatcher, Vocabulary
from fwdlearn.sequences.data.tasks import IGNORE_INDEX, SequenceTask

__all__ = ["FitReport", "lm_loss", "task_loss", "evaluate_lm", "evaluate_task", "fit_lm", "fit_task", "TrainState"]

LN2 = math.log(2.0)


@dataclass
class FitReport:
    """What a fit did: the Trainer's result and the best evaluation's metrics.

    ``steps`` and ``seconds`` cover the whole run, resumed parts included; ``best_step`` is the step whose
    state the model holds at the end; ``resumed`` (when the fit continued a checkpoint) is
    ``{"from_step": s, "changed": {setting: [checkpoint's, now]}}``.
    """

    result: FitResult
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.result.history

    @property
    def best_step(self) -> int:
        return self.result.best_step

    @property
    def resumed(self) -> dict[str, Any] | None:
        return self.result.resumed


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over every scored position (targets equal to -100 are skipped)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)


def task_loss(task: SequenceTask, output: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy on scored positions, or MSE on the non-NaN targets of a regression task."""
    if task.loss == "cross_entropy":
        return lm_loss(output, targets)
    mask = ~torch.isnan(targets)
    return F.mse_loss(output[..., 0][mask], targets[mask])


def _lm_metrics(total: float, count: int, prefix: str = "") -> dict[str, float]:
    loss = total / max(count, 1)
    return {f"{prefix}loss": loss, f"{prefix}perplexity": math.exp(min(loss, 50.0)), f"{prefix}bpc": loss / LN2}


@torch.no_grad()
def evaluate_lm(model, ids: Tensor, context: int = 256, batch_size: int = 16, max_tokens: int | None = None,
                prefix: str = "") -> dict[str, float]:
    r"""Mean next-token loss over ``ids`` walked as ``batch_size`` streams with the state carried:
    ``{"loss", "perplexity", "bpc"}`` (keys prefixed by ``prefix``)."""
    if max_tokens is not None:
        ids = ids[:max_tokens]
    batcher = StreamBatcher(ids, batch_size, min(context, ids.numel() // batch_size - 1))
    device = next(model.parameters()).device
    state, total, count = None, 0.0, 0
    with evaluating(model):
        for x, y in batcher.epoch_windows():
            logits, state = model(x.to(device), state)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1),
                                           reduction="sum"))
            count += y.numel()
    return _lm_metrics(total, count, prefix)


@torch.no_grad()
def evaluate_task(model, task: SequenceTask, batches: int = 4, batch_size: int = 64, seed: int = 12345,
                  prefix: str = "") -> dict[str, float]:
    """Loss and the task metric (accuracy on scored positions, or MSE) on fresh samples drawn with ``seed``."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    loss_sum, hit, scored, sq = 0.0, 0, 0, 0.0
    with evaluating(model):
        for _ in range(batches):
            x, y = task.sample(batch_size, gen)
            out, _ = model(x.to(device))
            y = y.to(device)
            loss_sum += float(task_loss(task, out, y))
            if task.loss == "cross_entropy":
                mask = y != IGNORE_INDEX
                hit += int((out.argmax(-1)[mask] == y[mask]).sum())
                scored += int(mask.sum())
            else:
                mask = ~torch.isnan(y)
                sq += float(((out[..., 0][mask] - y[mask]) ** 2).sum())
                scored += int(mask.sum())
    metric = hit / scored if task.loss == "cross_entropy" else sq / scored
    return {f"{prefix}loss": loss_sum / batches, f"{prefix}{task.metric}": metric}


class TrainState:
    """Everything a resumed run needs, as one ``state_dict`` for :class:`fwdlearn.fit.Trainer`; its best state
    (:meth:`best_state_dict`) is the saved-model bundle without the optimizer."""

    def __init__(self, model, optimizer: torch.optim.Optimizer, vocab: Vocabulary | None = None,
                 batcher: StreamBatcher | None = None, generator: torch.Generator | None = None) -> None:
        self.model, self.optimizer, self.vocab, self.batcher, self.generator = model, optimizer, vocab, batcher, generator
        self.carry: list[Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.model.config.kind,
            "config": self.model.config_dict(),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "vocab": self.vocab.state_dict() if self.vocab is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "stream": self.batcher.state_dict() if self.batcher is not None else None,
            "carry": _detached(self.carry, copy=True),  # a copy: a view would save its whole sequence
            "generator": self.generator.get_state() if self.generator is not None else None,
        }

    def best_state_dict(self) -> dict[str, Any]:
        """What :func:`~fwdlearn.sequences.nn.language_model.load_language_model` reads: kind, config, weights, vocabulary."""
        return {"kind": self.model.config.kind, "config": self.model.config_dict(),
                "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "vocab": self.vocab.state_dict() if self.vocab is not None else None}

    def load_best_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load weights, optimizer moments (keeping the current learning rate and weight decay), stream
        position, carried state and generator."""
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        if self.batcher is not None and state.get("stream") is not None:
            self.batcher.load_state_dict(state["stream"])
        device = next(self.model.parameters()).device
        carry = state.get("carry")
        self.carry = None if carry is None else _detached(carry, device)
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])


def _optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def _detached(state: Any, device: torch.device | None = None, copy: bool = False) -> Any:
    """A carried state with every tensor in it detached (moved to ``device``, or copied with ``copy``);
    ``None`` stays ``None``."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        state = state.detach() if device is None else state.detach().to(device)
        return state.clone() if copy else state
    return [_detached(s, device, copy) for s in state]


def _check_fit_arguments(batch_size: int, lr: float, weight_decay: float, clip: float | None,
                         context: int | None = None, eval_tokens: int | None = None) -> None:
    """Refuse values that would train wrongly (a negative clip ascends the gradient) before any work (the
    Trainer checks the step budget and the evaluation interval)."""
    check_range("batch_size", batch_size, min=1)
    check_range("lr", lr, gt=0)
    check_range("weight_decay", weight_decay, min=0)
    check_range("clip", clip, gt=0, optional=True)
    check_range("context", context, min=1, optional=True)
    check_range("eval_tokens", eval_tokens, min=1, optional=True)


def _run(trainer_kwargs: dict[str, Any], step: Callable, evaluate: Callable, state: TrainState, steps: int) -> FitReport:
    trainer = Trainer(steps, **trainer_kwargs)
    result = trainer.run(step, evaluate, state)
    return FitReport(result, result.steps_run, dict(result.best), result.seconds)


def corpus_fingerprint(vocab: Vocabulary, *splits: Tensor) -> dict[str, str]:
    """``{"vocabulary", "corpus"}``: sizes and short hashes of the vocabulary and of the token ids; a resumed
    run must match both."""
    tokens = "\0".join(vocab.tokens)
    return {"vocabulary": f"{len(vocab)} {vocab.level} tokens #{tensor_fingerprint(extra=tokens)[:8]}",
            "corpus": f"{' + '.join(f'{s.numel():,}' for s in splits)} tokens #{tensor_fingerprint(*splits)[:8]}"}


def fit_lm(model, corpus: Corpus, context: int = 128, steps: int = 1000, batch_size: int = 16, lr: float = 2e-3,
           weight_decay: float = 0.0, clip: float | None = 1.0, eval_every: int = 100, eval_tokens: int | None = 50_000,
           eval_context: int | None = None, train_split: str = "train", valid_split: str = "validation",
           checkpoint: str | Path | None = None, resume: bool = False, quiet: bool = False, seed: int = 0,
           overwrite: bool = False, diverge_factor: float | None = 100.0) -> FitReport:
    r"""Train ``model`` on ``corpus`` for ``steps`` optimizer steps of ``batch_size`` x ``context`` tokens.

    Args:
        context: window length :math:`T` (state carried between windows).
        lr, weight_decay: AdamW settings (``lr > 0``).
        clip: clip the gradient norm to this value (``> 0``; ``None``: no clipping).
        eval_every: steps between validation passes (``val_loss``, ``val_perplexity``, ``val_bpc``).
        eval_tokens: validation tokens used per pass (``None``: the whole split).
        checkpoint, resume: as :class:`fwdlearn.fit.Trainer` (the step count continues on resume; see the
            module doc for what a resumed run must match). The state with the best validation loss is
            restored at the end.
        overwrite: let this fit replace an existing ``checkpoint`` (without ``resume``).
        diverge_factor: stop when the loss exceeds this many times its first value (see :class:`~fwdlearn.fit.Trainer`).

    Returns:
        A :class:`FitReport`; ``metrics`` are the best evaluation's. Under ``torch.distributed``
        the model is trained data-parallel (see the module docs; ``world_size()`` processes).
    """
    _check_fit_arguments(batch_size, lr, weight_decay, clip, context, eval_tokens)
    seed_everything(seed)
    device = next(model.parameters()).device
    train_ids = corpus.split(train_split)
    valid = corpus.split(valid_split)
    fingerprint = {"model": model.config_dict(), **corpus_fingerprint(corpus.vocab, train_ids, valid),
                   "batch_size": batch_size, "context": context, "processes": world_size()}
    trainable = model
    if is_distributed():
        start, stop = shard_bounds(train_ids.numel())
        train_ids = train_ids[start:stop]
        trainable = torch.nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's weights
        if rank() > 0:
            quiet = True
            if checkpoint is not None:
                lead_checkpoint, checkpoint = Path(checkpoint), Path(f"{checkpoint}.rank{rank()}")
                if resume and lead_checkpoint.exists() and not checkpoint.exists():
                    raise UsageError(f"{checkpoint}, process {rank()}'s part of the checkpoint, is missing; resume "
                                     "with as many processes as the run was started with")
    batcher = StreamBatcher(train_ids, batch_size, context)
    optimizer = _optimizer(model, lr, weight_decay)
    state = TrainState(model, optimizer, corpus.vocab, batcher)

    def step(_: int) -> dict[str, float]:
        x, y, fresh = batcher.next()
        if fresh:
            state.carry = None
        model.train()
        logits, carry = trainable(x.to(device), state.carry)
        state.carry = _detached(carry)
        return end_to_end_step(lm_loss(logits, y.to(device)), optimizer, clip=clip, grad_norm=True,
                               parameters=list(model.parameters()))

    def evaluate() -> dict[str, float]:
        return evaluate_lm(model, valid, eval_context or context, batch_size, eval_tokens, prefix="val_")

    kwargs = dict(monitor="val_loss", mode="min", eval_every=eval_every, quiet=quiet, desc=f"{model.rule}",
                  checkpoint=checkpoint, resume=resume, overwrite=overwrite, diverge_factor=diverge_factor,
                  fingerprint=fingerprint,
                  settings={"lr": lr, "weight_decay": weight_decay, "clip": clip, "eval_tokens": eval_tokens})
    return _run(kwargs, step, evaluate, state, steps)


def fit_task(model, task: SequenceTask, steps: int = 500, batch_size: int = 32, lr: float = 3e-3,
             weight_decay: float = 0.0, clip: float | None = 1.0, eval_every: int = 100, eval_batches: int = 4,
             checkpoint: str | Path | None = None, resume: bool = False, quiet: bool = False, seed: int = 0,
             overwrite: bool = False, diverge_factor: float | None = 100.0) -> FitReport:
    """Train on fresh samples of a synthetic task; validation on a fixed sample set (``val_accuracy`` or
    ``val_mse``). Arguments as :func:`fit_lm`."""
    _check_fit_arguments(batch_size, lr, weight_decay, clip)
    seed_everything(seed)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    optimizer = _optimizer(model, lr, weight_decay)
    state = TrainState(model, optimizer, generator=gen)

    def step(_: int) -> dict[str, float]:
        x, y = task.sample(batch_size, gen)
        model.train()
        out, _ = model(x.to(device))
        return end_to_end_step(task_loss(task, out, y.to(device)), optimizer, clip=clip, grad_norm=True,
                               parameters=list(model.parameters()))

    def evaluate() -> dict[str, float]:
        return evaluate_task(model, task, eval_batches, prefix="val_")

    monitor = f"val_{task.metric}"
    kwargs = dict(monitor=monitor, mode="max" if task.metric == "accuracy" else "min", eval_every=eval_every,
                  quiet=quiet, desc=f"{model.rule} {task.name}", checkpoint=checkpoint, resume=resume,
                  overwrite=overwrite, diverge_factor=diverge_factor,
                  fingerprint={"model": model.config_dict(), "task": task.name, "batch_size": batch_size},
                  settings={"lr": lr, "weight_decay": weight_decay, "clip": clip})
    return _run(kwargs, step, evaluate, state, steps)
