"""Synthetic feedback: DFA against BP, and the reverse scan against a naive loop."""

import re

import pytest
import torch
from torch import nn

from fwdlearn.feedback import (DirectFeedback, _scan_by_doubling, _scan_by_steps, diagonal_feedback, feedback_matrix,
                               reverse_scan, time_feedback)


def _two_layer(seed=0):
    torch.manual_seed(seed)
    l1, l2 = nn.Linear(4, 6, bias=False).double(), nn.Linear(6, 3, bias=False).double()
    x, target = torch.randn(10, 4).double(), torch.randn(10, 3).double()
    return l1, l2, x, target


def _grads(l1, l2, x, target, dfa=None):
    l1.zero_grad(), l2.zero_grad()
    h = l1(x)
    if dfa is not None:
        h = dfa.point(h, "h1")
    y = l2(h)
    if dfa is not None:
        y = dfa.output(y)
    ((y - target) ** 2).sum().backward()
    return l1.weight.grad.clone(), l2.weight.grad.clone()


def test_dfa_with_B_equal_to_the_readout_weight_is_backprop():
    l1, l2, x, target = _two_layer()
    bp1, bp2 = _grads(l1, l2, x, target)
    dfa = DirectFeedback(3, {"h1": 6}).double()
    dfa.set_matrix("h1", l2.weight.detach())  # e @ B = e @ W2 = dL/dh1 for a linear output layer
    d1, d2 = _grads(l1, l2, x, target, dfa)
    torch.testing.assert_close(d1, bp1)
    torch.testing.assert_close(d2, bp2)


def test_dfa_with_random_B_differs_but_output_layer_stays_exact():
    l1, l2, x, target = _two_layer()
    bp1, bp2 = _grads(l1, l2, x, target)
    dfa = DirectFeedback(3, {"h1": 6}, kind="uniform", seed=1).double()
    d1, d2 = _grads(l1, l2, x, target, dfa)
    assert not torch.allclose(d1, bp1)
    torch.testing.assert_close(d2, bp2)  # the output layer gets the true gradient
    # the signal at the point is exactly e @ B
    e = 2 * (l2(l1(x)) - target)
    torch.testing.assert_close(d1, (e @ dfa.matrix("h1")).t() @ x)


def test_dfa_works_with_sequence_batch_dims_and_checks_them():
    dfa = DirectFeedback(5, {"p": 4})
    h = torch.randn(2, 7, 4, requires_grad=True)
    y = dfa.output(dfa.point(h, "p") @ torch.randn(4, 5))
    y.sum().backward()
    torch.testing.assert_close(h.grad, torch.ones(2, 7, 5) @ dfa.matrix("p"))
    h2 = torch.randn(2, 7, 4, requires_grad=True)
    bad = dfa.output(dfa.point(h2, "p").mean(1) @ torch.randn(4, 5))  # output lost the time dim
    with pytest.raises(RuntimeError, match="batch shape"):
        bad.sum().backward()


def test_point_names_that_would_share_a_buffer_are_refused():
    with pytest.raises(ValueError, match="feedback points 'a.b' and 'a_b' would share the buffer 'B_a_b'"):
        DirectFeedback(3, {"a.b": 4, "a_b": 4})


def test_probing_refuses_a_point_marked_twice():
    dfa = DirectFeedback(3, {"p": 4})
    h = torch.randn(2, 4, requires_grad=True)
    with dfa.probing():
        dfa.output(dfa.point(h, "p") @ torch.randn(4, 3))
        with pytest.raises(RuntimeError, match="feedback point 'p' was marked twice inside one probing\\(\\) block"):
            dfa.point(h, "p")


def test_probing_checks_the_batch_shape_as_training_does():
    dfa = DirectFeedback(3, {"p": 4})
    h = torch.randn(2, 6, 4, requires_grad=True)
    with dfa.probing() as probe:
        y = dfa.output(dfa.point(h, "p").transpose(0, 1) @ torch.randn(4, 3))
        with pytest.raises(RuntimeError, match=r"has batch shape \(2, 6\) but the output error has batch shape \(6, 2\)"):
            probe.compare(y.sum())


def test_dfa_point_without_output_has_clear_error_and_width_is_checked():
    dfa = DirectFeedback(3, {"p": 4})
    h = torch.randn(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"wrap the model's output with dfa.output\(y\)"):
        dfa.point(h, "p").sum().backward()
    with pytest.raises(ValueError, match="declared with width 4 but got a tensor with last dimension 5"):
        dfa.point(torch.randn(2, 5), "p")
    with pytest.raises(KeyError, match="unknown feedback point 'q'"):
        dfa.point(h, "q")


def test_a_spread_mixes_the_error_across_examples_before_the_projection():
    dfa = DirectFeedback(3, {"p": 4}, seed=2).double()
    mix = torch.randn(5, 5, dtype=torch.float64)  # e.g. a graph's propagation matrix, transposed
    h = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64)
    target = torch.randn(5, 3, dtype=torch.float64)
    y = dfa.output(dfa.point(h, "p", spread=lambda e: mix @ e) @ w)
    ((y - target) ** 2).sum().backward()
    e = 2 * (h.detach() @ w - target)
    torch.testing.assert_close(h.grad, mix @ e @ dfa.matrix("p"))
    bad = dfa.output(dfa.point(torch.randn(5, 4, dtype=torch.float64, requires_grad=True), "p", spread=lambda e: e[:, :2]) @ w)
    with pytest.raises(RuntimeError, match="keep the 3 channels"):
        bad.sum().backward()
    lost = dfa.output(dfa.point(torch.randn(5, 4, dtype=torch.float64, requires_grad=True), "p", spread=lambda e: e[:4]) @ w)
    with pytest.raises(RuntimeError, match="error after its spread has batch shape"):
        lost.sum().backward()


def test_feedback_matrices_are_buffers_with_documented_scale():
    dfa = DirectFeedback(10, {"a": 16, "b": 64}, seed=3)
    assert set(dfa.state_dict()) == {"B_a", "B_b"}
    assert dfa.matrix("a").abs().max() <= 1 / 16 ** 0.5 + 1e-6
    for name, width in (("a", 16), ("b", 64)):  # U[-1/sqrt(width), 1/sqrt(width)): std 1/sqrt(3 width), also for the
        assert dfa.matrix(name).std().item() == pytest.approx(1 / (3 * width) ** 0.5, rel=0.2)  # slice of the shared draw
    g = torch.Generator().manual_seed(0)
    q = feedback_matrix(32, 32, "orthogonal", g)
    torch.testing.assert_close(q @ q.t(), torch.eye(32), atol=1e-5, rtol=0)
    assert feedback_matrix(500, 400, "gaussian", g).std().item() == pytest.approx(1 / 20, rel=0.05)
    torch.testing.assert_close(diagonal_feedback(5), torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
    with pytest.raises(ValueError, match="unknown feedback kind 'sparse'"):
        feedback_matrix(2, 2, "sparse")


def _naive_scan(e, A):
    g = torch.zeros_like(e)
    nxt = torch.zeros_like(e[..., 0, :])
    for t in range(e.shape[-2] - 1, -1, -1):
        nxt = e[..., t, :] + (nxt * A if A.dim() == 1 else nxt @ A.t())
        g[..., t, :] = nxt
    return g


@pytest.mark.parametrize("shape", [(1, 4), (3, 17, 5), (2, 3, 64, 8), (2, 33, 3)])
def test_reverse_scan_matches_naive_loop(shape):
    torch.manual_seed(sum(shape))
    e = torch.randn(*shape, dtype=torch.float64)
    d = shape[-1]
    a = torch.rand(d, dtype=torch.float64)
    torch.testing.assert_close(reverse_scan(e, a), _naive_scan(e, a))
    A = torch.randn(d, d, dtype=torch.float64) / d
    torch.testing.assert_close(reverse_scan(e, A), _naive_scan(e, A))


@pytest.mark.parametrize("shape", [(1, 4), (3, 17, 5), (2, 33, 3)])
def test_reverse_scan_by_doubling_equals_the_step_by_step_scan(shape):
    torch.manual_seed(len(shape))
    e = torch.randn(*shape, dtype=torch.float64)
    d = shape[-1]
    for a in (torch.rand(d, dtype=torch.float64), torch.randn(d, d, dtype=torch.float64) / d):
        torch.testing.assert_close(_scan_by_doubling(e, a), _scan_by_steps(e, a))
        torch.testing.assert_close(_scan_by_steps(e, a), _naive_scan(e, a))


def test_reverse_scan_with_gradients_on_is_the_same_scan_and_differentiates_as_the_naive_loop():
    """With an ``e`` or ``a`` that requires gradients the scan takes its own, out-of-place path: the same values as
    the naive loop and, in ``e`` and in ``a`` (decays or a dense matrix, which acts on column vectors), its gradients."""
    torch.manual_seed(0)
    e = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 7, 4, dtype=torch.float64)
    for a in (torch.rand(4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64) / 2):
        a.requires_grad_()
        g, expected = reverse_scan(e, a), _naive_scan(e, a)
        torch.testing.assert_close(g, expected)
        got = torch.autograd.grad((g * w).sum(), (e, a))
        for mine, theirs in zip(got, torch.autograd.grad((expected * w).sum(), (e, a))):
            torch.testing.assert_close(mine, theirs)


def test_reverse_scan_edge_cases_and_time_dim():
    e = torch.randn(4, 9, 3, dtype=torch.float64)
    torch.testing.assert_close(reverse_scan(e, torch.zeros(3)), e)  # a = 0: g = e
    rev_cumsum = e.flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(reverse_scan(e, torch.ones(3)), rev_cumsum)  # a = 1
    a = torch.rand(3, dtype=torch.float64)
    torch.testing.assert_close(reverse_scan(e.transpose(0, 1), a, dim=0), reverse_scan(e, a).transpose(0, 1))
    with pytest.raises(ValueError, match=r"a must have shape \[3\] or \[3, 3\]"):
        reverse_scan(e, torch.ones(4))
    with pytest.raises(IndexError, match="dim 3 is out of range for e of 3 dimensions"):
        reverse_scan(e, a, dim=3)
    with pytest.raises(ValueError, match="the time dimension must not be the last"):  # at the forward pass
        time_feedback(e.requires_grad_(), a, dim=-1)


def test_time_feedback_replaces_local_errors_by_scan():
    h = torch.randn(2, 6, 3, requires_grad=True)
    a = torch.tensor([0.0, 0.5, 1.0])
    w = torch.randn(2, 6, 3)
    (time_feedback(h, a) * w).sum().backward()
    torch.testing.assert_close(h.grad, reverse_scan(w, a))
    first = h.detach().transpose(0, 1).contiguous().requires_grad_()  # time first: [T, B, d], dim=0
    (time_feedback(first, a, dim=0) * w.transpose(0, 1)).sum().backward()
    torch.testing.assert_close(first.grad, reverse_scan(w, a).transpose(0, 1))


def test_probing_compares_the_dfa_signal_with_the_true_gradient_without_touching_parameters():
    from fwdlearn.diagnostics.alignment import feedback_alignment

    l1, l2, x, target = _two_layer()
    dfa = DirectFeedback(3, {"h1": 6}, seed=2).double()
    with dfa.probing() as probe:
        y = dfa.output(l2(dfa.point(l1(x), "h1")))
        pairs = probe.compare(((y - target) ** 2).sum())
    assert l1.weight.grad is None and l2.weight.grad is None
    e = 2 * (l2(l1(x)) - target)
    signal, true = pairs["h1"]
    torch.testing.assert_close(signal, e @ dfa.matrix("h1"))
    torch.testing.assert_close(true, e @ l2.weight)  # backprop passed through the point
    align = feedback_alignment(pairs)["h1"]
    expected = torch.nn.functional.cosine_similarity(signal, true, dim=-1).mean()
    assert align == pytest.approx(float(expected))
    dfa.set_matrix("h1", l2.weight.detach())  # B = W2: the signal is the gradient
    with dfa.probing() as probe:
        y = dfa.output(l2(dfa.point(l1(x), "h1")))
        assert feedback_alignment(probe.compare(((y - target) ** 2).sum()))["h1"] == pytest.approx(1.0)
    # outside the block, the points are DFA points again
    d1, _ = _grads(l1, l2, x, target, DirectFeedback(3, {"h1": 6}, seed=2).double())
    assert not torch.allclose(d1, _grads(l1, l2, x, target)[0])


def test_probing_names_a_point_the_loss_does_not_reach_and_refuses_nesting():
    dfa = DirectFeedback(3, {"a": 4, "b": 4})
    x = torch.randn(5, 4, requires_grad=True)
    with dfa.probing() as probe:
        with pytest.raises(RuntimeError, match="nested"):
            with dfa.probing():
                pass
        with pytest.raises(RuntimeError, match="no feedback point"):
            probe.compare(x.sum())
        a = dfa.point(x * 2, "a")
        y = dfa.output(a[:, :3])
        dfa.point(x * 3, "b")  # marked after the output: no output error reaches it
        with pytest.raises(RuntimeError, match="'b'"):
            probe.compare(y.sum())


def test_a_point_seen_through_a_layer_norm_gets_the_signal_through_its_jacobian():
    torch.manual_seed(0)
    l1, l2 = nn.Linear(4, 6).double(), nn.Linear(6, 3).double()
    x, target = torch.randn(10, 4).double(), torch.randn(10, 3).double()
    norm = lambda h: torch.nn.functional.layer_norm(h, h.shape[-1:])  # noqa: E731
    dfa = DirectFeedback(3, {"h": 6}).double()
    dfa.set_matrix("h", l2.weight.detach())  # e B = dL/dLN(h): the signal through LN's Jacobian is the gradient

    def grads(point):
        l1.zero_grad(), l2.zero_grad()
        h = l1(x)
        y = l2(norm(point(h)))
        ((dfa.output(y) if point is not _plain else y) - target).pow(2).sum().backward()
        return l1.weight.grad.clone()

    _plain = lambda h: h  # noqa: E731
    seen = grads(lambda h: dfa.point(h, "h", through=norm))
    torch.testing.assert_close(seen, grads(_plain))  # the same as backprop through the norm
    raw = grads(lambda h: dfa.point(h, "h"))  # without `through`: e B lands on h itself, mean and scale included
    assert not torch.allclose(raw, seen)
    h = l1(x)
    torch.testing.assert_close(dfa.point(h, "h", through=norm), h, rtol=0, atol=0)  # the value is h


def test_feedback_kinds_are_one_table_and_draw_the_documented_matrices():
    """The kinds are named once (fwdlearn.rules.FEEDBACK_KINDS, torch-free), drawn by one table
    (fwdlearn.feedback.FEEDBACK_MAKERS); DFA's and DSF's kinds, make_feedback (moved from the sequences package)
    and feedback_matrix draw exactly what they drew before: the formulas below, bit for bit."""
    import math

    from fwdlearn.feedback import FEEDBACK_MAKERS, feedback_matrix, make_feedback
    from fwdlearn.rules import DFA_FEEDBACKS, DSF_FEEDBACKS, FEEDBACK_KINDS

    assert set(FEEDBACK_MAKERS) == set(FEEDBACK_KINDS)
    assert DFA_FEEDBACKS == ("uniform", "gaussian", "orthogonal")
    assert DSF_FEEDBACKS == ("diagonal", "gaussian", "orthogonal")

    def gen(seed=3):
        return torch.Generator().manual_seed(seed)

    def orthogonal(rows, cols, g):
        q, r = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=g))
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
        return q if rows >= cols else q.t()

    for rows, cols in ((5, 3), (3, 5), (4, 4)):
        assert torch.equal(feedback_matrix(rows, cols, "uniform", gen()),
                           (torch.rand(rows, cols, generator=gen()) * 2 - 1) / math.sqrt(cols))
        assert torch.equal(feedback_matrix(rows, cols, "gaussian", gen()),
                           torch.randn(rows, cols, generator=gen()) / math.sqrt(cols))
        assert torch.equal(feedback_matrix(rows, cols, "orthogonal", gen()), orthogonal(rows, cols, gen()))
    assert torch.equal(make_feedback("diagonal", 6, gen()), torch.linspace(0.0, 1.0, 6))
    assert torch.equal(make_feedback("gaussian", 6, gen()), torch.randn(6, 6, generator=gen()) / math.sqrt(6))
    assert torch.equal(make_feedback("orthogonal", 6, gen()), orthogonal(6, 6, gen()))
    with pytest.raises(ValueError, match="unknown feedback kind 'diagonal'; choose one of uniform, gaussian, orthogonal"):
        feedback_matrix(2, 2, "diagonal")
    with pytest.raises(ValueError, match="unknown DSF feedback 'uniform'; choose one of diagonal, gaussian, orthogonal"):
        make_feedback("uniform", 3)


def test_feedback_sizes_and_spectral_radius_inputs_are_checked():
    """make_feedback('gaussian', -1) gave torch's 'negative dimension', 2.5 a randn overload dump; spectral_radius of a
    [2, 3] matrix raised linalg's raw error and of a [2, 2, 2] tensor returned a number."""
    from fwdlearn.feedback import feedback_matrix, make_feedback, spectral_radius

    for bad in (lambda: make_feedback("gaussian", -1), lambda: make_feedback("orthogonal", 2.5),
                lambda: make_feedback("diagonal", 0)):
        with pytest.raises(ValueError, match=r"d must be an int >= 1 \(the state width\)"):
            bad()
    with pytest.raises(ValueError, match=r"feedback_matrix needs positive int sizes, got rows=2.5, cols=3"):
        feedback_matrix(2.5, 3)
    for shape in ((2, 3), (0,), (2, 2, 2)):
        with pytest.raises(ValueError, match=r"\[d\] decays or a square \[d, d\] matrix, got " + re.escape(str(shape))):
            spectral_radius(torch.ones(shape))
    assert spectral_radius(torch.tensor([0.5, -0.9])) == pytest.approx(0.9)
    assert spectral_radius(torch.tensor([[0.0, 2.0], [0.5, 0.0]])) == pytest.approx(1.0)  # eigenvalues +-1


def test_direct_feedback_names_a_bad_error_width_point_width_or_seed():
    """A negative point width failed as "math domain error", error_dim=3.0 was named feedback_matrix's "rows", a seed
    of 1.5 raised torch's "manual_seed expected a long"."""
    with pytest.raises(ValueError, match=r"the width of feedback point 'b' must be an int >= 1 \(its last dimension\), "
                                         r"got -1"):
        DirectFeedback(3, {"a": 4, "b": -1})
    with pytest.raises(ValueError, match=r"error_dim must be an int >= 1 \(the width of the output whose error is "
                                         r"sent\), got 3.0"):
        DirectFeedback(3.0, {"a": 4})
    with pytest.raises(ValueError, match=r"seed must be an int in \[-2\*\*63, 2\*\*64\).*got 1.5"):
        DirectFeedback(3, {"a": 4}, seed=1.5)
    with pytest.raises(ValueError, match=r"a dict \{name: width\}; got \[\('a', 4\)\]"):
        DirectFeedback(3, [("a", 4)])
    assert DirectFeedback(3, {"a": torch.tensor(4)}, seed=-1).matrix("a").shape == (3, 4)  # an integer tensor is an int


def test_a_bfloat16_reverse_scan_does_not_stall_over_a_long_window():
    """The step-by-step scan ran in the errors' dtype: in bfloat16 the running sum of a decay-1 channel stopped growing
    once its ulp passed the errors added (9.75 for 18.5 over 1024 steps, 15.9 for 73.3 over 4096). It is computed in
    float32 and returned in the errors' dtype."""
    a = diagonal_feedback(16)
    e = torch.rand(2, 1024, 16, generator=torch.Generator().manual_seed(0)) * 0.01 + 0.01
    exact = reverse_scan(e.double(), a.double())
    for dtype in (torch.bfloat16, torch.float16):
        g = reverse_scan(e.to(dtype), a.to(dtype))
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), exact, rtol=0.02, atol=0)


def test_a_feedback_matrix_is_not_counted_as_saved_for_backward():
    """B is a buffer held by DirectFeedback anyway; it was saved for backward at every point, so a DFA step's
    saved-for-backward bytes (the cost benches' 'saved for backward MB') counted it as activation memory."""
    from fwdlearn.diagnostics.cost import saved_bytes

    dfa = DirectFeedback(500, {"block0": 1000})  # B: 500 x 1000 float32, 2 MB
    w = torch.randn(4, 1000, requires_grad=True)
    with saved_bytes() as box:
        h = dfa.point(torch.tanh(w), "block0")
        logits = dfa.output(h[:, :500] * 2)
    assert box.bytes < 100_000  # tanh's output (16 kB); B's 2,000,000 bytes before
    logits.sum().backward()
    expected = (torch.ones(4, 500) @ dfa.matrix("block0")) * (1 - torch.tanh(w.detach()) ** 2)
    torch.testing.assert_close(w.grad, expected)
