"""State-gradient alignment of DSF / FT-BPTT with BPTT's true state gradients."""

import pytest
import torch

from fwdlearn.sequences import RecurrentLM
from fwdlearn.sequences.alignment import bucket_by_distance, state_alignment, state_gradients


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(seed=0, length=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 6, (4, length), generator=g), torch.randint(0, 6, (4, length), generator=g)


def test_dsf_state_gradients_are_exact_for_a_linear_recurrence_with_matching_feedback():
    torch.manual_seed(0)
    model = RecurrentLM(6, cell="linear", hidden=5, layers=2, training="dsf")
    for i, block in enumerate(model.blocks):
        model.set_feedback(i, block.layer.decay)
    x, y = _data()
    result = state_alignment(model, x, y, "dsf")
    for curve in result.by_distance:
        assert torch.allclose(curve, torch.ones_like(curve), atol=1e-5)
    assert result.parameters.cosine == pytest.approx(1.0, abs=1e-6)


def test_gru_alignment_is_one_at_the_end_and_ft_bptt_equals_the_local_error():
    torch.manual_seed(1)
    model = RecurrentLM(6, cell="gru", hidden=8, layers=2, training="dsf")
    x, y = _data(seed=1, length=12)
    dsf = state_alignment(model, x, y, "dsf")
    assert len(dsf.by_distance) == 2 and dsf.by_distance[1].shape == (12,)
    assert float(dsf.by_distance[1][0]) == pytest.approx(1.0, abs=1e-5)  # top layer, last step: g = e = true
    assert float(dsf.by_distance[1][5:].mean()) < 0.9999  # further back the fixed feedback is an approximation
    ft = state_alignment(model, x, y, "ft-bptt")
    assert float(ft.by_distance[1][0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="state gradients are read for"):
        state_gradients(model, x, y, "bptt")


def test_bucket_by_distance_averages_ranges():
    curve = torch.arange(10, dtype=torch.float)
    assert bucket_by_distance(curve, (0, 1, 4)) == [("0", 0.0), ("1-3", 2.0), ("4-9", 6.5)]


@pytest.mark.parametrize("rule", ["local:readout+dsf", "shallow+dsf", "dfa+dsf"])
def test_state_alignment_needs_backprop_through_depth(rule):
    """Blocks trained by local losses (or frozen) get no state gradient from the output; under DFA the "true"
    reference was DFA's signal carried back through time (cosine -0.09 / 0.18 with the real dL/ds_t)."""
    torch.manual_seed(0)
    model = RecurrentLM(7, cell="gru", hidden=4, layers=2, training=rule)
    tokens = torch.randint(0, 7, (2, 6))
    with pytest.raises(ValueError, match=r"which needs backprop through depth; this model trains by "
                                         r"(local:readout|shallow|dfa) through depth"):
        state_alignment(model, tokens, tokens, "dsf")


def test_state_gradients_leave_the_models_gradients_as_they_were():
    """They were wiped (zero_grad before and after the reading)."""
    torch.manual_seed(0)
    model = RecurrentLM(7, cell="gru", hidden=4, layers=2, training="dsf")
    tokens = torch.randint(0, 7, (2, 6))
    model(tokens)[0].sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    state_alignment(model, tokens, tokens, "dsf")
    after = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    with pytest.raises(ValueError, match=r"edges must start at 0 and increase, got \(1, 4\)"):
        bucket_by_distance(torch.arange(6.0), (1, 4))  # distance 0 was dropped silently


def test_a_dsf_kind_other_than_the_models_own_is_refused_not_ignored():
    """The gradients are read with the model's own feedback buffers: 'dsf:gaussian' on a diagonal-feedback model gave
    the diagonal's numbers under the gaussian's name."""
    torch.manual_seed(0)
    model = RecurrentLM(6, cell="gru", hidden=8, layers=1, training="dsf")
    x, y = _data()
    with pytest.raises(ValueError, match=r"'dsf:gaussian' names gaussian feedback, but this model's DSF feedback "
                                         r"matrices are diagonal .* build the model with feedback='gaussian'"):
        state_alignment(model, x, y, "dsf:gaussian")
    assert state_alignment(model, x, y, "dsf:diagonal").overall == state_alignment(model, x, y, "dsf").overall


def test_state_alignment_refuses_a_torch_rnn_without_saying_it_has_no_state():
    """torch's nn.GRU was refused as "a GRU carries no state through time", which it does: it is no RecurrentLM,
    the model whose time rule feeds the state's gradient back."""
    x, y = _data(length=6)
    with pytest.raises(ValueError, match=r"runs a fwdlearn RecurrentLM, whose time rule is what feeds the gradient of "
                                         r"its state back through time; a torch.nn.modules.rnn.GRU is not one: build "
                                         r"the model as RecurrentLM\(vocab_size, cell='gru', ...\)"):
        state_alignment(torch.nn.GRU(4, 4, batch_first=True), x, y, "dsf")


def test_state_alignment_refuses_a_model_without_state_by_name():
    """A transformer or a causal convolution failed with "'TransformerConfig' object has no attribute 'feedback'" (or
    "forward_from_embeddings() got an unexpected keyword argument 'rule'" for 'ft-bptt')."""
    from fwdlearn.sequences.nn.conv import CausalConvLM
    from fwdlearn.sequences.nn.transformer import TransformerLM

    x, y = _data(length=6)
    for model in (TransformerLM(6, hidden=8, layers=1, heads=2, context=8), CausalConvLM(6, hidden=8)):
        for mode in ("dsf", "ft-bptt", "unrolled"):
            with pytest.raises(ValueError, match=rf"a {type(model).__name__} carries no state through time: measure a "
                                                 r"RecurrentLM"):
                state_alignment(model, x, y, mode)


def test_alignment_diagnostics_read_a_regression_task():
    """The adding problem's float targets (NaN where unscored) went to the cross-entropy: "expected target dtype to be
    Long or Byte, but got Float" from state_alignment and from feedback_alignment. They read its MSE now: the true
    state gradient is the autograd gradient of that MSE, and the DFA signal is left out where the target is NaN."""
    import torch.nn.functional as F

    from fwdlearn.sequences.data.tasks import AddingProblem

    torch.manual_seed(0)
    task = AddingProblem(length=8)
    x, y = task.sample(4, torch.Generator().manual_seed(0))
    model = RecurrentLM(task.vocab_size, cell="gru", hidden=6, layers=1, training="dsf", out_size=1, norm=False)
    result = state_alignment(model, x, y, "ft-bptt")
    assert result.by_distance[0][0] == pytest.approx(1.0)  # the last position, the only scored one: the local error
    (true,), params = state_gradients(model, x, y, "unrolled")
    (grad,) = torch.autograd.grad(F.mse_loss(model(x)[0][:, -1, 0], y[:, -1]), model.head.weight)
    torch.testing.assert_close(params["head.weight"], grad)
    assert true.shape == (4, 8, 6) and bool(true[:, :-1].abs().sum() > 0)  # credit carried back through time
    dfa = RecurrentLM(task.vocab_size, cell="gru", hidden=6, layers=2, training="dfa+dsf", out_size=1, norm=False)
    alignment = dfa.feedback_alignment(x, y)
    assert alignment.keys() == {"block0.out", "block1.out"} and all(-1 <= v <= 1 for v in alignment.values())
    with pytest.raises(ValueError, match="every target is NaN"):
        dfa.feedback_alignment(x, torch.full_like(y, float("nan")))


def test_overall_alignment_is_the_cosine_of_the_whole_windows_gradients():
    """``overall`` is the cosine of the concatenated state gradients (large gradients weigh more), not the mean of the
    per-position curve, as StateAlignment says."""
    torch.manual_seed(1)
    model = RecurrentLM(6, cell="gru", hidden=8, layers=2, training="dsf")
    x, y = _data(seed=1, length=12)
    result = state_alignment(model, x, y, "dsf")
    approx, true = state_gradients(model, x, y, "dsf")[0], state_gradients(model, x, y, "unrolled")[0]
    for overall, a, b in zip(result.overall, approx, true):
        expected = float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))
        assert overall == pytest.approx(expected, abs=1e-5)
    assert abs(result.overall[0] - float(result.by_distance[0].mean())) > 1e-3  # the two readings differ here
