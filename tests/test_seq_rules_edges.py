"""Edges of how stacked language models apply a depth rule and recurrent layers a time rule: the feedback a point on a
pre-LN stream receives, per-block clip groups, shallow's frozen body, the alignment reading's own random draws, and
the run functions' carried state, probes and refusals."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fwdlearn.optim import OptimizerSettings
from fwdlearn.rules import DFA, parse_rule
from fwdlearn.sequences import RecurrentLM
from fwdlearn.sequences.nn import kernels
from fwdlearn.sequences.nn.depth_rules import DFAWiring, StackedLM, point_name
from fwdlearn.sequences.nn.recurrent import RecurrentLayer
from fwdlearn.sequences.nn.time_rules import UNROLLED, one_step_states, run_layer, unrolled_states
from fwdlearn.sequences.nn.transformer import TransformerLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Stack(StackedLM):
    """Embedding -> linear blocks -> LayerNorm -> head, times a scalar ``gate`` outside the body and the head; the
    head may be tied to the embedding."""

    def __init__(self, training: str, layers: int = 3, vocab: int = 7, width: int = 4, tie: bool = False) -> None:
        super().__init__()
        self.rule = parse_rule(training)
        self.embedding = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.final_norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)
        if tie:
            self.head.weight = self.embedding.weight
        self.gate = nn.Parameter(torch.ones(()))
        self._wire([{"out": width}] * layers, width, vocab, [self.embedding, self.blocks])

    def _forward(self, tokens, state=None, exact=False):
        blocks = [lambda x, tap, b=b: torch.tanh(b(x)) for b in self.blocks]
        logits, hiddens = self._through(self.embedding(tokens), blocks)
        return logits * self.gate, None, hiddens


def _ids(groups):
    return [[id(p) for p in group] for group in groups]


def test_local_readout_clip_groups_leave_frozen_parameters_out_and_put_the_rest_in_a_group_of_its_own():
    """Block l's group holds its parameters and its head's (the embedding with the first, the final norm and the
    model's head with the last); a frozen parameter is in none, and one outside every block (``gate``) is clipped
    alone."""
    model = _Stack("local:readout")
    model.blocks[1].bias.requires_grad_(False)
    readouts, blocks = model.depth.readouts, model.blocks
    assert _ids(model.clip_groups()) == _ids([
        [model.embedding.weight, *blocks[0].parameters(), *readouts[0].parameters()],
        [blocks[1].weight, *readouts[1].parameters()],
        [*blocks[2].parameters(), *model.final_norm.parameters(), model.head.weight],
        [model.gate],
    ])


def test_shallow_keeps_a_tied_head_learning_and_gives_the_embeddings_no_gradient():
    """The head's weight stays trainable when it is the embedding's (a tied head); in a training pass no gradient
    reaches the embedded input through the frozen blocks (the final norm reads sg(h_L))."""
    tied = _Stack("shallow", tie=True)
    assert tied.head.weight.requires_grad and tied.final_norm.weight.requires_grad
    assert not any(p.requires_grad for p in tied.blocks.parameters())
    torch.manual_seed(0)
    model = RecurrentLM(7, cell="gru", hidden=6, layers=2, training="shallow").train()
    tokens, targets = torch.randint(0, 7, (2, 5)), torch.randint(0, 7, (2, 5))
    emb = model.embed(tokens).detach().requires_grad_()
    F.cross_entropy(model.forward_from_embeddings(emb).flatten(0, 1), targets.flatten()).backward()
    assert emb.grad is None and model.head.weight.grad is not None


def test_training_loss_uses_the_loss_function_given():
    torch.manual_seed(0)
    tokens, targets = torch.randint(0, 7, (2, 5)), torch.randint(0, 7, (2, 5))
    for rule in ("bp", "dfa", "local:readout", "shallow"):
        model = _Stack(rule).train()
        loss, _ = model.training_loss(tokens, targets, loss_fn=lambda logits, y: logits.square().mean())
        torch.testing.assert_close(loss, model._forward(tokens)[0].square().mean(), msg=rule)


def test_dfa_optimizer_and_feedback_seed():
    """DFA's optimizer is Adam at a constant 1e-3 (Launay et al. 2020); the feedback matrices follow feedback_seed
    alone."""
    assert _Stack("dfa").optimizer_defaults() == OptimizerSettings("adam", lr=1e-3, betas=(0.9, 0.999),
                                                                   schedule="constant")
    matrices = {}
    for seed in (1, 2, 1):
        torch.manual_seed(seed + 10)  # (the weights' seed changes nothing)
        model = TransformerLM(9, hidden=8, layers=2, heads=2, context=4, training="dfa", feedback_seed=seed)
        matrices.setdefault(seed, []).append(model.depth.feedback.matrix("block1.out"))
    assert torch.equal(*matrices[1]) and not torch.equal(matrices[1][0], matrices[2][0])


@pytest.mark.parametrize("normalized", [[{"out"}, set()], [set(), {"out", "mid"}]])
def test_a_dfa_point_on_a_pre_ln_stream_receives_the_signal_through_a_layernorms_jacobian(normalized):
    """At a point every reader sees through a LayerNorm the gradient is (e B) dLN(h)/dh, the Jacobian of a per-token
    weightless LayerNorm; elsewhere it is e B itself."""
    torch.manual_seed(0)
    taps = [{"mid": 3, "out": 5}, {"mid": 2, "out": 5}]
    wiring = DFAWiring(taps, width=5, rule=DFA("micro"), normalized=normalized).double()
    hs = {point_name(i, w): torch.randn(2, 3, d, dtype=torch.float64, requires_grad=True)
          for i, block in enumerate(taps) for w, d in block.items()}
    marked = [wiring.tap(int(name[5]), h, name.split(".")[1]) for name, h in hs.items()]
    z = wiring.output(torch.randn(2, 3, 5, dtype=torch.float64) + sum(m.sum() for m in marked))
    e = torch.randn(2, 3, 5, dtype=torch.float64)
    (z * e).sum().backward()
    for name, h in hs.items():
        signal = e @ wiring.feedback.matrix(name)
        block, where = int(name[5]), name.split(".")[1]
        if where in normalized[block]:
            x = h.detach().requires_grad_()
            (signal,) = torch.autograd.grad(F.layer_norm(x, x.shape[-1:]), x, signal)
        torch.testing.assert_close(h.grad, signal, atol=1e-12, rtol=0, msg=name)


def test_feedback_alignment_draws_its_own_dropout_masks():
    """The reading of a model with dropout is the same at every call, and the training run's random stream is left
    where it was."""
    torch.manual_seed(0)
    model = TransformerLM(9, hidden=8, layers=2, heads=2, context=6, dropout=0.5, training="dfa")
    tokens, targets = torch.randint(0, 9, (2, 6)), torch.randint(0, 9, (2, 6))
    state = torch.get_rng_state()
    first = model.feedback_alignment(tokens, targets)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(3)  # (another state of the stream: the same reading)
    assert model.feedback_alignment(tokens, targets) == first


@pytest.mark.parametrize("grad", [True, False])
def test_the_unrolled_run_returns_the_last_state_and_fills_its_probe_with_gradients_off_too(grad):
    """UNROLLED (the diagnostics' BPTT) is run step by step with gradients off too: the probe holds every step's state
    and s_T is the fused run's last state."""
    torch.manual_seed(0)
    layer = RecurrentLayer("lstm", 3, 4).double()
    u, s0 = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    h_ref, s_ref = layer.run(u, s0)
    probe = []
    with torch.set_grad_enabled(grad):
        h, s = run_layer(layer, u, s0, UNROLLED, probe=probe)
    torch.testing.assert_close(h, h_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(s, s_ref, atol=1e-12, rtol=0)
    (states,) = probe
    assert len(states) == 5 and all(s.requires_grad == grad for s in states)
    torch.testing.assert_close(states[-1], s_ref, atol=1e-12, rtol=0)


def test_run_layer_refuses_a_time_rule_without_a_run_function_naming_the_fix():
    from dataclasses import dataclass
    from typing import ClassVar

    from fwdlearn.rules import TimeRule

    @dataclass(frozen=True)
    class NoRun(TimeRule):
        name: ClassVar[str] = "norun"

    layer = RecurrentLayer("gru", 3, 4)
    with pytest.raises(ValueError, match=r"^no recurrent implementation of time rule norun \(the time rules recurrent "
                                         r"layers run: bptt, tbptt, ft-bptt, dsf\); add its run function"):
        run_layer(layer, torch.randn(2, 5, 3), torch.zeros(2, 4), NoRun())
    with torch.no_grad():  # (gradients off: the plain fused path, whatever the rule)
        assert run_layer(layer, torch.randn(2, 5, 3), torch.zeros(2, 4), NoRun())[0].shape == (2, 5, 4)


@pytest.mark.parametrize("kernels_on", [True, False], ids=["kernel", "reference-recipe"])
@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_one_step_states_give_the_initial_state_no_gradient_on_either_path(cell, kernels_on):
    """Every previous state is held fixed, s0 too: the one-step kernel and the reference recipe agree (values, the
    detached s_T, and no gradient into a carried s0)."""
    torch.manual_seed(0)
    layer = RecurrentLayer(cell, 3, 4).double()
    u = torch.randn(2, 6, 3, dtype=torch.float64)
    s0 = torch.randn(2, layer.state_size, dtype=torch.float64, requires_grad=True)
    with kernels.use_kernels(kernels_on):
        states, raw, last = one_step_states(layer, u, s0, None)
    assert states is raw and not last.requires_grad
    torch.testing.assert_close(raw, unrolled_states(layer, u, s0.detach(), retain=False)[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(last, raw[:, -1].detach(), atol=0, rtol=0)
    assert torch.autograd.grad(raw.square().sum(), s0, allow_unused=True)[0] is None


@pytest.mark.parametrize("rule", ["ft-bptt", "dsf"])
def test_a_frozen_layers_one_step_run_probes_its_states_without_a_gradient_to_read(rule):
    """A frozen layer on an input without gradient (shallow) has no state gradient: the probe still holds its one-step
    states (torch refuses retain_grad() on a tensor that requires none)."""
    layer = RecurrentLayer("gru", 3, 4)
    layer.requires_grad_(False)
    torch.manual_seed(0)
    u, s0, probe = torch.randn(2, 5, 3), torch.zeros(2, 4), []
    h, _ = run_layer(layer, u, s0, parse_rule(rule).time, torch.full((4,), 0.5), probe)
    (raw,) = probe
    assert raw.shape == (2, 5, 4) and not raw.requires_grad
    torch.testing.assert_close(h, layer.run(u, s0)[0])
