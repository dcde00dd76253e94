r"""DFA for GNNs (rule ``dfa[:uniform|:gaussian|:orthogonal]``): the classifier's error sent straight to
every GNN layer through a fixed random matrix, spread over the graph.

The backbone is BP's (:class:`~fwdlearn.graphs.methods.bp.Backprop`): :math:`L` GNN blocks and a linear
classifier,

.. math::
    h_0 = X, \qquad h_l = \operatorname{block}_l(h_{l-1}, A), \qquad Y = h_L W_c^\top + b_c,
    \qquad \mathcal{L} = \operatorname{CE}(Y_T, y_T),

trained end to end (:func:`fwdlearn.schedules.end_to_end_step`). Only the backward pass differs. The
output error :math:`E = \partial\mathcal{L}/\partial Y \in \mathbb{R}^{N \times K}` is taken per node at
the classifier's logits; its rows are zero outside the labelled training nodes :math:`T`. Each block's
output is a feedback point (:class:`fwdlearn.feedback.DirectFeedback`): the gradient arriving there from
above is discarded and replaced by

.. math::
    \delta_l = \big(\hat A^\top\big)^{L-l} E\, B_l, \qquad B_l \in \mathbb{R}^{K \times d} \text{ fixed},

which autograd turns into block :math:`l`'s parameter gradients (so :math:`\odot\,\operatorname{ReLU}'`
falls out of the chain rule). The classifier gets its true gradient. :math:`\hat A` is the GCN-normalised
adjacency with self-loops and :math:`L-l` the number of aggregations between :math:`h_l` and the logits:
in a linear GCN the true signal is :math:`\partial\mathcal{L}/\partial h_l = (\hat A^\top)^{L-l} E\,
W_c W_L \cdots W_{l+1}`, so this is its node structure with the weight product replaced by a random
:math:`B_l` (with :math:`B_l` set to that product, DFA's gradients are BP's; tested). The spread
carries the error of the labelled nodes to their :math:`L-l`-hop neighbourhood, in the spirit of DFA-GNN
(Zhao et al., NeurIPS 2024), whose feedback links include the graph's topology; ``spread_error=False``
projects each node's own error
only (:math:`\delta_l = E B_l`, zero outside :math:`T`). DFA-GNN's pseudo errors for unlabelled nodes
are not used: only labelled nodes carry an error. The spread uses the GCN-normalised adjacency for every
conv: for GCN it is the node structure of the true backward map; for SAGE and GAT, whose backward maps mix
nodes by other weights, it stands for the graph's topology. MLP blocks mix no nodes, so their error is never
spread (their true backward map has no node structure either).

Scores (``model(x, edge_index)``, evaluation) are the plain forward, differentiable in ``x``.

A block is trained only once the layers above it have come to align with its fixed :math:`B_l`; until then the
training loss can sit at the loss of predicting the class frequencies (their entropy, :func:`prior_loss`), and early
stopping may end the fit there, at about the largest class's share of accuracy. A fit of at least
``PRIOR_CHECK_EPOCHS`` epochs (or one ended by early stopping) whose training loss never fell ``PRIOR_MARGIN`` below
that loss warns, naming the fix (more epochs and patience, lr 1e-2, fewer layers). Measured on Cora (random split,
hidden 128, lr 1e-2): a registered GIN conv (``GINConv`` of a 2-layer MLP) trains at 1, 2 and 4 layers (test
accuracy 0.85 to 0.86) but at 8 layers, with patience 50, its loss stays at the prior's (1.82) for more than 50
epochs (test 0.28 to 0.30 on four splits; BP: 0.82); without early stopping it reaches 0.60 in 300 epochs. GCN
(0.80), PyG's ``GraphConv`` with sum aggregation (0.82) and a GIN of one linear layer (0.76) train at 8 layers: the
sum aggregation is not the cause.

Args:
    feedback: the kind of the :math:`B_l` (``"uniform"``, ``"gaussian"``, ``"orthogonal"``), taken from the
        rule (``"dfa:gaussian"``); see :func:`fwdlearn.feedback.feedback_matrix`. Uniform and Gaussian
        :math:`B_l` are slices of one shared draw, as in the DFA reference (:class:`~fwdlearn.feedback.DirectFeedback`,
        ``shared``): blocks of one width get the same matrix. Orthogonal ones are drawn per block.
    spread_error: spread the error over the graph (default) or keep it on the labelled nodes.

Example::

    model = ForwardGNN(data.num_features, data.num_classes, layers=2, method="dfa")
    model.fit(data, epochs=100, lr=1e-2)   # DFA learns slowly at BP's 1e-3
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from fwdlearn.errors import check_bool, warn
from fwdlearn.feedback import FEEDBACK_SEED_OFFSET, DirectFeedback
from fwdlearn.rules import DFA, parse_rule

from fwdlearn.graphs.methods.bp import Backprop
from fwdlearn.graphs.nn.aggregation_cache import propagation_matrix
from fwdlearn.graphs.nn.convs import CONV_KINDS

__all__ = ["DirectFeedbackGNN", "prior_loss"]

#: fits shorter than this are not checked for a loss stuck at the class prior unless early stopping ended them (a smoke
#: test's loss has not fallen yet; on Cora at lr 1e-2 a DFA fit that learns is 5% below the prior's loss by epoch 6)
PRIOR_CHECK_EPOCHS = 20
#: the fraction by which the training loss must fall below the prior's loss for the fit to count as learning
PRIOR_MARGIN = 0.05


def prior_loss(y: Tensor) -> float:
    """The cross-entropy of predicting the class frequencies of the labels ``y`` for each of them: their entropy
    (the training loss of a model that learned nothing from the features or the graph)."""
    counts = torch.bincount(y.detach().cpu().long()).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


class DirectFeedbackGNN(Backprop):
    r"""DFA on BP's backbone (Nøkland, NeurIPS 2016; on graphs in the spirit of DFA-GNN, Zhao et al., NeurIPS 2024):
    every block's output a feedback point, whose gradient is replaced by

    .. math::
        \delta_l = (\hat A^\top)^{L-l}\, E\, B_l

    (:math:`\delta_l = E\,B_l` with ``spread_error=False`` or MLP blocks), :math:`E = \partial\mathcal{L}/\partial Y`
    the classifier's error (zero outside the training nodes), :math:`B_l` fixed ``[K, hidden]`` and :math:`\hat A`
    the GCN-normalised adjacency, for blocks :math:`l = 1..L` (see the module doc)."""

    rule: ClassVar[str] = "dfa"
    options: ClassVar[tuple[str, ...]] = ("feedback", "spread_error")

    def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, feedback: str = "uniform",
                 spread_error: bool = True):
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed)
        self.rule = str(DFA(feedback=feedback))  # the instance's canonical spelling, e.g. "dfa:gaussian"
        self.spread_error = check_bool("spread_error", spread_error)
        # a seed of its own: DirectFeedback(seed=s) draws what torch.manual_seed(s) draws, so with ``seed`` itself
        # the last block's B would equal the classifier's initial weights after seed_everything(seed)
        self.feedback = DirectFeedback(num_classes, {self.point_name(l): hidden for l in range(layers)},
                                       kind=feedback, seed=(FEEDBACK_SEED_OFFSET + seed) % 2**64)
        #: (edge_index, (N, dtype, edge_index's version), Â^T) of the last graph
        self._adjacency: tuple[Tensor, tuple, Tensor] | None = None

    def __getstate__(self) -> dict:
        """Copies and pickles leave the cached adjacency out (a sparse CSR tensor neither deep-copies nor pickles;
        it is rebuilt from the next graph)."""
        return {**self.__dict__, "_adjacency": None}

    @classmethod
    def options_from_rule(cls, spec: str) -> dict:
        depth = parse_rule(spec).depth
        return {"feedback": depth.feedback} if isinstance(depth, DFA) else {}

    @staticmethod
    def point_name(layer: int) -> str:
        """The feedback point at block ``layer``'s output (0-based)."""
        return f"block{layer}"

    def _transposed_adjacency(self, edge_index: Tensor, num_nodes: int, dtype: torch.dtype) -> Tensor:
        cached = self._adjacency
        key = (num_nodes, dtype, edge_index._version)  # (the version changes when the edges are edited in place)
        if cached is None or cached[0] is not edge_index or cached[1] != key:
            with warnings.catch_warnings():  # CSR products are ~30x faster than COO ones here; torch calls CSR "beta"
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                # (half precision in float32: CPU CSR products have no half kernels)
                compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
                matrix = propagation_matrix("gcn", edge_index, num_nodes, compute).t().to_sparse_csr()
            self._adjacency = cached = (edge_index, key, matrix)
        return cached[2]

    def error_spreads(self, edge_index: Tensor, num_nodes: int, layers: int, dtype: torch.dtype = torch.float32
                      ) -> list[Callable[[Tensor], Tensor] | None]:
        r"""One spread per block: block :math:`l` (0-based) gets :math:`E \mapsto (\hat A^\top)^{L-1-l} E`
        (``None`` for the last block, or for every block with ``spread_error=False`` or MLP blocks).

        The powers are computed once per backward pass and shared: :math:`L-1` sparse products in all.
        """
        if not self.spread_error or not CONV_KINDS.get(self.conv).aggregates:
            return [None] * layers
        powers = _ErrorPowers(self._transposed_adjacency(edge_index, num_nodes, dtype))
        return [powers.spread(layers - 1 - l) if l < layers - 1 else None for l in range(layers)]

    def fit(self, blocks, data, epochs, lr, weight_decay, patience, eval_every, quiet, checkpointing=None):
        """BP's fit (:meth:`Backprop.fit`), then a warning when the training loss never fell below the class prior's
        (see the module doc): such a fit returned a model at about the largest class's share of accuracy, and said
        nothing."""
        fit = super().fit(blocks, data, epochs, lr, weight_decay, patience, eval_every, quiet, checkpointing)
        losses = [row["loss"] for row in fit.history if row.get("loss") is not None]
        prior = prior_loss(data.y[data.train_mask])
        early = 0 < len(losses) < epochs  # (early stopping ended it: not a smoke test however short)
        if (len(losses) >= PRIOR_CHECK_EPOCHS or early) and prior > 0 and min(losses) > (1 - PRIOR_MARGIN) * prior:
            stopped = f"; early stopping ended it after {len(losses)} of {epochs} epochs" if early else ""
            warn(f"{self.rule} {self.conv}-{self.layers}: in {len(losses)} epochs the training loss never fell "
                 f"{PRIOR_MARGIN:.0%} below {prior:.3f}, the loss of predicting the training labels' class frequencies "
                 f"(lowest {min(losses):.3f}{stopped}): the model has learned (almost) nothing beyond them. DFA trains "
                 "a block only once the layers above it align with its fixed feedback matrix, which can take longer "
                 "than the patience allows: give it more epochs and patience (patience=None), "
                 f"a learning rate near 1e-2 (this fit: {lr:g}) or fewer layers (a GIN conv of a 2-layer MLP stays "
                 "at the prior for over 50 epochs at 8 layers on Cora; see fwdlearn.graphs.methods.dfa)")
        return fit

    def training_scores(self, blocks: nn.ModuleList, x: Tensor, edge_index: Tensor) -> Tensor:
        h = x
        spreads = self.error_spreads(edge_index, x.shape[0], len(blocks), x.dtype)
        for l, (block, spread) in enumerate(zip(blocks, spreads)):
            h = self.feedback.point(block(h, edge_index), self.point_name(l), spread=spread)
        return self.feedback.output(self.classifier(h))


class _ErrorPowers:
    r""":math:`(\hat A^\top)^k E` for the error :math:`E` of one backward pass, each power computed once."""

    def __init__(self, adjacency: Tensor) -> None:
        self.adjacency = adjacency
        self.error: Tensor | None = None
        self.powers: list[Tensor] = []

    def spread(self, hops: int) -> Callable[[Tensor], Tensor]:
        return lambda error: self.power(error, hops)

    def power(self, error: Tensor, hops: int) -> Tensor:
        if error is not self.error:  # a new backward pass
            self.error, self.powers = error, [error.to(self.adjacency.dtype)]
        # (backward runs under the caller's autocast, which would take the sparse product to bfloat16: no CPU kernel)
        with torch.autocast(device_type=self.adjacency.device.type, enabled=False):
            while len(self.powers) <= hops:
                self.powers.append(torch.sparse.mm(self.adjacency, self.powers[-1]))
        return self.powers[hops].to(error.dtype)
