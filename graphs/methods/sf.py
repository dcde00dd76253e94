r"""SF, ForwardGNN's single-forward method (rule ``local:prototype``, alias ``sf``).

The graph gets one virtual node per class, linked to the training nodes of that class
(:mod:`~fwdlearn.graphs.methods.virtual_nodes`); the virtual nodes' layer outputs
:math:`c_k^{(l)}` are class prototypes and layer :math:`l` minimises

.. math::
    \mathcal{L}_l = -\frac{1}{|T|}\sum_{i\in T}\log
    \frac{\exp(\langle h^{(l)}_i, c^{(l)}_{y_i}\rangle/\tau)}{\sum_k \exp(\langle h^{(l)}_i, c^{(l)}_k\rangle/\tau)}

(:func:`fwdlearn.local.prototype_cross_entropy`), greedily layer by layer. Scores: the per-layer
softmax over classes, averaged over layers. On a graph without labels (``model(x, edge_index)``)
the nodes are scored against the prototypes stored at the end of training.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from fwdlearn.errors import check_range, check_representable
from fwdlearn.local import prototype_cross_entropy, prototype_logits

from fwdlearn.graphs.methods.base import LayerwiseMethod, Streams
from fwdlearn.graphs.methods.virtual_nodes import add_virtual_nodes, virtual_features

__all__ = ["SingleForward"]


class SingleForward(LayerwiseMethod):
    r"""SF (Park et al., ICLR 2024, arXiv:2403.11004): prototype cross-entropy against class virtual nodes, trained
    layer by layer. With :math:`c^{(l)}_k` layer :math:`l`'s output at the virtual node of class :math:`k` and
    :math:`T` the training nodes,

    .. math::
        \mathcal{L}_l = -\frac{1}{|T|}\sum_{i\in T}
        \log \operatorname{softmax}_k\big(\langle h^{(l)}_i, c^{(l)}_k\rangle/\tau\big)_{y_i}, \qquad
        \text{scores}_i = \frac{1}{L}\sum_{l=1}^{L} \operatorname{softmax}_k\big(\langle h^{(l)}_i, c^{(l)}_k
        \rangle/\tau\big).

    The node features are read as given, where the reference's loader row-normalises them: the same inputs on
    features whose smallest value is 0, not on negative ones (:mod:`~fwdlearn.graphs.methods.virtual_nodes`).

    Args:
        tau: the temperature :math:`\tau` (default 1.0).
        cache: reuse the aggregation of frozen inputs (GCN/SAGE).
    """

    rule: ClassVar[str] = "local:prototype"
    options: ClassVar[tuple[str, ...]] = ("tau", "cache")

    def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, tau: float = 1.0, cache: bool = True):
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed, cache)
        check_range("tau", tau, gt=0)  # (checked at fit time only for > 0: NaN passed and 'diverged')
        check_representable("tau", tau)  # (1e-40 overflowed the logits it divides: 'diverged' again)
        self.tau = tau
        self.register_buffer("virtual_x", virtual_features(num_classes, in_dim, seed))
        self.register_buffer("prototypes", torch.zeros(layers, num_classes, hidden))

    def _positive(self, x: Tensor, edge_index: Tensor, y: Tensor, train: Tensor) -> tuple[Tensor, Tensor]:
        return add_virtual_nodes(x, edge_index, train.nonzero().flatten(), y[train], self.virtual_x)

    def training_streams(self, x, edge_index, y, train, generator) -> Streams:
        return {"pos": self._positive(x, edge_index, y, train)}

    def scoring_streams(self, x, edge_index, y, train) -> Streams:
        if train is None:
            return {"plain": (x, edge_index)}
        return {"pos": self._positive(x, edge_index, y, train)}

    def layer_loss(self, outs, y, train, num_nodes, layer) -> Tensor:
        h = outs["pos"]
        return prototype_cross_entropy(h[:num_nodes][train], h[num_nodes:], y[train], self.tau)

    def layer_scores(self, outs, num_nodes, layer) -> Tensor:
        if "plain" in outs:
            h, c = outs["plain"], self.prototypes[layer]
        else:
            h, c = outs["pos"][:num_nodes], outs["pos"][num_nodes:]
        return prototype_logits(h, c, self.tau).softmax(-1)

    def combine(self, total: Tensor) -> Tensor:
        return total / self.layers

    def finish_layer(self, layer, outs, num_nodes) -> None:
        self.prototypes[layer] = outs["pos"][num_nodes:]
