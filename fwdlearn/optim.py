r"""Optimizer settings as data, and the learning-rate schedule every trainer shares.

A model (or a rule) states its defaults as an :class:`OptimizerSettings`; a trainer builds the optimizer
and the schedule from it (:func:`make_optimizer`, :func:`make_scheduler`), with any field overridden by the
user. Schedules:

* ``constant``: :math:`\eta_s = \eta`, after a linear warm-up :math:`\eta_s = \eta\,(s + 1) / W` over the first
  :math:`W` steps when ``warmup`` :math:`W > 0`;
* ``cosine``: linear warm-up over :math:`W` steps, then cosine decay towards :math:`\rho\,\eta`, reached at
  :math:`s = S`, one past the last step :math:`S - 1` (whose rate is a little above it),

  .. math::
      \eta_s = \eta \cdot \begin{cases} (s + 1) / W & s < W \\
      \rho + (1 - \rho)\,\tfrac12\big(1 + \cos(\pi\,\tfrac{s - W}{\max(1,\,S - W)})\big) & s \ge W \end{cases}

  (:math:`s` counts optimizer steps from 0; :math:`\rho` = ``min_ratio``, 0.1 as in nanoGPT).

Example::

    settings = OptimizerSettings("adamw", lr=1e-3, schedule="cosine", warmup=100)
    optimizer = make_optimizer(model.parameters(), settings)
    scheduler = make_scheduler(optimizer, settings, steps=5000)   # scheduler.step() after optimizer.step()
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch

from fwdlearn.errors import is_integer
from fwdlearn.registry import unknown

__all__ = ["OptimizerSettings", "OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_scheduler", "lr_factor",
           "load_scheduler"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class OptimizerSettings:
    """Which optimizer, how fast, and the learning-rate schedule.

    Attributes:
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: the peak learning rate :math:`\\eta`.
        betas: Adam's :math:`(\\beta_1, \\beta_2)` (ignored by SGD).
        weight_decay: decoupled for AdamW, L2 for Adam and SGD; on every trainable parameter (one group: norms'
            gains, biases and embeddings decay too, unlike nanoGPT's two groups).
        schedule: ``"constant"`` or ``"cosine"`` (linear warm-up, then cosine decay).
        warmup: linear warm-up steps before either schedule.
        min_ratio: the cosine schedule's final learning rate as a fraction of ``lr``.
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0
    min_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(unknown("optimizer", self.optimizer, OPTIMIZERS))
        if self.schedule not in SCHEDULES:
            raise ValueError(unknown("learning-rate schedule", self.schedule, SCHEDULES))
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be a finite number > 0, got {self.lr}")
        # (betas and weight decay were left to torch, which refused them only when the optimizer was built)
        if not _two_fractions(self.betas):
            raise ValueError(f"betas (Adam's beta1, beta2) must be two numbers in [0, 1), got {self.betas!r}")
        if not (_is_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not is_integer(self.warmup) or self.warmup < 0:
            raise ValueError(f"warm-up steps must be an int >= 0, got {self.warmup!r}")
        if not 0 <= self.min_ratio <= 1:
            raise ValueError(f"min_ratio (the final learning rate / the peak) must lie in [0, 1], got {self.min_ratio}")

    def override(self, **changes: Any) -> "OptimizerSettings":
        """A copy with the fields given (``None`` values are ignored: they mean "the default")."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _two_fractions(betas: Any) -> bool:
    """Whether ``betas`` is a pair of numbers in [0, 1)."""
    return (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(_is_number(b) and 0 <= b < 1 for b in betas))


def make_optimizer(parameters: Iterable[torch.Tensor], settings: OptimizerSettings) -> torch.optim.Optimizer:
    """The optimizer of ``settings`` over the parameters that require gradients."""
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("nothing to optimize: no parameter requires a gradient")
    cls = OPTIMIZERS[settings.optimizer]
    if settings.optimizer == "sgd":
        return cls(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return cls(params, lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)


def lr_factor(step: int, steps: int, settings: OptimizerSettings) -> float:
    """The multiplier of ``settings.lr`` at optimizer step ``step`` (from 0) of ``steps``."""
    if step < settings.warmup:
        return (step + 1) / settings.warmup
    if settings.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - settings.warmup) / max(1, steps - settings.warmup))
    return settings.min_ratio + (1 - settings.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, settings: OptimizerSettings,
                   steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`lr_factor` over ``steps`` steps (its ``state_dict`` resumes it)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, settings))


def load_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    """Restore a :func:`make_scheduler` schedule from its ``state_dict`` and set the optimizer's learning rates for
    the step it resumes at -- under *this* schedule, so a run resumed with a longer budget follows the new one
    (``scheduler.get_last_lr()`` gives them too). Any other ``torch`` scheduler (``StepLR``, ...) continues where the
    saved one stopped: its state and the learning rates it had set."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):  # (its lr_lambdas were read: "'StepLR' object has
        scheduler.load_state_dict(state)  # no attribute 'lr_lambdas'"; a MultiplicativeLR's factors are per step)
        for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr  # (the optimizer's were this run's initial rates: a chained schedule restarted from them)
        return
    base_lrs = list(scheduler.base_lrs)  # this run's peak rates (a resumed run may change them)
    scheduler.load_state_dict(state)
    scheduler.base_lrs = base_lrs
    for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
    # (get_last_lr() returned the checkpoint's last rates, of the old peak and budget: a loop logging it after a
    # resume logged 0.55 while the optimizer stepped at 1.93)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
