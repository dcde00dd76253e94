"""Recurrent cells are registry objects: a cell defined here trains under every time rule without editing the library."""

import pytest
import torch
from torch import nn

from fwdlearn.sequences.nn.cells import RECURRENT_CELLS, RecurrentCell
from fwdlearn.sequences.nn.recurrent import RecurrentLayer, RecurrentLM
from fwdlearn.sequences.nn.time_rules import recomputed_states, unrolled_states


class MinimalGated(RecurrentCell):
    r""":math:`h_t = \sigma(W_z u_t) \odot h_{t-1} + \tanh(W_u u_t)`: no kernel, so FT-BPTT / DSF recompute one step."""

    name = "toy-gated"

    def build(self, layer, input_size, hidden):
        layer.gate = nn.Linear(input_size, hidden)
        layer.value = nn.Linear(input_size, hidden)

    def states(self, layer, u, s0):
        return unrolled_states(layer, u, s0, retain=False)[0]

    def step(self, layer, u, s):
        return torch.sigmoid(layer.gate(u)) * s + torch.tanh(layer.value(u))


@pytest.fixture
def toy_cell():
    RECURRENT_CELLS.register(MinimalGated.name, MinimalGated())
    yield MinimalGated.name
    RECURRENT_CELLS.unregister(MinimalGated.name)


@pytest.mark.parametrize("rule", ["bptt", "ft-bptt", "dsf", "dfa+dsf"])
def test_a_cell_defined_in_a_test_file_trains_under_every_time_rule(toy_cell, rule):
    torch.manual_seed(0)
    model = RecurrentLM(12, cell=toy_cell, hidden=16, layers=2, training=rule)
    assert "blocks.0.layer.gate.weight" in model.state_dict()
    x = torch.randint(0, 12, (8, 10))
    y = torch.roll(x, 1, dims=1)  # predict the previous token: needs the state
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss, _ = model.training_loss(x, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    # without its state a model can at best learn this batch's pairs (x_t, x_{t-1}): their conditional entropy, 1.59
    # nats, is below 0.8 of the first loss (a cell whose state never reached its output passed at 0.63 to 0.78)
    pairs = torch.bincount(x.flatten() * 12 + y.flatten(), minlength=144).view(12, 12).double()
    stateless = float(-(pairs * (pairs / pairs.sum(1, keepdim=True)).log()).nan_to_num().sum() / x.numel())
    if rule != "dfa+dsf":  # (DFA trains a block once the layers above align with its feedback: at 1.63 nats here)
        assert losses[-1] < 0.5 * stateless, (losses[-1], stateless)  # (0.04 to 0.06)
    rebuilt = RecurrentLM.from_config(model.config.__dict__)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.eval()(x)[0], model.eval()(x)[0])


def test_a_cell_without_a_kernel_gets_the_one_step_recompute(toy_cell):
    layer = RecurrentLayer(toy_cell, 5, 7)
    u, s0 = torch.randn(3, 6, 5), torch.zeros(3, 7)
    assert layer.scan_step(u, s0) is None
    torch.testing.assert_close(recomputed_states(layer, u, s0), layer.states(u, s0))
    with pytest.raises(TypeError, match="a 'toy-gated' layer has no torch.nn.RNN/GRU/LSTM weights"):
        layer.weights()


def test_an_unknown_cell_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown cell 'gruu'; choose one of tanh, gru, lstm, linear"):
        RecurrentLM(10, cell="gruu")


def test_an_lstm_off_the_kernels_steps_through_lstm_cell_with_the_same_values_and_gradients(monkeypatch):
    """Off the CPU kernels (a GPU, or use_kernels(False)) the LSTM ran the CPU kernel anyway: per-sequence Python
    loops of tiny launches on a GPU. It now steps through torch.lstm_cell, equal in float64."""
    from fwdlearn.sequences.nn import kernels
    from fwdlearn.sequences.nn.recurrent import RecurrentLayer

    torch.manual_seed(0)
    layer = RecurrentLayer("lstm", 3, 4).double()
    u, s0 = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    results = []
    for enabled in (True, False):
        if not enabled:  # the kernel is not run at all
            monkeypatch.setattr("fwdlearn.sequences.nn.cells.kernel_states", lambda *a, **k: 1 / 0)
        with kernels.use_kernels(enabled):
            layer.zero_grad()
            states = layer.states(u, s0)
            (states * torch.linspace(-1, 1, 8, dtype=torch.float64)).sum().backward()
            results.append((states.detach(), [p.grad.clone() for p in layer.rnn.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
@pytest.mark.parametrize("training", ["bptt", "dsf"])
def test_the_kernels_train_under_cpu_autocast_as_the_fused_path_does(cell, training):
    """With the backward inside torch.autocast (fit wrapped in it, as the float16 refusal advises), the GRU kernel's
    BPTT crashed ("BFloat16 and Float") and the tanh kernel's rounded its recurrent products to bfloat16."""
    from fwdlearn.sequences.nn.kernels import use_kernels

    torch.manual_seed(0)
    model = RecurrentLM(6, cell=cell, hidden=8, layers=2, training=training)
    tokens = torch.randint(0, 6, (2, 5))
    grads = {}
    for kernels in (True, False):
        model.zero_grad()
        with use_kernels(kernels), torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = model(tokens)
            logits.float().logsumexp(-1).sum().backward()
        grads[kernels] = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys()
    # each parameter at its own scale: the gradients span 1e-3 to 3, and one tolerance of 0.05 for all let a GRU's
    # recurrent weights go without any gradient under DSF (bfloat16 rounding: up to 4 % of a parameter's largest)
    for name, fused in grads[False].items():
        torch.testing.assert_close(grads[True][name], fused, rtol=0.05, atol=0.1 * float(fused.abs().max()),
                                   msg=lambda message, name=name: f"{name}: {message}")
