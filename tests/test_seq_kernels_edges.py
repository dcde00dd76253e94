"""Edges of the recurrent kernels (``fwdlearn.sequences.nn.kernels``) and the cells that run them: float64 values and
gradients against a plain Python loop over ``torch.*_cell`` on tiny sizes, dtype casts, the ``use_kernels`` switch
and the shape checks' messages."""

import pytest
import torch

from fwdlearn.sequences.nn import kernels
from fwdlearn.sequences.nn.recurrent import RecurrentLayer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_MODULES = {"tanh": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def _weights(cell, inputs=2, hidden=3, seed=0):
    torch.manual_seed(seed)
    return [p.detach().double().requires_grad_() for p in _MODULES[cell](inputs, hidden).parameters()]


def _loop(cell, u, s0, weights, through_time):
    """States ``[B, T, S]`` by one ``torch.*_cell`` call per step; without ``through_time`` every previous state is
    detached (the one-step gradients)."""
    states, s = [], s0
    for t in range(u.shape[1]):
        prev = s if through_time else s.detach()
        if cell == "lstm":
            h, c = torch.lstm_cell(u[:, t], tuple(prev.chunk(2, dim=-1)), *weights)
            s = torch.cat([h, c], dim=-1)
        else:
            s = (torch.rnn_tanh_cell if cell == "tanh" else torch.gru_cell)(u[:, t], prev, *weights)
        states.append(s)
    return torch.stack(states, 1)


@pytest.mark.parametrize("steps", [4, 5], ids=["whole-chunks", "one-step-last-chunk"])
@pytest.mark.parametrize("through_time", [False, True], ids=["one-step", "bptt"])
@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_kernel_values_and_gradients_equal_a_cell_loop_across_chunk_boundaries(cell, through_time, steps,
                                                                               monkeypatch):
    """T = 4 or 5 in chunks of 2 (the last chunk whole, or one step long), a carried initial state, and both an error
    tensor and the stride-0 gradient of ``.sum()``: every value and gradient as the step-by-step loop's in float64."""
    monkeypatch.setattr(kernels, "CHUNK", 2)
    weights = _weights(cell)
    width = 2 * 3 if cell == "lstm" else 3
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, steps, 2, dtype=torch.float64, generator=g).requires_grad_()
    s0 = torch.randn(2, width, dtype=torch.float64, generator=g).requires_grad_()
    e = torch.randn(2, steps, width, dtype=torch.float64, generator=g)
    ours = kernels.kernel_states(cell, u, s0, *weights, through_time=through_time)
    reference = _loop(cell, u, s0, weights, through_time)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    for loss in (lambda x: (x * e).sum(), lambda x: x.sum()):
        got = torch.autograd.grad(loss(ours), [u, s0, *weights], retain_graph=True, allow_unused=True)
        want = torch.autograd.grad(loss(reference), [u, s0, *weights], retain_graph=True, allow_unused=True)
        assert (got[1] is None) == (want[1] is None) == (not through_time)
        for name, a, b in zip(["u", "s0", "w_ih", "w_hh", "b_ih", "b_hh"], got, want):
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-12, rtol=0, msg=name)


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_a_float32_input_and_state_run_in_the_weights_float64(cell):
    """The input and initial state are cast to the weights' dtype (a float32 input into float64 weights: float64
    states, the input's gradient back in float32)."""
    weights = _weights(cell)
    g = torch.Generator().manual_seed(2)
    u = torch.randn(2, 5, 2, generator=g).requires_grad_()
    s0 = torch.randn(2, 6 if cell == "lstm" else 3, generator=g).requires_grad_()
    ours = kernels.kernel_states(cell, u, s0, *weights, through_time=True)
    assert ours.dtype == torch.float64
    reference = _loop(cell, u.double(), s0.double(), weights, True)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    for a, b in zip(torch.autograd.grad(ours.sum(), [u, s0]), torch.autograd.grad(reference.sum(), [u, s0])):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("through_time", [False, True], ids=["one-step", "bptt"])
@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_strided_inputs_and_states_give_what_their_contiguous_copies_give(cell, through_time):
    """An input and an initial state that are views with strides (a transposed batch, every other column) give the
    values and gradients of their contiguous copies, bit for bit."""
    weights = _weights(cell)
    width = 6 if cell == "lstm" else 3
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 2, 4, dtype=torch.float64, generator=g).requires_grad_()
    s = torch.randn(2, 2 * width, dtype=torch.float64, generator=g).requires_grad_()
    u, s0 = x.transpose(0, 1)[..., ::2], s[:, ::2]
    assert not u.is_contiguous() and not s0.is_contiguous()
    results = []
    for inputs in ((u, s0), (u.contiguous(), s0.contiguous())):
        states = kernels.kernel_states(cell, *inputs, *weights, through_time=through_time)
        results.append([states, *torch.autograd.grad(states.sum(), [x, *weights])])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_one_step_run_holds_its_initial_state_fixed_even_when_it_asks_for_a_gradient():
    """Under the one-step kernel nothing flows into ``s0``: with frozen weights and input the states need no graph
    at all; through time they do."""
    weights = [w.detach() for w in _weights("gru")]
    u, s0 = torch.randn(2, 5, 2, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert not kernels.kernel_states("gru", u, s0, *weights).requires_grad
    assert kernels.kernel_states("gru", u, s0, *weights, through_time=True).requires_grad


def test_use_kernels_restores_the_setting_it_found_when_nested_and_on_an_error():
    cpu = torch.zeros(1)
    with kernels.use_kernels(False):
        with kernels.use_kernels(False):
            assert not kernels.kernels_apply(cpu)
        assert not kernels.kernels_apply(cpu)  # the outer block's setting, not the default
        with pytest.raises(ZeroDivisionError):
            with kernels.use_kernels(True):
                assert kernels.kernels_apply(cpu)
                1 / 0
        assert not kernels.kernels_apply(cpu)
    assert kernels.kernels_apply(cpu)
    assert not kernels.kernels_apply(torch.zeros(1, device="meta"))  # off the CPU: the fused modules


def test_an_unknown_kernel_cell_lists_the_known_ones():
    u, s0 = torch.randn(2, 5, 2), torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"^no recurrent kernel for cell 'elman'; known: tanh, gru, lstm$"):
        kernels.kernel_states("elman", u, s0, *torch.nn.RNN(2, 3).parameters())


@pytest.mark.parametrize("which", ["w_ih rows", "w_ih 3-d", "w_hh", "b_ih", "b_hh"])
def test_each_misshapen_weight_alone_is_refused(which):
    """Every weight is checked on its own (a GRU of hidden size 3: W_ih [9, 2], W_hh [9, 3], biases [9])."""
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in torch.nn.GRU(2, 3).parameters())
    bad = {"w_ih rows": (w_ih[:6], w_hh, b_ih, b_hh), "w_ih 3-d": (w_ih[..., None], w_hh, b_ih, b_hh),
           "w_hh": (w_ih, w_hh[:6], b_ih, b_hh), "b_ih": (w_ih, w_hh, b_ih[:6], b_hh),
           "b_hh": (w_ih, w_hh, b_ih, b_hh[:6])}[which]
    shapes = [tuple(x.shape) for x in bad]
    message = (rf"^these are not gru weights: a gru layer of hidden size H has W_ih \[3H, I\], W_hh \[3H, H\] and "
               rf"biases \[3H\]; got W_ih {shapes[0]}, W_hh {shapes[1]}, b_ih {shapes[2]}, b_hh {shapes[3]}$")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kernels.kernel_states("gru", torch.randn(2, 5, 2), torch.zeros(2, 3), *bad)


def test_an_input_of_the_wrong_width_is_refused():
    with pytest.raises(ValueError, match=r"^the lstm layer's input must be \[batch, time, 2\]; got \(2, 5, 3\)$"):
        kernels.kernel_states("lstm", torch.randn(2, 5, 3), torch.zeros(2, 6), *torch.nn.LSTM(2, 3).parameters())


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_every_kernel_cell_runs_its_kernel_on_the_cpu(cell, monkeypatch):
    """BPTT with gradients by the through-time kernel, FT-BPTT / DSF by the one-step kernel; evaluation by the fused
    module, except for the LSTM, whose states need the kernel (or torch.lstm_cell) for the cell states."""
    calls = []
    width = 8 if cell == "lstm" else 4
    monkeypatch.setattr(kernels.RecurrentKernel, "apply", lambda *a: calls.append(a[1]) or torch.zeros(2, 3, width))
    layer = RecurrentLayer(cell, 4, 4)
    u, s0 = torch.randn(2, 3, 4), torch.zeros(2, width)
    assert layer.states(u, s0).shape == (2, 3, width)
    assert layer.scan_step(u, s0).shape == (2, 3, width)
    assert calls == [True, False]
    with torch.no_grad():
        layer.states(u, s0)
    assert calls == [True, False, True] if cell == "lstm" else [True, False]
    with kernels.use_kernels(False):
        assert layer.scan_step(u, s0) is None
        layer.states(u, s0)
    assert len(calls) == (3 if cell == "lstm" else 2)


def test_a_linear_recurrences_decays_start_in_half_to_095():
    torch.manual_seed(0)
    decay = RecurrentLayer("linear", 3, 2000).decay.detach()
    assert float(decay.min()) >= 0.5 and float(decay.max()) <= 0.95
    assert float(decay.min()) < 0.51 and float(decay.max()) > 0.94  # the whole range, not a corner of it
