"""Local objectives: values and gradients against closed forms; shape errors by message."""

import pytest
import torch
import torch.nn.functional as F

from fwdlearn.local import ff_loss, ff_probability, goodness, prototype_cross_entropy, prototype_logits, symba_loss


def test_goodness_is_sum_of_squares_with_gradient_2h():
    h = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    g = goodness(h)
    assert g.shape == (5,)
    torch.testing.assert_close(g, (h * h).sum(1))
    g.sum().backward()
    torch.testing.assert_close(h.grad, 2 * h.detach())


def test_ff_loss_matches_bce_and_its_closed_form_gradient():
    theta = 2.0
    gp = (torch.rand(6, dtype=torch.float64) * 5).requires_grad_()
    gn = (torch.rand(4, dtype=torch.float64) * 5).requires_grad_()
    loss = ff_loss(gp, gn, theta)
    logits = torch.cat([gp, gn]) - theta
    target = torch.cat([torch.ones(6), torch.zeros(4)]).double()
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, target))
    loss.backward()
    n = 10
    # d/dG softplus(theta - G) = -sigmoid(theta - G); d/dG softplus(G - theta) = sigmoid(G - theta)
    torch.testing.assert_close(gp.grad, -torch.sigmoid(theta - gp.detach()) / n)
    torch.testing.assert_close(gn.grad, torch.sigmoid(gn.detach() - theta) / n)


def test_ff_probability_is_the_positive_probability_the_ff_loss_trains():
    """p = sigmoid(G - theta): 1/2 at the threshold, and -log p is the positive part of ff_loss."""
    g = torch.tensor([0.0, 2.0, 5.0], dtype=torch.float64)
    p = ff_probability(g, theta=2.0)
    torch.testing.assert_close(p[1], torch.tensor(0.5, dtype=torch.float64))
    assert p[0] < 0.5 < p[2]
    torch.testing.assert_close(-p.log().mean(), ff_loss(g, None, 2.0))


def test_ff_loss_positive_only():
    gp = torch.tensor([0.0, 4.0])
    torch.testing.assert_close(ff_loss(gp, None, 2.0), F.softplus(2.0 - gp).mean())


def test_symba_gradient_closed_form_and_shape_error():
    alpha = 4.0
    gp = torch.randn(8, dtype=torch.float64, requires_grad=True)
    gn = torch.randn(8, dtype=torch.float64, requires_grad=True)
    symba_loss(gp, gn, alpha).backward()
    expected = -alpha * torch.sigmoid(-alpha * (gp - gn)).detach() / 8
    torch.testing.assert_close(gp.grad, expected)
    torch.testing.assert_close(gn.grad, -expected)
    with pytest.raises(ValueError, match=r"g_pos and g_neg need the same shape; got g_pos \(3,\) and g_neg \(4,\)"):
        symba_loss(torch.zeros(3), torch.zeros(4))


def test_prototype_cross_entropy_gradient_is_softmax_minus_onehot():
    torch.manual_seed(0)
    h = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2])
    tau = 0.5
    loss = prototype_cross_entropy(h, c, y, tau)
    loss.backward()
    p = torch.softmax(h.detach() @ c.detach().t() / tau, dim=1)
    delta = (p - F.one_hot(y, 4).double()) / 5  # dL/dz
    torch.testing.assert_close(h.grad, delta @ c.detach() / tau)
    torch.testing.assert_close(c.grad, delta.t() @ h.detach() / tau)


def test_prototype_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"same feature width d; got h \(2, 3\) and prototypes \(4, 5\)"):
        prototype_logits(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[2\]"):
        prototype_cross_entropy(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        prototype_cross_entropy(torch.zeros(2, 3), torch.zeros(4, 3), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="at least one dimension"):
        goodness(torch.tensor(1.0))
    with pytest.raises(ValueError, match="prototype_cross_entropy got no examples"):
        prototype_cross_entropy(torch.zeros(0, 3), torch.zeros(4, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="ff_loss got no examples: g_pos is empty"):
        ff_loss(torch.zeros(0))
    with pytest.raises(ValueError, match="symba_loss got no examples"):
        symba_loss(torch.zeros(0), torch.zeros(0))


def test_prototype_temperature_must_be_finite_and_positive():
    """NaN passed a ``tau <= 0`` test (a NaN loss), and inf trained nothing (every gradient 0)."""
    from fwdlearn.local import prototype_cross_entropy

    h, c, y = torch.randn(3, 4, requires_grad=True), torch.randn(2, 4), torch.tensor([0, 1, 0])
    for tau in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match="tau must be a finite number > 0"):
            prototype_cross_entropy(h, c, y, tau)


def test_inputs_of_another_type_are_named_and_integer_labels_of_any_width_are_read():
    """A list failed on '.shape' / '.dim' naming no argument, int32 labels inside cross_entropy ('expected target
    dtype to be Long or Byte, but got Int')."""
    torch.manual_seed(0)
    h, c = torch.randn(4, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    for dtype in (torch.int32, torch.int16, torch.uint8):
        torch.testing.assert_close(prototype_cross_entropy(h, c, y.to(dtype)), prototype_cross_entropy(h, c, y))
    for bad in (y.double(), y.bool()):
        with pytest.raises(TypeError, match=r"labels must hold integer class ids; got .*labels.long\(\)"):
            prototype_cross_entropy(h, c, bad)
    with pytest.raises(TypeError, match="labels must be a torch.Tensor of class ids, got list"):
        prototype_cross_entropy(h, c, [0, 1, 1, 0])
    with pytest.raises(TypeError, match="h must be a torch.Tensor, got list"):
        prototype_logits(h.tolist(), c)
    with pytest.raises(TypeError, match="g_neg must be a torch.Tensor, got list"):
        symba_loss(torch.zeros(2), [0.0, 0.0])
