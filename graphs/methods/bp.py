r"""The BP baseline for node classification: end-to-end backprop of cross-entropy.

.. math::
    \mathcal{L} = -\frac{1}{|T|}\sum_{i \in T} \log \operatorname{softmax}\big(f(X, A)_i\big)_{y_i},

one Adam over all parameters, the gradient flowing through every layer
(:func:`fwdlearn.schedules.end_to_end_step`). This is the package's one BP node-classification
trainer: it works for any ``model(x, edge_index)`` that returns class logits ``[N, K]``
(``ForwardGNN(method="bp")`` uses it, and so can any PyG model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.diagnostics.cost import CostReport
from fwdlearn.fit import Checkpointing, Stateful, Trainer, compact_repr, evaluating
from fwdlearn.metrics import masked_accuracy
from fwdlearn.schedules import end_to_end_step

from fwdlearn.graphs.data.datasets import check_node_data
from fwdlearn.graphs.methods.base import GraphMethod, MethodFit, fit_history
from fwdlearn.graphs.nn.backbones import BlockStack, fixed_inputs

__all__ = ["Backprop", "train_node_classifier", "NodeFit"]


@dataclass
class NodeFit:
    """What :func:`train_node_classifier` measured: the accuracies of the restored best state on each mask,
    ``fit_seconds`` (the training loop's wall time, :attr:`fwdlearn.fit.FitResult.seconds`), ``steps_run`` (the
    full-batch epochs trained; also as ``epochs_run``, the name :class:`~fwdlearn.graphs.FitReport` gives them),
    ``cost`` (:class:`~fwdlearn.diagnostics.cost.CostReport` of the measured first step), ``history`` (one row per
    epoch: ``epoch``, ``loss``, ``val_accuracy`` when evaluated; ``print(fit)`` gives its length, ``history=<200
    rows>``) and ``resumed`` (a resumed fit: ``{"from_step": s, "changed": {...}}``)."""

    val_accuracy: float
    test_accuracy: float
    train_accuracy: float
    fit_seconds: float
    steps_run: int
    cost: CostReport
    history: list = field(default_factory=list)
    resumed: dict | None = None

    __repr__ = compact_repr  # (as FitReport's: every figure, the history as its length)

    @property
    def epochs_run(self) -> int:
        """:attr:`steps_run`, by the name :class:`~fwdlearn.graphs.FitReport` and ``LinkReport`` give it."""
        return self.steps_run


def train_node_classifier(model: nn.Module, data, epochs: int = 200, lr: float = 1e-3, weight_decay: float = 5e-4,
                          patience: int | None = 100, eval_every: int = 1, quiet: bool = True,
                          desc: str = "bp", checkpointing: Checkpointing | None = None,
                          training_forward: Callable[[Tensor, Tensor], Tensor] | None = None) -> NodeFit:
    """Train ``model(x, edge_index) -> logits`` end to end on ``data.train_mask``; keep the best validation state.

    One step is one full-batch epoch (:func:`fwdlearn.schedules.end_to_end_step`). The first step is measured
    (:func:`fwdlearn.diagnostics.cost.measure_cost`: bytes saved for backward, peak memory). Runs on the
    device of ``data.x`` (the model is moved there).

    ``data`` is checked as :meth:`~fwdlearn.graphs.nn.forward_gnn.ForwardGNN.fit` checks it (features of the model's
    dtype, edge ids, int64 labels, disjoint non-empty boolean masks without negative labels, finite features), so a
    malformed graph is refused by name instead of being trained and scored on the wrong nodes.

    Args:
        model: any module ``model(x, edge_index) -> [N, K]`` logits (a PyG model, ``ForwardGNN``'s BP backbone).
        data: a PyG ``Data`` with ``x``, ``edge_index``, int64 ``y`` and boolean ``train_mask``, ``val_mask``,
            ``test_mask``.
        epochs: the step budget (full-batch epochs); lr, weight_decay: Adam's.
        patience: evaluations without a better validation accuracy before stopping (``None``: never).
        eval_every: epochs between evaluations; quiet: no progress bar; desc: the progress bar's label.
        checkpointing: keep (and resume) a checkpoint of the model and its optimizer.
        training_forward: the logits of a training step, when they are computed through a graph that
            changes what backward does (DFA's feedback points); default ``model`` (BP). Evaluation
            always calls ``model``.
    """
    parameter = next(model.parameters(), None)
    check_node_data(data, parameter.dtype if parameter is not None else None)
    device = data.x.device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, edge_index, y, train = data.x, data.edge_index, data.y, data.train_mask
    forward = training_forward if training_forward is not None else model
    top = int(y[train | data.val_mask | data.test_mask].max())  # the largest class id the model must score

    def step(_: int) -> dict:
        model.train()
        logits = forward(x, edge_index)
        _check_logits(logits, top, x.shape[0])
        return end_to_end_step(F.cross_entropy(logits[train], y[train]), optimizer)

    def evaluate() -> dict:
        with evaluating(model), torch.no_grad():
            return {"val_accuracy": masked_accuracy(model(x, edge_index), y, data.val_mask)}

    saving = checkpointing.trainer_options() if checkpointing is not None else {}
    with fixed_inputs(model):  # (its GNN blocks normalise the features once, not at every step and evaluation)
        result = Trainer(epochs, patience=patience, eval_every=eval_every, quiet=quiet, desc=desc, unit="epoch",
                         measure_first_step=True, device=device,
                         # (the budget too: a resume with more epochs reported no change, as the layer-wise fits do)
                         settings={"lr": lr, "weight_decay": weight_decay, "steps": epochs},
                         raise_limit=None, **saving).run(
            step, evaluate, state=Stateful({"model": model, "optimizer": optimizer}, best=("model",)))
        seconds = result.seconds  # the whole training loop, the part before a resume included
        model.eval()
        with torch.no_grad():
            scores = model(x, edge_index)
    return NodeFit(masked_accuracy(scores, y, data.val_mask), masked_accuracy(scores, y, data.test_mask),
                   masked_accuracy(scores, y, train), seconds, result.steps_run,
                   CostReport.from_costs([result.first_step_cost]), fit_history([result], per_layer=False),
                   result.resumed)


def _check_logits(logits: Tensor, top: int, num_nodes: int) -> None:
    """Refuse logits that are not ``[num_nodes, K]`` with a class for every label of the masks (``top``, the
    largest): a training label past the model's classes failed with torch's raw 'Target 5 is out of bounds', and
    one in the validation or test split was silently scored as an error."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != num_nodes:
        found = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"model(x, edge_index) must return class logits [num_nodes, num_classes], one row per node "
                         f"({num_nodes}); got {found}")
    if top >= logits.shape[1]:
        raise ValueError(f"data.y holds labels up to {top} on the train/val/test masks, but the model scores "
                         f"{logits.shape[1]} classes (labels 0..{logits.shape[1] - 1}): build it with "
                         f"{top + 1} output classes, or number the classes 0..K-1 "
                         "(data.y = torch.unique(data.y, return_inverse=True)[1] when every node is labelled)")


class Backprop(GraphMethod):
    r"""End-to-end BP (rule ``bp``; backpropagation, Rumelhart, Hinton & Williams, Nature 1986; ForwardGNN's baseline,
    Park et al., ICLR 2024): the blocks and a linear classifier, one cross-entropy through every layer,

    .. math::
        h_0 = X, \quad h_l = \operatorname{block}_l(h_{l-1}, A), \quad Y = h_L W_c^\top + b_c, \qquad
        \mathcal{L} = -\frac{1}{|T|}\sum_{i \in T} \log \operatorname{softmax}(Y_i)_{y_i}."""

    rule: ClassVar[str] = "bp"
    schedule: ClassVar[str] = "end-to-end"
    scores_use_labels = False

    def make_blocks(self) -> nn.ModuleList:
        """The blocks, then the classifier on top (initialised in that order)."""
        blocks = super().make_blocks()
        self.classifier = nn.Linear(self.hidden, self.num_classes)
        return blocks

    def scores(self, blocks, x, edge_index, y=None, train=None) -> Tensor:
        h = x
        for block in blocks:
            h = block(h, edge_index)
        return self.classifier(h)

    def block_stack(self, blocks: nn.ModuleList) -> BlockStack:
        return BlockStack(list(blocks), self.classifier)

    def training_scores(self, blocks: nn.ModuleList, x: Tensor, edge_index: Tensor) -> Tensor:
        """The logits of a training step: the plain forward for BP; a rule that changes what backward
        computes (DFA) marks its feedback points here."""
        return self.scores(blocks, x, edge_index)

    def layer_losses(self, blocks, data) -> list[Tensor]:
        return [F.cross_entropy(self.training_scores(blocks, data.x, data.edge_index)[data.train_mask],
                                data.y[data.train_mask])]

    def fit(self, blocks, data, epochs, lr, weight_decay, patience, eval_every, quiet,
            checkpointing: Checkpointing | None = None) -> MethodFit:
        model = _Classifier(self, blocks)
        fit = train_node_classifier(model, data, epochs, lr, weight_decay, patience, eval_every, quiet,
                                    desc=f"{self.rule} {self.conv}-{self.layers}", checkpointing=checkpointing,
                                    training_forward=lambda x, edge_index: self.training_scores(blocks, x, edge_index))
        return MethodFit([], [], fit.steps_run, fit.cost, fit.history, seconds=fit.fit_seconds, resumed=fit.resumed)


class _Classifier(nn.Module):
    def __init__(self, method: GraphMethod, blocks: nn.ModuleList) -> None:
        super().__init__()
        self.method, self.blocks = method, blocks

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.method.scores(self.blocks, x, edge_index)
