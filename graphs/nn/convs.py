r"""Graph convolutions: what a :class:`~fwdlearn.graphs.nn.backbones.GNNBlock`'s conv computes, one object per kind.

A kind builds the conv (from :mod:`torch_geometric.nn`) and, where its output is linear after a fixed,
parameter-free aggregation of its input, says so: its propagation matrix :math:`P` and its weights, so that

.. math::
    \operatorname{conv}(\bar h) = (P \bar h)\,W_a^\top + \bar h\,W_r^\top + b.

That form is what the aggregation cache (:mod:`~fwdlearn.graphs.nn.aggregation_cache`: :math:`P \bar h` of a frozen
input computed once) and the layered Jacobian (:mod:`~fwdlearn.graphs.influence.layered_jacobian`: the backward
:math:`Z \mapsto P^\top (Z W_a) + Z W_r`) are built on.

* ``gcn``: :class:`~torch_geometric.nn.GCNConv`, :math:`P = \tilde D^{-1/2}(A + I)\tilde D^{-1/2}`, no root term;
* ``sage``: :class:`~torch_geometric.nn.SAGEConv` with mean aggregation, :math:`P = D^{-1} A` (the mean over
  in-neighbours) and the root weight :math:`W_r`;
* ``gat``: :class:`~torch_geometric.nn.GATConv`, 4 heads concatenated (``out // 4`` channels each); its attention
  depends on the weights, so it has no fixed :math:`P`;
* ``mlp``: a :class:`~torch.nn.Linear` that ignores the edges (:math:`P = I`; the no-graph control of influence
  studies, whose range :math:`R` is 0).

The kinds are looked up by name in :data:`~fwdlearn.graphs.registries.CONV_KINDS` (also importable from here), whose
built-in entries are the instances below (``GCN_KIND``, ...). A new conv is one subclass of :class:`ConvKind` and one
``CONV_KINDS.register(name, kind)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from fwdlearn.graphs.registries import CONV_KINDS

__all__ = ["ConvKind", "GCN", "SAGE", "GAT", "MLP", "CONV_KINDS", "GAT_HEADS", "GCN_KIND", "SAGE_KIND", "GAT_KIND",
           "MLP_KIND"]

GAT_HEADS = 4


class ConvKind:
    """How a block of one conv kind computes; ``conv`` is the module :meth:`make` built."""

    name: ClassVar[str]
    #: whether the conv mixes neighbours (``False``: it reads each node alone)
    aggregates: ClassVar[bool] = True
    #: whether its output is linear after a fixed aggregation (:meth:`weights`, :meth:`from_aggregation`)
    linear: ClassVar[bool] = False
    #: whether the conv computes the same in ``train()`` and ``eval()`` mode (no dropout, no batch statistics): a
    #: layer-by-layer fit then lets the next step's loss take over the output its validation pass computed. A kind
    #: that does not say so (a user's, perhaps with dropout) is validated and hands its outputs on in ``eval()`` mode
    #: and trained in ``train()`` mode, each output computed in its own mode.
    mode_free: ClassVar[bool] = False

    @property
    def cacheable(self) -> bool:
        """Whether the conv is linear after a fixed aggregation with a :meth:`propagation` matrix (GCN, SAGE)."""
        return self.linear and self.aggregates

    def make(self, in_dim: int, out_dim: int) -> nn.Module:
        """The conv module ``in_dim -> out_dim``."""
        raise NotImplementedError

    def check_width(self, out_dim: int) -> None:
        """Refuse (``ValueError``, naming a width that fits) an output width :meth:`make` cannot build; any goes here.
        The commands ask it of ``--hidden`` before any work."""

    def __call__(self, conv: nn.Module, x: Tensor, edge_index: Tensor) -> Tensor:
        """The conv's output on (normalised) node features ``x [N, in_dim]``."""
        return conv(x, edge_index)

    def propagation(self, edge_index: Tensor, num_nodes: int, dtype: torch.dtype) -> Tensor | None:
        """The sparse aggregation operator :math:`P` ``[N, N]`` (COO, coalesced; row = target, column = source), or
        ``None`` where there is none (MLP: the identity; GAT: attention)."""
        return None

    def weights(self, conv: nn.Module) -> tuple[Tensor, Tensor | None]:
        """``(W_a, W_r)``: the weight on the aggregation and the root weight (``None``: no root term)."""
        raise TypeError(f"a {self.name} conv is not linear after a fixed aggregation")

    def from_aggregation(self, conv: nn.Module, aggregated: Tensor, normalized: Tensor | None) -> Tensor:
        """The conv's output from :math:`P \\bar h` (``aggregated``; :math:`\\bar h` itself where :math:`P = I`) and,
        for a root term, :math:`\\bar h` (``normalized``)."""
        raise ValueError(f"a {self.name} block has no cached aggregation (its conv is not linear after a fixed "
                         "aggregation of its input); call block(x, edge_index) instead")

    def reads_root(self, conv: nn.Module) -> bool:
        """Whether :meth:`from_aggregation` needs ``normalized`` as well."""
        return self.linear and self.weights(conv)[1] is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _coo(target: Tensor, source: Tensor, weight: Tensor, num_nodes: int) -> Tensor:
    return torch.sparse_coo_tensor(torch.stack([target, source]), weight, (num_nodes, num_nodes),
                                   check_invariants=False).coalesce()


class GCN(ConvKind):
    r"""PyG's ``GCNConv`` (Kipf & Welling, ICLR 2017, arXiv:1609.02907):

    .. math::
        h' = \hat A\,h\,W^\top + b, \qquad \hat A = \tilde D^{-1/2}(A + I)\tilde D^{-1/2},
        \quad \tilde D_{ii} = 1 + \textstyle\sum_j A_{ij},

    :math:`A_{ij} = 1` for an edge :math:`j \to i` (a self-loop the graph has already is kept once, not doubled;
    linear after a fixed aggregation: cached and Jacobian-layered)."""

    name = "gcn"
    mode_free = True
    linear = True

    def make(self, in_dim, out_dim):
        from torch_geometric.nn import GCNConv

        return GCNConv(in_dim, out_dim)

    def propagation(self, edge_index, num_nodes, dtype):
        """:math:`\\hat A` exactly as :class:`~torch_geometric.nn.GCNConv` normalises it (self-loops, symmetric degree
        normalisation, messages source -> target)."""
        from torch_geometric.nn.conv.gcn_conv import gcn_norm

        ei, w = gcn_norm(edge_index, None, num_nodes, improved=False, add_self_loops=True, dtype=dtype)
        return _coo(ei[1], ei[0], w, num_nodes)

    def weights(self, conv):
        return conv.lin.weight, None

    def from_aggregation(self, conv, aggregated, normalized):
        out = conv.lin(aggregated)
        return out + conv.bias if conv.bias is not None else out


class SAGE(ConvKind):
    r"""PyG's ``SAGEConv`` with mean aggregation (Hamilton, Ying & Leskovec, NeurIPS 2017, arXiv:1706.02216):

    .. math::
        h'_i = W_a \operatorname{mean}_{j \in N(i)} h_j + W_r h_i + b,

    :math:`N(i)` the in-neighbours of :math:`i` (sources of edges :math:`j \to i`; none: 0), :math:`W_a` =
    ``lin_l`` (with the bias) and :math:`W_r` = ``lin_r`` (linear after a fixed aggregation: cached and
    Jacobian-layered)."""

    name = "sage"
    mode_free = True
    linear = True

    def make(self, in_dim, out_dim):
        from torch_geometric.nn import SAGEConv

        return SAGEConv(in_dim, out_dim, aggr="mean")

    def propagation(self, edge_index, num_nodes, dtype):
        """The mean over in-neighbours, :math:`(D^{-1} A)_{ij} = 1/\\deg(i)` for an edge ``j -> i``."""
        deg = torch.zeros(num_nodes, dtype=dtype, device=edge_index.device)
        deg.scatter_add_(0, edge_index[1], torch.ones(edge_index.shape[1], dtype=dtype, device=edge_index.device))
        return _coo(edge_index[1], edge_index[0], 1.0 / deg.clamp(min=1)[edge_index[1]], num_nodes)

    def weights(self, conv):
        return conv.lin_l.weight, conv.lin_r.weight if conv.root_weight else None

    def from_aggregation(self, conv, aggregated, normalized):
        out = conv.lin_l(aggregated)
        if conv.root_weight:
            if normalized is None:
                raise ValueError("a SAGE block needs the normalised input for its root term; pass normalized=")
            out = out + conv.lin_r(normalized)
        return out


class GAT(ConvKind):
    r"""PyG's ``GATConv`` (Veličković et al., ICLR 2018, arXiv:1710.10903), :math:`H = 4` heads concatenated (width a
    multiple of 4, ``out // 4`` channels per head):

    .. math::
        h'_i = \Big\Vert_{k=1}^{H} \sum_{j \in N(i) \cup \{i\}} \alpha^k_{ij}\, W^k h_j + b, \qquad
        \alpha^k_{ij} = \operatorname{softmax}_j\big(\operatorname{LeakyReLU}_{0.2}(
        a_\text{dst}^{k\top} W^k h_i + a_\text{src}^{k\top} W^k h_j)\big).

    Its attention depends on the input, so it is neither cached nor Jacobian-layered."""

    name = "gat"
    mode_free = True

    def check_width(self, out_dim):
        if out_dim % GAT_HEADS:
            raise ValueError(f"gat concatenates {GAT_HEADS} heads, so its width must be a multiple of {GAT_HEADS}; "
                             f"got {out_dim} (choose e.g. hidden={GAT_HEADS * max(1, out_dim // GAT_HEADS)})")

    def make(self, in_dim, out_dim):
        from torch_geometric.nn import GATConv

        self.check_width(out_dim)
        return GATConv(in_dim, out_dim // GAT_HEADS, heads=GAT_HEADS, concat=True)

    def from_aggregation(self, conv, aggregated, normalized):
        raise ValueError("a GAT block has no cached aggregation (its attention depends on the weights); call "
                         "block(x, edge_index) instead")


class MLP(ConvKind):
    r"""A linear layer per node, :math:`h' = h W^\top + b`: the graph-blind control (it reads no edges)."""

    name = "mlp"
    mode_free = True
    aggregates = False
    linear = True

    def make(self, in_dim, out_dim):
        return nn.Linear(in_dim, out_dim)

    def __call__(self, conv, x, edge_index):
        return conv(x)

    def weights(self, conv):
        return conv.weight, None

    def from_aggregation(self, conv, aggregated, normalized):
        return conv(aggregated)


#: the built-in kinds, one instance each: the entries of :data:`~fwdlearn.graphs.registries.CONV_KINDS`
GCN_KIND, SAGE_KIND, GAT_KIND, MLP_KIND = GCN(), SAGE(), GAT(), MLP()
