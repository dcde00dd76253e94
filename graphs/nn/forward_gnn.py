r"""ForwardGNN: node classification without end-to-end backpropagation (Park et al., ICLR 2024).

Every layer is a :class:`~fwdlearn.graphs.nn.backbones.GNNBlock` trained by its own loss on its
own output; the next layer sees a detached copy, so no gradient crosses layers. Methods:

- ``"sf"`` (default, single forward): the graph gets one virtual node per class, linked to
  the training nodes of that class (:mod:`~fwdlearn.graphs.methods.virtual_nodes`); the virtual nodes'
  layer outputs :math:`c_k^{(l)}` are class prototypes and layer :math:`l` minimises

  .. math::
      \mathcal{L}_l = -\frac{1}{|T|}\sum_{i\in T}\log
      \frac{\exp(\langle h^{(l)}_i, c^{(l)}_{y_i}\rangle/\tau)}{\sum_k \exp(\langle h^{(l)}_i, c^{(l)}_k\rangle/\tau)}

  (:func:`fwdlearn.local.prototype_cross_entropy`). Prediction: per-layer softmax over
  classes, averaged over layers, argmax.
- ``"ff-la"``: label appending (:mod:`~fwdlearn.graphs.methods.label_appending`), one negative copy per wrong
  label (``negatives``, default all :math:`K - 1`), FF loss :math:`\operatorname{BCE}(G - \theta)` per layer
  (:func:`fwdlearn.local.ff_loss`, the positives' mean plus the negatives'); inference by :math:`K` passes, argmax
  of the goodness summed over layers (:mod:`~fwdlearn.graphs.methods.ff`).
- ``"ff-symba"``: the same inputs with the SymBa loss :math:`\operatorname{softplus}(-\alpha(G^+ - G^-))`.
- ``"ff-vn"``: virtual nodes as in SF, negatives linked to a wrong class's virtual node,
  FF loss; inference by :math:`K` passes (the evaluated nodes linked to virtual node :math:`k`).
- ``"sf-top2input"``, ``"sf-top2loss"``: SF with top-down signals (:mod:`~fwdlearn.graphs.methods.topdown`).
- ``"bp"``: the same blocks and a linear classifier, trained end to end
  (:func:`~fwdlearn.graphs.methods.bp.train_node_classifier`), the baseline.
- ``"dfa"`` (``"dfa:gaussian"``, ``"dfa:orthogonal"``): BP's blocks and classifier trained end to end,
  but every block's output receives a fixed random projection of the classifier's error, spread over
  the graph, instead of the backpropagated gradient (:mod:`~fwdlearn.graphs.methods.dfa`).

Each method is an object of :mod:`fwdlearn.graphs.methods`, looked up by its rule (``"sf"`` is an alias of
``"local:prototype"``, see :mod:`fwdlearn.rules`); this class holds the blocks and the method and
has no per-method code. Training schedule: ``sf``, ``ff-la``, ``ff-symba`` and ``ff-vn`` train **layer by layer**:
layer :math:`l` is trained to its best validation accuracy (early stopping, ``patience``) on
the frozen outputs of layers :math:`1..l-1`, then frozen. Because its input is frozen, the
neighbourhood aggregation of a GCN/SAGE layer's input is computed once
(:mod:`~fwdlearn.graphs.nn.aggregation_cache`, ``cache=True``) and every epoch is a dense
product. The top-down methods train all layers at once (their inputs change each step).

Calling the model on *any* graph, ``model(x, edge_index) -> [N, K]`` (differentiable in ``x``),
needs no labels and no virtual nodes:

- ``sf`` / top-down: the prototypes :math:`c_k^{(l)}` computed on the training graph at the end
  of :meth:`ForwardGNN.fit` are stored as buffers; nodes are scored against them (the mean over
  layers of the softmax class probabilities; top-down methods accumulate steps 2..9 of ``steps``
  = 10, 2..steps-1 in general, with the uninformative context :math:`1/K`);
- ``ff-la`` / ``ff-symba``: :math:`K` passes with class :math:`k` appended to every node;
  scores are the goodness summed over layers;
- ``ff-vn``: :math:`K` passes with the stored virtual-node features appended and every node
  linked to virtual node :math:`k`; scores as for FF-LA;
- ``bp``, ``dfa``: the classifier's logits.

:meth:`ForwardGNN.predict` / :meth:`ForwardGNN.evaluate` are transductive as in the paper: the
training labels are used as at training time (virtual-node links, appended labels). Given a split (as
:meth:`~ForwardGNN.evaluate` always is), the FF methods score it as the reference does: its nodes get the candidate
labels, the splits before it keep their labels (training labels for validation, training and validation labels for
test, none for the training split itself) and the rest get none, so a split's accuracy does not depend on the
others' being guessed at the same time.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fwdlearn.diagnostics.cost import CostReport, WithCost
from fwdlearn.errors import check_bool, check_int, check_model_values, check_seed, warn
from fwdlearn.fit import (Checkpointing, check_resume, check_trainable_dtype, check_unshared_checkpoint, compact_repr,
                          evaluating, keeps_mode, tensor_fingerprint)
from fwdlearn.model_files import ModelFile
from fwdlearn.metrics import masked_accuracy

from fwdlearn.graphs.data.datasets import (check_edge_index, check_features, check_graph_inputs, check_labels,
                                          check_mask, check_masks, check_node_data, check_one_graph,
                                          warn_unweighted)
from fwdlearn.graphs.methods import method_class
from fwdlearn.graphs.methods.base import GraphMethod, check_feature_dtype, check_fit_arguments
from fwdlearn.graphs.nn.backbones import BlockStack, check_conv

__all__ = ["ForwardGNN", "FitReport"]


def _check_split(split: str) -> None:
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; use 'train', 'val' or 'test'")


@dataclass
class FitReport(WithCost):
    """What :meth:`ForwardGNN.fit` measured.

    Accuracies are those of :meth:`ForwardGNN.scores` on each mask (for the FF methods, each split scored on its
    own: ``scores(data, split)``). SF and the top-down methods score a training node with its own label among the
    inputs (a link to its class's virtual node), so their ``train_accuracy`` measures that input, not the fit
    (near 1); the FF methods score the training split with no label known. Compare methods on ``val_accuracy`` /
    ``test_accuracy``.

    ``cost`` (:class:`~fwdlearn.diagnostics.cost.CostReport`): ``saved_bytes_per_step``, bytes autograd
    saved for backward in one training step (for layer-by-layer methods the largest over layers,
    since one layer trains at a time; for BP and the top-down methods the whole step);
    ``peak_memory_bytes``, CUDA peak allocated on a GPU, else the process's peak RSS, during the
    measured step; ``step_memory_bytes`` the increase. ``as_dict()`` flattens them.

    ``fit_seconds``: the wall time of the training loops (:attr:`fwdlearn.fit.FitResult.seconds`, summed over the
    layers of a layer-by-layer method): every epoch's step and validation pass, the measured first step of each loop
    among them, the parts before a resume included; not the preparation between layers nor the final scoring.
    ``epochs_run``: the epochs trained, summed over the layers; ``history``: one row per epoch (``epoch`` counted
    over the whole fit, ``layer`` for a layer-by-layer method, ``loss``, and ``val_accuracy`` when evaluated;
    ``print(report)`` gives its length, ``history=<400 rows>``).
    """

    method: str
    conv: str
    layers: int
    test_accuracy: float
    val_accuracy: float
    train_accuracy: float
    fit_seconds: float
    cost: CostReport
    epochs_run: int
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed: dict[str, Any] | None = None  # a resumed fit: the step it continued from and the settings it changed

    __repr__ = compact_repr  # (every figure, the history as its length)


class ForwardGNN(ModelFile, nn.Module):
    r"""A GNN trained by a forward (layer-local) method, by DFA or by BP (ForwardGNN: Park et al., ICLR 2024,
    arXiv:2403.11004).

    Every layer is a block (:class:`~fwdlearn.graphs.nn.backbones.GNNBlock`)

    .. math::
        h^{(l)} = \operatorname{ReLU}\big(\operatorname{conv}_l(\bar h^{(l-1)}, A)\big), \qquad
        \bar h_i = h_i / \max(\lVert h_i \rVert_2, \epsilon), \qquad h^{(0)} = X,

    trained by the method's loss; for the default ``"sf"``, layer by layer on the detached layer below,

    .. math::
        \mathcal{L}_l = -\frac{1}{|T|}\sum_{i\in T}
        \log \operatorname{softmax}_k\big(\langle h^{(l)}_i, c^{(l)}_k\rangle/\tau\big)_{y_i},

    :math:`c^{(l)}_k` the layer's output at the virtual node of class :math:`k` and :math:`T` the training nodes. The
    other methods' losses and scores: ``help(fwdlearn.graphs.nn.forward_gnn)`` and :mod:`fwdlearn.graphs.methods`.

    Args:
        in_dim: node feature width :math:`F`.
        num_classes: :math:`K` (>= 2).
        conv: a name in :data:`~fwdlearn.graphs.registries.CONV_KINDS`: ``"gcn"`` (default), ``"sage"``, ``"gat"`` or
            ``"mlp"`` (a linear layer that ignores the edges), or one registered there.
        hidden: width of every layer (default 128).
        layers: number of GNN layers (>= 1; default 4).
        method: a graph method (default ``"sf"``): a rule or alias (``"sf"``, ``"local:prototype"``, ``"ff-la"``,
            ``"bp"``, ...; see :mod:`fwdlearn.graphs.methods`), or a :class:`~fwdlearn.graphs.methods.base.GraphMethod`
            class registered there or passed directly.
        tau: SF and top-down temperature :math:`\tau` (default 1.0).
        theta: FF threshold :math:`\theta` on the goodness :math:`\lVert h_i \rVert^2` (FF-LA, FF-VN; default 2.0).
        alpha: SymBa scale :math:`\alpha` (FF-SymBa; default 4.0).
        negatives: FF methods: negative copies of the graph, each with another wrong class per training node
            (``None``, the default: all :math:`K - 1`, as the reference's scripts; 1 trains on 2 copies a step instead
            of :math:`K`).
        cache: reuse the aggregation of frozen inputs (GCN/SAGE, layer-by-layer methods; default ``True``).
        update: top-down updates, ``"sync"`` (default: bottom up, each layer reading the layer below of this step) or
            ``"alternate"`` (the even layers, then the odd ones: what the reference's scripts run,
            ``--alternating-update``).
        steps: top-down evaluation steps (default 10; class probabilities accumulated over steps 2..steps-1).
        seed: seed of the virtual-node features, of the negatives and of DFA's feedback matrices (default 0). It does
            not seed the weights: they are drawn from torch's global generator when the model is built, so call
            ``fwdlearn.fit.seed_everything(seed)`` before ``ForwardGNN(...)`` for a reproducible run.
        spread_error: DFA: spread the classifier's error over the graph before projecting it to each block
            (default ``True``; ``False``: each labelled node's own error only).

    Each method takes the options it declares (``GraphMethod.options``); the others are ignored, with a warning when
    one is given a value other than its default.

    The edges are unweighted: the blocks are called as ``conv(x, edge_index)``, so ``data.edge_weight`` and
    ``data.edge_attr`` are not read (:meth:`fit` and the scoring calls warn when the graph has them).

    Example::

        data = load_graph("cora", split="random", seed=0)
        model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", layers=4, method="sf")
        report = model.fit(data, epochs=300)
        scores = model(data.x, data.edge_index)   # any graph, [N, K]
    """

    def __init__(self, in_dim: int, num_classes: int, conv: str = "gcn", hidden: int = 128, layers: int = 4,
                 method: str | type[GraphMethod] = "sf", tau: float = 1.0, theta: float = 2.0, alpha: float = 4.0,
                 cache: bool = True, update: str = "sync", steps: int = 10, seed: int = 0,
                 spread_error: bool = True, negatives: int | None = None) -> None:
        super().__init__()
        cls = method if isinstance(method, type) and issubclass(method, GraphMethod) else method_class(method)
        conv = check_conv(conv)
        for name, value, low, what in (("layers", layers, 1, " (the number of GNN layers)"), ("hidden", hidden, 1, ""),
                                       ("num_classes", num_classes, 2, ""),
                                       ("in_dim", in_dim, 1, " (the node feature width)")):
            check_int(name, value, low, what)
        self.in_dim, self.num_classes, self.conv, self.hidden = int(in_dim), int(num_classes), conv, int(hidden)
        self.layers, self.seed = int(layers), check_seed(seed)
        cache = check_bool("cache", cache)
        given = {"tau": tau, "theta": theta, "alpha": alpha, "cache": cache, "update": update, "steps": steps,
                 "spread_error": spread_error, "negatives": negatives}
        options = {k: v for k, v in given.items() if k in cls.options}
        defaults = inspect.signature(ForwardGNN.__init__).parameters
        unused = [k for k, v in given.items() if k not in cls.options and v != defaults[k].default]
        if unused:  # (steps=5000 read as a training budget, say: it is the top-down methods' evaluation steps)
            warn(f"method {cls.rule} takes none of {', '.join(f'{k}={given[k]!r}' for k in unused)}: "
                 f"{'they are options' if len(unused) > 1 else 'it is an option'} of other methods, "
                 f"ignored here (its options: {', '.join(cls.options) or 'none'})")
        # a class stands for its own rule: ForwardGNN(method=cls) and method=cls.rule build (and fingerprint) alike
        # (a rule object is its spelling: DFA(feedback="gaussian") built uniform DFA when it read as the class's rule)
        options.update(cls.options_from_rule(cls.rule if isinstance(method, type) else str(method)))
        self.method = cls(self.in_dim, self.num_classes, self.hidden, self.layers, conv, seed, **options)
        if "negatives" in options:  # the count the method resolved (None: all K - 1), so equal models match
            options["negatives"] = self.method.negatives
        #: the method's hyperparameters (checkpoints must match them, ``cache`` aside: a speed option)
        self.options = options
        self.blocks = self.method.make_blocks()

    @property
    def rule(self) -> str:
        """The method's rule (:mod:`fwdlearn.rules` spelling)."""
        return self.method.rule

    def extra_repr(self) -> str:
        return f"rule={self.rule}, conv={self.conv}, layers={self.layers}, hidden={self.hidden}"

    # ------------------------------------------------------------------ inference
    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Class scores ``[N, K]`` on any graph (no labels, no virtual nodes given); see the module doc."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape [N, {self.in_dim}] (in_dim={self.in_dim}); got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        check_features(x, next(self.parameters()).dtype, "x")
        check_edge_index(edge_index, x.shape[0], "edge_index", "x")
        return self.method.scores(self.blocks, x, edge_index)

    @property
    def separable(self) -> bool:
        """Whether ``model(x, edge_index)`` on a disjoint union of graphs gives each graph's own scores (the method's
        :attr:`~fwdlearn.graphs.methods.base.GraphMethod.separable`; read by
        :func:`~fwdlearn.graphs.influence.hop_influence`, which batches seeds' balls into one union only then)."""
        return self.method.separable

    def block_stack(self) -> BlockStack | None:
        """The model as GNN blocks and a linear head when its inductive scores are that (``bp``, ``dfa``), else
        ``None``; :func:`~fwdlearn.graphs.influence.hop_influence` then takes its Jacobian layer by layer."""
        return self.method.block_stack(self.blocks)

    def scores(self, data, split: str | None = None) -> Tensor:
        """Transductive class scores ``[N, K]`` on ``data`` (training labels used as in training: ``data.y`` and
        ``data.train_mask``; ``bp`` and ``dfa`` read none and score a graph without them).

        ``split`` (``"train"``, ``"val"``, ``"test"``): the scores of that split's nodes as the FF methods evaluate
        it (:attr:`~fwdlearn.graphs.methods.base.GraphMethod.scores_per_split`): the split's nodes get the
        candidate labels, the labels of the splits before it are known (none / train / train and val) and the
        other nodes get none; only the split's rows are meant. The other methods ignore it."""
        if split is not None:
            _check_split(split)
        self._check_graph(data, labels=self.method.scores_use_labels)
        return self._scores(data, split)

    def _scores(self, data, split: str | None) -> Tensor:
        """:meth:`scores` of a graph already checked (a fit's own evaluation: its warnings were said once)."""
        device = self._device()
        y, train = (data.y.to(device), data.train_mask.to(device)) if self.method.scores_use_labels else (None, None)
        which = {}  # the evaluated nodes, given only to the methods that read them
        if split is not None and self.method.scores_per_split:
            train, which["evaluated"] = self._split_masks(data, split, device)
            self._check_known_labels(y, train, "data.val_mask (its labels are known when scoring the test split)")
        with torch.no_grad():
            return self.method.scores(self.blocks, data.x.to(device), data.edge_index.to(device), y, train, **which)

    @staticmethod
    def _split_masks(data, split: str, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(known, evaluated)`` when scoring ``split``: the reference's order train -> val -> test."""
        check_masks(data)
        masks = {name: getattr(data, f"{name}_mask").to(device) for name in ("train", "val", "test")}
        known = {"train": torch.zeros_like(masks["train"]), "val": masks["train"],
                 "test": masks["train"] | masks["val"]}[split]
        return known & ~masks[split], masks[split]

    def _check_graph(self, data, labels: bool = True) -> None:
        """Check ``data`` against the model: features ``[N, in_dim]`` of the parameters' dtype, edge ids in
        ``[0, N-1]`` and, with ``labels``, int64 labels, a boolean ``train_mask`` and training labels in
        ``[0, num_classes)``; each error names the fix."""
        check_one_graph(data, "ForwardGNN")
        x = getattr(data, "x", None)
        if isinstance(x, Tensor) and x.dim() == 2 and x.shape[1] != self.in_dim:
            raise ValueError(f"data has {x.shape[1]} node features but the model has in_dim={self.in_dim}")
        x, _ = check_graph_inputs(data, dtype=next(self.parameters()).dtype)
        warn_unweighted(data, "ForwardGNN")
        if not labels:
            return
        y, train = getattr(data, "y", None), getattr(data, "train_mask", None)
        if y is None or train is None:
            raise ValueError(f"the {self.rule} method scores a graph with its training labels (data.y and "
                             "data.train_mask); this graph has none: call model(data.x, data.edge_index) for "
                             "inductive scores")
        check_labels(y, x.shape[0])
        check_mask(train, "data.train_mask", x.shape[0])
        self._check_known_labels(y, train, "data.train_mask")

    def _check_known_labels(self, y: Tensor, known: Tensor, where: str) -> None:
        """The labels a scoring call gives the model (``y`` on ``known``) lie in ``[0, num_classes)``: they link nodes
        to class nodes or are appended one-hot (an id outside failed inside, naming neither the labels nor the fix)."""
        labels = y[known.to(y.device)]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"data.y holds labels in [{int(labels.min())}, {int(labels.max())}] on {where}, but the "
                             f"model has num_classes={self.num_classes} (labels 0..{self.num_classes - 1}): score a "
                             "graph labelled as the model's training graph, or build the model with its number of "
                             "classes")

    def predict(self, data, split: str | None = None) -> Tensor:
        """Predicted class of every node of ``data`` (transductive, see :meth:`scores`). For the FF methods,
        ``split`` predicts that split as :meth:`evaluate` scores it (its rows are meant); without it every node
        outside the training set is a candidate at once, the labels of the training set known."""
        return self.scores(data, split).argmax(-1)

    def evaluate(self, data, split: str = "test") -> float:
        """Accuracy on ``data.<split>_mask`` (``split`` in train/val/test).

        The methods that score with the training labels read all three masks (disjoint: a node evaluated with its own
        label known would be scored on it); ``bp`` and ``dfa`` read the split's mask alone, so a new graph with only a
        ``test_mask`` is evaluated inductively."""
        _check_split(split)
        check_one_graph(data, "ForwardGNN.evaluate")
        x, _ = check_graph_inputs(data)  # (first: a num_nodes other than x's rows was blamed on data.y's shape)
        check_labels(getattr(data, "y", None), x.shape[0])
        check_masks(data, "data", ("train", "val", "test") if self.method.scores_use_labels else (split,))
        mask = getattr(data, f"{split}_mask").to(self._device())
        with evaluating(self):
            return masked_accuracy(self.scores(data, split), data.y.to(mask.device), mask)

    def _fingerprint(self, data) -> dict[str, Any]:
        """What a checkpoint of this model on ``data`` must match: the model's shape and the graph with its split."""
        options = {k: v for k, v in self.options.items() if k != "cache"}
        return {"model": {"method": self.rule, "conv": self.conv, "layers": self.layers, "hidden": self.hidden,
                          "in_dim": self.in_dim, "num_classes": self.num_classes, "seed": self.seed, **options},
                "graph": self._graph_fingerprint(data, data.x)}

    @staticmethod
    def _graph_fingerprint(data, x: Tensor) -> str:
        """The checkpoint's ``graph`` entry: ``data`` with its features ``x``, its labels and its split."""
        return tensor_fingerprint(x, data.edge_index, data.y, data.train_mask, data.val_mask, data.test_mask)

    def _device(self) -> torch.device:
        """Where the model scores (its parameters' device); one on the meta device is refused, naming it (the graph,
        moved there, was refused as a meta graph, or torch's "nonzero ... unimplemented" named nothing)."""
        check_model_values(self, "scoring reads its values", "this ForwardGNN")
        return next(self.parameters()).device

    def layer_losses(self, data) -> list[Tensor]:
        """The losses of one training step on ``data`` without caching, each attached to what it trains.

        Used to check that no gradient crosses layers; BP returns a single end-to-end loss.
        """
        check_masks(data)
        return self.method.layer_losses(self.blocks, data)

    # ------------------------------------------------------------------ training
    @keeps_mode
    def fit(self, data, epochs: int = 300, lr: float = 1e-3, weight_decay: float = 5e-4, patience: int | None = 100,
            eval_every: int = 1, quiet: bool = False, bp_lr: float | None = None,
            checkpoint: str | Path | None = None, resume: bool = False, overwrite: bool = False) -> FitReport:
        """Train on ``data`` (its ``train_mask``), early-stopping on ``val_mask``; return a :class:`FitReport`.

        Args:
            epochs: the epoch budget per layer for the layer-by-layer methods (``sf``, ``ff-la``, ``ff-vn``,
                ``ff-symba``: a 4-layer fit runs up to ``4 * epochs``), in total for the methods that train every layer
                at once (``bp``, ``dfa``, ``sf-top2input``, ``sf-top2loss``); the report's ``epochs_run`` sums the
                layers'.
            lr, weight_decay: Adam settings of every layer (and of BP unless ``bp_lr``).
            patience: early-stopping patience in evaluations (``None``: use every epoch).
            eval_every: evaluate every this many epochs (and at the last epoch of each layer or run).
            quiet: no progress bars.
            bp_lr: the learning rate when the method is ``bp`` (default ``lr``); ignored, with a warning, by the
                other methods.
            checkpoint: keep a checkpoint of the training in this file (the layer being trained, its optimizer,
                the frozen layers), written at every evaluation. Refused when several processes run (``WORLD_SIZE`` > 1,
                as ``torchrun`` sets it, or inside a process group, also where one process alone passes it): each
                trains the whole model, and none can know that it alone writes the file
                (:func:`~fwdlearn.fit.check_unshared_checkpoint`).
            resume: continue from ``checkpoint`` (refused without one); it must come from the same model and graph
                (a different method, shape, graph or split is refused, naming the difference; the same graph with
                its features in another dtype is refused naming the dtype to cast back to). New ``lr`` and
                ``weight_decay`` values apply.
            overwrite: let this fit replace an existing ``checkpoint`` (without ``resume``).

        The defaults are a shorter budget than the reference's scripts (forwardgnn's ``exp/nodeclass/*.sh``: 1000
        epochs per layer, or in all for the top-down methods, validated every 2 epochs with a patience of 100
        validations, lr 1e-3, weight decay 5e-4): ``fit(data, epochs=1000, eval_every=2, patience=100)`` runs
        their budget.

        Runs on the device of ``data.x`` (the model is moved there). The model keeps its train/eval mode; a second
        ``fit`` goes on from the current weights with a fresh optimizer (``checkpoint``/``resume`` continue the
        optimizer too). Inside ``torch.no_grad()`` it still trains; inside ``torch.inference_mode()`` it is refused.
        """
        # (the labels and masks by check_node_data, which names what training lacks: the scoring check offered
        # inductive scores, no fix for a fit, and called a graph with labels but no masks unlabelled)
        self._check_graph(data, labels=False)
        resume = check_resume(resume, checkpoint)
        check_unshared_checkpoint(checkpoint, "ForwardGNN.fit")
        check_trainable_dtype(self, "this ForwardGNN")
        check_node_data(data)
        epochs = check_fit_arguments(epochs, lr, weight_decay, bp_lr, next(self.parameters()).dtype)
        if int(data.y.max()) >= self.num_classes:
            top = int(data.y.max())
            raise ValueError(f"data has labels up to {top} but the model has num_classes={self.num_classes} (labels "
                             f"0..{self.num_classes - 1}): build it with num_classes={top + 1}, or number the classes "
                             "0..K-1 (data.y = torch.unique(data.y, return_inverse=True)[1] when every node is "
                             "labelled)")
        self.to(data.x.device)
        if bp_lr is not None and self.rule == "bp":
            lr = bp_lr
        elif bp_lr is not None:  # (bp_lr=10 trained an sf model at lr, silently)
            warn(f"bp_lr={bp_lr!r} is ignored: it is the learning rate of the bp method only, and this model's method "
                 f"is {self.rule}, trained at lr={lr!r}; to set its rate pass lr={bp_lr!r}, else drop bp_lr")
        saving = {}
        if checkpoint is not None:
            if "checkpointing" not in inspect.signature(self.method.fit).parameters:
                raise ValueError(f"the {self.rule} method does not keep checkpoints; train it without one")
            saving["checkpointing"] = Checkpointing(checkpoint, resume, overwrite, self._fingerprint(data))
            check_feature_dtype(saving["checkpointing"], data.x, lambda x: self._graph_fingerprint(data, x))
        fit = self.method.fit(self.blocks, data, epochs, lr, weight_decay, patience, eval_every, quiet, **saving)
        seconds = fit.seconds  # its training loops, the parts before a resume included
        self.eval()
        shared = None if self.method.scores_per_split else self._scores(data, None)
        accuracy = {}
        for split in ("test", "val", "train"):
            s = shared if shared is not None else self._scores(data, split)
            accuracy[split] = masked_accuracy(s, data.y.to(s.device), getattr(data, f"{split}_mask").to(s.device))
        return FitReport(self.rule, self.conv, self.layers, accuracy["test"], accuracy["val"], accuracy["train"],
                         seconds, fit.cost, fit.steps_run, fit.per_layer, fit.history, fit.resumed)

    # ------------------------------------------------------------------ persistence (ModelFile: save / load)
    FILE_KIND = "forward-gnn"
    FILE_HINT = ("ForwardGNN.save writes one; a fwdlearn graph train checkpoint holds a run's training state, not a "
                 "model file")

    def config_dict(self) -> dict[str, Any]:
        """What builds this model again, ``ForwardGNN(**config_dict())``: its shape, the method by its rule and the
        method's options."""
        takes = inspect.signature(ForwardGNN.__init__).parameters
        return {"in_dim": self.in_dim, "num_classes": self.num_classes, "conv": self.conv, "hidden": self.hidden,
                "layers": self.layers, "method": self.rule, "seed": self.seed,
                **{k: v for k, v in self.options.items() if k in takes}}
