r"""Fitting and evaluating language models on text and on synthetic tasks.

Any model that follows the language-model protocol (:class:`~fwdlearn.sequences.nn.language_model.LanguageModel`:
``forward(tokens, state) -> (logits, state)``, a ``rule``, a ``config`` dataclass) is served: the
recurrent LMs, the causal convolution, and any model registered in ``LM_KINDS``.

Language modelling minimises the mean next-token cross-entropy over a window,

.. math::
    \mathcal{L} = \frac{1}{BT}\sum_{b,t} -\log p_\theta(w_{b,t+1} \mid w_{b,\le t}),

reported as perplexity :math:`e^{\mathcal{L}}` and bits per token (per character at char
level) :math:`\mathcal{L} / \ln 2`. Training walks :math:`B` contiguous streams with the
state carried (detached) from one window to the next, from zeros at the first window of every pass over the
split (a resumed run goes on with the checkpoint's); one :class:`fwdlearn.fit.Trainer` step is
one optimizer step (:func:`fwdlearn.schedules.end_to_end_step`: the model's rule lives in its
graph, so the update is the same for every rule), and the Trainer's progress bar, evaluation,
best-state selection, checkpoints and resume all count steps. Checkpoints hold the model config, its
weights, the vocabulary, the optimizer, the stream position and the carried state, and the best
weights once more only when the best evaluation is not the last one (see :class:`fwdlearn.fit.Trainer`).

**Resuming** needs the same model, vocabulary, corpus (its token ids), batch size, context and number
of processes: a checkpoint that differs in any of them is refused, naming each difference. A new
learning rate, weight decay, clip, ``eval_tokens`` or ``eval_context`` applies from the resumed step on, and
``FitReport.resumed`` lists what changed. So does a new step budget: a larger ``steps`` extends the run, and a
schedule over the whole budget (warm-up + cosine) is stretched to it from the resumed step on; the warm-up stays
the one the run started with, unless a new one is given. A new ``eval_tokens`` validates on other tokens, a new
``eval_context`` on windows of another length: the best state kept so far is evaluated again on them before training
goes on, so the best is chosen among values on the same tokens and windows.

**Data parallel.** Inside a ``torch.distributed`` process group (``torchrun``, see
:func:`fwdlearn.distributed.init_from_env`) :func:`fit_lm` wraps the model in
``DistributedDataParallel``: process :math:`r` of :math:`W` walks streams :math:`rB \ldots rB + B - 1` of the
:math:`WB` streams one process with batch :math:`WB` would cut the training tokens into (so the global batch is
:math:`WB`, window for window that process's, whatever the split's length), gradients are averaged
across processes and every replica takes the same update; the logged (and divergence-checked) loss is the
global batch's mean. Process :math:`r > 0` draws its dropout masks from a seed of its own (from ``seed`` and
:math:`r`; rank 0 draws as one process does), so the processes' rows do not share masks (a checkpoint whose parts
hold one generator state, written by an fwdlearn that seeded every process alike, is resumed with the processes
reseeded so, and a warning). Rank 0 owns the progress
bar and the checkpoint; rank :math:`r > 0` keeps its own ``<checkpoint>.rank<r>`` (a full training state, with its
stream position, carried state and random-number generators) so a resumed run restarts every process where it
stopped -- refused when the files hold different steps.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fwdlearn.distributed import check_group_started, gather_rows, is_distributed, mean, rank, world_size
from fwdlearn.errors import (UsageError, alike_on_every_process, check_int, check_model_values, check_not_meta,
                             check_range, check_representable, check_seed, is_integer, warn)
from fwdlearn.feedback import spectral_radius
from fwdlearn.fit import (FitResult, Trainer, check_finite, check_trainable_dtype, check_unshared_checkpoint,
                          evaluating, keeps_mode, on_device, progress, load_optimizer_state, read_checkpoint,
                          seed_everything, tensor_fingerprint)
from fwdlearn.optim import OptimizerSettings, load_scheduler, make_optimizer, make_scheduler
from fwdlearn.rules import DSF, TBPTT
from fwdlearn.runs import process_checkpoint
from fwdlearn.schedules import end_to_end_step

from fwdlearn.sequences.data.text import Corpus, StreamBatcher, Vocabulary, check_context, check_splits
from fwdlearn.sequences.data.tasks import IGNORE_INDEX, SequenceTask

__all__ = ["FitReport", "lm_loss", "class_targets", "task_loss", "window_loss", "scored_positions", "evaluate_lm",
           "evaluate_task", "fit_lm", "fit_task", "TrainState", "alignment_window", "alignment_curves", "ALIGN_PREFIX"]

#: history keys of the alignment diagnostic: ``"align/<feedback point>"``
ALIGN_PREFIX = "align/"

LN2 = math.log(2.0)


@dataclass
class FitReport:
    """What a fit did: the Trainer's result and the best evaluation's metrics.

    ``steps`` and ``seconds`` cover the whole run, resumed parts included; ``best_step`` is the step whose
    state the model holds at the end; ``resumed`` (when the fit continued a checkpoint) is
    ``{"from_step": s, "changed": {setting: [checkpoint's, now]}}``; ``optimizer`` the settings it trained with (the
    model's defaults with the fit's overrides, a default warm-up cut to the budget). ``fit_seconds`` is
    ``seconds`` by the name the graph reports give it (:class:`fwdlearn.graphs.FitReport`), so one name reads both.
    """

    result: FitResult
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    optimizer: OptimizerSettings | None = None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The result's rows, one per step (``step``, ``loss``, ``lr``, the validation metrics when evaluated)."""
        return self.result.history

    @property
    def best_step(self) -> int:
        """The step whose state the model holds at the end (the best validation)."""
        return self.result.best_step

    @property
    def resumed(self) -> dict[str, Any] | None:
        """A resumed fit: ``{"from_step": s, "changed": {setting: [checkpoint's, now]}}``; ``None`` for a fresh one."""
        return self.result.resumed

    @property
    def fit_seconds(self) -> float:
        """:attr:`seconds` (the whole run's wall time), as the graph reports name it."""
        return self.seconds


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over every scored position (targets equal to -100 are skipped); 0, with zero gradients, for
    a window without any, as a sum over no position (the mean over none was 0 / 0: a NaN loss, which stopped a fit as
    diverged, blaming the learning rate).

    ``targets`` (:func:`class_targets`): one class id per position of ``logits [..., C]`` (their shape without the
    last dimension, or both flattened), of any integer dtype (int32, int16, uint8: read as int64, as Hugging Face's
    losses cast labels; torch's own loss took int64 and uint8 only), on any device (moved to the logits'), each in
    ``[0, C)`` or -100."""
    targets = class_targets(logits, targets)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    # (the mean itself, not a sum / count: a float16 sum over a long window overflows; its gradient is 0, not NaN,
    # where no position is scored)
    return torch.where(scored_positions(targets).any(), loss, torch.zeros_like(loss))


def class_targets(logits: Tensor, targets: Tensor) -> Tensor:
    """``targets`` as :func:`lm_loss` reads them against ``logits [..., C]``: int64 class ids of the logits' leading
    shape, on their device. Any integer dtype is taken; a float, bool or complex tensor is refused (``TypeError``),
    and so are another shape (a ``[time, batch]`` tensor of as many ids was scored against other positions, in
    silence; a ``[batch, time, 1]`` one is told to ``squeeze(-1)``) and an id outside ``[0, C)`` other than -100
    (``ValueError``: torch's 'Target 11 is out of bounds' named no fix, and on a GPU it is a device-side assert)."""
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a tensor of integer class ids (the next tokens; -100 where a position is "
                        f"not scored); got {type(targets).__name__}: convert it with torch.as_tensor(targets, "
                        "dtype=torch.long)")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        regression = (" (float targets are a regression's: score them with window_loss, MSE on the non-NaN ones)"
                      if targets.dtype.is_floating_point else "")
        raise TypeError(f"targets must be integer class ids (the next tokens; -100 where a position is not scored); "
                        f"got dtype {targets.dtype}: targets.long() if they hold whole-number ids{regression}")
    positions = logits.shape[:-1]
    flat = (logits.dim() == 2 or targets.dim() == 1) and targets.numel() == positions.numel()  # (flattened alike)
    if targets.shape != positions and not flat:
        layout = (" (as many ids in another layout: a [time, batch] tensor for [batch, time] logits was scored "
                  "against the wrong positions)" if targets.numel() == positions.numel() else "")
        extra = [k for k in range(targets.dim()) if targets.shape[k] == 1
                 and targets.shape[:k] + targets.shape[k + 1:] == positions]
        if extra:  # (a [B, T, 1] tensor of ids: one per position, with a dimension of size 1 to drop)
            k = -1 if extra[-1] == targets.dim() - 1 else extra[-1]
            layout = f" (one id per position, with an extra dimension of size 1: targets.squeeze({k}))"
        raise ValueError(f"targets must hold one class id per position of the logits, shape {list(positions)}; got "
                         f"{list(targets.shape)}{layout}")
    if not logits.is_meta:
        check_not_meta("targets", targets, "the loss reads the ids")
    targets = on_device(targets, logits.device).long()
    classes = logits.shape[-1]
    if targets.numel() and not targets.is_meta:
        low, high = (int(v) for v in torch.aminmax(targets.masked_fill(targets == IGNORE_INDEX, 0)))
        if low < 0 or high >= classes:
            fix = (f"mark the positions not scored {IGNORE_INDEX}, the one negative id the loss skips" if low < 0 else
                   f"encode with the vocabulary the model was built for, or build it with vocab_size (out_size) >= "
                   f"{high + 1}")
            raise ValueError(f"targets must be class ids in [0, {classes - 1}] (the logits' {classes} classes) or "
                             f"{IGNORE_INDEX} (not scored); got ids in [{low}, {high}]: {fix}")
    return targets


def window_loss(output: Tensor, targets: Tensor) -> Tensor:
    """The loss of a window told by its targets, as :func:`task_loss` tells it by the task: MSE on the non-NaN targets
    when they are floats (a regression task's, e.g. the adding problem; 0 when every one is NaN, as :func:`lm_loss`
    without a scored position), else :func:`lm_loss` (for the diagnostics, which are given a window without its
    task)."""
    if isinstance(targets, Tensor) and targets.is_floating_point():
        if targets.shape != output.shape[:-1]:
            raise ValueError(f"targets must hold one value per position of the outputs, shape "
                             f"{list(output.shape[:-1])}; got {list(targets.shape)}")
        targets = on_device(targets, output.device)
        mask = ~torch.isnan(targets)
        if not mask.any():  # a sum over no position (the mean was NaN)
            return output[..., 0][mask].sum()
        return F.mse_loss(output[..., 0][mask], targets[mask])
    return lm_loss(output, targets)


def scored_positions(targets: Tensor) -> Tensor:
    """Where a window's targets are scored: not NaN (float targets, regression), else not :data:`IGNORE_INDEX`."""
    return ~torch.isnan(targets) if targets.is_floating_point() else targets != IGNORE_INDEX


def task_loss(task: SequenceTask, output: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy on scored positions, or MSE on the non-NaN targets of a regression task."""
    return lm_loss(output, targets) if task.loss == "cross_entropy" else window_loss(output, targets)


def perplexity(loss: float) -> float:
    """:math:`e^{L}` of a mean cross-entropy ``loss`` in nats; ``inf`` past float64's range (it was capped at
    :math:`e^{50}`, a finite number beside an infinite bpc)."""
    return math.exp(loss) if not loss >= math.log(sys.float_info.max) else math.inf  # (NaN stays NaN)


def _widened(outputs: Tensor) -> Tensor:
    """``outputs`` in at least float32 for an evaluation's loss (a bfloat16 sum drifts: 2.0 for 2.23)."""
    return outputs.to(torch.promote_types(outputs.dtype, torch.float32))


def _lm_metrics(total: float, count: int, prefix: str = "") -> dict[str, float]:
    loss = total / max(count, 1)
    return {f"{prefix}loss": loss, f"{prefix}perplexity": perplexity(loss), f"{prefix}bpc": loss / LN2}


@torch.no_grad()
def evaluate_lm(model, ids: Tensor, context: int = 256, batch_size: int = 16, max_tokens: int | None = None,
                prefix: str = "", quiet: bool = True) -> dict[str, float]:
    r"""Mean next-token loss over ``ids`` walked as ``batch_size`` streams with the state carried:
    ``{"loss", "perplexity", "bpc"}`` (keys prefixed by ``prefix``; ``bpc`` is bits per token, :math:`L / \ln 2`: per
    character at char level, per word at word level). The first ``max_tokens`` ids (all for ``None``) are cut into
    ``batch_size`` contiguous streams (the last ``len % batch_size`` ids left out, :class:`StreamBatcher`), and every
    (input, target) pair of a stream is scored once, the last window shorter when the stream does not divide into
    windows (a stream's first token is an input only). Windows are cut to ``model.max_context``
    (a transformer's positions); a model without a carried state (the transformer, the causal convolution) reads
    each window on its own, from its first token, so its loss depends on ``context``. ``quiet=False``: a progress bar
    over the windows (the 4 million validation characters of a 40 MB text took 80 s on a CPU)."""
    if not isinstance(ids, Tensor):
        named = {"train", "validation", "test"}  # (Corpus's properties; corpus.test was named where there was none)
        splits = [f"corpus.{name}" if name in named else f"corpus.split({name!r})"
                  for name in (ids.splits if isinstance(ids, Corpus) else ())]
        hint = (f": pass one of its splits ({', '.join(splits)})" if splits else
                ": encode the text with the model's vocabulary first (vocab.encode(text))" if isinstance(ids, str) else
                ": convert it with torch.as_tensor(ids, dtype=torch.long)" if isinstance(ids, (list, tuple))
                or hasattr(ids, "__array__") else "")  # (a list or NumPy array of ids was refused naming no fix)
        raise TypeError(f"evaluate reads a 1-D tensor of token ids; got {type(ids).__name__}{hint}")
    if ids.dim() != 1:
        raise ValueError(f"evaluate reads a 1-D tensor of token ids (one stream); got shape {tuple(ids.shape)}: "
                         "flatten a stream (ids.flatten()) or evaluate each row on its own")
    _check_ints(context=context, batch_size=batch_size, max_tokens=max_tokens)
    check_model_values(model, "evaluating it reads its values")  # (the ids, moved to its device: "tokens is on the
    # meta device", of ids made on the CPU)
    model.check_next_token_outputs("evaluating a language model")  # (torch's 'Target 9 is out of bounds')
    if model.max_context is not None:
        context = min(context, model.max_context)
    _check_evaluable(ids, batch_size, prefix.rstrip("_") or "evaluation", max_tokens, "max_tokens")
    if max_tokens is not None:
        ids = ids[:max_tokens]
    model.check_tokens(ids.reshape(1, -1))  # every id, the last (only ever a target) too: it reached cross_entropy
    batcher = StreamBatcher(ids, batch_size, min(context, ids.numel() // batch_size - 1))
    device = next(model.parameters()).device
    state, total, count = None, 0.0, 0
    windows = -(-(batcher.streams.shape[1] - 1) // batcher.context)
    with evaluating(model):
        for x, y in progress(batcher.epoch_windows(), desc=" ".join(filter(None, ("evaluating", prefix.rstrip("_")))),
                             quiet=quiet, total=windows):
            logits, state = model(x.to(device), state)
            wide = _widened(logits)
            total += float(F.cross_entropy(wide.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1).long(),
                                           reduction="sum"))  # (int32 / int16 ids: the loss wants int64)
            count += y.numel()
    return _lm_metrics(total, count, prefix)


def _check_evaluable(ids: Tensor, batch_size: int, split: str, max_tokens: int | None = None,
                     name: str = "max_tokens") -> None:
    """Refuse a split too short for ``batch_size`` streams of at least one (input, target) pair each, and a
    ``max_tokens`` (spelled ``name``) that cuts a long enough split too short, saying which of the two binds."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (the streams read side by side), got {batch_size}")
    need = 2 * batch_size
    smaller = batch_size > 1  # (a batch of 1 was told to give a smaller one)
    if ids.numel() < need:
        raise ValueError(f"the {split} split has {ids.numel()} token{'s' * (ids.numel() != 1)}; evaluating "
                         f"{batch_size} stream{'s' * smaller} needs at least {need} (an input and a target per "
                         "stream): give a longer split"
                         + (" or a smaller batch size (--batch-size)" if smaller else ""))
    if max_tokens is not None and max_tokens < need:
        raise UsageError(f"{name} {max_tokens} keeps {max_tokens} of the {ids.numel():,} tokens of the {split} split; "
                         f"evaluating {batch_size} stream{'s' * smaller} needs at least {need} (an input and a target "
                         f"per stream): raise {name} to {need} or more"
                         + (", or give a smaller batch size (--batch-size)" if smaller else ""))


def _stream_split(corpus: Corpus, name: str) -> Tensor:
    """``corpus.split(name)`` as :func:`fit_lm` reads it, checked before any work: a 1-D tensor of integer token ids
    (a hand-built :class:`Corpus` whose split was a NumPy array or a list failed with "'numpy.ndarray' object has no
    attribute 'numel'"; a ``[rows, T]`` training split was read as its rows end to end, and a validation split of that
    shape was refused only at the first evaluation, after the steps before it had run)."""
    where, ids = f"corpus.splits[{name!r}]", corpus.split(name)
    if not isinstance(ids, Tensor):
        raise TypeError(f"{where} must be a 1-D tensor of integer token ids; got {type(ids).__name__}: convert it with "
                        f"torch.as_tensor({where}, dtype=torch.long)")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{where} must hold integer token ids; got {ids.dtype} ({where}.long() if they are whole "
                        "numbers)")
    if ids.dim() != 1:
        raise ValueError(f"{where} must be a 1-D tensor of token ids (one stream: fit cuts it into batch_size streams "
                         f"itself); got shape {tuple(ids.shape)}: flatten it ({where}.flatten()) if its rows are one "
                         "text in order")
    return ids


def _check_task_model(model, task: SequenceTask) -> None:
    """Refuse a model that cannot read the task's tokens or sequences or give its outputs: a regression task needs one
    output (a wider head trained its first logit in silence), a classification task at least its classes."""
    if model.vocab_size < task.vocab_size:
        raise ValueError(f"the {task.name} task draws {task.vocab_size} input tokens but the model's vocab_size is "
                         f"{model.vocab_size}: build the model with vocab_size=task.vocab_size")
    if model.max_context is not None and task.length > model.max_context:  # (the model's own error, at the first
        # step, said to use shorter windows: a task's sequence is one window of the task's length)
        raise ValueError(f"the {task.name} task's sequences are {task.length} steps but the model reads at most "
                         f"{model.max_context} positions: build it with context >= {task.length}, or use a task of "
                         f"sequences of at most {model.max_context} steps")
    regression = task.loss != "cross_entropy"
    if model.out_size != task.out_size if regression else model.out_size < task.out_size:
        fix = ("build it with out_size=task.out_size" if "out_size" in inspect.signature(type(model)).parameters
               else f"a {type(model).__name__} gives vocab_size outputs (it takes no out_size): train the task with a "
                    "RecurrentLM(..., out_size=task.out_size)")
        raise ValueError(f"the {task.name} task needs {task.out_size} output{'s' if task.out_size > 1 else ''} per "
                         f"position{' (a regression)' if regression else ' (its classes)'} but the model gives "
                         f"{model.out_size}: {fix}")


#: the seed of the samples :func:`fit_task` validates on (and selects the best state by)
VALIDATION_SEED = 12345
#: the seed of the held-out samples :func:`evaluate_task` scores by default: neither training nor validation draws them
TEST_SEED = 271828


@torch.no_grad()
def evaluate_task(model, task: SequenceTask, batches: int = 4, batch_size: int = 64, seed: int = TEST_SEED,
                  prefix: str = "") -> dict[str, float]:
    """Loss and the task metric (accuracy on scored positions, or MSE) on fresh samples drawn with ``seed``: by
    default the test samples (:data:`TEST_SEED`), which :func:`fit_task` neither trains nor validates on. Both are
    means over every scored position of the ``batches`` samples (a batch without one weighs nothing: its NaN loss made
    the whole loss NaN); samples without any scored position are refused (``ValueError``: nothing to evaluate)."""
    batches, batch_size = check_int("batches", batches, 1), check_int("batch_size", batch_size, 1)
    seed = check_seed(seed)  # (2.5 or True reached torch's "manual_seed expected a long", naming no argument)
    _check_task_model(model, task)
    check_model_values(model, "evaluating it reads its values")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    loss_sum, hit, scored, sq = 0.0, 0, 0, 0.0
    with evaluating(model):
        for _ in range(batches):
            x, y = task.sample(batch_size, gen)
            out, _ = model(x.to(device))
            out = _widened(out)
            y = y.to(device)
            mask = scored_positions(y)
            count = int(mask.sum())
            loss_sum += float(task_loss(task, out, y)) * count  # (the batch's mean, weighed by its scored positions)
            scored += count
            if task.loss == "cross_entropy":
                hit += int((out.argmax(-1)[mask] == y[mask]).sum())
            else:
                sq += float(((out[..., 0][mask] - y[mask]) ** 2).sum())
    if not scored:  # (accuracy and MSE were 0 / 0: ZeroDivisionError)
        unscored = "NaN" if task.loss != "cross_entropy" else IGNORE_INDEX
        raise ValueError(f"the {task.name} task's {batches} x {batch_size} samples (seed {seed}) score no position "
                         f"(every target is {unscored}): there is nothing to evaluate; draw more samples (batches and "
                         "batch_size; a fit's eval_batches) or give a task whose samples score some positions")
    metric = hit / scored if task.loss == "cross_entropy" else sq / scored
    return {f"{prefix}loss": loss_sum / scored, f"{prefix}{task.metric}": metric}


class TrainState:
    """Everything a resumed run needs, as one ``state_dict`` for :class:`fwdlearn.fit.Trainer`; its best state
    (:meth:`best_state_dict`) is the saved-model bundle without the optimizer."""

    def __init__(self, model, optimizer: torch.optim.Optimizer, vocab: Vocabulary | None = None,
                 batcher: StreamBatcher | None = None, generator: torch.Generator | None = None,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
        self.model, self.optimizer, self.vocab = model, optimizer, vocab
        self.batcher, self.generator = batcher, generator
        self.scheduler = scheduler
        self.carry: list[Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.model.config.kind,
            "config": self.model.config_dict(),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "vocab": self.vocab.state_dict() if self.vocab is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "stream": self.batcher.state_dict() if self.batcher is not None else None,
            "carry": _detached(self.carry, copy=True),  # a copy: a view would save its whole sequence
            "generator": self.generator.get_state() if self.generator is not None else None,
        }

    def best_state_dict(self) -> dict[str, Any]:
        """What :func:`~fwdlearn.sequences.nn.language_model.load_language_model` reads: kind, config, weights,
        vocabulary."""
        return {"kind": self.model.config.kind, "config": self.model.config_dict(),
                "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "vocab": self.vocab.state_dict() if self.vocab is not None else None}

    def load_best_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load weights, optimizer moments (keeping the current learning rate and weight decay), the learning-rate
        schedule's position (under the current budget and peak rate), stream position, carried state and generator."""
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            load_scheduler(self.scheduler, state["scheduler"])
        if self.batcher is not None and state.get("stream") is not None:
            self.batcher.load_state_dict(state["stream"])
        device = next(self.model.parameters()).device
        carry = state.get("carry")
        self.carry = None if carry is None else _detached(carry, device)
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])


def _optimizer(model, steps: int, started: int | None = None,
               **overrides: Any) -> tuple[OptimizerSettings, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The model's optimizer defaults (:meth:`LanguageModel.optimizer_defaults`) with the given fields overridden;
    the optimizer over the parameters that learn, and its learning-rate schedule over ``steps`` steps. A warm-up
    that is not shorter than the budget is refused when given, and cut to a tenth of the budget when it is the model's
    default (the BP transformer's 100 steps would keep a short run below its peak learning rate). ``started``: the
    warm-up of the run a resume continues, kept unless one is given (a default cut to a short budget is not derived
    again from a longer one: the resumed run would warm up a second time)."""
    settings = model.optimizer_defaults().override(**overrides)
    if started is not None and overrides.get("warmup") is None:
        settings = dataclasses.replace(settings, warmup=started)
    if steps > 0 and settings.warmup >= steps:
        if overrides.get("warmup") is not None:
            peak = "only at the last step" if settings.warmup == steps else "never"
            example = min(steps - 1, max(1, steps // 10))
            # (in the keywords' spelling: the command line says them as its flags, --warmup 5 ... --steps 2)
            raise UsageError(f"warmup={settings.warmup} is not shorter than the budget of steps={steps}: the learning "
                             f"rate would reach {settings.lr:g} {peak}; give a shorter warm-up (e.g. "
                             f"warmup={example})")
        settings = dataclasses.replace(settings, warmup=steps // 10)  # the model's default warm-up, cut to the budget
    optimizer = make_optimizer(model.parameters(), settings)
    return settings, optimizer, make_scheduler(optimizer, settings, steps)


def _started_run(checkpoint: str | Path | None, resume: bool, data: str = "corpus") -> dict[str, Any]:
    """The ``"fingerprint"`` and ``"settings"`` of the run that ``resume`` continues (its checkpoint, read once;
    ``{}`` when there is none to resume). A checkpoint of the other kind of fit (``data``: ``"corpus"``,
    :func:`fit_lm`; ``"task"``, :func:`fit_task`) is refused saying so (the fingerprint listed the other fit's entries
    as 'not recorded (checkpoint: an older fwdlearn)'). Its tensors are mapped, not read (the Trainer reads them)."""
    if not resume or checkpoint is None or not Path(checkpoint).is_file():
        return {}
    ckpt = read_checkpoint(checkpoint, mmap=True)  # (its tensors are read once, by the Trainer)
    saved = ckpt.get("fingerprint") or {}
    other = "task" if data == "corpus" else "corpus"
    if other in saved and data not in saved:
        task = saved["task"].get("name") if isinstance(saved.get("task"), dict) else None
        made = f"a synthetic task ({task}; fit_task)" if other == "task" else "a corpus (fit_lm, seq train)"
        raise UsageError(f"the checkpoint {checkpoint} was made by a fit on {made}; this fit trains on a {data}: "
                         "resume it with the fit that made it, or start a new run (another --name or --checkpoint)")
    return {"fingerprint": saved, "settings": ckpt.get("settings") or {}}


def _started_warmup(started: dict[str, Any]) -> int | None:
    """The warm-up the resumed run was trained with (:func:`_started_run`), else ``None``."""
    warmup = started.get("settings", {}).get("warmup")
    return warmup if is_integer(warmup) else None


def _settings(settings: OptimizerSettings) -> dict[str, Any]:
    """The optimizer settings a resumed run reports when they changed (the new ones apply)."""
    return {"lr": settings.lr, "weight_decay": settings.weight_decay, "schedule": settings.schedule,
            "warmup": settings.warmup}


def _process_seed(seed: int, process: int) -> int:
    """The seed of torch's generators in process ``process`` > 0 of a data-parallel :func:`fit_lm` (rank 0 keeps
    ``seed``): drawn from ``(seed, process)`` by SHA-256, so that it is no other run's ``seed`` (``seed + process``
    was the next seed's rank 0)."""
    import hashlib

    digest = hashlib.sha256(f"fwdlearn process seed {seed} {process}".encode()).digest()
    return int.from_bytes(digest[:8], "little")  # (< 2**64: a seed torch's generators take)


def _unshare_generators(seed: int) -> None:
    """At the first step of a resumed data-parallel :func:`fit_lm`: a checkpoint written before process :math:`r > 0`
    drew from a seed of its own holds rank 0's generator states in every part, and its processes would go on drawing
    rank 0's dropout masks, in silence. A process whose torch generator is in rank 0's state (every process compares,
    a collective) reseeds from ``(seed, r)`` as a fresh run's does, and rank 0 warns once."""
    states = gather_rows(torch.get_rng_state().reshape(1, -1))
    shared = [r for r in range(1, states.shape[0]) if torch.equal(states[r], states[0])]
    if not shared:
        return
    if rank() in shared:
        torch.manual_seed(_process_seed(seed, rank()))
    if rank() == 0:
        many = len(shared) > 1
        warn(f"the checkpoint's parts of process{'es' if many else ''} {', '.join(map(str, shared))} hold rank 0's "
             "random-number generator state (written by an fwdlearn that seeded every process alike, so their rows "
             f"drew rank 0's dropout masks up to the resumed step): {'each' if many else 'it'} now draws from a seed "
             "of its own, as a fresh run's processes do")


class _TrainingLoss(torch.nn.Module):
    """The model's :meth:`training_loss` as a module's forward, so ``DistributedDataParallel`` can wrap it."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, targets: Tensor, state: Any = None, loss_fn: Callable | None = None):
        return self.model.training_loss(tokens, targets, state, loss_fn)


def _update(loss: Tensor, optimizer: torch.optim.Optimizer, scheduler, clip: float | None, model) -> dict[str, float]:
    """One end-to-end step (:func:`fwdlearn.schedules.end_to_end_step`), then the schedule; reports the lr used."""
    lr = optimizer.param_groups[0]["lr"]
    if is_distributed():  # every process reports (and checks) the loss of the global batch the update uses
        check_finite("loss", global_loss := mean(loss))
    groups = model.clip_groups() if hasattr(model, "clip_groups") else [[p for p in model.parameters()
                                                                          if p.requires_grad]]
    row = end_to_end_step(loss, optimizer, clip=clip, grad_norm=True, clip_groups=groups)
    if is_distributed():
        row["loss"] = float(global_loss)
    scheduler.step()
    return {**row, "lr": lr}


def alignment_curves(history: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``{feedback point: [(step, cosine), ...]}`` from a fit's history (the ``"align/<point>"`` entries)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in history:
        for key, value in row.items():
            if key.startswith(ALIGN_PREFIX):
                curves.setdefault(key[len(ALIGN_PREFIX):], []).append((row["step"], value))
    return curves


def alignment_window(ids: Tensor, batch_size: int, context: int) -> tuple[Tensor, Tensor]:
    """``batch_size`` windows of ``context`` tokens (and their targets) evenly spaced over ``ids``: the fixed
    batch the alignment diagnostic is read on."""
    if ids.numel() < context + 2:
        raise ValueError(f"the alignment windows need more than {context + 1} tokens; the split has {ids.numel()}: "
                         "use a shorter context (--context), or a longer validation split")
    starts = torch.linspace(0, ids.numel() - context - 2, batch_size).long().tolist()
    window = torch.stack([ids[s: s + context + 1] for s in starts])
    return window[:, :-1], window[:, 1:]


def _detached(state: Any, device: torch.device | None = None, copy: bool = False) -> Any:
    """A carried state with every tensor in it detached (moved to ``device``, or copied with ``copy``);
    ``None`` stays ``None``."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        state = state.detach() if device is None else state.detach().to(device)
        return state.clone() if copy else state
    return [_detached(s, device, copy) for s in state]


def _check_ints(**values: Any) -> None:
    """Refuse a count that is not an integer (``None`` passes: an option left out): ``2.5`` streams, ``"8"`` steps or
    ``True`` for one failed deep in slicing or ran (the ranges are checked beside each)."""
    for name, value in values.items():
        if value is not None and not is_integer(value):
            raise UsageError(f"{name} must be an int, got {value!r}")


def _check_fit_arguments(model, steps: int, batch_size: int, lr: float | None, weight_decay: float | None,
                         clip: float | None, **sizes: int | None) -> None:
    """Refuse values that would train wrongly (a negative clip ascends the gradient; a learning rate past the
    parameters' dtype overflows, or rounds to 0; no step at all) before any work; ``sizes``: further optional ints
    ``>= 1`` (``context``, ``eval_tokens``, ``eval_context``). (The Trainer checks the evaluation interval.)"""
    check_range("batch_size", batch_size, min=1)
    for name, value in sizes.items():
        check_range(name, value, min=1, optional=True)
    _check_ints(steps=steps, batch_size=batch_size, **sizes)
    check_range("steps", steps, min=1)  # (0 trained nothing and returned a report without metrics; --steps refuses it)
    check_range("lr", lr, gt=0, optional=True)
    check_range("weight_decay", weight_decay, min=0, optional=True)
    check_range("clip", clip, gt=0, optional=True)
    dtype = next(model.parameters()).dtype
    check_representable("lr", lr, dtype)
    check_representable("weight_decay", weight_decay, dtype, small=False)


def _run(trainer_kwargs: dict[str, Any], step: Callable, evaluate: Callable, state: TrainState, steps: int,
         settings: OptimizerSettings) -> FitReport:
    trainer = Trainer(steps, **trainer_kwargs)
    result = trainer.run(step, evaluate, state)
    return FitReport(result, result.steps_run, dict(result.best), result.seconds, settings)


def _task_fingerprint(task) -> dict[str, Any]:
    """A task's name and every scalar setting (lag, length, symbols, ...): a checkpoint of another task is refused."""
    return {"name": task.name, **{k: v for k, v in sorted(vars(task).items())
                                  if isinstance(v, (bool, int, float, str)) and not k.startswith("_")}}


def corpus_fingerprint(vocab: Vocabulary, *splits: Tensor) -> dict[str, str]:
    """``{"vocabulary", "corpus"}``: sizes and short hashes of the vocabulary and of the token ids; a resumed
    run must match both."""
    tokens = "\0".join(vocab.tokens)
    return {"vocabulary": f"{len(vocab)} {vocab.level} tokens #{tensor_fingerprint(extra=tokens)[:8]}",
            "corpus": f"{' + '.join(f'{s.numel():,}' for s in splits)} tokens #{tensor_fingerprint(*splits)[:8]}"}


def _dtype_name(model) -> str:
    """The parameters' dtype, as a checkpoint's fingerprint records it (a float64 run resumed by a float32 model was
    downcast without a word)."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _warn_growing_feedback(model, context: int) -> None:
    r"""Warn when a DSF layer's feedback :math:`A` has spectral radius above 1 (the Gaussian kind, as drawn by the
    reference, at most widths): its reverse scan can multiply errors by up to :math:`\rho^{T-1}` over a window."""
    if not isinstance(getattr(model, "time_rule", None), DSF) or context < 2:  # (one step: the scan is g = e, and a
        return  # window of 1 was warned of a growth 'rho^0 = 1', with the advice of a shorter context)
    growing = []  # (layer, radius): one warning names them all (a warning per layer repeated the advice)
    for i in range(len(model.blocks)):
        feedback = model.feedback(i)
        rho = spectral_radius(feedback)
        # (an orthogonal A's radius is 1 up to the rounding of its entries: 1e-4 covers float32's; a bfloat16 model's
        # orthogonal A read 1.0001-1.0003, and was warned about with the advice to use dsf:orthogonal)
        if rho > 1 + max(1e-4, torch.finfo(feedback.dtype).eps):
            growing.append((i, rho))
    if not growing:
        return
    i, rho = max(growing, key=lambda pair: pair[1])
    digits = (context - 1) * math.log10(rho)  # (rho ** T itself raises OverflowError past float range)
    growth = f"{10 ** digits:.2g}" if digits < 300 else f"10^{digits:.0f}"
    which, largest = f"DSF's feedback A of layer {i} has spectral radius {rho:.3f}", ""
    if len(growing) > 1:
        which = (f"DSF's feedback matrices A of layers {', '.join(str(layer) for layer, _ in growing)} have spectral "
                 f"radii {', '.join(f'{r:.3f}' for _, r in growing)}")
        largest = f" (layer {i})"
    warn(
        f"{which} > 1: the reverse scan "
        f"g_t = e_t + A g_(t+1) can multiply errors by up to {rho:.3f}^{context - 1} = {growth}{largest} over a "
        f"window of {context} steps (the far end of the window then drowns the rest, and past about 1e38 "
        "float32 overflows); use dsf:diagonal (decays in [0, 1], the paper's default) or dsf:orthogonal "
        "(radius 1), or a shorter context")


def _warn_untruncated(model, context: int, task: SequenceTask | None = None) -> None:
    """Warn when ``tbptt:k``'s window is not shorter than the training window (a ``task``'s sequence): the run is full
    BPTT over each window (a sweep over k past the context gave identical runs, each recorded under its own k)."""
    rule = getattr(model, "time_rule", None)
    if not isinstance(rule, TBPTT) or (k := rule.truncation) < context:
        return
    # (one step: no k < 1 exists, and "give k < 1 to truncate" was the advice)
    if task is not None:  # (a task's sequence is one window, its length the task's: no context to lengthen)
        fix = (f"give k < {context} to truncate" if context > 1 else
               "a sequence of one step has nothing to truncate: train it by bptt, the same run")
        warn(f"tbptt:{k} truncates nothing in the {task.name} task's sequences of {context} "
             f"step{'s' * (context != 1)}: the gradient flows back through the whole sequence, as under bptt; {fix}")
    else:
        fix = (f"give k < {context} to truncate, or a longer context" if context > 1 else
               "a window of one step has nothing to truncate: give a longer context")
        warn(f"tbptt:{k} truncates nothing in windows of {context} step{'s' * (context != 1)} (context {context}): the "
             f"gradient flows back through the whole window, as under bptt; {fix}")


@keeps_mode
def fit_lm(model, corpus: Corpus, context: int = 128, steps: int = 1000, batch_size: int = 16,
           lr: float | None = None, weight_decay: float | None = None, schedule: str | None = None,
           warmup: int | None = None, clip: float | None = 1.0, eval_every: int = 100,
           eval_tokens: int | None = 50_000, eval_context: int | None = None, train_split: str = "train",
           valid_split: str = "validation", align_every: int | None = None, checkpoint: str | Path | None = None,
           resume: bool = False, quiet: bool = False, seed: int = 0, overwrite: bool = False,
           diverge_factor: float | None = 100.0) -> FitReport:
    r"""Train ``model`` on ``corpus`` for ``steps`` optimizer steps of ``batch_size`` x ``context`` tokens.

    Each step backpropagates the model's :meth:`~LanguageModel.training_loss` once
    (:func:`fwdlearn.schedules.end_to_end_step`; the rule lives in the model's graph and loss), then steps the
    learning-rate schedule.

    Args:
        model: a language model (:class:`~fwdlearn.sequences.nn.language_model.LanguageModel`).
        corpus: the text (a :class:`~fwdlearn.sequences.data.text.Corpus` from :func:`~fwdlearn.sequences.load_text`),
            its splits named by ``train_split`` and ``valid_split``.
        steps: optimizer steps (at least 1); batch_size: windows (streams) per step, each ``context`` tokens.
        context: window length :math:`T` (state carried between windows, detached, and started from zeros at
            each pass over the split; at most ``model.max_context``).
        lr, weight_decay, schedule, warmup: override the model's optimizer defaults
            (:meth:`~LanguageModel.optimizer_defaults`: e.g. Adam with a constant learning rate under DFA, AdamW with
            warm-up and cosine decay for a transformer under backprop). ``schedule``: ``"constant"`` or ``"cosine"``.
        clip: clip the gradient norm to this value (``> 0``; ``None``: no clipping), of each of the model's
            :meth:`~LanguageModel.clip_groups` on its own: the whole model, or each block under ``local:readout``.
        eval_every: steps between validation passes (``val_loss``, ``val_perplexity``, ``val_bpc``).
        eval_tokens: validation tokens used per pass (``None``: the whole split).
        eval_context: the validation windows' length (default ``context``; at most ``model.max_context``).
        quiet: no progress bar.
        seed: reseeds Python's, NumPy's and torch's global generators (:func:`fwdlearn.fit.seed_everything`) before
            training: the batch order and any dropout follow it. Under ``torch.distributed`` process :math:`r > 0`
            then reseeds torch's generators (CPU and CUDA) with a seed of its own drawn from ``(seed, r)``, so every
            process draws its own dropout masks, as each row of one process's global batch gets its own (rank 0 draws
            as one process does; the weights stay identical: every replica takes the averaged update). Its torch
            generators are then its own after the fit too. A checkpoint whose parts all hold rank 0's generators
            (written by an fwdlearn that seeded every process alike) is resumed with the processes that share them
            reseeded so, with a warning.
        train_split, valid_split: the splits trained on and validated on (the best state is selected on
            ``valid_split``); two different splits of ``corpus``, else :class:`~fwdlearn.errors.UsageError`.
        align_every: every this many steps (and at the first and last), the alignment diagnostic
            (:meth:`~LanguageModel.feedback_alignment`) of the weights after that step's update, on fixed validation
            windows, logged in the history as ``"align/<feedback point>"`` (needs a DFA rule; ``None`` or 0: never).
        checkpoint, resume: as :class:`fwdlearn.fit.Trainer` (the step count, the optimizer and the schedule
            continue on resume; see the module doc for what a resumed run must match). The state with the best
            validation loss is restored at the end.
        overwrite: let this fit replace an existing ``checkpoint`` (without ``resume``).
        diverge_factor: stop when the loss exceeds this many times its first value (see :class:`~fwdlearn.fit.Trainer`).

    Returns:
        A :class:`FitReport`; ``metrics`` are the best evaluation's. Under ``torch.distributed``
        the model is trained data-parallel (see the module docs; ``world_size()`` processes).

    The model keeps its train/eval mode; a second fit goes on from the current weights with a fresh optimizer and
    schedule (``checkpoint``/``resume`` continue them too). Inside ``torch.no_grad()`` it still trains; inside
    ``torch.inference_mode()`` it is refused.
    """
    # every check up to the model's wrapping is made alike by each process of a torchrun job (rank 0 reports it)
    check_group_started("fit_lm")  # (a user script under torchrun that forgot init_from_env: N fits, one checkpoint)
    with alike_on_every_process():
        if not isinstance(corpus, Corpus):  # (token ids failed with "'Tensor' object has no attribute 'vocab_size'")
            raise TypeError(f"fit_lm trains on a Corpus (its splits and vocabulary); got {type(corpus).__name__}: load "
                            "the text with fwdlearn.sequences.load_text (a synthetic task: model.fit(task))")
        _check_fit_arguments(model, steps, batch_size, lr, weight_decay, clip, context=context, eval_tokens=eval_tokens,
                             eval_context=eval_context)
        _check_ints(align_every=align_every)  # (-1 read alignment at every step, 1.5 at every third)
        check_range("align_every", align_every, min=0, optional=True)
        model.check_next_token_outputs("training a language model")  # (torch's 'Target 9 is out of bounds')
        checkpoint = None if checkpoint is None else Path(checkpoint).expanduser()
        check_trainable_dtype(model, f"this {type(model).__name__}")
        seed_everything(seed)
        device = next(model.parameters()).device
        for name, value in (("context", context), ("eval_context", eval_context)):
            if model.max_context is not None and value is not None and value > model.max_context:  # (eval_context was
                # cut to it in silence)
                raise ValueError(f"{name} {value} is longer than the model reads ({model.max_context} positions); "
                                 f"{'train' if name == 'context' else 'validate'} with {name} <= {model.max_context} "
                                 "or build the model with a longer context")
        _warn_growing_feedback(model, context)
        _warn_untruncated(model, context)
        if corpus.vocab_size > model.vocab_size:
            raise ValueError(f"the corpus has {corpus.vocab_size} tokens in its vocabulary but the model's "
                             f"vocab_size is {model.vocab_size}: build the model with vocab_size=corpus.vocab_size")
        if corpus.vocab_size < 2:  # every next token is certain: a loss of 0 that says nothing
            unit = "characters" if corpus.level == "char" else "words"
            raise UsageError(f"the corpus has a single distinct token ({corpus.vocab.tokens[0]!r}); there is nothing "
                             f"to predict: train on text with at least two different {unit}")
        check_splits(corpus, train_split, valid_split)  # two different splits (selecting on the training text: refused)
        valid = _stream_split(corpus, valid_split)
        # validation reads the global batch's streams (W x B under torchrun), as one process with that batch would
        _check_evaluable(valid, batch_size * world_size(), valid_split, eval_tokens, "eval_tokens (--eval-tokens)")
        probe = None
        if align_every:
            probe = alignment_window(valid, batch_size * world_size(), context)  # (the global batch, as validation)
            if not model.feedback_points:  # refused before any update
                model.feedback_alignment(probe[0].to(device), probe[1].to(device))
        train_ids = _stream_split(corpus, train_split)
        # (the feedback seed aside: the feedback buffers themselves are in the saved state, and --seed is checked below)
        config = {k: v for k, v in model.config_dict().items() if k != "feedback_seed"}
        fingerprint = {"model": config, "dtype": _dtype_name(model),
                       **corpus_fingerprint(corpus.vocab, train_ids, valid), "batch_size": batch_size,
                       "context": context, "processes": world_size(), "seed": seed}
        if is_distributed():  # process r reads streams rB .. rB + B - 1 of the W x B streams one process would read
            total, streams = train_ids.numel(), batch_size * world_size()
            check_context(total, streams, context, f"the {train_split} split read by {world_size()} processes x "
                                                   f"{batch_size} streams")
            per_stream = total // streams  # (as one process with batch W x B cuts the split)
            start = rank() * batch_size * per_stream
            train_ids = train_ids[start: start + batch_size * per_stream]
        batcher = StreamBatcher(train_ids, batch_size, context, f"the {train_split} split")
        started = _started_run(checkpoint, resume)  # (the lead checkpoint, on every process)
        settings, optimizer, scheduler = _optimizer(model, steps, _started_warmup(started), lr=lr,
                                                    weight_decay=weight_decay, schedule=schedule, warmup=warmup)
    trainable = _TrainingLoss(model)
    if is_distributed():
        trainable = torch.nn.parallel.DistributedDataParallel(trainable)  # broadcasts rank 0's weights
        if rank() > 0:
            quiet = True
            # dropout masks of its own (each process drew rank 0's: its rows got the masks rank 0's rows got). Every
            # draw a built-in model makes in a step is a dropout mask (no shape, batch or collective depends on one),
            # and each process's checkpoint part keeps its own generators' state: a resume goes on with them
            torch.manual_seed(_process_seed(check_seed(seed), rank()))
            if checkpoint is not None:
                lead_checkpoint, checkpoint = Path(checkpoint), process_checkpoint(checkpoint, rank())
                # (a run of another number of processes has no such part: rank 0 says that once, on resuming)
                if (resume and lead_checkpoint.exists() and not checkpoint.exists()
                        and started.get("fingerprint", {}).get("processes") == world_size()):
                    raise UsageError(f"{checkpoint}, process {rank()}'s part of the checkpoint, is missing; resume "
                                     "with as many processes as the run was started with (if it was, the run stopped "
                                     "before this process's first save: start over with --overwrite)")
    state = TrainState(model, optimizer, corpus.vocab, batcher, scheduler=scheduler)
    unchecked = is_distributed() and resume  # (a resumed part's generators: rank 0's, when an older fwdlearn wrote it)

    def step(i: int) -> dict[str, float]:
        nonlocal unchecked
        if unchecked:  # (the checkpoint has set the generators by now; every process takes its first step together)
            unchecked = False
            _unshare_generators(check_seed(seed))
        x, y, fresh = batcher.next()
        if fresh:
            state.carry = None
        model.train()
        loss, carry = trainable(x.to(device), y.to(device), state.carry)
        state.carry = _detached(carry)
        row = _update(loss, optimizer, scheduler, clip, model)
        if probe is not None and (i == 1 or i % align_every == 0 or i == steps):  # the weights after step i
            scores = model.feedback_alignment(probe[0].to(device), probe[1].to(device))
            row.update({ALIGN_PREFIX + name: value for name, value in scores.items()})
        return row

    windows = eval_context if eval_context is not None else context  # the validation windows' length

    def evaluate() -> dict[str, float]:
        return evaluate_lm(model, valid, windows, batch_size * world_size(), eval_tokens, prefix="val_")

    # (a new eval_tokens validates on other tokens, a new eval_context on other windows -- a transformer reads each
    # window from its first token: the best is scored again. eval_context was not recorded: a resume with another
    # one reported no change and kept comparing with the best's loss on the old windows)
    kwargs = dict(monitor="val_loss", mode="min", eval_every=eval_every, quiet=quiet, desc=f"{model.rule}",
                  checkpoint=checkpoint, resume=resume, overwrite=overwrite, diverge_factor=diverge_factor,
                  raise_limit="seq train --diverge-factor, fit(diverge_factor=...)", fingerprint=fingerprint,
                  settings={**_settings(settings), "clip": clip, "eval_tokens": eval_tokens, "eval_context": windows,
                            "steps": steps},
                  rescore=("eval_tokens", "eval_context"))
    return _run(kwargs, step, evaluate, state, steps, settings)


@keeps_mode
def fit_task(model, task: SequenceTask, steps: int = 500, batch_size: int = 32, lr: float | None = 3e-3,
             weight_decay: float | None = None, schedule: str | None = None, warmup: int | None = None,
             clip: float | None = 1.0, eval_every: int = 100, eval_batches: int = 4,
             checkpoint: str | Path | None = None, resume: bool = False, quiet: bool = False, seed: int = 0,
             overwrite: bool = False, diverge_factor: float | None = 100.0) -> FitReport:
    """Train on fresh samples of a synthetic task (drawn with ``seed``); validation on a fixed sample set
    (:data:`VALIDATION_SEED`; ``val_accuracy`` or ``val_mse``), which picks the state restored at the end, so score
    the result with :func:`evaluate_task`'s default test samples. The optimizer is the model's default with these
    overrides (``None``: the default); other arguments as :func:`fit_lm`. A resume needs the same model, dtype, task
    settings, batch size and seed (the samples go on from the checkpoint's generator). It trains in one process:
    it is refused inside a process group, and a ``checkpoint`` is refused where a launcher started several processes
    without one (``WORLD_SIZE`` > 1, as ``torchrun`` sets it: every process would write the file at once,
    :func:`~fwdlearn.fit.check_unshared_checkpoint`)."""
    _check_fit_arguments(model, steps, batch_size, lr, weight_decay, clip)
    check_int("eval_batches", eval_batches, 1)  # (before any work, not at the first evaluation)
    checkpoint = None if checkpoint is None else Path(checkpoint).expanduser()
    check_trainable_dtype(model, f"this {type(model).__name__}")
    _check_task_model(model, task)
    _warn_growing_feedback(model, task.length)
    _warn_untruncated(model, task.length, task)
    held_out = {VALIDATION_SEED: "validation", TEST_SEED: "test"}
    seed = check_seed(seed)  # (an int: the fingerprint holds it)
    if seed in held_out:
        raise UsageError(f"seed {seed} draws the task's {held_out[seed]} samples (fwdlearn.sequences.training."
                         f"{held_out[seed].upper()}_SEED): train with another seed")
    if is_distributed():
        raise UsageError(f"fit on a synthetic task trains in one process (its samples are drawn afresh, not sharded), "
                         f"and this one is in a process group of {world_size()}: run it in a process of its own, "
                         "outside any process group and launcher (WORLD_SIZE unset or 1), or train a corpus (fit_lm) "
                         "data-parallel")
    check_unshared_checkpoint(checkpoint, "fit_task")  # (without a process group: N fits wrote one checkpoint)
    seed_everything(seed)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    started = _started_run(checkpoint, resume, "task")
    settings, optimizer, scheduler = _optimizer(model, steps, _started_warmup(started), lr=lr,
                                                weight_decay=weight_decay, schedule=schedule, warmup=warmup)
    state = TrainState(model, optimizer, generator=gen, scheduler=scheduler)
    loss_fn = partial(task_loss, task)

    def step(_: int) -> dict[str, float]:
        x, y = task.sample(batch_size, gen)
        model.train()
        loss, _ = model.training_loss(x.to(device), y.to(device), None, loss_fn)
        return _update(loss, optimizer, scheduler, clip, model)

    def evaluate() -> dict[str, float]:
        return evaluate_task(model, task, eval_batches, seed=VALIDATION_SEED, prefix="val_")

    monitor = f"val_{task.metric}"
    kwargs = dict(monitor=monitor, mode="max" if task.metric == "accuracy" else "min", eval_every=eval_every,
                  quiet=quiet, desc=f"{model.rule} {task.name}", checkpoint=checkpoint, resume=resume,
                  overwrite=overwrite, diverge_factor=diverge_factor, raise_limit="fit(diverge_factor=...)",
                  # (a resume draws on from the checkpoint's generator: another seed was ignored in silence)
                  fingerprint={"model": model.config_dict(), "dtype": _dtype_name(model),
                               "task": _task_fingerprint(task), "batch_size": batch_size, "seed": seed},
                  settings={**_settings(settings), "clip": clip, "steps": steps, "eval_batches": eval_batches},
                  rescore=("eval_batches",))
    return _run(kwargs, step, evaluate, state, steps, settings)
