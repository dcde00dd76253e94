"""Local objectives at their edges: the documented defaults, ff_loss's per-set weighting and empty sets, SymBa's
pairing by shape, and labels of another shape or below 0 (mutation round 29)."""

import pytest
import torch
import torch.nn.functional as F

from fwdlearn.local import ff_loss, ff_probability, prototype_cross_entropy, symba_loss


def test_the_documented_defaults_are_theta_2_and_alpha_4():
    g = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(ff_probability(g), torch.sigmoid(g - 2.0))
    gn = torch.tensor([0.5, 4.0], dtype=torch.float64)
    torch.testing.assert_close(ff_loss(g, gn), torch.cat([F.softplus(2.0 - g), F.softplus(gn - 2.0)]).mean())
    torch.testing.assert_close(ff_loss(g), F.softplus(2.0 - g).mean())
    torch.testing.assert_close(symba_loss(g, g.flip(0)), F.softplus(-4.0 * (g - g.flip(0))).mean())


def test_ff_loss_per_set_is_the_sum_of_the_two_means():
    """Two positives, four negatives: the pooled mean weighs each example 1/6; per_set weighs a positive 1/2 and a
    negative 1/4."""
    gp = torch.tensor([1.0, 3.0], dtype=torch.float64, requires_grad=True)
    gn = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=torch.float64)
    loss = ff_loss(gp, gn, theta=2.0, per_set=True)
    torch.testing.assert_close(loss, F.softplus(2.0 - gp.detach()).mean() + F.softplus(gn - 2.0).mean())
    loss.backward()
    torch.testing.assert_close(gp.grad, -torch.sigmoid(2.0 - gp.detach()) / 2)
    assert not torch.allclose(loss, ff_loss(gp, gn, theta=2.0))  # the pooled mean differs


@pytest.mark.parametrize("n_pos, n_neg", [(0, 3), (2, 0), (0, 0)])
def test_ff_loss_per_set_needs_both_sets(n_pos, n_neg):
    with pytest.raises(ValueError, match=rf"ff_loss\(per_set=True\) needs positives and negatives; got {n_pos} and "
                                         rf"{n_neg}"):
        ff_loss(torch.ones(n_pos), torch.ones(n_neg), per_set=True)


def test_ff_loss_with_two_empty_sets_is_refused_and_one_empty_set_is_the_other_ones_mean():
    with pytest.raises(ValueError, match="ff_loss got no examples: g_pos and g_neg are both empty"):
        ff_loss(torch.zeros(0), torch.zeros(0))
    gn = torch.tensor([1.0, 3.0])
    torch.testing.assert_close(ff_loss(torch.zeros(0), gn), F.softplus(gn - 2.0).mean())


def test_symba_pairs_by_shape_not_by_count():
    with pytest.raises(ValueError, match=r"need the same shape; got g_pos \(2, 3\) and g_neg \(3, 2\)"):
        symba_loss(torch.zeros(2, 3), torch.zeros(3, 2))


def test_labels_of_another_shape_or_below_zero_are_named():
    h, c = torch.zeros(2, 3), torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[2\] to match h; got \(2, 1\)"):
        prototype_cross_entropy(h, c, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) \(one prototype per class\); got values in "
                                         r"\[-1, 0\]"):
        prototype_cross_entropy(h, c, torch.tensor([-1, 0]))
    assert prototype_cross_entropy(h, c, torch.tensor([0, 3])).item() == pytest.approx(torch.log(torch.tensor(4.0)))
