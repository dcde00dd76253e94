r"""How a recurrent layer's states get their gradient under each time rule: BPTT, truncated BPTT, FT-BPTT, DSF.

The rules themselves (their names, arguments and parsing) are :mod:`fwdlearn.rules`'s
:class:`~fwdlearn.rules.TimeRule` objects; this module says what each one *does* to a layer:
:data:`RUNS` maps a rule's name to its run function.

Write :math:`s_t = f_\theta(u_t, s_{t-1})` for a layer's state (:math:`s = h`, or
:math:`s = [h, c]` for an LSTM) and :math:`e_t = \partial\mathcal{L}/\partial s_t` for the
*local* error, the part of the gradient that reaches :math:`s_t` from the layer above at
the same step. The modes differ only in the state gradient :math:`g_t` that is pushed into
:math:`\partial s_t / \partial\theta` (with :math:`s_{t-1}` held fixed):

.. math::
    \text{bptt:}\quad g_t = e_t + J_t^\top g_{t+1}, \qquad J_t = \frac{\partial s_{t+1}}{\partial s_t}

    \text{tbptt:}k\quad \text{the same inside chunks of } k \text{ steps, } g = e \text{ at a chunk's end}

    \text{ft-bptt:}\quad g_t = e_t

    \text{dsf:}\quad g_t = e_t + A\,g_{t+1} \quad (A \text{ fixed: } \operatorname{diag}(\operatorname{linspace}(0,1,d)),
    \text{ Gaussian or orthogonal})

FT-BPTT and DSF share one implementation (:func:`one_step_states`): the states
:math:`\tilde s_t = f_\theta(u_t, \operatorname{sg}(s_{t-1}))` form a graph of depth one in time --
from the layer's one-step kernel (:mod:`fwdlearn.sequences.nn.kernels`: one forward loop, a backward
of a few large matrix products over all :math:`B \cdot T` positions) or by the reference recipe
(:func:`recomputed_states`: the fused RNN under ``no_grad``, then one batched one-step cell call);
for DSF, :func:`fwdlearn.feedback.time_feedback` replaces the local errors arriving at those states
by the reverse scan. Parameter gradients are then :math:`\sum_t g_t^\top \partial s_t/\partial\theta`,
and the gradient w.r.t. the layer's input :math:`u_t` -- the local error of the layer below -- is
:math:`g_t^\top \partial s_t / \partial u_t`, as in the reference implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import Tensor

from fwdlearn.feedback import time_feedback
from fwdlearn.rules import DSF, TimeRule

__all__ = [
    "RUNS",
    "UNROLLED",
    "missing_run",
    "StatefulLayer",
    "run_layer",
    "truncated_run",
    "recomputed_states",
    "one_step_states",
    "unrolled_states",
]


@dataclass(frozen=True)
class Unrolled(TimeRule):
    """Diagnostics only: BPTT with every state a separate graph node, so ``s_t.grad`` is the true total derivative."""

    name: ClassVar[str] = "unrolled"


#: the diagnostic time rule (not a training rule: it is not in :mod:`fwdlearn.rules`'s vocabulary, and a model built
#: or switched to train by it is refused; pass it to ``forward_from_embeddings(..., rule=UNROLLED)``)
UNROLLED = Unrolled()


class StatefulLayer(Protocol):
    """What a recurrent layer offers the training modes (states are flat ``[..., state_size]``)."""

    state_size: int

    def run(self, u: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]: ...  # through time: (out [B,T,H], s_T)

    def scan(self, u: Tensor, s0: Tensor) -> Tensor: ...  # every state [B,T,S], no graph

    def step(self, u: Tensor, s: Tensor) -> Tensor: ...  # one step on [N, I], [N, S]

    def scan_step(self, u: Tensor, s0: Tensor) -> Tensor | None: ...  # optional: one-step states [B, T, S] or None


def truncated_run(layer: StatefulLayer, u: Tensor, s0: Tensor, k: int) -> tuple[Tensor, Tensor]:
    r"""Truncated BPTT: the fused layer on chunks of ``k`` steps, the state detached between chunks.

    The forward values equal :meth:`run`'s; gradients flow back at most ``k - 1`` steps in
    time (``k >= T`` is full BPTT over the window).
    """
    outs, s = [], s0
    for start in range(0, u.shape[1], k):
        h, s = layer.run(u[:, start: start + k], s)
        outs.append(h)
        s = s.detach()
    return torch.cat(outs, dim=1), s


def recomputed_states(layer: StatefulLayer, u: Tensor, s0: Tensor) -> Tensor:
    r"""One-step states ``[B, T, S]`` by the reference recipe: the states of the fused RNN under ``no_grad``,
    then one batched one-step cell call over all :math:`B \cdot T` positions with the previous states detached:
    :math:`\tilde s_t = f_\theta(u_t, \operatorname{sg}(S_{t-1}))` (so :math:`\tilde s = S` in value).

    Autograd then gives the one-step gradients; used for layers without a one-step kernel (the linear
    cell, a GPU) and as the reference the kernels are tested against."""
    B, T, _ = u.shape
    with torch.no_grad():
        S = layer.scan(u.detach(), s0)
    prev = torch.cat([s0.detach().unsqueeze(1), S[:, :-1]], dim=1)
    # (sizes spelled out: -1 is ambiguous for an empty batch, which failed to reshape)
    states = layer.step(u.reshape(B * T, u.shape[-1]), prev.reshape(B * T, prev.shape[-1]))
    return states.reshape(B, T, states.shape[-1])


def one_step_states(layer: StatefulLayer, u: Tensor, s0: Tensor,
                    feedback: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    r"""FT-BPTT (``feedback=None``) or DSF states of one layer.

    1. the one-step states :math:`\tilde s_t = f_\theta(u_t, \operatorname{sg}(s_{t-1}))`: from the layer's
       kernel ``scan_step(u, s0)`` when it has one and it does not return ``None``
       (:mod:`fwdlearn.sequences.nn.kernels`: each projection computed once, the backward a few large
       matrix products), else by :func:`recomputed_states`;
    2. DSF: :math:`\hat s = \text{time\_feedback}(\tilde s, A)` -- identity forward, the local errors
       :math:`e` replaced by :math:`g_t = e_t + A g_{t+1}` on the way back.

    Args:
        layer: the recurrent layer (:class:`StatefulLayer`).
        u: ``[B, T, I]`` layer inputs (may require grad: errors flow on to the layer below).
        s0: ``[B, S]`` initial state (detached).
        feedback: ``[S]`` or ``[S, S]`` for DSF, ``None`` for FT-BPTT.

    Returns:
        ``(states [B, T, S] to read outputs from, raw [B, T, S] one-step states whose .grad is g, s_T)``.
    """
    kernel = getattr(layer, "scan_step", None)
    raw = kernel(u, s0.detach()) if kernel is not None else None
    if raw is None:
        raw = recomputed_states(layer, u, s0)
    states = raw if feedback is None else time_feedback(raw, feedback, dim=1)
    return states, raw, raw[:, -1].detach().clone()


def unrolled_states(layer: StatefulLayer, u: Tensor, s0: Tensor, retain: bool = True) -> tuple[Tensor, list[Tensor]]:
    r"""BPTT with every state a separate graph node: ``(stacked [B, T, S], [s_1, ..., s_T])``.

    With ``retain``, after ``backward()`` ``s_t.grad`` is the *total* derivative
    :math:`g_t = e_t + J_t^\top g_{t+1}` -- the reference for alignment diagnostics. Slow (one
    cell call per step); used for diagnostics and for cells without a fused kernel (linear).
    """
    states, s = [], s0
    for t in range(u.shape[1]):
        s = layer.step(u[:, t], s)
        if retain and s.requires_grad:
            s.retain_grad()
        states.append(s)
    return torch.stack(states, dim=1), states


# --------------------------------------------------------------------------- one run function per rule
#: ``run(layer, u, s0, rule, feedback, probe) -> (h [B, T, H], s_T)``; ``probe`` collects the tensors whose
#: ``.grad`` is the state gradient the rule pushes (diagnostics), when given.
Run = Callable[[StatefulLayer, Tensor, Tensor, TimeRule, "Tensor | None", "list | None"], "tuple[Tensor, Tensor]"]


def _run_bptt(layer, u, s0, rule, feedback, probe):
    return layer.run(u, s0)


def _run_tbptt(layer, u, s0, rule, feedback, probe):
    return truncated_run(layer, u, s0, rule.truncation)


def _run_one_step(layer, u, s0, rule, feedback, probe):
    states, raw, last = one_step_states(layer, u, s0, feedback if isinstance(rule, DSF) else None)
    if probe is not None:
        if raw.requires_grad:  # a frozen layer (shallow) has no state gradient to read
            raw.retain_grad()
        probe.append(raw)
    return layer.output(states), last


def _run_unrolled(layer, u, s0, rule, feedback, probe):
    states, per_step = unrolled_states(layer, u, s0)
    if probe is not None:
        probe.append(per_step)
    return layer.output(states), states[:, -1]


RUNS: dict[str, Run] = {"bptt": _run_bptt, "tbptt": _run_tbptt, "ft-bptt": _run_one_step, "dsf": _run_one_step,
                        "unrolled": _run_unrolled}


def run_layer(layer: StatefulLayer, u: Tensor, s0: Tensor, rule: TimeRule | None, feedback: Tensor | None = None,
              probe: list | None = None) -> tuple[Tensor, Tensor]:
    """``(h, s_T)`` of a layer under time rule ``rule`` (``None``, or gradients off: the plain fused path)."""
    if rule is None or (not torch.is_grad_enabled() and rule.name != "unrolled"):
        return layer.run(u, s0)
    if rule.name not in RUNS:
        raise ValueError(missing_run(rule))
    return RUNS[rule.name](layer, u, s0, rule, feedback, probe)


def missing_run(rule: TimeRule) -> str:
    """The refusal of a time rule without a run function in :data:`RUNS` (one registered in :mod:`fwdlearn.rules`
    only), naming how to add one."""
    known = ", ".join(name for name in RUNS if name != UNROLLED.name)
    return (f"no recurrent implementation of time rule {rule} (the time rules recurrent layers run: {known}); add its "
            f"run function before building the model: fwdlearn.sequences.nn.time_rules.RUNS[{rule.name!r}] = run, "
            "with run(layer, u, s0, rule, feedback, probe) -> (h [B, T, H], s_T [B, S])")
