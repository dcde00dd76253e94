"""Synthetic feedback at its edges: the sizes each maker refuses, the shared slices of DFA's draw, one tape per forward
pass, probes of several passes and of a point seen through a map, and the reverse scan's time dimension, empty
windows and decays that alone require gradients (mutation round 29)."""

import math

import pytest
import torch

from fwdlearn.feedback import (FEEDBACK_MAKERS, DirectFeedback, diagonal_feedback, feedback_matrix, reverse_scan,
                               time_feedback)


def _naive_scan(e, a):
    g, later = torch.zeros_like(e), torch.zeros_like(e[..., 0, :])
    for t in range(e.shape[-2] - 1, -1, -1):
        later = e[..., t, :] + (a * later if a.dim() == 1 else later @ a.t())
        g[..., t, :] = later
    return g


def test_sizes_below_one_and_a_rectangular_diagonal_are_refused():
    for bad in (0, 2.5, True):  # (2.5 failed inside torch.linspace)
        with pytest.raises(ValueError, match=rf"^diagonal_feedback needs an int d >= 1, got {bad!r}$"):
            diagonal_feedback(bad)
    with pytest.raises(ValueError, match=r"the diagonal feedback is square; got rows=2, cols=3"):
        FEEDBACK_MAKERS["diagonal"].draw(2, 3, None)
    for rows, cols in ((2, 0), (0, 2)):
        with pytest.raises(ValueError, match=rf"feedback_matrix needs positive int sizes, got rows={rows}, "
                                             rf"cols={cols}"):
            feedback_matrix(rows, cols)


def test_shared_points_are_the_first_columns_of_one_draw_rescaled_to_their_width():
    """B_a (width 16) is the first 16 columns of the width-64 draw B_b, times sqrt(64 / 16) = 2; ``shared=False`` draws
    each point on its own."""
    shared = DirectFeedback(5, {"a": 16, "b": 64}, seed=4)
    torch.testing.assert_close(shared.matrix("a"), shared.matrix("b")[:, :16] * 2, rtol=0, atol=0)
    base = feedback_matrix(5, 64, "uniform", torch.Generator().manual_seed(4))
    torch.testing.assert_close(shared.matrix("b"), base, rtol=0, atol=0)
    alone = DirectFeedback(5, {"a": 16, "b": 64}, shared=False, seed=4)
    g = torch.Generator().manual_seed(4)
    torch.testing.assert_close(alone.matrix("a"), feedback_matrix(5, 16, "uniform", g), rtol=0, atol=0)
    torch.testing.assert_close(alone.matrix("b"), feedback_matrix(5, 64, "uniform", g), rtol=0, atol=0)


def test_orthogonal_points_are_drawn_alone_even_when_shared():
    """A slice of a semi-orthogonal matrix is not semi-orthogonal: every orthogonal point keeps B B^T = I."""
    dfa = DirectFeedback(3, {"a": 4, "b": 8}, kind="orthogonal", shared=True, seed=1)
    for name in ("a", "b"):
        b = dfa.matrix(name)
        torch.testing.assert_close(b @ b.t(), torch.eye(3), atol=1e-5, rtol=0)


def test_set_matrix_refuses_a_transposed_matrix_and_repr_lists_eight_points():
    dfa = DirectFeedback(3, {"p": 4})
    with pytest.raises(ValueError, match=r"matrix for 'p' must have shape \(3, 4\), got \(4, 3\)"):
        dfa.set_matrix("p", torch.zeros(4, 3))
    eight = DirectFeedback(2, {f"p{i}": i + 1 for i in range(8)})
    assert repr(eight) == ("DirectFeedback(error_dim=2, kind=uniform, points={p0: 1, p1: 2, p2: 3, p3: 4, p4: 5, "
                           "p5: 6, p6: 7, p7: 8})")
    nine = DirectFeedback(2, {f"p{i}": 1 for i in range(9)}, kind="gaussian")
    assert repr(nine).endswith("p6: 1, p7: 1, ... 9 in all})")


def test_each_forward_pass_sends_its_own_output_error():
    """Two passes, one backward of the sum of their losses: each pass's point gets e_k B, the error of its own
    output (one tape per pass)."""
    dfa = DirectFeedback(3, {"p": 4}, seed=5).double()
    w = torch.randn(4, 3, dtype=torch.float64)
    h1, h2 = (torch.randn(2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    t1, t2 = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    y1 = dfa.output(dfa.point(h1, "p") @ w)
    y2 = dfa.output(dfa.point(h2, "p") @ w)
    (((y1 - t1) ** 2).sum() + 3 * ((y2 - t2) ** 2).sum()).backward()
    b = dfa.matrix("p")
    torch.testing.assert_close(h1.grad, 2 * (h1.detach() @ w - t1) @ b)
    torch.testing.assert_close(h2.grad, 6 * (h2.detach() @ w - t2) @ b)
    h3 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)  # marked after the last output: a new pass,
    with pytest.raises(RuntimeError, match="before any output error was recorded"):  # not the error of the one before
        dfa.point(h3, "p").sum().backward()


def test_a_probe_of_two_passes_pairs_each_point_with_its_own_output():
    dfa = DirectFeedback(3, {"a": 4, "b": 4}, seed=6).double()
    w = torch.randn(4, 3, dtype=torch.float64)
    x1, x2 = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    x1.requires_grad_(), x2.requires_grad_()
    with dfa.probing() as probe:
        y1 = dfa.output(dfa.point(x1 * 1, "a") @ w)
        y2 = dfa.output(dfa.point(x2 * 1, "b") @ w)
        pairs = probe.compare((y1 ** 2).sum() + 3 * (y2 ** 2).sum())
    x1, x2 = x1.detach(), x2.detach()
    torch.testing.assert_close(pairs["a"][0], 2 * (x1 @ w) @ dfa.matrix("a"))
    torch.testing.assert_close(pairs["b"][0], 6 * (x2 @ w) @ dfa.matrix("b"))
    torch.testing.assert_close(pairs["b"][1], 6 * (x2 @ w) @ w.t())


def test_a_probe_of_a_point_seen_through_a_map_sends_the_signal_through_its_jacobian():
    """through g(h) = h * s: the probe's signal is (e B) * s, what training delivers into h."""
    dfa = DirectFeedback(3, {"p": 4}, seed=7).double()
    s = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    w = torch.randn(4, 3, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    with dfa.probing() as probe:
        y = dfa.output(dfa.point(x.requires_grad_() * 1, "p", through=lambda h: h * s) @ w)
        signal, true = probe.compare((y ** 2).sum())["p"]
    x = x.detach()
    e = 2 * (x @ w)
    torch.testing.assert_close(signal, (e @ dfa.matrix("p")) * s)
    torch.testing.assert_close(true, e @ w.t())
    h = x.clone().requires_grad_()  # training delivers the same signal
    (dfa.output(dfa.point(h, "p", through=lambda v: v * s) @ w) ** 2).sum().backward()
    torch.testing.assert_close(h.grad, signal)


def test_after_a_probing_block_the_points_are_dfa_points_again_and_a_new_block_opens():
    dfa = DirectFeedback(3, {"p": 4}, seed=8).double()
    w = torch.randn(4, 3, dtype=torch.float64)
    x = torch.randn(5, 4, dtype=torch.float64)
    with dfa.probing() as probe:
        probe.compare((dfa.output(dfa.point(x.clone().requires_grad_(), "p") @ w) ** 2).sum())
    h = x.clone().requires_grad_()
    (dfa.output(dfa.point(h, "p") @ w) ** 2).sum().backward()
    torch.testing.assert_close(h.grad, 2 * (x @ w) @ dfa.matrix("p"))
    with dfa.probing() as probe:
        assert probe.points == {}


def test_reverse_scan_takes_every_negative_time_dim_and_names_a_vector():
    e = torch.randn(5, 2, 3, dtype=torch.float64)  # time first
    a = torch.rand(3, dtype=torch.float64)
    expected = _naive_scan(e.transpose(0, 1), a).transpose(0, 1)
    torch.testing.assert_close(reverse_scan(e, a, dim=-3), expected)
    torch.testing.assert_close(reverse_scan(e, a, dim=0), expected)
    with pytest.raises(IndexError, match="dim -4 is out of range for e of 3 dimensions"):
        reverse_scan(e, a, dim=-4)
    with pytest.raises(ValueError, match=r"reverse_scan needs e of shape \[\.\.\., T, d\]; got \(3,\)"):
        reverse_scan(torch.ones(3), a)
    with pytest.raises(TypeError, match=r"a must be a tensor, \[3\] per-channel decays or a \[3, 3\] matrix; got "
                                        r"float: for one decay c of every channel, a = torch.full\(\(3,\), c\)"):
        reverse_scan(e, 0.5)


@pytest.mark.parametrize("grad", [False, True])
def test_an_empty_window_scans_to_an_empty_window(grad):
    e = torch.zeros(2, 0, 3, requires_grad=grad)
    for a in (torch.rand(3), torch.rand(3, 3)):
        g = reverse_scan(e, a)
        assert g.shape == (2, 0, 3)


def test_decays_that_alone_require_gradients_are_differentiated():
    """Only ``a`` requires gradients (a learnt decay): the scan takes the out-of-place path, and its gradient in ``a``
    is the naive loop's."""
    torch.manual_seed(1)
    e = torch.randn(2, 6, 3, dtype=torch.float64)
    w = torch.randn(2, 6, 3, dtype=torch.float64)
    for a in (torch.rand(3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64) / 3):
        a.requires_grad_()
        (mine,) = torch.autograd.grad((reverse_scan(e, a) * w).sum(), a)
        (theirs,) = torch.autograd.grad((_naive_scan(e, a) * w).sum(), a)
        torch.testing.assert_close(mine, theirs)


def test_time_feedback_checks_its_arguments_at_the_forward_pass():
    h = torch.randn(2, 4, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"a must have shape \[3\] or \[3, 3\]"):
        time_feedback(h, torch.ones(2))
    with pytest.raises(TypeError, match="dim \\(the time dimension of e\\) must be an int, got 1.0"):
        time_feedback(h, torch.ones(3), dim=1.0)
    a = torch.tensor([0.0, 0.5, 1.0])
    g = torch.randn(2, 4, 3)
    (time_feedback(h, a, dim=-2) * g).sum().backward()
    torch.testing.assert_close(h.grad, _naive_scan(g, a))
    assert math.isclose(float(h.grad[0, 3, 2]), float(g[0, 3, 2]))  # the last step keeps its own error
