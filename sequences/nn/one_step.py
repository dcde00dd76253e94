r"""Depth-one-in-time recurrent layers (FT-BPTT and DSF) with a hand-written backward.

Under FT-BPTT and DSF a layer's parameters get the gradient :math:`\sum_t g_t^\top\,\partial s_t/\partial\theta`
with :math:`s_{t-1}` held fixed: the state gradient :math:`g_t` arrives from outside (the local error
:math:`e_t`, or DSF's scan :math:`g_t = e_t + A g_{t+1}`) and never flows back through time. So the
backward pass is independent across the :math:`B \cdot T` positions, and :class:`OneStepLayer` computes it
with a few large matrix products instead of an autograd graph:

* **forward** (no graph): the input projection :math:`a_t = W_{ih} u_t + b` for all :math:`t` in one matrix
  product, then one loop over :math:`t` that adds :math:`W_{hh} s_{t-1}` and applies the gates, keeping
  the gate activations :math:`G` and the states (each projection is computed once);
* **backward**: from :math:`g`, :math:`G` and the states, the pre-activation gradients :math:`\delta_t`
  (element-wise), then :math:`\partial W_{ih} = \sum_t \delta_t^\top u_t`,
  :math:`\partial W_{hh} = \sum_t \delta_t^\top h_{t-1}`, the bias sums and the input gradient
  :math:`\partial u_t = \delta_t W_{ih}`, block by block over positions (bounded temporaries; the
  element-wise work stays in cache).

The gradients are those of autograd through the one-step cell ``torch.gru_cell`` / ``lstm_cell`` /
``rnn_tanh_cell`` applied to all positions at once with the previous states detached (the reference
recipe, :func:`~fwdlearn.sequences.nn.time_rules.recomputed_states`), up to rounding.

The cells (PyTorch's gate conventions; :math:`\sigma` the logistic function):

* ``tanh``: :math:`h_t = \tanh(a_t + W_{hh} h_{t-1})`, :math:`a_t = W_{ih} u_t + b_{ih} + b_{hh}`;
* ``gru``: :math:`r, z = \sigma(a^{r,z}_t + W^{r,z}_{hh} h_{t-1})`, :math:`c^n = W^n_{hh} h_{t-1} + b^n_{hh}`,
  :math:`n = \tanh(a^n_t + r \odot c^n)`, :math:`h_t = n + z \odot (h_{t-1} - n)`, with
  :math:`a_t = W_{ih} u_t + b_{ih} + [b^r_{hh}, b^z_{hh}, 0]`; saved :math:`G = [r, z, n, c^n]`;
* ``lstm`` (state :math:`s = [h, c]`): :math:`[i, f, g, o] = [\sigma, \sigma, \tanh, \sigma](a_t + W_{hh} h_{t-1})`,
  :math:`c_t = f \odot c_{t-1} + i \odot g`, :math:`h_t = o \odot \tanh(c_t)`, with
  :math:`a_t = W_{ih} u_t + b_{ih} + b_{hh}`; saved :math:`G = [i, f, g, o]`.

Example::

    states = one_step_layer("gru", u, s0, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
    # states [B, T, H]: the GRU's states in value; backward gives the one-step parameter gradients
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["OneStepCell", "ONE_STEP_CELLS", "OneStepLayer", "one_step_layer"]

#: time steps per chunk: gate buffers are ``[B, CHUNK, k]`` tensors, backward blocks ``CHUNK`` positions
CHUNK = 256


class OneStepCell:
    """What a cell contributes to :class:`OneStepLayer`: where its input projection goes, its step, and
    its element-wise backward. ``G`` is a chunk's gate buffer ``[B, k, saved]``, ``S`` the states
    ``[B, T + 1, S]`` (``S[:, 0]`` the initial state)."""

    name: ClassVar[str]
    #: gates per hidden unit (rows of ``W_ih`` / hidden size)
    gates: ClassVar[int]
    #: saved values per position / hidden size
    saved: ClassVar[int]
    #: state width / hidden size
    state_width: ClassVar[int] = 1

    @staticmethod
    def input_bias(b_ih: Tensor, b_hh: Tensor) -> Tensor:
        """The bias added to the input projection :math:`a_t` (the recurrent biases that can be folded in)."""
        return b_ih + b_hh

    @staticmethod
    def projection(S: Tensor, G: Tensor, t0: int, t1: int, width: int) -> Tensor:
        """The ``[B, t1 - t0, width]`` view the input projections of steps ``t0..t1-1`` are written to
        (``width = gates * H``; by default the first columns of the gate buffer)."""
        return G[..., :width]

    @staticmethod
    def step(S: Tensor, G: Tensor, t: int, j: int, weights: tuple[Tensor, ...]) -> None:
        """Step ``t`` (row ``j`` of the chunk's ``G``, which holds :math:`a_t`): writes ``S[:, t + 1]`` and the gates."""
        raise NotImplementedError

    @staticmethod
    def recurrent_weights(w_hh: Tensor, b_hh: Tensor) -> tuple[Tensor, ...]:
        """What :meth:`step` multiplies by (transposed, contiguous: made once per forward)."""
        return (w_hh.t().contiguous(),)

    @staticmethod
    def deltas(g: Tensor, prev: Tensor, state: Tensor, saved: Tensor) -> Tensor:
        """Pre-activation gradients ``[R, k]`` of ``R`` positions from the state gradient ``g [R, S]``,
        the previous and current states ``[R, S]`` and the saved gates ``[R, saved]``."""
        raise NotImplementedError

    @classmethod
    def recurrent_blocks(cls, hidden: int) -> list[tuple[slice, slice]]:
        """``(rows of W_hh, columns of the deltas)`` pairs: which deltas multiply :math:`h_{t-1}`."""
        return [(slice(None), slice(0, cls.gates * hidden))]


class TanhCell(OneStepCell):
    name = "tanh"
    gates = 1
    saved = 0

    @staticmethod
    def projection(S, G, t0, t1, width):
        return S[:, t0 + 1: t1 + 1]  # the pre-activation is formed in place of the state

    @staticmethod
    def step(S, G, t, j, weights):
        (w,) = weights
        S[:, t + 1].addmm_(S[:, t], w).tanh_()

    @staticmethod
    def deltas(g, prev, state, saved):
        d = torch.mul(state, state)
        return d.neg_().add_(1).mul_(g)  # g (1 - h^2)


class GRUCell(OneStepCell):
    name = "gru"
    gates = 3
    saved = 4  # r, z, n, c^n

    @staticmethod
    def input_bias(b_ih, b_hh):
        H = b_hh.shape[0] // 3
        return torch.cat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H:]])

    @staticmethod
    def recurrent_weights(w_hh, b_hh):
        H = w_hh.shape[1]
        return w_hh[: 2 * H].t().contiguous(), w_hh[2 * H:].t().contiguous(), b_hh[2 * H:]

    @staticmethod
    def step(S, G, t, j, weights):
        w_rz, w_n, b_n = weights
        H = w_n.shape[1]
        h, gates = S[:, t], G[:, j]
        rz = gates[:, : 2 * H].addmm_(h, w_rz).sigmoid_()
        cn = torch.addmm(b_n, h, w_n, out=gates[:, 3 * H:])
        n = gates[:, 2 * H: 3 * H].addcmul_(rz[:, :H], cn).tanh_()
        torch.addcmul(n, rz[:, H:], h - n, out=S[:, t + 1])

    @staticmethod
    def deltas(g, prev, state, saved):
        H = g.shape[-1]
        r, z, n, cn = saved.split(H, dim=-1)
        out = saved.new_empty(saved.shape)
        dr, dz, dn, dcn = out.split(H, dim=-1)
        one_minus_z = torch.sub(1, z)
        torch.mul(g, one_minus_z, out=dn)                     # dL/dn
        dn.mul_(torch.mul(n, n).neg_().add_(1))              # through tanh
        torch.sub(prev, n, out=dz).mul_(g).mul_(z).mul_(one_minus_z)
        torch.mul(dn, r, out=dcn)                             # dL/dc^n
        torch.mul(dn, cn, out=dr).mul_(r).mul_(torch.sub(1, r))
        return out

    @classmethod
    def recurrent_blocks(cls, hidden):
        H = hidden
        return [(slice(0, 2 * H), slice(0, 2 * H)), (slice(2 * H, 3 * H), slice(3 * H, 4 * H))]


class LSTMCell(OneStepCell):
    name = "lstm"
    gates = 4
    saved = 4  # i, f, g, o
    state_width = 2

    @staticmethod
    def step(S, G, t, j, weights):
        (w,) = weights
        H = w.shape[0]
        prev, new, gates = S[:, t], S[:, t + 1], G[:, j]
        gates.addmm_(prev[:, :H], w)
        gates[:, : 2 * H].sigmoid_()
        gates[:, 2 * H: 3 * H].tanh_()
        gates[:, 3 * H:].sigmoid_()
        c = torch.mul(gates[:, H: 2 * H], prev[:, H:], out=new[:, H:]).addcmul_(gates[:, :H], gates[:, 2 * H: 3 * H])
        torch.mul(gates[:, 3 * H:], c.tanh(), out=new[:, :H])

    @staticmethod
    def deltas(g, prev, state, saved):
        H = g.shape[-1] // 2
        g_h, g_c = g[:, :H], g[:, H:]
        i, f, gg, o = saved.split(H, dim=-1)
        out = saved.new_empty(saved.shape)
        di, df, dg, do = out.split(H, dim=-1)
        tc = state[:, H:].tanh()
        torch.mul(g_h, tc, out=do).mul_(o).mul_(torch.sub(1, o))
        dc = torch.mul(tc, tc).neg_().add_(1).mul_(o).mul_(g_h).add_(g_c)  # dL/dc_t
        torch.mul(dc, prev[:, H:], out=df).mul_(f).mul_(torch.sub(1, f))
        torch.mul(dc, i, out=dg).mul_(torch.mul(gg, gg).neg_().add_(1))
        torch.mul(dc, gg, out=di).mul_(i).mul_(torch.sub(1, i))
        return out


ONE_STEP_CELLS: dict[str, type[OneStepCell]] = {c.name: c for c in (TanhCell, GRUCell, LSTMCell)}


def _chunks(T: int) -> list[tuple[int, int]]:
    return [(t0, min(T, t0 + CHUNK)) for t0 in range(0, T, CHUNK)]


class OneStepLayer(torch.autograd.Function):
    r"""States of a recurrent layer whose gradient stops at :math:`s_{t-1}`; see the module docstring.

    ``forward(cell, u [B, T, I], s0 [B, S], w_ih, w_hh, b_ih, b_hh) -> states [B, T, S]``. Time is cut into
    chunks of :data:`CHUNK` steps: each chunk's input projections are written into its gate buffer
    (one matrix product per sequence), then overwritten step by step by the gates.
    """

    @staticmethod
    def forward(ctx, cell: type[OneStepCell], u: Tensor, s0: Tensor, w_ih: Tensor, w_hh: Tensor,  # type: ignore[override]
                b_ih: Tensor, b_hh: Tensor) -> Tensor:
        u = u.contiguous()
        B, T, _ = u.shape
        H = w_hh.shape[1]
        S = u.new_empty(B, T + 1, cell.state_width * H)
        S[:, 0] = s0
        bias, w_in = cell.input_bias(b_ih, b_hh), w_ih.t()
        weights = cell.recurrent_weights(w_hh, b_hh)
        saved = []
        for t0, t1 in _chunks(T):
            G = u.new_empty(B, t1 - t0, cell.saved * H)
            target = cell.projection(S, G, t0, t1, w_ih.shape[0])
            for b in range(B):
                torch.addmm(bias, u[b, t0:t1], w_in, out=target[b])
            for t in range(t0, t1):
                cell.step(S, G, t, t - t0, weights)
            saved.append(G)
        ctx.cell = cell
        ctx.save_for_backward(u, S, w_ih, w_hh, *saved)
        return S[:, 1:]

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        cell = ctx.cell
        u, S, w_ih, w_hh, *saved = ctx.saved_tensors
        B, T, _ = u.shape
        H = w_hh.shape[1]
        g = g.contiguous()
        k = cell.gates * H
        d_w_ih, d_w_hh = torch.zeros_like(w_ih), torch.zeros_like(w_hh)
        d_b_ih, d_b_hh = w_ih.new_zeros(k), w_ih.new_zeros(k)
        d_u = torch.empty_like(u) if ctx.needs_input_grad[1] else None
        blocks = cell.recurrent_blocks(H)
        for (t0, t1), G in zip(_chunks(T), saved):
            for b in range(B):
                prev = S[b, t0:t1]
                delta = cell.deltas(g[b, t0:t1], prev, S[b, t0 + 1: t1 + 1], G[b])
                d_in = delta[:, :k]
                d_w_ih.addmm_(d_in.t(), u[b, t0:t1])
                d_b_ih += d_in.sum(0)
                for rows, cols in blocks:
                    d_w_hh[rows].addmm_(delta[:, cols].t(), prev[:, :H])
                    d_b_hh[rows] += delta[:, cols].sum(0)
                if d_u is not None:
                    torch.mm(d_in, w_ih, out=d_u[b, t0:t1])
        return None, d_u, None, d_w_ih, d_w_hh, d_b_ih, d_b_hh


def one_step_layer(cell: str, u: Tensor, s0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    r"""States ``[B, T, S]`` of a ``tanh`` / ``gru`` / ``lstm`` layer from inputs ``u [B, T, I]`` and initial
    state ``s0 [B, S]`` (detached), whose backward gives the one-step gradients (see :class:`OneStepLayer`)."""
    if cell not in ONE_STEP_CELLS:
        raise ValueError(f"no one-step kernel for cell {cell!r}; known: {', '.join(ONE_STEP_CELLS)}")
    return OneStepLayer.apply(ONE_STEP_CELLS[cell], u, s0.detach(), w_ih, w_hh, b_ih, b_hh)
