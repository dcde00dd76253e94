r"""Recurrent layers with a hand-written backward: one step in time (FT-BPTT, DSF) or through time (BPTT).

Write :math:`s_t = f_\theta(u_t, s_{t-1})` and :math:`g_t` for the gradient pushed into
:math:`\partial s_t/\partial\theta` with :math:`s_{t-1}` held fixed. Under FT-BPTT and DSF :math:`g_t` arrives
from outside (the local error :math:`e_t`, or DSF's scan :math:`g_t = e_t + A g_{t+1}`) and never flows back
through time, so the backward pass is independent across the :math:`B \cdot T` positions. Under BPTT
:math:`g_t = e_t + J_t^\top g_{t+1}` is computed step by step, with :math:`J_t = \partial s_{t+1}/\partial s_t` (as in
:mod:`~fwdlearn.sequences.nn.time_rules`). Either way :class:`RecurrentKernel` computes

* **forward** (no autograd graph): the input projections :math:`a_t = W_{ih} u_t + b` with one matrix product
  per sequence and chunk of :data:`CHUNK` steps, written into the chunk's gate buffer, then one loop over
  :math:`t` that adds :math:`W_{hh} h_{t-1}` and applies the gates in place, keeping the gate activations
  :math:`G` and the states (each projection is computed once);
* **backward**: the pre-activation gradients :math:`\delta_t` from :math:`g_t`, :math:`G` and the states
  (element-wise; under BPTT together with :math:`J_{t-1}^\top g_t`, one small matrix product a step), then
  :math:`\partial W_{ih} = \sum_t \delta_t^\top u_t`, :math:`\partial W_{hh} = \sum_t \delta_t^\top h_{t-1}`,
  the bias sums and the input gradient :math:`\partial u_t = \delta_t W_{ih}` as large matrix products, block
  by block (a chunk of one sequence at a time: bounded temporaries, element-wise work in cache).

The gradients are those of autograd through ``torch.rnn_tanh_cell`` / ``gru_cell`` / ``lstm_cell`` -- applied
to all positions at once with the previous states detached (one step,
:func:`~fwdlearn.sequences.nn.time_rules.recomputed_states`), or step after step (through time) -- up to
rounding.

The cells (PyTorch's gate conventions and weights; :math:`\sigma` the logistic function):

* ``tanh``: :math:`h_t = \tanh(a_t + W_{hh} h_{t-1})`, :math:`a_t = W_{ih} u_t + b_{ih} + b_{hh}`;
* ``gru``: :math:`r, z = \sigma(a^{r,z}_t + W^{r,z}_{hh} h_{t-1})`, :math:`c^n = W^n_{hh} h_{t-1} + b^n_{hh}`,
  :math:`n = \tanh(a^n_t + r \odot c^n)`, :math:`h_t = n + z \odot (h_{t-1} - n)`, with
  :math:`a_t = W_{ih} u_t + b_{ih} + [b^r_{hh}, b^z_{hh}, 0]`; saved :math:`G = [r, z, n, c^n]`;
* ``lstm`` (state :math:`s = [h, c]`): :math:`[i, f, g, o] = [\sigma, \sigma, \tanh, \sigma](a_t + W_{hh} h_{t-1})`,
  :math:`c_t = f \odot c_{t-1} + i \odot g`, :math:`h_t = o \odot \tanh(c_t)`, with
  :math:`a_t = W_{ih} u_t + b_{ih} + b_{hh}`; saved :math:`G = [i, f, g, o]`.

Example::

    rnn = torch.nn.GRU(32, 64, batch_first=True)
    states = kernel_states("gru", u, s0, *rnn.parameters())  # [B, T, 64], the GRU's states in value
    (states * e).sum().backward()  # one-step gradients: sum_t e_t . ds_t/dtheta with s_{t-1} fixed
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["KernelCell", "KERNEL_CELLS", "RecurrentKernel", "kernel_states", "use_kernels", "kernels_apply"]

#: time steps per chunk: gate buffers are ``[B, CHUNK, saved]`` tensors, backward blocks ``CHUNK`` positions
CHUNK = 256

_enabled = True


@contextmanager
def use_kernels(enabled: bool) -> Iterator[None]:
    """Turn the kernels on (the default) or off inside a ``with`` block. Off, tanh and GRU layers train through
    ``torch.nn.RNN`` / ``torch.nn.GRU``'s fused modules under BPTT and by the reference recipe (a no-grad fused scan
    plus a batched one-step cell) under FT-BPTT and DSF -- the same gradients up to rounding, more slowly on a CPU;
    ``fwdlearn bench seq`` times BPTT both ways. (The LSTM, whose output reads the cell states the fused
    ``torch.nn.LSTM`` does not return, then steps through ``torch.lstm_cell``, as it does on a GPU.)

    Example::

        with use_kernels(False):
            loss.backward()  # as plain PyTorch would compute it
    """
    global _enabled
    before, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = before


def kernels_apply(u: Tensor) -> bool:
    """Whether a layer with a kernel runs it on input ``u``: kernels are on and ``u`` is on the CPU (on a GPU the
    fused cuDNN modules are used)."""
    return _enabled and u.device.type == "cpu"


_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # grad * y (1 - y), written to grad_input=
_tanh_backward = torch.ops.aten.tanh_backward.grad_input  # grad * (1 - y^2)


class KernelCell:
    """What a cell contributes to :class:`RecurrentKernel`: where its input projection goes, its steps, its
    element-wise backward and its state Jacobian. ``G`` is a chunk's gate buffer ``[B, k, saved * H]`` and
    ``S`` the states ``[B, T + 1, S]`` (``S[:, 0]`` the initial state)."""

    name: ClassVar[str]
    #: gates per hidden unit (rows of ``W_ih`` / hidden size)
    gates: ClassVar[int]
    #: saved values per position / hidden size
    saved: ClassVar[int]
    #: pre-activation gradients per position / hidden size
    delta_width: ClassVar[int]
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
    def steps(S: Tensor, G: Tensor, t0: int, w_hh: Tensor, b_hh: Tensor) -> None:
        """Steps ``t0 .. t0 + k - 1`` (``G`` holds their :math:`a_t`): write ``S[:, t0 + 1 .. t0 + k]`` and the
        gates."""
        raise NotImplementedError

    @staticmethod
    def deltas(g: Tensor, prev: Tensor, state: Tensor, saved: Tensor, out: Tensor) -> Tensor:
        """Writes the pre-activation gradients of ``R`` positions into ``out [R, delta_width * H]`` from the state
        gradient ``g [R, S]``, the previous and current states ``[R, S]`` and the saved gates ``[R, saved * H]``."""
        raise NotImplementedError

    @staticmethod
    def carry(g: Tensor, delta: Tensor, prev: Tensor, state: Tensor, saved: Tensor, w_hh: Tensor) -> Tensor:
        r""":math:`J_{t-1}^\top g_t = \partial\langle g_t, s_t\rangle / \partial s_{t-1}` (``[R, S]``), given the deltas."""
        raise NotImplementedError

    @classmethod
    def recurrent_blocks(cls, hidden: int) -> list[tuple[slice, slice]]:
        """``(rows of W_hh, columns of the deltas)`` pairs: which deltas multiply :math:`h_{t-1}`."""
        return [(slice(None), slice(0, cls.gates * hidden))]


def _per_step(x: Tensor, *columns: tuple[int, int]) -> list[tuple[Tensor, ...]]:
    """Views ``x[:, j, lo:hi]`` for every step ``j`` (made in one call per column range, not one per step)."""
    return [x[..., lo:hi].unbind(1) for lo, hi in columns]


class TanhCell(KernelCell):
    name = "tanh"
    gates = 1
    saved = 0
    delta_width = 1

    @staticmethod
    def projection(S, G, t0, t1, width):
        return S[:, t0 + 1: t1 + 1]  # the pre-activation is formed in place of the state

    @staticmethod
    def steps(S, G, t0, w_hh, b_hh):
        w = w_hh.t()  # a transposed view: measured faster with MKL than a contiguous copy
        (hs,) = _per_step(S[:, t0: t0 + G.shape[1] + 1], (0, S.shape[-1]))
        for j in range(G.shape[1]):
            hs[j + 1].addmm_(hs[j], w).tanh_()

    @staticmethod
    def deltas(g, prev, state, saved, out):
        return _tanh_backward(g, state, grad_input=out)

    @staticmethod
    def carry(g, delta, prev, state, saved, w_hh):
        return delta @ w_hh


class GRUCell(KernelCell):
    name = "gru"
    gates = 3
    saved = 4  # r, z, n, c^n
    delta_width = 4  # and their pre-activations' gradients (c^n: as the recurrent projection's)

    @staticmethod
    def input_bias(b_ih, b_hh):
        H = b_hh.shape[0] // 3
        return torch.cat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H:]])

    @staticmethod
    def steps(S, G, t0, w_hh, b_hh):
        H = w_hh.shape[1]
        w_rz, w_n, b_n = w_hh[: 2 * H].t(), w_hh[2 * H:].t(), b_hh[2 * H:]
        (hs,) = _per_step(S[:, t0: t0 + G.shape[1] + 1], (0, H))
        rz, r, z, n, cn = _per_step(G, (0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H), (3 * H, 4 * H))
        for j in range(G.shape[1]):
            h = hs[j]
            rz[j].addmm_(h, w_rz).sigmoid_()
            torch.addmm(b_n, h, w_n, out=cn[j])
            n[j].addcmul_(r[j], cn[j]).tanh_()
            torch.lerp(n[j], h, z[j], out=hs[j + 1])  # n + z (h - n)

    @staticmethod
    def deltas(g, prev, state, saved, out):
        H = g.shape[-1]
        r, z, n, cn = saved.split(H, dim=-1)
        dr, dz, dn, dcn = out.split(H, dim=-1)
        _tanh_backward(torch.addcmul(g, g, z, value=-1, out=dn), n, grad_input=dn)  # dL/dn = g (1 - z)
        _sigmoid_backward(torch.sub(prev, n, out=dz).mul_(g), z, grad_input=dz)  # dL/dz = g (h_{t-1} - n)
        torch.mul(dn, r, out=dcn)  # dL/dc^n
        _sigmoid_backward(torch.mul(dn, cn, out=dr), r, grad_input=dr)
        return out

    @staticmethod
    def carry(g, delta, prev, state, saved, w_hh):
        H = g.shape[-1]
        z = saved[:, H: 2 * H]
        return torch.addmm(g * z, delta[:, : 2 * H], w_hh[: 2 * H]).addmm_(delta[:, 3 * H:], w_hh[2 * H:])

    @classmethod
    def recurrent_blocks(cls, hidden):
        H = hidden
        return [(slice(0, 2 * H), slice(0, 2 * H)), (slice(2 * H, 3 * H), slice(3 * H, 4 * H))]


class LSTMCell(KernelCell):
    name = "lstm"
    gates = 4
    saved = 4  # i, f, g, o
    delta_width = 4
    state_width = 2

    @staticmethod
    def steps(S, G, t0, w_hh, b_hh):
        H = w_hh.shape[1]
        w = w_hh.t()
        hs, cs = _per_step(S[:, t0: t0 + G.shape[1] + 1], (0, H), (H, 2 * H))
        gates, i_f, i, f, gg, o = _per_step(G, (0, 4 * H), (0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H),
                                            (3 * H, 4 * H))
        for j in range(G.shape[1]):
            gates[j].addmm_(hs[j], w)
            i_f[j].sigmoid_()
            gg[j].tanh_()
            o[j].sigmoid_()
            c = torch.mul(f[j], cs[j], out=cs[j + 1]).addcmul_(i[j], gg[j])
            torch.mul(o[j], c.tanh(), out=hs[j + 1])

    @staticmethod
    def _cell_gradient(g: Tensor, state: Tensor, o: Tensor) -> tuple[Tensor, Tensor]:
        r"""``(dL/dc_t, tanh c_t)``: the cell-state gradient through :math:`h_t = o \tanh c_t` plus the one on
        :math:`c_t` itself."""
        H = g.shape[-1] // 2
        tc = state[:, H:].tanh()
        dc = torch.mul(g[:, :H], o)
        return _tanh_backward(dc, tc, grad_input=dc).add_(g[:, H:]), tc

    @classmethod
    def deltas(cls, g, prev, state, saved, out):
        H = g.shape[-1] // 2
        i, f, gg, o = saved.split(H, dim=-1)
        di, df, dg, do = out.split(H, dim=-1)
        dc, tc = cls._cell_gradient(g, state, o)
        _sigmoid_backward(torch.mul(g[:, :H], tc, out=do), o, grad_input=do)
        _sigmoid_backward(torch.mul(dc, prev[:, H:], out=df), f, grad_input=df)
        _tanh_backward(torch.mul(dc, i, out=dg), gg, grad_input=dg)
        _sigmoid_backward(torch.mul(dc, gg, out=di), i, grad_input=di)
        return out

    @classmethod
    def carry(cls, g, delta, prev, state, saved, w_hh):
        H = g.shape[-1] // 2
        out = g.new_empty(g.shape)
        torch.mm(delta, w_hh, out=out[:, :H])
        dc, _ = cls._cell_gradient(g, state, saved[:, 3 * H:])
        torch.mul(dc, saved[:, H: 2 * H], out=out[:, H:])
        return out


KERNEL_CELLS: dict[str, type[KernelCell]] = {c.name: c for c in (TanhCell, GRUCell, LSTMCell)}


def _chunks(T: int) -> list[tuple[int, int]]:
    return [(t0, min(T, t0 + CHUNK)) for t0 in range(0, T, CHUNK)]


class RecurrentKernel(torch.autograd.Function):
    r"""States of a recurrent layer with a hand-written backward; see the module docstring.

    ``forward(cell, through_time, u [B, T, I], s0 [B, S], w_ih, w_hh, b_ih, b_hh) -> states [B, T, S]``;
    ``through_time=False``: the one-step gradients (the state gradient stops at :math:`s_{t-1}`), ``True``: BPTT.
    """

    @staticmethod
    def forward(ctx, cell: type[KernelCell], through_time: bool, u: Tensor, s0: Tensor,  # type: ignore[override]
                w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
        u = u.contiguous()
        B, T, _ = u.shape
        H = w_hh.shape[1]
        S = u.new_empty(B, T + 1, cell.state_width * H)
        S[:, 0] = s0
        bias, w_in = cell.input_bias(b_ih, b_hh), w_ih.t()
        saved = []
        for t0, t1 in _chunks(T):
            G = u.new_empty(B, t1 - t0, cell.saved * H)
            target = cell.projection(S, G, t0, t1, w_ih.shape[0])
            for b in range(B):
                torch.addmm(bias, u[b, t0:t1], w_in, out=target[b])
            cell.steps(S, G, t0, w_hh, b_hh)
            saved.append(G)
        ctx.cell, ctx.through_time = cell, through_time
        ctx.save_for_backward(u, S, w_ih, w_hh, *saved)
        return S[:, 1:]

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph=True: the hand-written backward has no graph of its own
            raise RuntimeError("the recurrent kernels' backward is not differentiable (create_graph=True, second "
                               "derivatives): run the model inside fwdlearn.sequences.nn.kernels.use_kernels(False)")
        with torch.autocast(device_type=g.device.type, enabled=False):  # (a backward inside autocast: its products
            return RecurrentKernel._backward(ctx, g.to(ctx.saved_tensors[1].dtype))  # in the forward's dtype)

    @staticmethod
    def _backward(ctx, g: Tensor):
        cell, through_time = ctx.cell, ctx.through_time
        u, S, w_ih, w_hh, *saved = ctx.saved_tensors
        B, T, _ = u.shape
        H = w_hh.shape[1]
        g = g.contiguous()
        k = cell.gates * H
        d_w_ih, d_w_hh = torch.zeros_like(w_ih), torch.zeros_like(w_hh)
        d_b_ih, d_b_hh = w_ih.new_zeros(k), w_ih.new_zeros(k)
        d_u = torch.empty_like(u) if ctx.needs_input_grad[2] else None
        blocks = cell.recurrent_blocks(H)
        later = None  # J^T g of the step after the current one (BPTT)
        for (t0, t1), G in reversed(list(zip(_chunks(T), saved))):
            if through_time:  # the deltas of the chunk, step by step from its end
                D = u.new_empty(B, t1 - t0, cell.delta_width * H)
                (gs,), (ss,), (Gs,), (Ds,) = (_per_step(x, (0, x.shape[-1]))
                                              for x in (g[:, t0:t1], S[:, t0: t1 + 1], G, D))
                for j in range(t1 - t0 - 1, -1, -1):
                    g_t = gs[j] if later is None else gs[j] + later
                    delta = cell.deltas(g_t, ss[j], ss[j + 1], Gs[j], Ds[j])
                    later = cell.carry(g_t, delta, ss[j], ss[j + 1], Gs[j], w_hh)
            for b in range(B):
                prev = S[b, t0:t1]
                if through_time:
                    delta = D[b]
                else:
                    delta = cell.deltas(g[b, t0:t1], prev, S[b, t0 + 1: t1 + 1], G[b],
                                        u.new_empty(t1 - t0, cell.delta_width * H))
                d_in = delta[:, :k]
                d_w_ih.addmm_(d_in.t(), u[b, t0:t1])
                d_b_ih += d_in.sum(0)
                for rows, cols in blocks:
                    d_w_hh[rows].addmm_(delta[:, cols].t(), prev[:, :H])
                    d_b_hh[rows] += delta[:, cols].sum(0)
                if d_u is not None:
                    torch.mm(d_in, w_ih, out=d_u[b, t0:t1])
        d_s0 = later if through_time and ctx.needs_input_grad[3] else None  # J_0^T g_1
        return None, None, d_u, d_s0, d_w_ih, d_w_hh, d_b_ih, d_b_hh


def kernel_states(cell: str | type[KernelCell], u: Tensor, s0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
                  b_hh: Tensor, through_time: bool = False) -> Tensor:
    r"""States ``[B, T, S]`` of a ``tanh`` / ``gru`` / ``lstm`` layer (``torch.nn.RNN/GRU/LSTM`` weights) from
    inputs ``u [B, T, I]`` and the initial state ``s0 [B, S]``. Backward: the one-step gradients (``s0`` gets
    none: every previous state is held fixed), or with ``through_time`` BPTT's, ``s0``'s included (see
    :class:`RecurrentKernel`). ``cell``: a name or a :class:`KernelCell`.

    Raises:
        ValueError: an unknown cell, or ``u``, ``s0`` or the weights shaped unlike the cell's ``[B, T, I]``,
            ``[B, state_width * H]``, ``W_ih [gates * H, I]``, ``W_hh [gates * H, H]``, biases ``[gates * H]``.
    """
    if isinstance(cell, str):
        if cell not in KERNEL_CELLS:
            raise ValueError(f"no recurrent kernel for cell {cell!r}; known: {', '.join(KERNEL_CELLS)}")
        cell = KERNEL_CELLS[cell]
    _check_shapes(cell, u, s0, w_ih, w_hh, b_ih, b_hh)
    for name, x in (("input", u), ("initial state", s0)):
        if not x.is_floating_point():
            raise ValueError(f"the {cell.name} layer's {name} must be floating point like its weights "
                             f"({w_ih.dtype}); got {x.dtype}: convert it with .to({w_ih.dtype})")
    # in the weights' dtype: under autocast the layer's input may come lower-precision from a linear map before it
    u, s0 = u.to(w_ih.dtype), s0.to(w_ih.dtype)
    with torch.autocast(device_type=u.device.type, enabled=False):
        return RecurrentKernel.apply(cell, through_time, u, s0 if through_time else s0.detach(), w_ih, w_hh, b_ih,
                                     b_hh)


def _check_shapes(cell: type[KernelCell], u: Tensor, s0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
                  b_hh: Tensor) -> None:
    H = w_hh.shape[-1]
    rows = cell.gates * H
    if w_hh.shape != (rows, H) or w_ih.dim() != 2 or w_ih.shape[0] != rows or b_ih.shape != (rows,) \
            or b_hh.shape != (rows,):
        raise ValueError(f"these are not {cell.name} weights: a {cell.name} layer of hidden size H has "
                         f"W_ih [{cell.gates}H, I], W_hh [{cell.gates}H, H] and biases [{cell.gates}H]; "
                         f"got W_ih {tuple(w_ih.shape)}, W_hh {tuple(w_hh.shape)}, b_ih {tuple(b_ih.shape)}, "
                         f"b_hh {tuple(b_hh.shape)}")
    if u.dim() != 3 or u.shape[-1] != w_ih.shape[1]:
        raise ValueError(f"the {cell.name} layer's input must be [batch, time, {w_ih.shape[1]}]; got {tuple(u.shape)}")
    state = (u.shape[0], cell.state_width * H)
    if s0.shape != state:
        raise ValueError(f"the {cell.name} layer's initial state must be [batch, {cell.state_width * H}] = "
                         f"{list(state)}{' ([h, c])' if cell.state_width == 2 else ''}; got {list(s0.shape)}")
