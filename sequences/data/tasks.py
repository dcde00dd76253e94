r"""Synthetic long-range sequence tasks with a known lag and a known chance level, generated in code.

* :class:`DelayedRecall`: output the token seen ``lag`` steps ago;
* :class:`CopyTask`: copy ``count`` symbols, each recalled ``lag`` steps after it was seen (``lag - count`` blanks
  between the data and the recall);
* :class:`AddingProblem`: sum the two marked values of a sequence (regression).

Targets equal to :data:`IGNORE_INDEX` (classification) or NaN (regression) are not scored.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import Tensor

from fwdlearn.errors import check_int
from fwdlearn.fit import generator_device
from fwdlearn.registry import unknown

__all__ = ["SequenceTask", "DelayedRecall", "CopyTask", "AddingProblem", "make_task", "TASKS", "IGNORE_INDEX"]

IGNORE_INDEX = -100  #: target value that the loss and accuracy skip


def _check_sizes(task: str, **values: Any) -> None:
    """Refuse a size that is not an int (``lag=2.5`` failed at the first sample, ``lag=True`` was 1)."""
    for name, value in values.items():
        if value is not None:
            check_int(name, value, None, f" ({task})")


def _batch(batch_size: Any) -> int:
    return check_int("batch_size", batch_size, 1, " (samples drawn)")


class SequenceTask:
    r"""A synthetic sequence task generated on the fly.

    Attributes:
        vocab_size: number of input tokens.
        out_size: width of the model output (classes, or 1 for regression).
        loss: ``"cross_entropy"`` (targets are class ids, :data:`IGNORE_INDEX` skipped) or
            ``"mse"`` (float targets, NaN skipped).
        chance: the score of the best input-blind predictor -- accuracy ``1/classes`` for
            classification, the target variance (MSE of predicting the mean) for regression.
        length: sequence length.
    """

    vocab_size: int
    out_size: int
    loss: str = "cross_entropy"
    chance: float
    length: int
    name: str = "task"

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of ``batch_size`` fresh sequences, drawn from ``generator`` (torch's global one when None) and
        made on its device: a seeded ``torch.Generator()``'s on the CPU whatever the default device (a CPU generator
        drawing onto a GPU under ``torch.set_default_device("cuda")`` is refused), the default device without one."""
        raise NotImplementedError

    @property
    def metric(self) -> str:
        """The task's score: ``"accuracy"`` (classification) or ``"mse"`` (regression)."""
        return "accuracy" if self.loss == "cross_entropy" else "mse"

    def __repr__(self) -> str:
        """``DelayedRecall(lag=5, symbols=8, length=21)``: the constructor's arguments the task holds as attributes
        (a task without them: its ``name`` and sizes), then its ``chance`` score."""
        params = [p.name for p in inspect.signature(type(self).__init__).parameters.values()
                  if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not params or not all(hasattr(self, p) for p in params):
            params = [p for p in ("name", "length", "vocab_size", "out_size") if hasattr(self, p)]
        shown = [f"{p}={getattr(self, p)!r}" for p in params]
        if hasattr(self, "chance") and hasattr(self, "loss"):
            shown.append(f"chance={self.chance:.4g}")
        return f"{type(self).__name__}({', '.join(shown)})"


class DelayedRecall(SequenceTask):
    r"""Output the token seen ``lag`` steps ago: :math:`y_t = x_{t-\text{lag}}` for :math:`t \ge \text{lag}`.

    Inputs are i.i.d. uniform over ``symbols`` tokens, so without memory of lag steps the
    best accuracy is chance, :math:`1/\text{symbols}`. Positions :math:`t < \text{lag}` are not scored.
    """

    def __init__(self, lag: int, symbols: int = 8, length: int | None = None) -> None:
        _check_sizes("DelayedRecall", lag=lag, symbols=symbols, length=length)
        if lag < 1 or symbols < 2:
            raise ValueError(f"DelayedRecall needs lag >= 1 and symbols >= 2, got lag={lag}, symbols={symbols}")
        self.lag, self.symbols = lag, symbols
        self.length = length if length is not None else lag + 16
        if self.length <= lag:
            raise ValueError(f"length {self.length} must exceed the lag {lag} so that some positions are scored")
        self.vocab_size = self.out_size = symbols
        self.chance = 1.0 / symbols
        self.loss = "cross_entropy"
        self.name = f"delayed-recall(lag={lag})"

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        x = torch.randint(0, self.symbols, (_batch(batch_size), self.length), generator=generator,
                          device=generator_device(generator))
        y = torch.full_like(x, IGNORE_INDEX)
        y[:, self.lag:] = x[:, : -self.lag]
        return x, y


class CopyTask(SequenceTask):
    r"""Copy memory: ``count`` symbols, blanks, then a *go* marker at every recall step.

    Token layout: ``0`` blank, ``1..symbols`` data, ``symbols + 1`` go. Input
    :math:`x_{0..\text{count}-1}` are data; at :math:`t = \text{lag} + i` (:math:`i < \text{count}`)
    the input is *go* and the target is :math:`x_i` (an exact delay of ``lag``). Chance
    accuracy :math:`1/\text{symbols}`. Length ``lag + count``.
    """

    def __init__(self, lag: int, count: int = 8, symbols: int = 8) -> None:
        _check_sizes("CopyTask", lag=lag, count=count, symbols=symbols)
        if lag < count:
            raise ValueError(f"CopyTask needs lag >= count (recall starts after the data), got lag={lag}, "
                             f"count={count}")
        if count < 1 or symbols < 2:
            raise ValueError(f"CopyTask needs count >= 1 and symbols >= 2, got count={count}, symbols={symbols}")
        self.lag, self.count, self.symbols = lag, count, symbols
        self.length = lag + count
        self.vocab_size = symbols + 2
        self.out_size = symbols  # classes 0..symbols-1 = data tokens 1..symbols
        self.chance = 1.0 / symbols
        self.loss = "cross_entropy"
        self.name = f"copy(lag={lag}, count={count})"

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        batch_size = _batch(batch_size)
        data = torch.randint(0, self.symbols, (batch_size, self.count), generator=generator,
                             device=generator_device(generator))
        x = torch.zeros(batch_size, self.length, dtype=torch.long, device=data.device)
        x[:, : self.count] = data + 1
        x[:, self.lag:] = self.symbols + 1
        y = torch.full_like(x, IGNORE_INDEX)
        y[:, self.lag:] = data
        return x, y


class AddingProblem(SequenceTask):
    r"""The adding problem: sum the two marked values of a sequence.

    Each step carries a value :math:`v_t \in \{(k + 1/2)/L\}_{k<L}` (uniform, ``levels`` = :math:`L`)
    and a marker :math:`m_t \in \{0, 1\}`, encoded as one token :math:`k + L m_t`. Exactly
    two steps are marked, one in each half of the sequence; the target at the last step is
    :math:`\sum_t m_t v_t` (regression, MSE; other steps are not scored). Predicting the mean
    gives the chance MSE :math:`\operatorname{Var} = 2 (L^2 - 1) / (12 L^2) \approx 1/6`.
    """

    def __init__(self, length: int = 50, levels: int = 10) -> None:
        _check_sizes("AddingProblem", length=length, levels=levels)
        if length < 2 or levels < 2:
            raise ValueError(f"AddingProblem needs length >= 2 and levels >= 2, got length={length}, levels={levels}")
        self.length, self.levels = length, levels
        self.vocab_size = 2 * levels
        self.out_size = 1
        self.loss = "mse"
        self.chance = 2 * (levels**2 - 1) / (12 * levels**2)
        self.name = f"adding(length={length})"

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        batch_size = _batch(batch_size)
        device = generator_device(generator)
        k = torch.randint(0, self.levels, (batch_size, self.length), generator=generator, device=device)
        half = self.length // 2
        first = torch.randint(0, half, (batch_size,), generator=generator, device=device)
        second = torch.randint(half, self.length, (batch_size,), generator=generator, device=device)
        marks = torch.zeros(batch_size, self.length, dtype=torch.long, device=k.device)
        rows = torch.arange(batch_size, device=k.device)
        marks[rows, first] = 1
        marks[rows, second] = 1
        values = (k.float() + 0.5) / self.levels
        y = torch.full((batch_size, self.length), math.nan, device=k.device)
        y[:, -1] = (values * marks).sum(dim=1)
        return k + self.levels * marks, y


TASKS = {"delayed-recall": DelayedRecall, "copy": CopyTask, "adding": AddingProblem}


def make_task(name: str, lag: int = 50, **kwargs: Any) -> SequenceTask:
    """``"delayed-recall"`` / ``"copy"`` (with ``lag``) or ``"adding"`` (``length = lag``)."""
    if name == "delayed-recall":
        return DelayedRecall(lag, **kwargs)
    if name == "copy":
        return CopyTask(lag, **kwargs)
    if name == "adding":
        return AddingProblem(length=lag, **kwargs)
    raise ValueError(unknown("task", name, TASKS))
