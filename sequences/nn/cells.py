r"""Recurrent cells: what a :class:`~fwdlearn.sequences.nn.recurrent.RecurrentLayer` computes, one object per kind.

A cell builds the layer's parameters and says how to run them: a sequence call differentiable through time
(BPTT), one step for a batch of positions (the one-step recompute, the unrolled diagnostics), the layer output
read from the states and, where it has one, the CPU kernel of :mod:`~fwdlearn.sequences.nn.kernels`.

* ``tanh``: :math:`h_t = \tanh(W_{ih} u_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})` (``torch.nn.RNN``);
* ``gru``: ``torch.nn.GRU``'s gates;
* ``lstm``: ``torch.nn.LSTM``'s gates, state :math:`s = [h, c]` and output :math:`W_s [h; c] + b_s` (the whole state,
  as in the reference implementation of DSF, so that the cell state gets errors from the layer above too);
* ``linear``: the diagonal linear recurrence :math:`h_t = \lambda \odot h_{t-1} + W u_t + b` (DSF with
  :math:`A = \operatorname{diag}(\lambda)` is exactly BPTT -- for the current :math:`\lambda`: DSF's default :math:`A`
  is the reference's ``linspace(0, 1, d)``; ``set_feedback(l, blocks[l].layer.decay)`` sets it, and it stays fixed
  while :math:`\lambda` trains).

The cells are looked up by name in :data:`~fwdlearn.sequences.registries.RECURRENT_CELLS` (also importable from here),
whose built-in entries are the instances below (``TANH_CELL``, ...). A new cell is one subclass of
:class:`RecurrentCell` and one ``RECURRENT_CELLS.register(name, cell)``.
Parameters are attributes of the layer (``rnn``, ``state_proj``, ``input``, ``decay``), so checkpoints name
them ``blocks.<i>.layer.rnn.weight_hh_l0`` etc.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from fwdlearn.sequences.nn.kernels import GRUCell, KernelCell, LSTMCell, TanhCell, kernel_states, kernels_apply
from fwdlearn.sequences.nn.time_rules import unrolled_states
from fwdlearn.sequences.registries import RECURRENT_CELLS

__all__ = ["RecurrentCell", "TorchCell", "TanhRNN", "GRU", "LSTM", "LinearRecurrence", "RECURRENT_CELLS", "TANH_CELL",
           "GRU_CELL", "LSTM_CELL", "LINEAR_CELL"]


class RecurrentCell:
    """How a layer of one cell kind computes; ``layer`` is the :class:`~torch.nn.Module` holding the parameters."""

    name: ClassVar[str]
    #: state width / hidden size
    state_width: ClassVar[int] = 1
    #: the one-step (and through-time) CPU kernel, if the cell has one
    kernel: ClassVar[type[KernelCell] | None] = None
    #: with the kernels off (:func:`~fwdlearn.sequences.nn.kernels.use_kernels`), BPTT runs through torch's fused module
    torch_bptt: ClassVar[bool] = False

    def build(self, layer: nn.Module, input_size: int, hidden: int) -> None:
        """Create the parameters on ``layer``."""
        raise NotImplementedError

    def states(self, layer: nn.Module, u: Tensor, s0: Tensor) -> Tensor:
        """Every state ``[B, T, S]`` from inputs ``[B, T, I]`` and ``s0 [B, S]``, differentiable through time."""
        raise NotImplementedError

    def step(self, layer: nn.Module, u: Tensor, s: Tensor) -> Tensor:
        """One step for a batch of positions: ``u [N, I]``, ``s [N, S]`` -> ``[N, S]``."""
        raise NotImplementedError

    def output(self, layer: nn.Module, states: Tensor) -> Tensor:
        """The layer output ``[..., H]`` from states ``[..., S]`` (the states themselves by default)."""
        return states

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"  # (as a conv kind's, GCN(); was <...cells.GRU object at 0x7f...>)


class TorchCell(RecurrentCell):
    """A cell with a fused ``torch.nn`` sequence module and a ``torch.*_cell`` step on the same weights."""

    module: ClassVar[type[nn.RNNBase]]
    cell_step: ClassVar[Callable[..., Tensor]]
    torch_bptt = True

    @staticmethod
    def weights(layer: nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of the layer's one-layer ``torch.nn`` module."""
        r = layer.rnn
        return r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0

    def build(self, layer, input_size, hidden):
        layer.rnn = self.module(input_size, hidden, batch_first=True)

    def states(self, layer, u, s0):
        """With gradients on a CPU, the through-time kernel (BPTT gradients, 1.05-1.23x faster per GRU
        training step than the fused module's backward); else the fused ``torch.nn`` module."""
        if self.kernel is not None and torch.is_grad_enabled() and kernels_apply(u):
            return kernel_states(self.kernel, u, s0, *self.weights(layer), through_time=True)
        if torch.is_grad_enabled() and not layer.rnn.training and u.is_cuda:
            # cuDNN's RNN backward runs in training mode only (an influence Jacobian is taken in eval mode); the native
            # kernels compute the same one-layer, dropout-free RNN
            with torch.backends.cudnn.flags(enabled=False):
                return layer.rnn(u, s0.unsqueeze(0).contiguous())[0]
        return layer.rnn(u, s0.unsqueeze(0).contiguous())[0]

    def step(self, layer, u, s):
        return type(self).cell_step(u, s, *self.weights(layer))


class TanhRNN(TorchCell):
    r"""Elman cell (Elman, Cognitive Science 1990), :math:`h_t = \tanh(W_{ih} u_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`
    (``torch.nn.RNN``'s weights)."""

    name = "tanh"
    module = nn.RNN
    cell_step = torch.rnn_tanh_cell
    kernel = TanhCell


class GRU(TorchCell):
    r"""Gated recurrent unit (Cho et al., EMNLP 2014, arXiv:1406.1078) with ``torch.nn.GRU``'s gates and weights
    (:math:`W_{i\cdot}, W_{h\cdot}` the ``r, z, n`` blocks of ``weight_ih_l0``, ``weight_hh_l0``; :math:`\sigma` the
    logistic function):

    .. math::
        r_t = \sigma(W_{ir} u_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}), \qquad
        z_t = \sigma(W_{iz} u_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}),

        n_t = \tanh\big(W_{in} u_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})\big), \qquad
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}."""

    name = "gru"
    module = nn.GRU
    cell_step = torch.gru_cell
    kernel = GRUCell


class LSTM(TorchCell):
    r"""Long short-term memory (Hochreiter & Schmidhuber, Neural Computation 1997) with ``torch.nn.LSTM``'s gates and
    weights, state :math:`s_t = [h_t; c_t]` and an output that projects the whole state (as DSF's reference does):

    .. math::
        [i_t, f_t, g_t, o_t] = [\sigma, \sigma, \tanh, \sigma]\big(W_{ih} u_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}\big),

        c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t), \qquad
        \text{out}_t = W_s [h_t; c_t] + b_s

    (:math:`W_s, b_s` = ``state_proj``). The fused ``torch.nn.LSTM`` does not return the cell states, so the sequence
    call is the through-time kernel."""

    name = "lstm"
    module = nn.LSTM
    state_width = 2
    kernel = LSTMCell
    torch_bptt = False

    def build(self, layer, input_size, hidden):
        super().build(layer, input_size, hidden)
        layer.state_proj = nn.Linear(2 * hidden, hidden)

    def states(self, layer, u, s0):
        """The through-time kernel on a CPU; elsewhere (and with the kernels off) ``torch.lstm_cell`` step by step."""
        if kernels_apply(u):
            return kernel_states(LSTMCell, u, s0, *self.weights(layer), through_time=True)
        return unrolled_states(layer, u, s0, retain=False)[0]

    def step(self, layer, u, s):
        h, c = torch.lstm_cell(u, tuple(s.chunk(2, dim=-1)), *self.weights(layer))
        return torch.cat([h, c], dim=-1)

    def output(self, layer, states):
        return layer.state_proj(states)


class LinearRecurrence(RecurrentCell):
    r""":math:`h_t = \lambda \odot h_{t-1} + W u_t + b`, decays :math:`\lambda \sim U(0.5, 0.95)` learned
    (:math:`W, b` = ``input``, :math:`\lambda` = ``decay``). Its state Jacobian is :math:`\operatorname{diag}(\lambda)`,
    so DSF with :math:`A = \operatorname{diag}(\lambda)` is BPTT (for the current :math:`\lambda`)."""

    name = "linear"

    def build(self, layer, input_size, hidden):
        layer.input = nn.Linear(input_size, hidden)
        layer.decay = nn.Parameter(torch.empty(hidden).uniform_(0.5, 0.95))

    def states(self, layer, u, s0):
        return unrolled_states(layer, u, s0, retain=False)[0]

    def step(self, layer, u, s):
        return layer.decay * s + layer.input(u)


#: the built-in cells, one instance each: the entries of :data:`~fwdlearn.sequences.registries.RECURRENT_CELLS`
TANH_CELL, GRU_CELL, LSTM_CELL, LINEAR_CELL = TanhRNN(), GRU(), LSTM(), LinearRecurrence()
