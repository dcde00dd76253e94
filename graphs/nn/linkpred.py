r"""Forward link prediction (ForwardGNN-CE, ForwardGNN-FF: Park et al., ICLR 2024, arXiv:2403.11004) and its BP
baseline.

Edge score of a pair :math:`(u, v)` at layer :math:`l` is the dot product
:math:`s^{(l)}_{uv} = \langle h^{(l)}_u, h^{(l)}_v \rangle`. Each layer is trained on its own,
on the frozen output of the layer below, against negative edges sampled afresh every epoch by default
(one per positive edge: distinct ordered pairs of distinct nodes that are not training edges, drawn uniformly from
torch's generator by :class:`~fwdlearn.graphs.nn.negatives.NegativeSampler`, PyG's ``negative_sampling`` in torch;
``fit(train_negatives="fixed")``: the reference's one fixed set, below):

- ``"ce"`` (rule ``local:ce``, ForwardGNN-CE): :math:`\mathcal{L}_l = \operatorname{BCE}(\sigma(s^{(l)}_{uv}), 1)` on
  training edges and :math:`\operatorname{BCE}(\sigma(s^{(l)}_{uv}), 0)` on negatives;
- ``"ff"`` (rule ``local:ff``, ForwardGNN-FF): the FF loss on the goodness of the element-wise product,
  :math:`G_{uv} = \lVert h_u \odot h_v \rVert^2`, threshold :math:`\theta`, as the reference weighs it: the
  positives' mean loss plus the negatives' mean loss (:func:`~fwdlearn.local.ff_loss` with ``per_set=True``);
- ``"bp"``: the same blocks trained end to end with the BCE of the last layer's scores.

Each method is a :class:`LinkMethod`, a pair score (:class:`DotProductScore`, :class:`GoodnessScore`) trained layer
by layer or end to end, looked up by name in :data:`~fwdlearn.graphs.registries.LINK_METHODS` (whose built-in
entries are ``CE``, ``FF`` and ``BP`` below; a method's rule is its name's,
:func:`~fwdlearn.graphs.registries.link_rule`): a new one is one :class:`PairScore` subclass and one
``LINK_METHODS.register(name, LinkMethod(...))``.

Inference averages the per-layer edge probabilities (:math:`\sigma(s)` or
:math:`\sigma(G - \theta)`); the metric is ROC-AUC. Edges are split 64/16/20 (train / val / test)
by :class:`torch_geometric.transforms.RandomLinkSplit` with 1:1 negatives for val/test; message
passing uses the training edges (and, at test time, training + validation edges, as PyG's split
provides). GCN/SAGE layers reuse the cached aggregation of their frozen input
(:mod:`~fwdlearn.graphs.nn.aggregation_cache`).

The training negatives, :meth:`ForwardLinkPredictor.fit`'s ``train_negatives``:

- ``"fresh"`` (the default; PyG's ``examples/link_pred.py`` convention, ``RandomLinkSplit(add_negative_train_samples=
  False)`` and ``negative_sampling(train_data.edge_index, ...)`` every epoch): drawn afresh every epoch, excluding the
  training edges only, so a few may be held-out positives (0.05 % of the pairs drawn on Cora, 5 % on the 78-edge
  karate graph) and about as many the validation and test negatives (0.05 % on Cora); the draw depends on the
  training edges alone, so training never reads a held-out edge or label.
- ``"fixed"`` (the reference's protocol: forwardgnn's ``datasplit.py`` splits with ``RandomLinkSplit``'s default
  ``add_negative_train_samples=True``, whose one ``negative_sampling`` call over every edge of the graph draws the
  training negatives with the validation and test ones, and every epoch reuses them): one set, one per training edge,
  drawn once from ``seed`` among the pairs that are no edge of the graph (validation and test positives included) and
  no validation or test negative pair (fewer, with a warning, on a graph too dense to have that many:
  :func:`split_negatives`).

Measured on Cora (4-layer GCN, 100 epochs): test AUC 0.926 against 0.921-0.924 with the reference's fixed negatives
(``ce``), 0.881 against 0.872 (``bp``), with PyG's sampler; with :class:`~fwdlearn.graphs.nn.negatives.NegativeSampler`
(the same pairs, drawn from torch's generator) 0.925 and 0.886 (``fwdlearn bench graph``,
docs/benchmarks/graph-link.md).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.diagnostics.cost import CostReport, WithCost
from fwdlearn.errors import (UsageError, check_bool, check_finite_tensor, check_int, check_model_values, check_range,
                             check_representable, warn)
from fwdlearn.fit import (Checkpointing, FitResult, Stateful, Trainer, check_resume, check_trainable_dtype,
                          check_unshared_checkpoint, evaluating, keeps_mode, on_device, read_checkpoint,
                          rng_state, seed_everything, set_rng_state, tensor_fingerprint)
from fwdlearn.local import ff_loss, ff_probability, goodness
from fwdlearn.metrics import roc_auc
from fwdlearn.model_files import ModelFile
from fwdlearn.schedules import LayerJob, end_to_end_step, greedy_layerwise

from fwdlearn.graphs.data.datasets import (check_edge_index, check_features, check_num_nodes, check_one_graph,
                                          warn_unweighted)
from fwdlearn.graphs.methods.base import check_feature_dtype, check_fit_arguments, resumed_from
from fwdlearn.graphs.nn.aggregation_cache import KeptOutputs, aggregation_dtype, prepare_input, propagation_matrix
from fwdlearn.graphs.nn.backbones import check_conv, fixed_inputs, make_blocks
from fwdlearn.graphs.nn.negatives import NegativeSampler
from fwdlearn.graphs.registries import LINK_METHODS, link_method, link_rule

__all__ = ["ForwardLinkPredictor", "LinkReport", "link_split", "split_negatives", "PairScore", "DotProductScore",
           "GoodnessScore", "LinkMethod", "LINK_METHODS", "CE", "FF", "BP"]


class PairScore:
    r"""How the element-wise product :math:`p_{uv} = h_u \odot h_v` of a pair's representations becomes an edge
    probability, and the loss that separates training edges from negatives."""

    def probability(self, prod: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, pos: Tensor, neg: Tensor) -> Tensor:
        raise NotImplementedError


class DotProductScore(PairScore):
    r""":math:`\sigma(\langle h_u, h_v \rangle)`, trained by the binary cross-entropy (ForwardGNN-CE, and BP)."""

    def probability(self, prod: Tensor) -> Tensor:
        return torch.sigmoid(prod.sum(-1))

    def loss(self, pos: Tensor, neg: Tensor) -> Tensor:
        logits = torch.cat([pos.sum(-1), neg.sum(-1)])
        target = torch.cat([torch.ones(pos.shape[0]), torch.zeros(neg.shape[0])]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, target)


class GoodnessScore(PairScore):
    r""":math:`\sigma(G_{uv} - \theta)` with :math:`G_{uv} = \lVert h_u \odot h_v \rVert^2`, trained by the FF loss
    (ForwardGNN-FF; :func:`fwdlearn.local.ff_loss`, the positives' mean plus the negatives' mean, as the reference: a
    mean over both sets halves the loss against Adam's weight decay, 0.025 lower test AUC on Cora)."""

    def __init__(self, theta: float) -> None:
        self.theta = theta

    def probability(self, prod: Tensor) -> Tensor:
        return ff_probability(goodness(prod), self.theta)

    def loss(self, pos: Tensor, neg: Tensor) -> Tensor:
        return ff_loss(goodness(pos), goodness(neg), self.theta, per_set=True)  # the reference's weighting


@dataclass(frozen=True)
class LinkMethod:
    """A link method: its pair score and whether each layer is trained on its own."""

    score: Callable[[float], PairScore]  # theta -> the pair score
    layerwise: bool  # each layer trained on its own (and scored; inference averages the layers); else end to end


def _dot_product(theta: float) -> PairScore:
    return DotProductScore()


#: the built-in link methods: the entries ``ce``, ``ff`` and ``bp`` of :data:`~fwdlearn.graphs.registries.LINK_METHODS`
CE = LinkMethod(_dot_product, layerwise=True)
FF = LinkMethod(GoodnessScore, layerwise=True)
BP = LinkMethod(_dot_product, layerwise=False)


def link_split(data, seed: int = 0, val: float = 0.16, test: float = 0.20):
    """``(train, val, test)`` Data objects from :class:`~torch_geometric.transforms.RandomLinkSplit` (undirected).

    The edge ids are read as int64, and the edges are made undirected, without duplicates or self-loops, first: a
    duplicated edge could put a copy of a test edge into training, and the undirected split reads only one direction of
    each edge (a directed input would lose the others). The split is drawn from ``seed`` alone (the same split for the
    same graph and seed) and leaves the caller's generators as they were: its draws come from Python's ``random`` (PyG's
    negative sampling) and torch's generator of the edges' device (the edge permutation), seeded with ``seed`` for the
    split and given back their states after it (it reseeded them, and left them seeded, before)."""
    return _split_links(data, seed, val, test, restore=True)


def _split_links(data, seed: int, val: float, test: float, restore: bool):
    """:func:`link_split`; ``restore=False`` (:meth:`ForwardLinkPredictor.fit`, which reseeds the global
    generators itself) leaves them where the split's draws took them, as the fits behind the published numbers drew
    their training negatives."""
    from torch_geometric.data import Data
    from torch_geometric.transforms import RandomLinkSplit
    from torch_geometric.utils import coalesce, contains_self_loops, is_undirected, remove_self_loops, to_undirected

    # (as int64: PyG's coalesce keys an edge u * n + v in the ids' own dtype, so int32 ids on a graph of more than
    # 46,340 nodes overflowed and the split was drawn from other edges than the graph's, with no error; uint8 ids
    # overflowed at 16 nodes)
    for name, value in (("val", val), ("test", test)):
        check_range(name, value, gt=0, max=1)
    if not val + test < 1:  # (val=0.5, test=0.6 was blamed on the graph: "link prediction needs a larger graph")
        raise UsageError(f"val={val} and test={test} leave no edges to train on: the training split is the rest, "
                         f"1 - val - test; give fractions that sum to less than 1 (the default: val=0.16, test=0.20)")
    edge_index, n = data.edge_index.long(), data.num_nodes
    clean = is_undirected(edge_index, num_nodes=n) and not contains_self_loops(edge_index) \
        and coalesce(edge_index, num_nodes=n).shape == edge_index.shape
    if not clean:  # (a clean graph keeps its edge order, which the split's draw depends on)
        edge_index = to_undirected(remove_self_loops(edge_index)[0], num_nodes=n)
    edges = edge_index.shape[1] // 2
    counts = {"validation": int(val * edges), "test": int(test * edges)}
    counts["training"] = edges - counts["validation"] - counts["test"]
    for name, count in counts.items():
        if count < 1:
            raise ValueError(f"the graph's {edges} undirected edges (self-loops and duplicates dropped) leave the "
                             f"{name} split without edges (fractions val={val}, test={test}); link prediction needs a "
                             "larger graph")
    transform = RandomLinkSplit(num_val=val, num_test=test, is_undirected=True, add_negative_train_samples=False,
                                split_labels=True)
    # (PyG warns of too few negatives; the check below says what it means here)
    with warnings.catch_warnings(), _seeded_for_the_split(seed, restore=restore):
        warnings.simplefilter("ignore", UserWarning)
        splits = transform(Data(x=data.x, edge_index=edge_index, num_nodes=data.num_nodes))
    _distinct_negatives(splits[1:], edge_index, n, seed)
    for name, part in zip(("validation", "test"), splits[1:]):
        pos, neg = part.pos_edge_label_index.shape[1], part.neg_edge_label_index.shape[1]
        if neg == 0:
            raise ValueError(f"the graph is too dense to draw negative pairs for its {name} split ({edges} edges among "
                             f"{n} nodes): an AUC needs node pairs that are not edges")
        if neg < pos:
            warn(f"the graph is dense: its {name} split has {pos} edges but only {neg} negative pairs (not "
                 "1:1), so its AUC rests on few negatives")
    return splits


@contextmanager
def _seeded_for_the_split(seed: int, restore: bool = True):
    """Within: the global generators :func:`link_split`'s draws come from (Python's, for PyG's ``negative_sampling``;
    torch's, for ``RandomLinkSplit``'s permutation of the edges) seeded with ``seed``
    (:func:`~fwdlearn.fit.seed_everything`); after: back in the caller's states (:func:`~fwdlearn.fit.rng_state`: a
    library call that reseeded the user's global generators changed every draw after it), or, ``restore=False``,
    where the draws left them."""
    saved = rng_state() if restore else None
    seed_everything(seed)
    try:
        yield
    finally:
        if saved is not None:
            set_rng_state(saved)


def _distinct_negatives(parts, edge_index: Tensor, n: int, seed: int) -> None:
    """Make the negative pairs of the validation and test ``parts`` distinct as unordered pairs, within and across
    the two (in place). PyG draws them as ordered pairs, so ``(u, v)`` and ``(v, u)`` -- one candidate link to a
    symmetric score -- could both be drawn (one such pair in Cora's validation split at seed 0). A repeat is replaced
    by a pair drawn (seeded) from the non-edges not yet used; where none is left the split keeps fewer negatives."""
    edges = set((edge_index[0] * n + edge_index[1]).tolist())  # (both directions: the graph is undirected here)
    used: set[int] = set()
    generator = torch.Generator().manual_seed(seed)
    free = n * (n - 1) // 2 - len(edges) // 2  # unordered non-edges

    def fresh(u: int, v: int) -> bool:
        key = min(u, v) * n + max(u, v)
        if u == v or u * n + v in edges or key in used:
            return False
        used.add(key)
        return True

    for part in parts:
        neg = getattr(part, "neg_edge_label_index", torch.empty(2, 0, dtype=torch.long))
        kept = [(u, v) for u, v in neg.t().tolist() if fresh(u, v)]
        missing = min(neg.shape[1] - len(kept), free - len(used))
        while missing > 0:
            u, v = torch.randint(n, (2,), generator=generator, device="cpu").tolist()
            if fresh(u, v):
                kept.append((u, v))
                missing -= 1
        # (on the graph's device, as PyG keeps the positives: CPU negatives beside CUDA positives failed the first
        # validation on a GPU)
        part.neg_edge_label_index = torch.tensor(kept, dtype=torch.long, device=neg.device).reshape(-1, 2).t() \
            .contiguous()
        part.neg_edge_label = torch.zeros(len(kept), dtype=getattr(part, "neg_edge_label", torch.zeros(0)).dtype,
                                          device=neg.device)


def split_negatives(train, val, test, num_nodes: int, seed: int) -> Tensor:
    """The reference's training negatives for the splits of :func:`link_split`: ``[2, P]``, one per training edge
    (``train.pos_edge_label_index``), distinct ordered pairs of distinct nodes that are no edge of the graph (training,
    validation or test, in either direction) nor a validation or test negative pair (in either direction), drawn
    uniformly by :class:`~fwdlearn.graphs.nn.negatives.NegativeSampler` from a generator seeded with ``seed`` (the
    same pairs for the same splits and seed; torch's global generator is not drawn from).

    A graph so dense that fewer such pairs are left (a near-complete one) gives every one there is, fewer than one per
    training edge, and a warning says so; where none is left (every pair that is no edge is a validation or test
    negative) a ``ValueError`` names the fix, ``fit(train_negatives="fresh")``: ``ff`` failed with ``ff_loss`` needs
    positives and negatives, and ``ce`` and ``bp`` trained on positives alone, in silence."""
    held = torch.cat([test.pos_edge_label_index, val.neg_edge_label_index, test.neg_edge_label_index], 1)
    # (test.edge_index: the training and validation edges, both directions, the message passing of the test split)
    excluded = torch.cat([test.edge_index, held, held.flip(0)], 1)
    generator = torch.Generator(device=excluded.device).manual_seed(seed)
    wanted = train.pos_edge_label_index.shape[1]
    negatives = NegativeSampler(excluded, num_nodes)(wanted, generator)
    found = negatives.shape[1]
    if found == 0 < wanted:
        raise ValueError(f"the graph is too dense for fixed training negatives: every pair of its {num_nodes} nodes "
                         "that is no edge is a validation or test negative, so none is left to train on; use "
                         "train_negatives='fresh' (drawn every epoch among the pairs that are not training edges)")
    if found < wanted:
        warn(f"the graph is dense: only {found} ordered pairs are neither an edge nor a validation or test negative, "
             f"so its {wanted} training edges get {found} fixed negatives (not 1:1); train_negatives='fresh' draws "
             "one per training edge every epoch among the pairs that are not training edges")
    return negatives


def _before_train_negatives(checkpoint: str | Path, resume: bool) -> bool:
    """Whether ``checkpoint``, to be resumed, is a link fit's written before ``fit`` recorded ``train_negatives``:
    every such fit drew fresh negatives, so a fit with the default resumes it (instead of a refusal of a checkpoint that
    does not record the entry)."""
    path = Path(checkpoint).expanduser()
    if not resume or not path.is_file():
        return False
    saved = read_checkpoint(path, mmap=True).get("fingerprint") or {}
    return "seed" in saved and "train_negatives" not in saved


def _pairs_and_labels(split) -> tuple[Tensor, Tensor]:
    """The scored pairs ``[2, P]`` of a split and their labels (1: edge, 0: negative pair): ``pos_edge_label_index``
    and ``neg_edge_label_index`` (:func:`link_split`, ``RandomLinkSplit(split_labels=True)``), or ``edge_label_index``
    and ``edge_label`` (``RandomLinkSplit``'s default); a ``ValueError`` naming the fix otherwise."""
    pos, neg = getattr(split, "pos_edge_label_index", None), getattr(split, "neg_edge_label_index", None)
    if pos is not None and neg is not None:
        return torch.cat([pos, neg], 1), torch.cat([torch.ones(pos.shape[1], device=pos.device),
                                                    torch.zeros(neg.shape[1], device=pos.device)])
    pairs, labels = getattr(split, "edge_label_index", None), getattr(split, "edge_label", None)
    if pairs is not None and labels is not None:
        return pairs, labels
    if pos is not None:  # (link_split's training split: its negatives are drawn afresh every epoch)
        raise ValueError("the split has positive pairs (pos_edge_label_index) but no negative ones "
                         "(neg_edge_label_index), so it has no AUC: score link_split's validation or test split")
    raise ValueError("the split has no labelled pairs: give pos_edge_label_index and neg_edge_label_index (link_split, "
                     "RandomLinkSplit(split_labels=True)) or edge_label_index and edge_label (RandomLinkSplit)")


@dataclass
class LinkReport(WithCost):
    """What :meth:`ForwardLinkPredictor.fit` measured (``cost`` as in
    :class:`~fwdlearn.graphs.nn.forward_gnn.FitReport`)."""

    method: str
    conv: str
    layers: int
    test_auc: float
    val_auc: float
    fit_seconds: float
    cost: CostReport
    epochs_run: int
    resumed: dict[str, Any] | None = None  # a resumed fit: the step it continued from and the settings it changed


class ForwardLinkPredictor(ModelFile, nn.Module):
    """Dot-product link predictor on GNN blocks, trained layer by layer (``ce``, ``ff``) or by BP.

    ``model(x, edge_index, pairs)`` returns the edge probabilities ``[P]`` of ``pairs`` (``[2, P]``).

    Args:
        in_dim: node features; hidden: width of every layer; layers: GNN layers (integers >= 1).
        conv: a name in :data:`~fwdlearn.graphs.registries.CONV_KINDS` (``"gcn"``, ``"sage"``, ``"gat"``, ``"mlp"``).
        method: a name in :data:`~fwdlearn.graphs.registries.LINK_METHODS` or its rule: ``"ce"`` (``local:ce``),
            ``"ff"`` (``local:ff``) or ``"bp"`` (rules as in :mod:`fwdlearn.rules`).
        theta: the goodness threshold of ``ff``'s edge probability (unused by the others).
        cache: reuse the aggregation of frozen inputs (GCN/SAGE, layer-by-layer methods; a speed option).
    """

    def __init__(self, in_dim: int, conv: str = "gcn", hidden: int = 128, layers: int = 4, method: str = "ce",
                 theta: float = 2.0, cache: bool = True) -> None:
        super().__init__()
        self.method = link_method(method)
        self.rule = link_rule(self.method)
        layers = check_int("layers", layers, 1, " (the number of GNN layers)")
        hidden = check_int("hidden", hidden, 1)
        in_dim = check_int("in_dim", in_dim, 1, " (the node feature width)")
        check_range("theta", theta)  # (as ForwardGNN's FF methods: NaN, inf or 1e39 gave 'training diverged' after a
        check_representable("theta", theta, small=False)  # step, '2' a TypeError inside fit)
        self.conv, self.layers, self.theta, self.cache = check_conv(conv), layers, theta, check_bool("cache", cache)
        self.in_dim, self.hidden = in_dim, hidden
        chosen = LINK_METHODS.get(self.method)
        self.score, self.layerwise = chosen.score(theta), chosen.layerwise
        self.blocks = make_blocks(self.conv, [in_dim] + [hidden] * self.layers, last_activation=self.layerwise)

    FILE_KIND = "forward-link-predictor"  # (ModelFile: save / load)
    FILE_HINT = "ForwardLinkPredictor.save writes one"

    def extra_repr(self) -> str:  # (as ForwardGNN's: the module tree alone did not say how it trains)
        return f"rule={self.rule}, conv={self.conv}, layers={self.layers}, hidden={self.hidden}"

    def config_dict(self) -> dict[str, Any]:
        """What builds this model again, ``ForwardLinkPredictor(**config_dict())``."""
        return {"in_dim": self.in_dim, "conv": self.conv, "hidden": self.hidden, "layers": self.layers,
                "method": self.method, "theta": self.theta, "cache": self.cache}

    # (node ids index as int64: uint8 pairs passed the checks and indexed h as a boolean mask, a wrong answer with
    # only torch's deprecation warning; int16 / int8 ones failed with torch's raw 'tensors used as indices must be
    # long')
    def _probability(self, h: Tensor, pairs: Tensor) -> Tensor:
        pairs = pairs.long()
        return self.score.probability(h[pairs[0]] * h[pairs[1]])

    def _loss(self, h: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        pos, neg = pos.long(), neg.long()
        return self.score.loss(h[pos[0]] * h[pos[1]], h[neg[0]] * h[neg[1]])

    def _check_inputs(self, x: Tensor, edge_index: Tensor, name: str = "x", edges: str = "edge_index") -> None:
        """Features ``[N, in_dim]`` of the parameters' dtype and edge ids in ``[0, N - 1]``; errors name the fix."""
        if isinstance(x, Tensor) and x.dim() == 2 and x.shape[1] != self.in_dim:
            raise ValueError(f"{name} has {x.shape[1]} node features but the model has in_dim={self.in_dim}")
        check_features(x, next(self.parameters()).dtype, name)
        check_edge_index(edge_index, x.shape[0], edges, name)

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor) -> Tensor:
        """Link probabilities ``[P]`` of the node pairs ``pairs`` (``[2, P]``, like an ``edge_index``)."""
        self._check_inputs(x, edge_index)
        check_edge_index(pairs, x.shape[0], "pairs", "x")
        h, total = x, None
        for block in self.blocks:
            h = block(h, edge_index)
            if self.layerwise:
                p = self._probability(h, pairs)
                total = p if total is None else total + p
        return total / self.layers if self.layerwise else self._probability(h, pairs)

    def auc(self, x: Tensor, edge_index: Tensor, split) -> float:
        """ROC-AUC on a split's ``pos_edge_label_index`` vs ``neg_edge_label_index`` (:func:`link_split`), or on its
        ``edge_label_index`` labelled by ``edge_label`` (1: edge, 0: not; ``RandomLinkSplit``'s default), with message
        passing over ``edge_index``. The graph and the split may be on any device: they are read on the model's (as
        :meth:`ForwardGNN.evaluate <fwdlearn.graphs.ForwardGNN.evaluate>` reads its graph; a GPU model failed on a
        CPU graph in its first layer)."""
        pairs, labels = _pairs_and_labels(split)
        check_model_values(self, "scoring reads its values", "this ForwardLinkPredictor")
        device = next(self.parameters()).device
        x, edge_index, pairs = (on_device(t, device) for t in (x, edge_index, pairs))
        with evaluating(self), torch.no_grad():
            return roc_auc(self(x, edge_index, pairs), labels)

    @keeps_mode
    def fit(self, data, epochs: int = 300, lr: float = 1e-3, weight_decay: float = 5e-4, patience: int | None = 100,
            eval_every: int = 1, quiet: bool = False, seed: int = 0, checkpoint: str | Path | None = None,
            resume: bool = False, overwrite: bool = False, train_negatives: str = "fresh") -> LinkReport:
        """Split ``data``'s edges 64/16/20 (``seed``), train, early-stop on validation AUC, report test AUC.

        ``epochs`` is the budget per layer for the layer-by-layer methods (``ce``, ``ff``: a 4-layer fit runs up to
        ``4 * epochs``, each layer early-stopped on its own), in total for ``bp``; the report's ``epochs_run`` sums the
        layers'. ``patience``: validations without a better AUC before stopping (``None``: never); ``eval_every``:
        epochs between validations; ``lr``, ``weight_decay``: Adam's, of every layer.

        The graph is read as undirected (:func:`link_split`: a directed edge counts for both directions, self-loops
        and duplicates are dropped); a link is predicted for a pair of nodes, not an ordered one. The edges are
        unweighted: ``data.edge_weight`` and ``data.edge_attr`` are not read (a warning says so).

        ``seed`` draws the split and the negatives: it reseeds Python's, NumPy's and torch's global generators
        (:func:`~fwdlearn.fit.seed_everything`, as ``fit_lm``'s ``seed`` does; the split draws from Python's and
        torch's, the training negatives from torch's, by :class:`~fwdlearn.graphs.nn.negatives.NegativeSampler`), so
        what draws from them after the fit goes on from ``seed``; the weights were drawn when the model was built,
        from torch's global generator (:func:`~fwdlearn.fit.seed_everything` before ``ForwardLinkPredictor(...)``
        repeats a run).

        ``train_negatives``: ``"fresh"`` (default), one negative pair per training edge drawn every epoch among the
        pairs that are not training edges (PyG's convention: 0.05 % of the pairs drawn on Cora are held-out positives);
        ``"fixed"``, the reference's protocol: one set drawn once from ``seed`` among the pairs that are no edge of the
        graph (validation and test positives included) nor a validation or test negative, reused every epoch (see the
        module doc).

        ``checkpoint`` / ``resume`` / ``overwrite``: keep and continue a checkpoint as
        :meth:`ForwardGNN.fit <fwdlearn.graphs.nn.forward_gnn.ForwardGNN.fit>` does (the same model, graph, ``seed``
        and ``train_negatives`` are required to resume)."""
        check_one_graph(data, "ForwardLinkPredictor.fit")
        self._check_inputs(getattr(data, "x", None), getattr(data, "edge_index", None), "data.x", "data.edge_index")
        check_num_nodes(data, data.x.shape[0])
        resume = check_resume(resume, checkpoint)
        check_unshared_checkpoint(checkpoint, "ForwardLinkPredictor.fit")
        warn_unweighted(data, "ForwardLinkPredictor")  # (the edge split keeps no edge attributes either)
        check_trainable_dtype(self, "this ForwardLinkPredictor")
        epochs = check_fit_arguments(epochs, lr, weight_decay, dtype=next(self.parameters()).dtype)
        check_finite_tensor("data.x", data.x)
        if train_negatives not in ("fresh", "fixed"):
            raise ValueError(f"unknown train_negatives {train_negatives!r}; use 'fresh' (drawn every epoch, excluding "
                             "the training edges) or 'fixed' (drawn once, excluding every edge: the reference's)")
        seed_everything(seed)
        train, val, test = _split_links(data, seed, 0.16, 0.20, restore=False)
        device = data.x.device
        self.to(device)
        x, n = data.x, data.num_nodes
        pos = train.pos_edge_label_index
        if train_negatives == "fixed":
            fixed = split_negatives(train, val, test, n, seed)

            def negatives() -> Tensor:
                return fixed
        else:
            sampler = NegativeSampler(train.edge_index, n)  # (the training edges keyed once, for every epoch's draw)

            def negatives() -> Tensor:
                return sampler(pos.shape[1])

        plan = None
        if checkpoint is not None:
            fingerprint = {"model": {"method": self.rule, "conv": self.conv, "layers": self.layers,
                                     "hidden": self.hidden, "in_dim": self.in_dim, "theta": self.theta},
                           "graph": tensor_fingerprint(data.x, data.edge_index), "seed": seed,
                           "train_negatives": train_negatives}
            if train_negatives == "fresh" and _before_train_negatives(checkpoint, resume):
                del fingerprint["train_negatives"]  # (it drew fresh negatives: it resumes as it did)
            plan = Checkpointing(checkpoint, resume, overwrite, fingerprint)
            check_feature_dtype(plan, data.x, lambda x: tensor_fingerprint(x, data.edge_index))

        if not self.layerwise:
            optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

            def step(_: int) -> dict:
                self.train()
                h = x
                for block in self.blocks:
                    h = block(h, train.edge_index)
                return end_to_end_step(self._loss(h, pos, negatives()), optimizer)

            saving = plan.trainer_options() if plan is not None else {}
            with fixed_inputs(self):  # (the blocks normalise the features once, not at every step and evaluation)
                results = [Trainer(epochs, monitor="val_auc", patience=patience, eval_every=eval_every, quiet=quiet,
                                   desc=f"link bp {self.conv}-{self.layers}", measure_first_step=True, device=device,
                                   unit="epoch",
                                   settings={"lr": lr, "weight_decay": weight_decay, "steps": epochs},
                                   raise_limit=None,
                                   **saving).run(
                    step, lambda: {"val_auc": self.auc(x, train.edge_index, val)},
                    state=Stateful({"model": self, "optimizer": optimizer}, best=("model",)))]
        else:
            results = self._fit_layerwise(x, n, train, val, pos, negatives, epochs, lr, weight_decay, patience,
                                          eval_every, quiet, plan)
        seconds = sum(r.seconds for r in results)  # the training loops, the parts before a resume included
        self.eval()
        return LinkReport(self.method, self.conv, self.layers, self.auc(x, test.edge_index, test),
                          self.auc(x, train.edge_index, val), seconds,
                          CostReport.from_costs([r.first_step_cost for r in results]),
                          sum(r.steps_run for r in results), resumed_from(results))

    def _fit_layerwise(self, x, n, train, val, pos, negatives, epochs, lr, weight_decay, patience, eval_every,
                       quiet, checkpointing: Checkpointing | None = None) -> list[FitResult]:
        """Each layer trains on, and is scored with, the training edges; validation AUC of the layers so far."""
        val_pairs, val_labels = _pairs_and_labels(val)
        state = {"h": x, "matrix": None, "val_total": torch.zeros(val_pairs.shape[1], device=x.device)}

        def job(l: int, block) -> LayerJob:
            if self.cache and block.cacheable and state["matrix"] is None:
                state["matrix"] = propagation_matrix(block.kind, train.edge_index, n, aggregation_dtype(x.dtype))
            prepared = prepare_input(block, state["h"], train.edge_index, self.cache, state["matrix"])
            # the evaluation after a step computes, with a graph, the very output the next step's loss needs (same
            # input, same weights), so the loss takes it over instead of computing it again (about a sixth of a
            # ``ce`` fit at 2 layers on Cora); any change of the weights (a step, a restored state) drops it
            kept = KeptOutputs(block, {"h": prepared})

            def evaluate() -> dict:
                h = kept.evaluated("h", keep=True)  # (kept, with its graph, for the next step's loss)
                with torch.no_grad():
                    p = self._probability(h, val_pairs)
                return {"val_auc": roc_auc((state["val_total"] + p) / (l + 1), val_labels)}

            def finish(result: FitResult) -> None:
                kept.clear()
                state["h"] = kept.evaluated("h")
                with torch.no_grad():
                    state["val_total"] = state["val_total"] + self._probability(state["h"], val_pairs)

            return LayerJob(lambda: self._loss(kept.get("h", take=True), pos, negatives()), evaluate, finish)

        return greedy_layerwise(self.blocks, job, epochs, lr=lr, weight_decay=weight_decay, monitor="val_auc",
                                patience=patience, eval_every=eval_every, quiet=quiet, desc=f"link {self.method} layer",
                                device=x.device, checkpointing=checkpointing, unit="epoch")
