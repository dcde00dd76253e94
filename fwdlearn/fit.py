r"""Training loops shared by every domain.

* **Layer-wise local fitting.** :func:`layerwise_forward` runs blocks in order, each
  on a *detached* copy of the block below, so the loss of block :math:`l` produces
  gradients in block :math:`l` only:

  .. math::
      h_l = f_l(\operatorname{sg}(h_{l-1})), \qquad
      \nabla_{\theta_k}\,\mathcal{L}_l(h_l) = 0 \quad (k \neq l),

  and :class:`LocalOptimizers` gives every block its own optimizer. Blocks can be
  trained all at once per step, or one after another (a :class:`Trainer` per block).
* **End-to-end backpropagation**, the baseline: the same :class:`Trainer`, with a step
  that calls ``loss.backward()`` through the whole model.

:class:`Trainer` owns what every loop needs: epochs with a tqdm bar, evaluation,
early stopping on a validation metric with the best state restored, checkpoints
and resume.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "seed_everything",
    "progress",
    "layerwise_forward",
    "LocalOptimizers",
    "Stateful",
    "EarlyStopping",
    "FitResult",
    "Trainer",
    "NonFiniteLossError",
]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (when installed) and torch (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def progress(iterable: Iterable | None = None, desc: str = "", quiet: bool = False, total: int | None = None, **kwargs: Any):
    """A tqdm progress bar over ``iterable`` (a disabled one when ``quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=quiet, dynamic_ncols=True, leave=False, **kwargs)


def layerwise_forward(blocks: Sequence[nn.Module], x: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
    r"""Run ``blocks`` in order, each on the detached output of the previous one.

    .. math::
        h_0 = x, \qquad h_l = f_l(\operatorname{sg}(h_{l-1}), \ldots)

    Extra arguments (an ``edge_index``, a mask) are passed to every block.

    Returns:
        The outputs :math:`[h_1, \ldots, h_L]`, each attached only to its own block.
    """
    outputs: list[Tensor] = []
    h = x
    for block in blocks:
        h = block(h.detach(), *args, **kwargs)
        outputs.append(h)
    return outputs


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names which and suggests a fix."""


def _check_finite(name: str, value: Tensor | float) -> float:
    v = float(value.detach()) if isinstance(value, Tensor) else float(value)
    if not math.isfinite(v):
        raise NonFiniteLossError(
            f"{name} is {v}: training diverged. Lower the learning rate, check the inputs for NaN/inf, "
            "or normalise the features."
        )
    return v


class LocalOptimizers:
    """One optimizer per block, stepped together from the blocks' own losses.

    Because each block's input is detached, the gradient of :math:`\\sum_l \\mathcal{L}_l`
    w.r.t. block :math:`l`'s parameters is the gradient of :math:`\\mathcal{L}_l` alone, so one
    backward of the sum is exact and cheaper than one backward per loss.

    Args:
        modules: the blocks (each gets an optimizer over its own parameters; a block
            without parameters gets none).
        lr, weight_decay: optimizer settings (ForwardGNN uses Adam, 1e-3, 5e-4).
        optimizer: the optimizer class.
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
    ) -> None:
        self.modules = list(modules)
        self.optimizers: list[torch.optim.Optimizer | None] = []
        for m in self.modules:
            params = [p for p in m.parameters() if p.requires_grad]
            self.optimizers.append(optimizer(params, lr=lr, weight_decay=weight_decay) if params else None)

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            if opt is not None:
                opt.zero_grad(set_to_none=True)

    def step(self, losses: Sequence[Tensor], only: Sequence[int] | None = None) -> list[float]:
        """Zero the gradients, backpropagate every block's loss into its own block, and step.

        Args:
            losses: one scalar loss per block (``None`` for a block that is not trained now).
            only: indices of the blocks to step (default: all with a loss).

        Returns:
            The loss values as floats.
        """
        if len(losses) != len(self.modules):
            raise ValueError(f"LocalOptimizers.step got {len(losses)} losses for {len(self.modules)} blocks")
        active = [i for i, loss in enumerate(losses) if loss is not None and (only is None or i in only)]
        values = [_check_finite(f"loss of block {i}", losses[i]) if i in active else float("nan") for i in range(len(losses))]
        self.zero_grad()
        total = sum(losses[i] for i in active if losses[i].requires_grad)
        if isinstance(total, Tensor):
            total.backward()
        for i in active:
            if self.optimizers[i] is not None:
                self.optimizers[i].step()
        return values

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [None if o is None else o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for opt, s in zip(self.optimizers, state["optimizers"]):
            if opt is not None and s is not None:
                opt.load_state_dict(s)


class Stateful:
    """Bundles several objects with ``state_dict`` / ``load_state_dict`` (modules, optimizers) into one."""

    def __init__(self, parts: Mapping[str, Any]) -> None:
        self.parts = dict(parts)

    def state_dict(self) -> dict[str, Any]:
        return {k: v.state_dict() for k, v in self.parts.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k, v in self.parts.items():
            v.load_state_dict(state[k])


class EarlyStopping:
    """Stop when a monitored value has not improved for ``patience`` checks.

    Args:
        patience: number of checks without improvement before stopping (``None``: never stop).
        mode: ``"max"`` (accuracy) or ``"min"`` (loss).
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, patience: int | None = None, mode: str = "max", min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {patience}")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best: float | None = None
        self.bad_checks = 0

    def improved(self, value: float) -> bool:
        """Record ``value``; ``True`` if it is the best so far."""
        better = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
        if better:
            self.best, self.bad_checks = value, 0
        else:
            self.bad_checks += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_checks >= self.patience


@dataclass
class FitResult:
    """What :meth:`Trainer.run` did."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    stopped_early: bool = False


class Trainer:
    """Epoch loop with evaluation, early stopping, a progress bar, checkpoints and resume.

    Args:
        epochs: the epoch budget.
        monitor: key of ``evaluate()``'s dict to select the best state on.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        patience: early-stopping patience in evaluations (``None``: run every epoch).
        eval_every: evaluate every this many epochs (and after the last).
        quiet: no progress bar.
        desc: the bar's label.
        checkpoint: file to save ``{epoch, state, best, history}`` to (``None``: no checkpoints).
        checkpoint_every: epochs between checkpoints (default: at every evaluation).
        resume: continue from ``checkpoint`` if it exists.

    Example::

        trainer = Trainer(epochs=300, patience=100)
        result = trainer.run(step=lambda epoch: {"loss": train_one_epoch()},
                             evaluate=lambda: {"val_accuracy": accuracy("val")},
                             state=model)
    """

    def __init__(
        self,
        epochs: int,
        monitor: str = "val_accuracy",
        mode: str = "max",
        patience: int | None = None,
        eval_every: int = 1,
        quiet: bool = False,
        desc: str = "fit",
        checkpoint: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
    ) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {eval_every}")
        self.epochs, self.monitor, self.mode, self.patience = epochs, monitor, mode, patience
        self.eval_every, self.quiet, self.desc = eval_every, quiet, desc
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = checkpoint_every
        self.resume = resume

    def _save(self, state: Any, epoch: int, stopper: EarlyStopping, result: FitResult, best_state: Any) -> None:
        assert self.checkpoint is not None
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_suffix(self.checkpoint.suffix + ".tmp")
        torch.save(
            {
                "epoch": epoch,
                "state": state.state_dict() if state is not None else None,
                "best_state": best_state,
                "best_value": stopper.best,
                "bad_checks": stopper.bad_checks,
                "best": result.best,
                "best_epoch": result.best_epoch,
                "history": result.history,
                "seconds": result.seconds,
            },
            tmp,
        )
        tmp.replace(self.checkpoint)  # atomic: a crash never leaves half a checkpoint

    def run(
        self,
        step: Callable[[int], Mapping[str, Any] | None],
        evaluate: Callable[[], Mapping[str, Any]] | None = None,
        state: Any = None,
    ) -> FitResult:
        """Train for up to ``epochs`` epochs.

        Args:
            step: ``step(epoch)`` trains one epoch and returns its metrics (e.g. ``{"loss": ...}``).
            evaluate: returns validation metrics including ``monitor``; without it there is no
                early stopping and the last state is kept.
            state: an object with ``state_dict()``/``load_state_dict()``; its best state is
                restored at the end and saved in checkpoints.
        """
        result = FitResult()
        stopper = EarlyStopping(self.patience, self.mode)
        best_state = None
        start_epoch = 1
        if self.checkpoint is not None and self.checkpoint.exists() and not self.resume:
            raise FileExistsError(
                f"checkpoint {self.checkpoint} already exists; pass resume=True (--resume) to continue that run, "
                "or choose another checkpoint path"
            )
        if self.resume and self.checkpoint is not None and self.checkpoint.exists():
            ckpt = torch.load(self.checkpoint, weights_only=False)
            if state is not None and ckpt["state"] is not None:
                state.load_state_dict(ckpt["state"])
            best_state = ckpt["best_state"]
            stopper.best, stopper.bad_checks = ckpt["best_value"], ckpt["bad_checks"]
            result.best, result.best_epoch, result.history = ckpt["best"], ckpt["best_epoch"], ckpt["history"]
            result.seconds = ckpt["seconds"]
            start_epoch = ckpt["epoch"] + 1
        t0 = time.perf_counter() - result.seconds
        bar = progress(range(start_epoch, self.epochs + 1), desc=self.desc, quiet=self.quiet)
        for epoch in bar:
            row: dict[str, Any] = {"epoch": epoch}
            row.update(step(epoch) or {})
            for key, value in row.items():
                if "loss" in key and isinstance(value, (float, Tensor)):
                    _check_finite(key, value)
            evaluated = evaluate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs)
            if evaluated:
                metrics = dict(evaluate())
                if self.monitor not in metrics:
                    raise KeyError(f"evaluate() returned {sorted(metrics)} but the monitored key is {self.monitor!r}")
                row.update(metrics)
                if stopper.improved(float(metrics[self.monitor])):
                    result.best, result.best_epoch = dict(row), epoch
                    if state is not None:
                        best_state = copy.deepcopy(state.state_dict())
            result.history.append(row)
            result.epochs_run = epoch
            result.seconds = time.perf_counter() - t0
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if isinstance(v, float)}, refresh=False)
            if self.checkpoint is not None:
                every = self.checkpoint_every or self.eval_every
                if epoch % every == 0 or epoch == self.epochs:
                    self._save(state, epoch, stopper, result, best_state)
            if evaluated and stopper.should_stop:
                result.stopped_early = True
                break
        bar.close()
        if state is not None and best_state is not None:
            state.load_state_dict(best_state)
        if not result.best and result.history:
            result.best, result.best_epoch = dict(result.history[-1]), result.history[-1]["epoch"]
        result.seconds = time.perf_counter() - t0
        return result
