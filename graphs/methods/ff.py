r"""Forward-Forward methods of ForwardGNN: goodness of positive and negative graphs, layer by layer.

Goodness :math:`G_i = \lVert h_i \rVert^2` (:func:`fwdlearn.local.goodness`). Positive data carry
the true label of every training node; each of ``negatives`` negative copies (default all :math:`K - 1`, as the
reference's scripts run) gives every training node a different wrong class
(:func:`~fwdlearn.graphs.methods.virtual_nodes.wrong_labels`). The label reaches the network as

- ``la``, label appending: features :math:`[x_i \Vert \operatorname{onehot}(a_i)]`
  (:mod:`~fwdlearn.graphs.methods.label_appending`), :math:`1/K` for unlabelled nodes;
- ``vn``, virtual nodes: training node :math:`i` linked to the virtual node of class :math:`a_i`. As in the
  reference, the negative copies differ from the positive graph only in these links: from the second layer on,
  their input is the positive graph's output.

Objectives over the training nodes, with :math:`G^-_{ij}` the goodness of node :math:`i` in negative copy
:math:`j` (:math:`M` copies): ``ff``,

.. math::
    \mathcal{L} = \operatorname{mean}_i \operatorname{softplus}(\theta - G^+_i)
    + \operatorname{mean}_{i,j} \operatorname{softplus}(G^-_{ij} - \theta)

(:func:`fwdlearn.local.ff_loss` with ``per_set``: the reference's weighting), and ``symba``,
:math:`\operatorname{mean}_{i,j} \operatorname{softplus}(-\alpha(G^+_i - G^-_{ij}))`
(:func:`fwdlearn.local.symba_loss`). Rules: ``local:ff:la`` (alias ``ff-la``), ``local:ff:vn``
(``ff-vn``), ``local:symba:la`` (``ff-symba``).

Scores: :math:`K` passes; in pass :math:`k` the evaluated nodes get class :math:`k`, the known nodes keep their
label and the rest get none (:math:`1/K`, no virtual link); the goodness summed over layers. Which nodes are
evaluated and known depends on the split scored (:attr:`~fwdlearn.graphs.methods.base.GraphMethod.scores_per_split`):
validation is scored with the training labels known, test with the training and validation labels known, as in
the reference; without a split every node outside the training set is evaluated.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from fwdlearn.errors import check_range, check_representable, is_integer
from fwdlearn.local import ff_loss, goodness, symba_loss

from fwdlearn.graphs.methods.base import LayerwiseMethod, Streams
from fwdlearn.graphs.methods.label_appending import append_labels
from fwdlearn.graphs.methods.virtual_nodes import add_virtual_nodes, virtual_features, wrong_labels
from fwdlearn.graphs.nn.backbones import make_blocks

__all__ = ["LabelAppendingFF", "LabelAppendingSymBa", "VirtualNodeFF"]


class _GoodnessMethod(LayerwiseMethod):
    """Positive/negative streams for training, ``K`` candidate streams for scoring, goodness scores."""

    # (each method declares the loss option it reads: FF's threshold theta or SymBa's scale alpha; the other, given,
    # is warned about as ignored instead of entering the checkpoint's fingerprint)
    options: ClassVar[tuple[str, ...]] = ("theta", "negatives", "cache")
    scores_per_split: ClassVar[bool] = True
    goodness: ClassVar[bool] = True
    separable: ClassVar[bool] = False  # label appending shifts by the graph's smallest feature; FF-VN links every
    # node to the shared virtual nodes

    def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, theta: float = 2.0, alpha: float = 4.0,
                 negatives: int | None = None, cache: bool = True):
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed, cache)
        if negatives is not None and (not is_integer(negatives) or not 1 <= negatives <= num_classes - 1):
            raise ValueError(f"negatives must be an int in [1, {num_classes - 1}] (the wrong classes of "
                             f"{num_classes}), or None for all of them; got {negatives!r}")
        # (a NaN or infinite value made every loss NaN: a "training diverged" error that blamed the training)
        check_range("theta", theta)  # the goodness threshold: any finite number
        check_range("alpha", alpha, gt=0)  # SymBa's scale: 0 trains nothing, a negative one the wrong way
        for name, value in (("theta", theta), ("alpha", alpha)):  # (1e39 is float32's inf: 'diverged')
            check_representable(name, value, small=False)
        self.theta, self.alpha = theta, alpha
        #: negative copies per training step (the resolved count: ``None`` means all :math:`K - 1`)
        self.negatives = num_classes - 1 if negatives is None else int(negatives)

    def labelled(self, x: Tensor, edge_index: Tensor, labels: Tensor, train: Tensor) -> tuple[Tensor, Tensor]:
        """The graph with ``labels`` given to the training nodes."""
        raise NotImplementedError

    def candidate(self, x: Tensor, edge_index: Tensor, k: int, y: Tensor | None, known: Tensor | None,
                  evaluated: Tensor | None) -> tuple[Tensor, Tensor]:
        """The graph with class ``k`` given to the ``evaluated`` nodes (``None``: every node outside ``known``),
        ``known``'s own labels ``y`` to ``known``, and no label to the others."""
        raise NotImplementedError

    def training_streams(self, x, edge_index, y, train, generator) -> Streams:
        negatives = wrong_labels(y, self.num_classes, generator, self.negatives)
        return {"pos": self.labelled(x, edge_index, y, train),
                **{f"neg{j}": self.labelled(x, edge_index, wrong, train) for j, wrong in enumerate(negatives)}}

    def scoring_streams(self, x, edge_index, y, train, evaluated=None) -> Streams:
        return {f"k{k}": self.candidate(x, edge_index, k, y, train, evaluated) for k in range(self.num_classes)}

    def _goodness(self, outs, train, num_nodes) -> tuple[Tensor, Tensor]:
        """Goodness of the training nodes: positives ``[n]`` and negatives ``[negatives, n]``."""
        negatives = torch.stack([goodness(outs[f"neg{j}"][:num_nodes][train]) for j in range(self.negatives)])
        return goodness(outs["pos"][:num_nodes][train]), negatives

    def layer_loss(self, outs, y, train, num_nodes, layer) -> Tensor:
        g_pos, g_neg = self._goodness(outs, train, num_nodes)
        return ff_loss(g_pos, g_neg, self.theta, per_set=True)

    def layer_scores(self, outs, num_nodes, layer) -> Tensor:
        return torch.stack([goodness(outs[f"k{k}"][:num_nodes]) for k in range(self.num_classes)], dim=-1)


class LabelAppendingFF(_GoodnessMethod):
    r"""FF-LA (Park et al., ICLR 2024; Forward-Forward: Hinton 2022, arXiv:2212.13345): labels appended to the
    features, FF loss (``local:ff:la``). With :math:`G^+_i` the goodness :math:`\lVert h^{(l)}_i \rVert^2` of training
    node :math:`i` under its true label and :math:`G^-_{ij}` under the wrong label of negative copy :math:`j`,

    .. math::
        \mathcal{L}_l = \operatorname{mean}_i \operatorname{softplus}(\theta - G^+_i)
        + \operatorname{mean}_{i,j} \operatorname{softplus}(G^-_{ij} - \theta), \qquad
        \text{score}_{ik} = \sum_{l} \lVert h^{(l)}_i[k] \rVert^2,

    :math:`h^{(l)}_i[k]` the output of the :math:`k`-th candidate pass (class :math:`k` appended to the evaluated
    nodes; see the module doc)."""

    rule: ClassVar[str] = "local:ff:la"

    def make_blocks(self):
        return make_blocks(self.conv, [self.in_dim + self.num_classes] + [self.hidden] * self.layers)

    def labelled(self, x, edge_index, labels, train):
        return append_labels(x, self.num_classes, labels, train), edge_index

    def candidate(self, x, edge_index, k, y, known, evaluated):
        return append_labels(x, self.num_classes, y, known, fill=k, fill_nodes=evaluated), edge_index


class LabelAppendingSymBa(LabelAppendingFF):
    r"""FF-SymBa (SymBa: Lee & Song 2023, arXiv:2303.08418): labels appended, SymBa loss on paired positive/negative
    goodness (``local:symba:la``), each positive paired with each of its node's negatives,

    .. math::
        \mathcal{L}_l = \operatorname{mean}_{i,j} \operatorname{softplus}\big(-\alpha\,(G^+_i - G^-_{ij})\big);

    scores as FF-LA's."""

    rule: ClassVar[str] = "local:symba:la"
    options: ClassVar[tuple[str, ...]] = ("alpha", "negatives", "cache")

    def layer_loss(self, outs, y, train, num_nodes, layer) -> Tensor:
        g_pos, g_neg = self._goodness(outs, train, num_nodes)
        return symba_loss(g_pos.expand_as(g_neg), g_neg, self.alpha)


class VirtualNodeFF(_GoodnessMethod):
    r"""FF-VN (Park et al., ICLR 2024): training nodes linked to a class virtual node (negatives: a wrong class), FF
    loss (``local:ff:vn``),

    .. math::
        \mathcal{L}_l = \operatorname{mean}_i \operatorname{softplus}(\theta - G^+_i)
        + \operatorname{mean}_{i,j} \operatorname{softplus}(G^-_{ij} - \theta),

    :math:`G^+_i` node :math:`i`'s goodness linked to virtual node :math:`y_i`, :math:`G^-_{ij}` linked to the wrong
    class of copy :math:`j`; scores: the goodness summed over layers in each of the :math:`K` candidate passes. The
    node features are read as given, where the reference's loader row-normalises them: the same inputs on features
    whose smallest value is 0, not on negative ones (:mod:`~fwdlearn.graphs.methods.virtual_nodes`)."""

    rule: ClassVar[str] = "local:ff:vn"

    def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, theta=2.0, alpha=4.0, negatives=None,
                 cache=True):
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed, theta, alpha, negatives, cache)
        self.register_buffer("virtual_x", virtual_features(num_classes, in_dim, seed))

    def labelled(self, x, edge_index, labels, train):
        idx = train.nonzero().flatten()
        return add_virtual_nodes(x, edge_index, idx, labels[idx], self.virtual_x)

    def candidate(self, x, edge_index, k, y, known, evaluated):
        n = x.shape[0]
        assign = torch.full((n,), k, dtype=torch.long, device=x.device)
        linked = torch.ones(n, dtype=torch.bool, device=x.device) if evaluated is None else evaluated.clone()
        if known is not None:
            assign[known] = y[known]
            linked |= known
        idx = linked.nonzero().flatten()
        return add_virtual_nodes(x, edge_index, idx, assign[idx], self.virtual_x)

    def next_inputs(self, outs):
        """The negative copies differ from the positive graph only in their virtual links: each layer above the
        first reads the positive graph's output, as in the reference."""
        return {s: outs["pos"] if s.startswith("neg") else h for s, h in outs.items()}
