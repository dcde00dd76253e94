r"""Forward-Forward methods of ForwardGNN: goodness of positive and negative graphs, layer by layer.

Goodness :math:`G_i = \lVert h_i \rVert^2` (:func:`fwdlearn.local.goodness`). Positive data carry
the true label of every training node, negative data a random wrong one
(:func:`~fwdlearn.graphs.methods.virtual_nodes.wrong_labels`), given to the network as

- ``la``, label appending: features :math:`[x_i \Vert \operatorname{onehot}(a_i)]`
  (:mod:`~fwdlearn.graphs.methods.label_appending`), :math:`1/K` for unlabelled nodes;
- ``vn``, virtual nodes: training node :math:`i` linked to the virtual node of class :math:`a_i`.

Objectives: ``ff``, :math:`\operatorname{BCE}(G - \theta)` with targets 1/0
(:func:`fwdlearn.local.ff_loss`), and ``symba``, :math:`\operatorname{softplus}(-\alpha(G^+ - G^-))`
(:func:`fwdlearn.local.symba_loss`). Rules: ``local:ff:la`` (alias ``ff-la``), ``local:ff:vn``
(``ff-vn``), ``local:symba:la`` (``ff-symba``). Scores: :math:`K` passes, class :math:`k` given to every
unlabelled node (training nodes keep theirs); the goodness summed over layers.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from fwdlearn.local import ff_loss, goodness, symba_loss

from fwdlearn.graphs.methods.base import LayerwiseMethod, Streams
from fwdlearn.graphs.methods.label_appending import append_labels
from fwdlearn.graphs.methods.virtual_nodes import add_virtual_nodes, virtual_features, wrong_labels
from fwdlearn.graphs.nn.backbones import make_blocks

__all__ = ["LabelAppendingFF", "LabelAppendingSymBa", "VirtualNodeFF"]


class _GoodnessMethod(LayerwiseMethod):
    """Positive/negative streams for training, ``K`` candidate streams for scoring, goodness scores."""

    options: ClassVar[tuple[str, ...]] = ("theta", "alpha", "cache")

    def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, theta: float = 2.0, alpha: float = 4.0,
                 cache: bool = True):
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed, cache)
        self.theta, self.alpha = theta, alpha

    def labelled(self, x: Tensor, edge_index: Tensor, labels: Tensor, train: Tensor) -> tuple[Tensor, Tensor]:
        """The graph with ``labels`` given to the training nodes."""
        raise NotImplementedError

    def candidate(self, x: Tensor, edge_index: Tensor, k: int, y: Tensor | None, train: Tensor | None
                  ) -> tuple[Tensor, Tensor]:
        """The graph with class ``k`` given to every node outside ``train`` (which keeps ``y``)."""
        raise NotImplementedError

    def training_streams(self, x, edge_index, y, train, generator) -> Streams:
        negatives = wrong_labels(y, self.num_classes, generator)
        return {"pos": self.labelled(x, edge_index, y, train), "neg": self.labelled(x, edge_index, negatives, train)}

    def scoring_streams(self, x, edge_index, y, train) -> Streams:
        return {f"k{k}": self.candidate(x, edge_index, k, y, train) for k in range(self.num_classes)}

    def layer_loss(self, outs, y, train, num_nodes, layer) -> Tensor:
        g_pos = goodness(outs["pos"][:num_nodes][train])
        g_neg = goodness(outs["neg"][:num_nodes][train])
        return ff_loss(g_pos, g_neg, self.theta)

    def layer_scores(self, outs, num_nodes, layer) -> Tensor:
        return torch.stack([goodness(outs[f"k{k}"][:num_nodes]) for k in range(self.num_classes)], dim=-1)


class LabelAppendingFF(_GoodnessMethod):
    """FF-LA: labels appended to the features, FF loss (``local:ff:la``)."""

    rule: ClassVar[str] = "local:ff:la"

    def make_blocks(self):
        return make_blocks(self.conv, [self.in_dim + self.num_classes] + [self.hidden] * self.layers)

    def labelled(self, x, edge_index, labels, train):
        return append_labels(x, self.num_classes, labels, train), edge_index

    def candidate(self, x, edge_index, k, y, train):
        return append_labels(x, self.num_classes, y, train, fill=k), edge_index


class LabelAppendingSymBa(LabelAppendingFF):
    """FF-SymBa: labels appended, SymBa loss on paired positive/negative goodness (``local:symba:la``)."""

    rule: ClassVar[str] = "local:symba:la"

    def layer_loss(self, outs, y, train, num_nodes, layer) -> Tensor:
        g_pos = goodness(outs["pos"][:num_nodes][train])
        g_neg = goodness(outs["neg"][:num_nodes][train])
        return symba_loss(g_pos, g_neg, self.alpha)


class VirtualNodeFF(_GoodnessMethod):
    """FF-VN: training nodes linked to a class virtual node (negatives: a wrong class), FF loss (``local:ff:vn``)."""

    rule: ClassVar[str] = "local:ff:vn"

    def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, theta=2.0, alpha=4.0, cache=True):
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed, theta, alpha, cache)
        self.register_buffer("virtual_x", virtual_features(num_classes, in_dim, seed))

    def labelled(self, x, edge_index, labels, train):
        idx = train.nonzero().flatten()
        return add_virtual_nodes(x, edge_index, idx, labels[idx], self.virtual_x)

    def candidate(self, x, edge_index, k, y, train):
        n = x.shape[0]
        assign = torch.full((n,), k, dtype=torch.long, device=x.device)
        if train is not None:
            assign[train] = y[train]
        return add_virtual_nodes(x, edge_index, torch.arange(n, device=x.device), assign, self.virtual_x)
