r"""Local objectives: every layer is trained by a loss on its own output.

These are pure functions on tensors; they know nothing about graphs or sequences.
A layer trained with one of them sees a *detached* copy of the layer below
(:func:`fwdlearn.schedules.layerwise_forward`), so no gradient crosses layers.

Notation: :math:`h_i \in \mathbb{R}^d` is the output of a layer for one example
(a node, a token), :math:`G_i` its goodness, :math:`\theta` the goodness threshold,
:math:`P` and :math:`N` the positive and negative examples, :math:`\sigma` the logistic function and
:math:`\operatorname{softplus}(z) = \log(1 + e^z)`.

References: Forward-Forward, Hinton 2022 (arXiv:2212.13345); SymBa, Lee & Song 2023 (arXiv:2303.08418);
prototype cross-entropy, ForwardGNN's SF, Park et al., ICLR 2024 (arXiv:2403.11004).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "goodness",
    "ff_probability",
    "ff_loss",
    "symba_loss",
    "prototype_logits",
    "prototype_cross_entropy",
]


def _check_at_least_1d(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 1:
        raise ValueError(f"{name} must have at least one dimension (features last), got a scalar")


def goodness(h: Tensor) -> Tensor:
    r"""Goodness of each row: the sum of squared activations.

    .. math::
        G_i = \lVert h_i \rVert_2^2 = \sum_j h_{ij}^2

    Args:
        h: activations of shape ``[..., d]`` (features last).

    Returns:
        Tensor of shape ``h.shape[:-1]``.
    """
    _check_at_least_1d("h", h)
    return h.pow(2).sum(dim=-1)


def ff_probability(g: Tensor, theta: float = 2.0) -> Tensor:
    r"""Forward-Forward probability that an example is positive.

    .. math::
        p_i = \sigma(G_i - \theta)
    """
    return torch.sigmoid(g - theta)


def ff_loss(g_pos: Tensor, g_neg: Tensor | None = None, theta: float = 2.0, per_set: bool = False) -> Tensor:
    r"""Forward-Forward loss (Hinton 2022): binary cross-entropy on goodness minus a threshold.

    Positives have target 1 and negatives target 0, so with logits
    :math:`z = G - \theta`

    .. math::
        \mathcal{L} = \frac{1}{|P| + |N|}\Big(\sum_{i \in P} \operatorname{softplus}(\theta - G_i)
        + \sum_{j \in N} \operatorname{softplus}(G_j - \theta)\Big),

    the mean over the concatenation of both sets; with ``per_set`` the sum of the two sets' means,

    .. math::
        \mathcal{L} = \frac{1}{|P|}\sum_{i \in P} \operatorname{softplus}(\theta - G_i)
        + \frac{1}{|N|}\sum_{j \in N} \operatorname{softplus}(G_j - \theta),

    as ForwardGNN's code weighs them (the positives count as much as all negatives together, however many
    negatives each positive has).

    Args:
        g_pos: goodness of positive examples (any shape).
        g_neg: goodness of negative examples (any shape), or ``None`` for positives only.
        theta: the threshold :math:`\theta` (the paper uses 2.0).
        per_set: weigh each set by its own mean (needs examples in both sets).
    """
    if not isinstance(g_pos, Tensor):
        raise TypeError(f"g_pos must be a torch.Tensor, got {type(g_pos).__name__}")
    pos = F.softplus(theta - g_pos.reshape(-1))
    if g_neg is None:
        if pos.numel() == 0:
            raise ValueError("ff_loss got no examples: g_pos is empty")
        return pos.mean()
    if not isinstance(g_neg, Tensor):
        raise TypeError(f"g_neg must be a torch.Tensor or None, got {type(g_neg).__name__}")
    neg = F.softplus(g_neg.reshape(-1) - theta)
    if per_set:
        if pos.numel() == 0 or neg.numel() == 0:
            raise ValueError(f"ff_loss(per_set=True) needs positives and negatives; got {pos.numel()} and "
                             f"{neg.numel()}")
        return pos.mean() + neg.mean()
    if pos.numel() + neg.numel() == 0:
        raise ValueError("ff_loss got no examples: g_pos and g_neg are both empty")
    return torch.cat([pos, neg]).mean()


def symba_loss(g_pos: Tensor, g_neg: Tensor, alpha: float = 4.0) -> Tensor:
    r"""SymBa loss (Lee & Song 2023): a symmetric, threshold-free contrast of paired goodness values.

    .. math::
        \mathcal{L} = \frac{1}{n}\sum_i \operatorname{softplus}\big(-\alpha\,(G^{+}_i - G^{-}_i)\big)

    Args:
        g_pos: goodness of positive examples.
        g_neg: goodness of the paired negative examples, same shape as ``g_pos``.
        alpha: the scale :math:`\alpha` (the paper uses 4.0).
    """
    for name, t in (("g_pos", g_pos), ("g_neg", g_neg)):  # (a list failed on '.shape', naming no argument)
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if g_pos.shape != g_neg.shape:
        raise ValueError(
            f"symba_loss pairs positives with negatives, so g_pos and g_neg need the same shape; "
            f"got g_pos {tuple(g_pos.shape)} and g_neg {tuple(g_neg.shape)}"
        )
    if g_pos.numel() == 0:
        raise ValueError("symba_loss got no examples: g_pos and g_neg are empty")
    return F.softplus(-alpha * (g_pos - g_neg)).mean()


def prototype_logits(h: Tensor, prototypes: Tensor, tau: float = 1.0) -> Tensor:
    r"""Similarity of each row to each class prototype.

    .. math::
        z_{ik} = \langle h_i, c_k \rangle / \tau

    Args:
        h: ``[N, d]`` representations.
        prototypes: ``[K, d]`` class prototypes :math:`c_k`.
        tau: temperature :math:`\tau > 0`.

    Returns:
        ``[N, K]`` logits.
    """
    for name, t in (("h", h), ("prototypes", prototypes)):  # (a list failed on '.dim', naming no argument)
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if h.dim() != 2 or prototypes.dim() != 2:
        raise ValueError(
            f"prototype_logits expects h of shape [N, d] and prototypes of shape [K, d]; "
            f"got h {tuple(h.shape)} and prototypes {tuple(prototypes.shape)}"
        )
    if h.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"h and prototypes must have the same feature width d; "
            f"got h {tuple(h.shape)} and prototypes {tuple(prototypes.shape)}"
        )
    if not math.isfinite(tau) or tau <= 0:  # (NaN passed a tau <= 0 test; inf trained nothing)
        raise ValueError(f"tau must be a finite number > 0, got {tau}")
    return h @ prototypes.t() / tau


def prototype_cross_entropy(
    h: Tensor, prototypes: Tensor, labels: Tensor, tau: float = 1.0
) -> Tensor:
    r"""Prototype cross-entropy, the loss of ForwardGNN's single-forward (SF) method.

    .. math::
        \mathcal{L} = -\frac{1}{N}\sum_i \log
        \frac{\exp(\langle h_i, c_{y_i} \rangle / \tau)}{\sum_k \exp(\langle h_i, c_k \rangle / \tau)}

    Gradients flow into both ``h`` and ``prototypes`` (in SF the prototypes are the
    layer's own outputs at the class virtual nodes).

    Args:
        h: ``[N, d]`` representations of labelled examples.
        prototypes: ``[K, d]`` class prototypes.
        labels: ``[N]`` integer labels in ``[0, K)`` (any integer dtype).
        tau: temperature.
    """
    logits = prototype_logits(h, prototypes, tau)
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor of class ids, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer class ids; got {labels.dtype} (labels.long() if they are ids)")
    labels = labels.long()  # (int32 ids failed inside cross_entropy: 'expected target dtype to be Long or Byte')
    if labels.dim() != 1 or labels.shape[0] != h.shape[0]:
        raise ValueError(
            f"labels must have shape [N] = [{h.shape[0]}] to match h; got {tuple(labels.shape)}"
        )
    if labels.numel() == 0:
        raise ValueError("prototype_cross_entropy got no examples: h and labels are empty")
    if int(labels.min()) < 0 or int(labels.max()) >= prototypes.shape[0]:
        raise ValueError(
            f"labels must lie in [0, {prototypes.shape[0]}) (one prototype per class); "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return F.cross_entropy(logits, labels)
