r"""Forward link prediction (ForwardGNN-CE, ForwardGNN-FF) and its BP baseline.

Edge score of a pair :math:`(u, v)` at layer :math:`l` is the dot product
:math:`s^{(l)}_{uv} = \langle h^{(l)}_u, h^{(l)}_v \rangle`. Each layer is trained on its own,
on the frozen output of the layer below, against negative edges sampled afresh every epoch
(one per positive edge):

- ``"ce"`` (ForwardGNN-CE): :math:`\mathcal{L}_l = \operatorname{BCE}(\sigma(s^{(l)}_{uv}), 1)` on
  training edges and :math:`\operatorname{BCE}(\sigma(s^{(l)}_{uv}), 0)` on negatives;
- ``"ff"`` (ForwardGNN-FF): the FF loss on the goodness of the element-wise product,
  :math:`G_{uv} = \lVert h_u \odot h_v \rVert^2`, threshold :math:`\theta`;
- ``"bp"``: the same blocks trained end to end with the BCE of the last layer's scores.

Inference averages the per-layer edge probabilities (:math:`\sigma(s)` or
:math:`\sigma(G - \theta)`); the metric is ROC-AUC. Edges are split 64/16/20 (train / val / test)
by :class:`torch_geometric.transforms.RandomLinkSplit` with 1:1 negatives for val/test; message
passing uses the training edges (and, at test time, training + validation edges, as PyG's split
provides). GCN/SAGE layers reuse the cached aggregation of their frozen input
(:mod:`~fwdlearn.graphs.aggregation_cache`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.fit import LocalOptimizers, Trainer, seed_everything
from fwdlearn.local import ff_loss, ff_probability, goodness

from .aggregation_cache import prepare_input, propagation_matrix, run_block
from .backbones import check_conv, make_blocks
from .node_bp import cost_summary, measured_step

__all__ = ["ForwardLinkPredictor", "LinkReport", "link_split", "roc_auc", "LINK_METHODS"]

LINK_METHODS = ("ce", "ff", "bp")


def link_split(data, seed: int = 0, val: float = 0.16, test: float = 0.20):
    """``(train, val, test)`` Data objects from :class:`~torch_geometric.transforms.RandomLinkSplit` (undirected)."""
    from torch_geometric.transforms import RandomLinkSplit

    torch.manual_seed(seed)
    transform = RandomLinkSplit(num_val=val, num_test=test, is_undirected=True, add_negative_train_samples=False,
                                split_labels=True)
    keep = {k: data[k] for k in ("x", "edge_index")}
    from torch_geometric.data import Data

    return transform(Data(**keep, num_nodes=data.num_nodes))


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    r"""Area under the ROC curve, :math:`(\sum_{i \in P} r_i - |P|(|P|+1)/2) / (|P||N|)` with average ranks for ties."""
    from scipy.stats import rankdata

    s, y = scores.detach().cpu().double().numpy(), labels.detach().cpu().bool().numpy()
    p, n = int(y.sum()), int((~y).sum())
    if p == 0 or n == 0:
        raise ValueError(f"roc_auc needs positives and negatives; got {p} positives and {n} negatives")
    ranks = rankdata(s)
    return float((ranks[y].sum() - p * (p + 1) / 2) / (p * n))


@dataclass
class LinkReport:
    """What :meth:`ForwardLinkPredictor.fit` measured (``saved_bytes_per_step`` as in :class:`FitReport`)."""

    method: str
    conv: str
    layers: int
    test_auc: float
    val_auc: float
    fit_seconds: float
    saved_bytes_per_step: int
    peak_memory_bytes: int
    step_memory_bytes: int
    epochs_run: int

    def as_dict(self) -> dict:
        return asdict(self)


class ForwardLinkPredictor(nn.Module):
    """Dot-product link predictor on GNN blocks, trained layer by layer (``ce``, ``ff``) or by BP.

    ``model(x, edge_index, pairs)`` returns the edge probabilities ``[P]`` of ``pairs`` (``[2, P]``).
    """

    def __init__(self, in_dim: int, conv: str = "gcn", hidden: int = 128, layers: int = 4, method: str = "ce",
                 theta: float = 2.0, cache: bool = True) -> None:
        super().__init__()
        method = str(method).lower()
        if method not in LINK_METHODS:
            raise ValueError(f"unknown link method {method!r}; choose one of {', '.join(LINK_METHODS)}")
        if int(layers) < 1:
            raise ValueError(f"layers must be >= 1 (the number of GNN layers), got {layers}")
        self.conv, self.method, self.layers, self.theta, self.cache = check_conv(conv), method, int(layers), theta, cache
        self.blocks = make_blocks(self.conv, [in_dim] + [hidden] * self.layers, last_activation=method != "bp")

    def _probability(self, h: Tensor, pairs: Tensor) -> Tensor:
        prod = h[pairs[0]] * h[pairs[1]]
        if self.method == "ff":
            return ff_probability(goodness(prod), self.theta)
        return torch.sigmoid(prod.sum(-1))

    def _loss(self, h: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        if self.method == "ff":
            return ff_loss(goodness(h[pos[0]] * h[pos[1]]), goodness(h[neg[0]] * h[neg[1]]), self.theta)
        logits = torch.cat([(h[pos[0]] * h[pos[1]]).sum(-1), (h[neg[0]] * h[neg[1]]).sum(-1)])
        target = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, target)

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor) -> Tensor:
        h, total = x, None
        for block in self.blocks:
            h = block(h, edge_index)
            if self.method != "bp":
                p = self._probability(h, pairs)
                total = p if total is None else total + p
        return self._probability(h, pairs) if self.method == "bp" else total / self.layers

    def auc(self, x: Tensor, edge_index: Tensor, split) -> float:
        """ROC-AUC on a split's ``pos_edge_label_index`` vs ``neg_edge_label_index``."""
        pairs = torch.cat([split.pos_edge_label_index, split.neg_edge_label_index], 1)
        labels = torch.cat([torch.ones(split.pos_edge_label_index.shape[1]), torch.zeros(split.neg_edge_label_index.shape[1])])
        with torch.no_grad():
            return roc_auc(self(x, edge_index, pairs), labels)

    def fit(self, data, epochs: int = 300, lr: float = 1e-3, weight_decay: float = 5e-4, patience: int | None = 100,
            eval_every: int = 1, quiet: bool = False, seed: int = 0) -> LinkReport:
        """Split ``data``'s edges 64/16/20 (``seed``), train, early-stop on validation AUC, report test AUC."""
        from torch_geometric.utils import negative_sampling

        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        seed_everything(seed)
        train, val, test = link_split(data, seed)
        device = data.x.device
        self.to(device)
        x, n = data.x, data.num_nodes
        pos = train.pos_edge_label_index
        costs: list = []
        start = time.perf_counter()

        def negatives() -> Tensor:
            return negative_sampling(train.edge_index, num_nodes=n, num_neg_samples=pos.shape[1])

        epochs_run = 0
        if self.method == "bp":
            optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

            def one_step() -> float:
                self.train()
                optimizer.zero_grad(set_to_none=True)
                h = x
                for block in self.blocks:
                    h = block(h, train.edge_index)
                loss = self._loss(h, pos, negatives())
                loss.backward()
                optimizer.step()
                return float(loss.detach())

            result = Trainer(epochs, monitor="val_auc", patience=patience, eval_every=eval_every, quiet=quiet,
                             desc=f"link bp {self.conv}-{self.layers}").run(
                measured_step(lambda epoch: one_step(), costs, device), lambda: {"val_auc": self.auc(x, train.edge_index, val)},
                state=self)
            epochs_run = result.epochs_run
        else:
            h, matrix = x, None  # each layer trains on, and is scored with, the training edges
            val_pairs = torch.cat([val.pos_edge_label_index, val.neg_edge_label_index], 1)
            val_labels = torch.cat([torch.ones(val.pos_edge_label_index.shape[1]),
                                    torch.zeros(val.neg_edge_label_index.shape[1])])
            val_total = torch.zeros(val_pairs.shape[1], device=device)
            for l, block in enumerate(self.blocks):
                if self.cache and block.cacheable and matrix is None:
                    matrix = propagation_matrix(block.kind, train.edge_index, n, x.dtype)
                prepared = prepare_input(block, h, train.edge_index, self.cache, matrix)
                optimizers = LocalOptimizers([block], lr=lr, weight_decay=weight_decay)

                def one_step() -> float:
                    block.train()
                    return optimizers.step([self._loss(run_block(block, prepared), pos, negatives())])[0]

                def evaluate() -> dict:
                    with torch.no_grad():
                        p = self._probability(run_block(block, prepared), val_pairs)
                    return {"val_auc": roc_auc((val_total + p) / (l + 1), val_labels)}

                layer_costs: list = []
                result = Trainer(epochs, monitor="val_auc", patience=patience, eval_every=eval_every, quiet=quiet,
                                 desc=f"link {self.method} layer {l + 1}/{self.layers}").run(
                    measured_step(lambda epoch: one_step(), layer_costs, device), evaluate, state=block)
                costs.extend(layer_costs)
                epochs_run += result.epochs_run
                block.eval()
                with torch.no_grad():
                    h = run_block(block, prepared)
                    val_total = val_total + self._probability(h, val_pairs)
        seconds = time.perf_counter() - start
        self.eval()
        cost = cost_summary(costs)
        return LinkReport(self.method, self.conv, self.layers, self.auc(x, test.edge_index, test),
                          self.auc(x, train.edge_index, val), seconds, cost["saved_bytes_per_step"],
                          cost["peak_memory_bytes"], cost["step_memory_bytes"], epochs_run)
