r"""Label appending (ForwardGNN's FF-LA and FF-SymBa inputs).

Node :math:`i`'s input is its features followed by a label vector,

.. math::
    x'_i = [\,\tilde x_i \,\Vert\, \ell_i\,], \qquad
    \tilde x_i = \frac{x_i - m}{\max(1, \sum_j (x_{ij} - m))}, \qquad
    \ell_i = \begin{cases} \operatorname{onehot}(a_i) & i \text{ labelled (train)} \\
                           \tfrac{1}{K}\mathbf{1} & \text{otherwise,} \end{cases}

with :math:`a_i = y_i` for positive data and a wrong class for each negative copy (all :math:`K - 1` of
them by default, one copy each).

Here :math:`m` is the smallest feature of the graph: the features row-normalised as PyG's ``NormalizeFeatures``, which
the reference's data loader applies to every data set. (The blocks L2-normalise each input row, so for the other
methods the row scale does not matter; here it sets the appended label's weight in the row: about 0.23 of
a raw Cora row, 0.97 of a normalised one. The shift by the smallest feature does turn a row, so SF and FF-VN, which
read the features as they are, differ from the reference on a graph whose smallest feature is not 0 -- not on the
bag-of-words data sets, where it is 0.)

Inference runs :math:`K` passes over the graph of one evaluated split, as the reference does: in pass :math:`k`
the evaluated nodes get :math:`\operatorname{onehot}(k)`, the known nodes keep their true label (the training
nodes when scoring validation, training and validation nodes when scoring test) and every other node gets
:math:`\tfrac{1}{K}\mathbf{1}`; the class with the largest goodness summed over layers wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["append_labels", "candidate_labels", "normalize_features"]


def normalize_features(x: Tensor) -> Tensor:
    """PyG's ``NormalizeFeatures``: shift by the smallest feature, then divide every row by its sum (at least 1)."""
    if x.numel() == 0:
        return x
    shifted = x - x.min()
    return shifted / shifted.sum(dim=-1, keepdim=True).clamp_min(1.0)


def append_labels(x: Tensor, num_classes: int, labels: Tensor | None = None, mask: Tensor | None = None,
                  fill: Tensor | int | None = None, fill_nodes: Tensor | None = None) -> Tensor:
    """``[x || label vector]`` of shape ``[N, F + K]``.

    Args:
        x: ``[N, F]`` features (row-normalised here, :func:`normalize_features`).
        num_classes: :math:`K`, the width of the label vector.
        labels: ``[N]`` labels appended (one-hot) where ``mask`` is true.
        mask: ``[N]`` nodes whose label is appended (default: none).
        fill: what the other nodes get: ``None`` the uniform vector :math:`1/K`, an int ``k``
            (or a ``[N]`` tensor of classes) the one-hot of that class.
        fill_nodes: ``[N]`` boolean, the nodes that get ``fill`` (default: all); the others outside ``mask`` get
            the uniform vector.
    """
    n = x.shape[0]
    x = normalize_features(x)
    vec = torch.full((n, num_classes), 1.0 / num_classes, dtype=x.dtype, device=x.device)
    if fill is not None:
        fill_t = torch.as_tensor(fill, device=x.device).long().expand(n)
        one_hot = F.one_hot(fill_t, num_classes).to(x.dtype)
        vec = one_hot if fill_nodes is None else torch.where(fill_nodes.unsqueeze(1), one_hot, vec)
    if mask is not None:
        if labels is None:
            raise ValueError("append_labels got a mask but no labels; pass labels= for the masked nodes")
        vec[mask] = F.one_hot(labels[mask].long(), num_classes).to(x.dtype)
    return torch.cat([x, vec], dim=1)


def candidate_labels(x: Tensor, num_classes: int, labels: Tensor | None = None, mask: Tensor | None = None,
                     evaluated: Tensor | None = None) -> list[Tensor]:
    """The :math:`K` inference inputs: class ``k`` appended to the ``evaluated`` nodes (default: every node outside
    ``mask``), true labels kept on ``mask``, the uniform vector elsewhere."""
    return [append_labels(x, num_classes, labels, mask, fill=k, fill_nodes=evaluated) for k in range(num_classes)]
