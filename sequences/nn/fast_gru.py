r"""DSF / FT-BPTT states of a GRU layer in one forward pass, with the projections reused.

The reference recipe (:func:`~fwdlearn.sequences.nn.time_rules.one_step_states`) runs the fused
``torch.nn.GRU`` under ``no_grad`` and then rebuilds a one-step graph, which computes both
projections :math:`W_{ih} u_t` and :math:`W_{hh} h_{t-1}` twice. Here:

.. math::
    a_t = W_{ih} u_t + b_{ih} \quad (\text{all } t \text{ at once, kept in the graph}),

    \text{for } t = 1..T \text{ (no graph):}\quad c_t = W_{hh} h_{t-1} + b_{hh}, \quad
    h_t = \operatorname{GRU}(a_t, c_t, h_{t-1}),

and the one-step graph over all :math:`B \cdot T` positions reads :math:`c_t` through
:class:`PrecomputedLinear` -- its forward returns the stored values, its backward gives
:math:`\partial/\partial W_{hh} = \sum_t \delta_t^\top h_{t-1}` and :math:`\partial/\partial b_{hh}`
(:math:`h_{t-1}` is held fixed, as DSF prescribes). The gradients are the same as the reference
recipe's; each projection is computed once in the forward pass.

GRU gates (PyTorch's convention): :math:`r = \sigma(a^r + c^r)`, :math:`z = \sigma(a^z + c^z)`,
:math:`n = \tanh(a^n + r \odot c^n)`, :math:`h_t = n + z \odot (h_{t-1} - n)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PrecomputedLinear", "gru_scan_step"]


class PrecomputedLinear(torch.autograd.Function):
    r"""``y = x W^T + b`` whose value was already computed: forward returns ``value``; backward gives
    :math:`\partial W = \delta^\top x`, :math:`\partial b = \sum \delta` (no gradient to ``x``, which is fixed)."""

    @staticmethod
    def forward(ctx, value: Tensor, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return None, None, grad.t() @ x, grad.sum(0)


def _gates(a: Tensor, c: Tensor, h: Tensor) -> Tensor:
    a_r, a_z, a_n = a.chunk(3, dim=-1)
    c_r, c_z, c_n = c.chunk(3, dim=-1)
    r = torch.sigmoid(a_r + c_r)
    z = torch.sigmoid(a_z + c_z)
    n = torch.tanh(a_n + r * c_n)
    return n + z * (h - n)


def gru_scan_step(u: Tensor, s0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """``(raw one-step states [B, T, H] in a depth-one graph, final state [B, H])`` of a GRU layer."""
    B, T, _ = u.shape
    a = F.linear(u, w_ih, b_ih)  # [B, T, 3H], in the graph
    with torch.no_grad():
        a_values = a.detach()
        w_t = w_hh.detach().t().contiguous()
        bias = b_hh.detach()
        c_all = torch.empty(B, T, w_hh.shape[0], dtype=u.dtype, device=u.device)
        states = torch.empty(B, T + 1, w_hh.shape[1], dtype=u.dtype, device=u.device)
        states[:, 0] = s0
        h = s0.detach()
        for t in range(T):
            c = torch.addmm(bias, h, w_t)
            c_all[:, t] = c
            h = _gates(a_values[:, t], c, h)
            states[:, t + 1] = h
    prev = states[:, :-1].reshape(B * T, -1)
    c = PrecomputedLinear.apply(c_all.reshape(B * T, -1), prev, w_hh, b_hh)
    raw = _gates(a.reshape(B * T, -1), c, prev).reshape(B, T, -1)
    return raw, states[:, -1].clone()
