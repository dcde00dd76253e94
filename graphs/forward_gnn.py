r"""ForwardGNN: node classification without end-to-end backpropagation (Park et al., ICLR 2024).

Every layer is a :class:`~fwdlearn.graphs.backbones.GNNBlock` trained by its own loss on its
own output; the next layer sees a detached copy, so no gradient crosses layers. Methods:

- ``"sf"`` (default, single forward): the graph gets one virtual node per class, linked to
  the training nodes of that class (:mod:`~fwdlearn.graphs.virtual_nodes`); the virtual nodes'
  layer outputs :math:`c_k^{(l)}` are class prototypes and layer :math:`l` minimises

  .. math::
      \mathcal{L}_l = -\frac{1}{|T|}\sum_{i\in T}\log
      \frac{\exp(\langle h^{(l)}_i, c^{(l)}_{y_i}\rangle/\tau)}{\sum_k \exp(\langle h^{(l)}_i, c^{(l)}_k\rangle/\tau)}

  (:func:`fwdlearn.local.prototype_cross_entropy`). Prediction: per-layer softmax over
  classes, averaged over layers, argmax.
- ``"ff-la"``: label appending (:mod:`~fwdlearn.graphs.label_appending`) with a random wrong
  label for negatives, FF loss :math:`\operatorname{BCE}(G - \theta)` per layer
  (:func:`fwdlearn.local.ff_loss`); inference by :math:`K` passes, argmax of the goodness
  summed over layers.
- ``"ff-symba"``: the same inputs with the SymBa loss :math:`\operatorname{softplus}(-\alpha(G^+ - G^-))`.
- ``"ff-vn"``: virtual nodes as in SF, negatives linked to a wrong class's virtual node,
  FF loss; inference by :math:`K` passes (unlabelled nodes linked to virtual node :math:`k`).
- ``"sf-top2input"``, ``"sf-top2loss"``: SF with top-down signals (:mod:`~fwdlearn.graphs.topdown`).
- ``"bp"``: the same blocks and a linear classifier, trained end to end
  (:func:`~fwdlearn.graphs.node_bp.train_node_classifier`), the baseline.

Training schedule: ``sf``, ``ff-la``, ``ff-symba`` and ``ff-vn`` train **layer by layer**:
layer :math:`l` is trained to its best validation accuracy (early stopping, ``patience``) on
the frozen outputs of layers :math:`1..l-1`, then frozen. Because its input is frozen, the
neighbourhood aggregation of a GCN/SAGE layer's input is computed once
(:mod:`~fwdlearn.graphs.aggregation_cache`, ``cache=True``) and every epoch is a dense
product. The top-down methods train all layers at once (their inputs change each step).

Calling the model on *any* graph, ``model(x, edge_index) -> [N, K]`` (differentiable in ``x``),
needs no labels and no virtual nodes:

- ``sf`` / top-down: the prototypes :math:`c_k^{(l)}` computed on the training graph at the end
  of :meth:`ForwardGNN.fit` are stored as buffers; nodes are scored against them (the mean over
  layers of the softmax class probabilities; top-down methods accumulate steps 2..9 of 10 with
  the uninformative context :math:`1/K`);
- ``ff-la`` / ``ff-symba``: :math:`K` passes with class :math:`k` appended to every node;
  scores are the goodness summed over layers;
- ``ff-vn``: :math:`K` passes with the stored virtual-node features appended and every node
  linked to virtual node :math:`k`; scores as for FF-LA;
- ``bp``: the classifier's logits.

:meth:`ForwardGNN.predict` / :meth:`ForwardGNN.evaluate` are transductive as in the paper: the
training labels are used as at training time (virtual-node links, appended labels).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.fit import LocalOptimizers, Trainer, layerwise_forward
from fwdlearn.local import ff_loss, goodness, prototype_cross_entropy, prototype_logits, symba_loss

from .aggregation_cache import prepare_input, propagation_matrix, run_block
from .backbones import check_conv, make_blocks
from .datasets import check_masks
from .label_appending import append_labels
from .node_bp import cost_summary, masked_accuracy, measured_step, train_node_classifier
from .topdown import context_vectors, representations, topdown_scores, topdown_step
from .virtual_nodes import add_virtual_nodes, virtual_features, wrong_labels

__all__ = ["ForwardGNN", "FitReport", "METHODS", "LAYERWISE_METHODS", "TOPDOWN_METHODS"]

LAYERWISE_METHODS = ("sf", "ff-la", "ff-vn", "ff-symba")
TOPDOWN_METHODS = ("sf-top2input", "sf-top2loss")
GOODNESS_METHODS = ("ff-la", "ff-vn", "ff-symba")  # trained on goodness with negatives
METHODS = LAYERWISE_METHODS[:1] + TOPDOWN_METHODS + LAYERWISE_METHODS[1:] + ("bp",)


@dataclass
class FitReport:
    """What :meth:`ForwardGNN.fit` measured.

    ``saved_bytes_per_step``: bytes autograd saved for backward in one training step (for
    layer-by-layer methods the largest over layers, since one layer trains at a time; for BP and
    the top-down methods the whole step). ``peak_memory_bytes``: CUDA peak allocated on a GPU,
    else the process's peak RSS, during the measured step; ``step_memory_bytes`` the increase.
    """

    method: str
    conv: str
    layers: int
    test_accuracy: float
    val_accuracy: float
    train_accuracy: float
    fit_seconds: float
    saved_bytes_per_step: int
    peak_memory_bytes: int
    step_memory_bytes: int
    epochs_run: int
    per_layer: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ForwardGNN(nn.Module):
    """A GNN trained by a forward (layer-local) method or by BP.

    Args:
        in_dim: node feature width :math:`F`.
        num_classes: :math:`K` (>= 2).
        conv: ``"gcn"``, ``"sage"`` or ``"gat"``.
        hidden: width of every layer.
        layers: number of GNN layers (>= 1).
        method: one of :data:`METHODS`.
        tau: SF temperature; theta: FF threshold; alpha: SymBa scale.
        cache: reuse the aggregation of frozen inputs (GCN/SAGE, layer-by-layer methods).
        update: top-down updates, ``"sync"`` or ``"alternate"``.
        steps: top-down evaluation steps.
        seed: seed of the virtual-node features and of the negatives.

    Example::

        data = load_graph("cora", split="random", seed=0)
        model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", layers=4, method="sf")
        report = model.fit(data, epochs=300)
        scores = model(data.x, data.edge_index)   # any graph, [N, K]
    """

    def __init__(self, in_dim: int, num_classes: int, conv: str = "gcn", hidden: int = 128, layers: int = 4,
                 method: str = "sf", tau: float = 1.0, theta: float = 2.0, alpha: float = 4.0, cache: bool = True,
                 update: str = "sync", steps: int = 10, seed: int = 0) -> None:
        super().__init__()
        method = str(method).lower()
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        conv = check_conv(conv)
        if int(layers) < 1:
            raise ValueError(f"layers must be >= 1 (the number of GNN layers), got {layers}")
        if int(hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if int(in_dim) < 1:
            raise ValueError(f"in_dim must be >= 1 (the node feature width), got {in_dim}")
        if update not in ("sync", "alternate"):
            raise ValueError(f"unknown update {update!r}; use 'sync' or 'alternate'")
        self.in_dim, self.num_classes, self.conv, self.hidden = int(in_dim), int(num_classes), conv, int(hidden)
        self.layers, self.method, self.tau, self.theta, self.alpha = int(layers), method, tau, theta, alpha
        self.cache, self.update, self.steps, self.seed = cache, update, steps, seed
        K, H, L = self.num_classes, self.hidden, self.layers
        if method in ("ff-la", "ff-symba"):
            dims = [self.in_dim + K] + [H] * L
        else:
            dims = [self.in_dim] + [H] * L
        if method == "sf-top2input":
            self.blocks = nn.ModuleList(make_blocks(conv, [dims[l] + (H if l + 1 < L else K), H])[0]
                                        for l in range(L))
        else:
            self.blocks = make_blocks(conv, dims)
        self.classifier = nn.Linear(H, K) if method == "bp" else None
        if method in ("sf", "ff-vn") + TOPDOWN_METHODS:
            self.register_buffer("virtual_x", virtual_features(K, self.in_dim, seed))
        if method == "sf" or method in TOPDOWN_METHODS:
            self.register_buffer("prototypes", torch.zeros(L, K, H))

    def extra_repr(self) -> str:
        return f"method={self.method}, conv={self.conv}, layers={self.layers}, hidden={self.hidden}"

    # ------------------------------------------------------------------ streams
    def _streams(self, x: Tensor, edge_index: Tensor, y: Tensor | None, train: Tensor | None,
                 negatives: Tensor | None = None, training: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
        """The graphs the layer-by-layer methods run on, by name (``pos``/``neg`` train, ``k<j>`` eval)."""
        K, n = self.num_classes, x.shape[0]
        m = self.method
        idx = train.nonzero().flatten() if train is not None else None
        streams: dict[str, tuple[Tensor, Tensor]] = {}
        if m == "sf":
            if idx is None:
                streams["plain"] = (x, edge_index)
            else:
                streams["pos"] = add_virtual_nodes(x, edge_index, idx, y[idx], self.virtual_x)
            return streams
        if m in ("ff-la", "ff-symba"):
            if training:
                streams["pos"] = (append_labels(x, K, y, train), edge_index)
                streams["neg"] = (append_labels(x, K, negatives, train), edge_index)
            for k in range(K):
                streams[f"k{k}"] = (append_labels(x, K, y, train, fill=k), edge_index)
            return streams
        if m == "ff-vn":
            if training:
                streams["pos"] = add_virtual_nodes(x, edge_index, idx, y[idx], self.virtual_x)
                streams["neg"] = add_virtual_nodes(x, edge_index, idx, negatives[idx], self.virtual_x)
            every = torch.arange(n, device=x.device)
            for k in range(K):
                assign = torch.full((n,), k, dtype=torch.long, device=x.device)
                if train is not None:
                    assign[train] = y[train]
                streams[f"k{k}"] = add_virtual_nodes(x, edge_index, every, assign, self.virtual_x)
            return streams
        raise AssertionError(m)

    def _eval_names(self, streams: dict) -> list[str]:
        return [s for s in streams if s not in ("neg",) and not (s == "pos" and self.method != "sf")]

    def _layer_loss(self, outs: dict[str, Tensor], y: Tensor, train: Tensor, n: int) -> Tensor:
        if self.method == "sf":
            h = outs["pos"]
            return prototype_cross_entropy(h[:n][train], h[n:], y[train], self.tau)
        g_pos, g_neg = goodness(outs["pos"][:n][train]), goodness(outs["neg"][:n][train])
        if self.method == "ff-symba":
            return symba_loss(g_pos, g_neg, self.alpha)
        return ff_loss(g_pos, g_neg, self.theta)

    def _layer_scores(self, outs: dict[str, Tensor], n: int, layer: int) -> Tensor:
        if self.method == "sf":
            if "plain" in outs:
                h, c = outs["plain"], self.prototypes[layer]
            else:
                h, c = outs["pos"][:n], outs["pos"][n:]
            return prototype_logits(h, c, self.tau).softmax(-1)
        return torch.stack([goodness(outs[f"k{k}"][:n]) for k in range(self.num_classes)], dim=-1)

    def _finish_scores(self, total: Tensor) -> Tensor:
        return total / self.layers if self.method == "sf" else total

    # ------------------------------------------------------------------ inference
    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Class scores ``[N, K]`` on any graph (no labels, no virtual nodes given); see the module doc."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape [N, {self.in_dim}] (in_dim={self.in_dim}); got {tuple(x.shape)}")
        return self._scores(x, edge_index, None, None)

    def _scores(self, x: Tensor, edge_index: Tensor, y: Tensor | None, train: Tensor | None) -> Tensor:
        n = x.shape[0]
        if self.method == "bp":
            h = x
            for block in self.blocks:
                h = block(h, edge_index)
            return self.classifier(h)
        if self.method in TOPDOWN_METHODS:
            if train is None:
                ctx = context_vectors(n, self.num_classes, device=x.device)
                scores, _ = topdown_scores(self.blocks, self.method, x, edge_index, ctx, self.hidden, n,
                                           self.prototypes, self.tau, self.steps)
                return scores
            xa, ea = add_virtual_nodes(x, edge_index, train.nonzero().flatten(), y[train], self.virtual_x)
            ctx = context_vectors(n, self.num_classes, y, train, virtual=self.num_classes, device=x.device)
            scores, _ = topdown_scores(self.blocks, self.method, xa, ea, ctx, self.hidden, n, None, self.tau, self.steps)
            return scores
        streams = self._streams(x, edge_index, y, train)
        names = self._eval_names(streams)
        hs = {s: streams[s][0] for s in names}
        total = None
        for l, block in enumerate(self.blocks):
            hs = {s: block(hs[s], streams[s][1]) for s in names}
            part = self._layer_scores(hs, n, l)
            total = part if total is None else total + part
        return self._finish_scores(total)

    def scores(self, data) -> Tensor:
        """Transductive class scores ``[N, K]`` on ``data`` (training labels used as in training)."""
        with torch.no_grad():
            x, ei = data.x.to(self._device()), data.edge_index.to(self._device())
            return self._scores(x, ei, data.y.to(x.device), data.train_mask.to(x.device))

    def predict(self, data) -> Tensor:
        """Predicted class of every node of ``data`` (transductive, see :meth:`scores`)."""
        return self.scores(data).argmax(-1)

    def evaluate(self, data, split: str = "test") -> float:
        """Accuracy on ``data.<split>_mask`` (``split`` in train/val/test)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; use 'train', 'val' or 'test'")
        check_masks(data)
        mask = getattr(data, f"{split}_mask").to(self._device())
        return masked_accuracy(self.scores(data), data.y.to(mask.device), mask)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ losses (for checks)
    def layer_losses(self, data) -> list[Tensor]:
        """One loss per layer on ``data`` without caching (each attached to its own block only).

        Used to check that no gradient crosses layers; BP returns a single end-to-end loss.
        """
        check_masks(data)
        x, ei, y, train = data.x, data.edge_index, data.y, data.train_mask
        n = x.shape[0]
        if self.method == "bp":
            return [F.cross_entropy(self._scores(x, ei, None, None)[train], y[train])]
        if self.method in TOPDOWN_METHODS:
            xa, ea = add_virtual_nodes(x, ei, train.nonzero().flatten(), y[train], self.virtual_x)
            ctx = context_vectors(n, self.num_classes, y, train, virtual=self.num_classes, device=x.device)
            states = [xa.new_zeros(xa.shape[0], self.hidden) for _ in self.blocks]
            outs = topdown_step(self.blocks, self.method, xa, ea, states, ctx)
            reps = representations(self.method, outs, states)
            return [prototype_cross_entropy(r[:n][train], r[n:], y[train], self.tau) for r in reps]
        gen = torch.Generator().manual_seed(self.seed)
        negatives = wrong_labels(y, self.num_classes, gen)
        streams = self._streams(x, ei, y, train, negatives, training=True)
        train_names = ["pos", "neg"] if self.method != "sf" else ["pos"]
        per_stream = {s: layerwise_forward(self.blocks, streams[s][0], streams[s][1]) for s in train_names}
        return [self._layer_loss({s: per_stream[s][l] for s in train_names}, y, train, n) for l in range(self.layers)]

    # ------------------------------------------------------------------ training
    def fit(self, data, epochs: int = 300, lr: float = 1e-3, weight_decay: float = 5e-4, patience: int | None = 100,
            eval_every: int = 1, quiet: bool = False, bp_lr: float | None = None) -> FitReport:
        """Train on ``data`` (its ``train_mask``), early-stopping on ``val_mask``; return a :class:`FitReport`.

        Args:
            epochs: epochs per layer (layer-by-layer methods) or in total (BP, top-down).
            lr, weight_decay: Adam settings of every layer (and of BP unless ``bp_lr``).
            patience: early-stopping patience in evaluations (``None``: use every epoch).
            eval_every: evaluate every this many epochs.
            quiet: no progress bars.

        Runs on the device of ``data.x`` (the model is moved there).
        """
        check_masks(data)
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if int(data.y.max()) >= self.num_classes:
            raise ValueError(f"data has labels up to {int(data.y.max())} but the model has num_classes={self.num_classes}")
        if data.num_features != self.in_dim:
            raise ValueError(f"data has {data.num_features} node features but the model has in_dim={self.in_dim}")
        device = data.x.device
        self.to(device)
        start = time.perf_counter()
        if self.method == "bp":
            r = train_node_classifier(self, data, epochs, lr if bp_lr is None else bp_lr, weight_decay, patience,
                                      eval_every, quiet, desc=f"bp {self.conv}-{self.layers}")
            return FitReport("bp", self.conv, self.layers, r["test_accuracy"], r["val_accuracy"], r["train_accuracy"],
                             r["fit_seconds"], r["saved_bytes_per_step"], r["peak_memory_bytes"],
                             r["step_memory_bytes"], r["epochs_run"])
        if self.method in TOPDOWN_METHODS:
            per_layer, costs, epochs_run = self._fit_topdown(data, epochs, lr, weight_decay, patience, eval_every, quiet)
        else:
            per_layer, costs, epochs_run = self._fit_layerwise(data, epochs, lr, weight_decay, patience, eval_every, quiet)
        seconds = time.perf_counter() - start
        cost = cost_summary(costs)
        s = self.scores(data)
        y = data.y.to(s.device)
        return FitReport(self.method, self.conv, self.layers,
                         masked_accuracy(s, y, data.test_mask.to(s.device)), masked_accuracy(s, y, data.val_mask.to(s.device)),
                         masked_accuracy(s, y, data.train_mask.to(s.device)), seconds, cost["saved_bytes_per_step"],
                         cost["peak_memory_bytes"], cost["step_memory_bytes"], epochs_run, per_layer)

    def _fit_layerwise(self, data, epochs, lr, weight_decay, patience, eval_every, quiet):
        x, ei, y, train, val = data.x, data.edge_index, data.y, data.train_mask, data.val_mask
        n = x.shape[0]
        gen = torch.Generator().manual_seed(self.seed)
        negatives = wrong_labels(y, self.num_classes, gen) if self.method != "sf" else None
        streams = self._streams(x, ei, y, train, negatives, training=True)
        train_names = ["pos", "neg"] if self.method != "sf" else ["pos"]
        eval_names = self._eval_names(streams)
        names = list(dict.fromkeys(train_names + eval_names))
        matrices: dict[int, Tensor] = {}  # one propagation matrix per distinct graph

        def matrix_for(block, s):
            e = streams[s][1]
            if not (self.cache and block.cacheable):
                return None
            key = id(e)
            if key not in matrices:
                matrices[key] = propagation_matrix(block.kind, e, streams[s][0].shape[0], x.dtype)
            return matrices[key]

        inputs = {s: streams[s][0] for s in names}
        total = torch.zeros(n, self.num_classes, device=x.device)
        per_layer, costs, epochs_run = [], [], 0
        for l, block in enumerate(self.blocks):
            prepared = {s: prepare_input(block, inputs[s], streams[s][1], self.cache, matrix_for(block, s))
                        for s in names}
            optimizers = LocalOptimizers([block], lr=lr, weight_decay=weight_decay)
            layer_costs: list = []

            def one_step() -> float:
                block.train()
                outs = {s: run_block(block, prepared[s]) for s in train_names}
                return optimizers.step([self._layer_loss(outs, y, train, n)])[0]

            step = measured_step(lambda epoch: one_step(), layer_costs, x.device)

            def layer_scores() -> Tensor:
                with torch.no_grad():
                    outs = {s: run_block(block, prepared[s]) for s in eval_names}
                    return self._layer_scores(outs, n, l)

            def evaluate() -> dict:
                return {"val_accuracy": masked_accuracy(total + layer_scores(), y, val)}

            trainer = Trainer(epochs, patience=patience, eval_every=eval_every, quiet=quiet,
                              desc=f"{self.method} {self.conv} layer {l + 1}/{self.layers}")
            result = trainer.run(step, evaluate, state=block)
            costs += layer_costs
            epochs_run += result.epochs_run
            block.eval()
            with torch.no_grad():
                outs = {s: run_block(block, prepared[s]) for s in names}
                total = total + self._layer_scores(outs, n, l)
                if self.method == "sf":
                    self.prototypes[l] = outs["pos"][n:]
            inputs = outs
            per_layer.append({"layer": l + 1, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                              "val_accuracy": result.best.get("val_accuracy"),
                              "saved_bytes_per_step": layer_costs[0].saved_bytes if layer_costs else 0})
        return per_layer, costs, epochs_run

    def _fit_topdown(self, data, epochs, lr, weight_decay, patience, eval_every, quiet):
        x, ei, y, train, val = data.x, data.edge_index, data.y, data.train_mask, data.val_mask
        n, K = x.shape[0], self.num_classes
        xa, ea = add_virtual_nodes(x, ei, train.nonzero().flatten(), y[train], self.virtual_x)
        ctx = context_vectors(n, K, y, train, virtual=K, device=x.device)
        optimizers = LocalOptimizers(list(self.blocks), lr=lr, weight_decay=weight_decay)
        state = {"h": [xa.new_zeros(xa.shape[0], self.hidden) for _ in self.blocks]}
        costs: list = []

        def one_step(epoch: int) -> float:
            self.train()
            outs = topdown_step(self.blocks, self.method, xa, ea, state["h"], ctx)
            reps = representations(self.method, outs, state["h"])
            losses = [prototype_cross_entropy(r[:n][train], r[n:], y[train], self.tau) for r in reps]
            only = None if self.update == "sync" else [l for l in range(self.layers) if l % 2 == epoch % 2]
            values = optimizers.step(losses, only=only)
            state["h"] = [o.detach() for o in outs]
            return float(sum(v for v in values if v == v))

        step = measured_step(one_step, costs, x.device)

        def evaluate() -> dict:
            self.eval()
            with torch.no_grad():
                s, _ = topdown_scores(self.blocks, self.method, xa, ea, ctx, self.hidden, n, None, self.tau, self.steps)
            return {"val_accuracy": masked_accuracy(s, y, val)}

        result = Trainer(epochs, patience=patience, eval_every=eval_every, quiet=quiet,
                         desc=f"{self.method} {self.conv}-{self.layers}").run(step, evaluate, state=self.blocks)
        self.eval()
        with torch.no_grad():
            _, protos = topdown_scores(self.blocks, self.method, xa, ea, ctx, self.hidden, n, None, self.tau, self.steps)
            self.prototypes.copy_(protos)
        per_layer = [{"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
                      "val_accuracy": result.best.get("val_accuracy")}]
        return per_layer, costs, result.epochs_run
