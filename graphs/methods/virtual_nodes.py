r"""Class virtual nodes (ForwardGNN's SF and FF-VN).

For :math:`K` classes, :math:`K` virtual nodes :math:`v_1 .. v_K` are appended after the
:math:`N` real nodes (indices :math:`N .. N+K-1`). Each *labelled training* node :math:`i`
is linked to one virtual node in both directions,

.. math::
    E' = E \cup \{(i, v_{a(i)}),\ (v_{a(i)}, i) : i \in \text{train}\},

where :math:`a(i) = y_i` for the positive graph (SF, FF-VN positives), a wrong class for
FF-VN negatives, and, at FF-VN inference, the candidate class :math:`k` for the evaluated nodes (the known ones
keep :math:`y_i`, see :mod:`~fwdlearn.graphs.methods.ff`). Validation and test nodes are never linked in training
graphs. The virtual nodes' input features are a fixed random vector per class (seeded), kept by the model as a
buffer.

The real nodes' features are read as given (SF, FF-VN, SF-TopDown). The reference's loader applies PyG's
``NormalizeFeatures`` to every data set (shift by the smallest feature, divide each row by its sum) and appends the
virtual nodes' standard normal features unnormalised; as here, each block then L2-normalises its input rows, which
undoes the row-sum division. So the inputs agree wherever the smallest feature is 0 (bag-of-words data sets: Cora gave
the same validation and test accuracies with and without it, to the node, for SF, FF-VN and SF-Top2Input). Where
features are negative the shift turns every row: on a 324-node synthetic city (23 standardised features, two
seeds) it lowered SF's test accuracy from 24.6 / 18.5 % to 18.5 / 18.5 % and FF-VN's from 24.6 / 20.0 % to 15.4 /
3.1 %. For the reference's input, pass ``data.x = normalize_features(data.x)``
(:func:`~fwdlearn.graphs.methods.label_appending.normalize_features`; FF-LA applies it itself, see there).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["virtual_features", "add_virtual_nodes", "wrong_labels"]


def virtual_features(num_classes: int, dim: int, seed: int = 0) -> Tensor:
    """``[K, dim]`` fixed random input features of the virtual nodes (standard normal, seeded): drawn on the CPU, the
    seed's generator, and returned on the default device (:func:`torch.get_default_device`; a model built in a
    ``with torch.device("cuda"):`` block failed there: CUDA draws from no CPU generator)."""
    drawn = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(seed), device="cpu")
    return drawn.to(torch.get_default_device())


def wrong_labels(labels: Tensor, num_classes: int, generator: torch.Generator | None = None,
                 count: int = 1) -> Tensor:
    r"""``[count, N]`` wrong classes: row :math:`j` gives each node :math:`i` the :math:`j`-th class of a uniformly
    random order of :math:`\{0..K-1\} \setminus \{y_i\}` (drawn independently per node), so with
    ``count = K - 1`` every wrong class appears once per node, as in the reference's negative graphs. A label
    outside ``[0, K)`` (an unlabelled node) excludes no class.

    Raises:
        ValueError: ``num_classes < 2`` (no wrong class), or ``count`` outside ``[1, num_classes - 1]``.
    """
    if num_classes < 2:
        raise ValueError(f"negatives need a wrong class, so num_classes must be >= 2; got {num_classes}")
    if not 1 <= count <= num_classes - 1:
        raise ValueError(f"count must lie in [1, {num_classes - 1}] (the wrong classes of {num_classes}); got {count}")
    n, labels_cpu = labels.shape[0], labels.cpu()
    keys = torch.rand(n, num_classes, generator=generator, device="cpu")
    valid = (labels_cpu >= 0) & (labels_cpu < num_classes)  # unlabelled nodes (e.g. -1, -100) exclude no class
    keys[valid.nonzero().flatten(), labels_cpu[valid]] = 2.0  # the true class sorts last
    return keys.argsort(dim=1)[:, :count].t().contiguous().to(labels.device)


def add_virtual_nodes(x: Tensor, edge_index: Tensor, nodes: Tensor, assignment: Tensor,
                      features: Tensor) -> tuple[Tensor, Tensor]:
    """Append one virtual node per class and link ``nodes[j]`` <-> virtual node ``assignment[j]``.

    Args:
        x: ``[N, F]`` real node features.
        edge_index: ``[2, E]`` edges among real nodes.
        nodes: ``[M]`` indices of the nodes to link (the training nodes; at FF-VN inference also the others).
        assignment: ``[M]`` the class whose virtual node each of them is linked to.
        features: ``[K, F]`` the virtual nodes' features.

    Returns:
        ``x'`` of shape ``[N + K, F]`` and ``edge_index'`` with the ``2M`` new edges appended.
    """
    if features.dim() != 2 or features.shape[1] != x.shape[1]:
        raise ValueError(f"virtual node features must be [K, {x.shape[1]}] to match x; got {tuple(features.shape)}")
    if nodes.shape != assignment.shape:
        raise ValueError(f"nodes and assignment must have the same shape; got {tuple(nodes.shape)} and "
                         f"{tuple(assignment.shape)}")
    n, k = x.shape[0], features.shape[0]
    if assignment.numel() and (int(assignment.min()) < 0 or int(assignment.max()) >= k):
        raise ValueError(f"assignment must lie in [0, {k}) (one virtual node per class)")
    virtual = assignment.to(edge_index.device) + n
    nodes = nodes.to(edge_index.device)
    new = torch.cat([torch.stack([nodes, virtual]), torch.stack([virtual, nodes])], dim=1)
    return torch.cat([x, features.to(x)], dim=0), torch.cat([edge_index, new], dim=1)
