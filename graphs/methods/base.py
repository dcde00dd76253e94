r"""What a graph training method is, and the layer-by-layer engine most of them share.

A :class:`GraphMethod` owns everything a method adds to a stack of GNN blocks: the inputs it
feeds them (virtual nodes, appended labels, top-down context), its hyperparameters and buffers,
its blocks' widths, the loss of a layer, how class scores are read, and which schedule of
:mod:`fwdlearn.schedules` trains it. :class:`~fwdlearn.graphs.nn.forward_gnn.ForwardGNN` is the
model; it looks its method up by name in :data:`fwdlearn.graphs.methods.METHODS`.

:class:`LayerwiseMethod` is the engine of the methods trained **greedily layer by layer**
(:func:`fwdlearn.schedules.greedy_layerwise`). A method names the graphs ("streams") a layer runs
on -- for SF the training graph with class virtual nodes; for FF-LA a positive and a negative copy
with labels appended, and :math:`K` candidate copies for scoring -- and says

.. math::
    \mathcal{L}_l = \text{loss}(\{h^{(l)}_s\}_s), \qquad
    \text{scores} = \text{combine}\Big(\sum_l \text{scores}_l(\{h^{(l)}_s\}_s)\Big).

Because a layer's input is frozen while it trains, the neighbourhood aggregation of every stream
is computed once per layer (:mod:`~fwdlearn.graphs.nn.aggregation_cache`, GCN and SAGE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from fwdlearn.diagnostics.cost import Cost, CostReport
from fwdlearn.errors import UsageError, check_int, check_range, check_representable
from fwdlearn.fit import Checkpointing, FitResult, read_checkpoint
from fwdlearn.metrics import masked_accuracy
from fwdlearn.schedules import LayerJob, greedy_layerwise

from fwdlearn.graphs.nn.aggregation_cache import KeptOutputs, aggregation_dtype, prepare_input, propagation_matrix
from fwdlearn.graphs.nn.backbones import BlockStack, make_blocks

__all__ = ["GraphMethod", "LayerwiseMethod", "Streams", "MethodFit", "fit_history", "check_fit_arguments",
           "check_feature_dtype"]

#: name -> (node features, edge_index) of one graph a layer runs on
Streams = dict[str, tuple[Tensor, Tensor]]


def check_fit_arguments(epochs: Any, lr: Any, weight_decay: Any, bp_lr: Any = None, dtype: Any = None) -> int:
    """``epochs`` as an int ``>= 1``, and learning rates ``> 0`` and a weight decay ``>= 0`` (finite, and held by
    the parameters' ``dtype``: :func:`~fwdlearn.errors.check_representable`), named as the graph fits spell them;
    else :class:`~fwdlearn.errors.UsageError` / ``ValueError``."""
    check_range("lr", lr, gt=0)  # (lr=0 trained nothing and reported accuracies; a negative one, torch's raw error)
    check_range("bp_lr", bp_lr, gt=0, optional=True)
    check_range("weight_decay", weight_decay, min=0)
    for name, value in (("lr", lr), ("bp_lr", bp_lr), ("weight_decay", weight_decay)):  # (1e39: torch's raw error
        check_representable(name, value, dtype, small=name != "weight_decay")  # mid-fit; 1e-46: 0, nothing trains)
    return check_int("epochs", epochs, 1)


def check_feature_dtype(plan: Checkpointing | None, x: Tensor, graph_fingerprint: Callable[[Tensor], str]) -> None:
    """Refuse, naming the dtype and how to resume, a checkpoint of ``plan`` made on this graph with its features
    ``x`` in another floating dtype (``graph_fingerprint(x)``: the checkpoint's ``graph`` entry computed from the
    features): a float32 run resumed with ``data.x`` in float64 was refused as made by a different run, "graph
    'a94f...' (checkpoint) vs '755e...' (now)", as if the graph had changed. Nothing is checked without a checkpoint
    to resume; any other difference is left to the Trainer's check, which names it."""
    if plan is None or not plan.resume or not Path(plan.path).expanduser().is_file():
        return
    path = Path(plan.path).expanduser()
    saved = (read_checkpoint(path, mmap=True).get("fingerprint") or {}).get("graph")
    if saved is None or saved == graph_fingerprint(x):
        return
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        if dtype != x.dtype and graph_fingerprint(x.to(dtype)) == saved:
            name = str(dtype).removeprefix("torch.")
            raise UsageError(f"the checkpoint {path} was made on this graph with its features in {name}, and "
                             f"data.x is {str(x.dtype).removeprefix('torch.')} now: resume in the checkpoint's "
                             f"precision, data.x = data.x.to(torch.{name}) and model.to(torch.{name}), or start a new "
                             "run (another checkpoint, or overwrite=True)")


class MethodFit:
    """What a method's ``fit`` did: per-layer rows, the steps run in all, the memory its steps needed, the
    training history (one row per epoch: ``epoch`` counted over the whole fit, ``layer`` for methods
    trained layer by layer, ``loss`` and, when evaluated, ``val_accuracy``) and the wall time of its training
    loops, the parts before a resume included; ``resumed``: where a resumed fit continued and the settings it
    changed (:attr:`fwdlearn.fit.FitResult.resumed`), ``None`` for a fresh fit."""

    def __init__(self, per_layer: list[dict[str, Any]], costs: list[Cost | None], steps_run: int,
                 cost: CostReport | None = None, history: list[dict[str, Any]] | None = None,
                 seconds: float = 0.0, resumed: dict[str, Any] | None = None) -> None:
        self.per_layer, self.steps_run, self.seconds, self.resumed = per_layer, steps_run, seconds, resumed
        self.cost = cost if cost is not None else CostReport.from_costs(costs)
        self.history = history or []


def resumed_from(results: list[FitResult]) -> dict[str, Any] | None:
    """The resume of a fit made of one or more Trainer runs (one per layer): the latest run that continued a
    checkpoint (layers finished before the checkpoint keep the resumes of the runs that trained them)."""
    return next((r.resumed for r in reversed(results) if r.resumed is not None), None)


def fit_history(results: list[FitResult], per_layer: bool) -> list[dict[str, Any]]:
    """The Trainer histories of one or more runs as one list of rows with a running ``epoch``."""
    rows: list[dict[str, Any]] = []
    for layer, result in enumerate(results):
        for row in result.history:
            new = {k: v for k, v in row.items() if k != "step"}
            new["epoch"] = len(rows) + 1
            if per_layer:
                new["layer"] = layer + 1
            rows.append(new)
    return rows


class GraphMethod(nn.Module):
    r"""How one training method feeds, trains and scores a stack of GNN blocks.

    Subclasses set :attr:`rule` (its canonical spelling in :mod:`fwdlearn.rules`, the registry key),
    :attr:`options` (the hyperparameters they take from ``ForwardGNN(...)``) and implement
    :meth:`fit` and :meth:`scores`; they may override :meth:`make_blocks` and :meth:`options_from_rule`
    (when one class serves several spellings of a rule, such as ``dfa`` and ``dfa:gaussian``).

    Args:
        in_dim, num_classes, hidden, layers, conv: the model's shape.
        seed: seed of anything random the method draws (virtual-node features, negatives).
    """

    rule: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    schedule: ClassVar[str] = ""
    #: whether transductive scores read the training labels (virtual nodes, appended labels, top-down context)
    scores_use_labels: ClassVar[bool] = True
    #: whether the scores of a node depend on which nodes are evaluated with it (the FF methods: candidate labels go
    #: to the evaluated split only, and the splits before it keep their labels), so each split is scored on its own
    scores_per_split: ClassVar[bool] = False
    #: whether the inductive scores of a disjoint union of graphs are each graph's own scores (as for message passing);
    #: False when the method joins the graphs (shared virtual nodes) or reads the whole graph (a global feature
    #: minimum): :func:`~fwdlearn.graphs.influence.hop_influence` then measures one seed's ball at a time
    separable: ClassVar[bool] = True
    #: whether it trains on goodness with negative samples (the FF methods), which learns slowly at the learning rate
    #: of the other forward methods: ``fwdlearn bench graph`` gives these ``--ff-lr``
    goodness: ClassVar[bool] = False

    def __init__(self, in_dim: int, num_classes: int, hidden: int, layers: int, conv: str, seed: int = 0) -> None:
        super().__init__()
        self.in_dim, self.num_classes, self.hidden, self.layers, self.conv, self.seed = (
            in_dim, num_classes, hidden, layers, conv, seed)

    @classmethod
    def options_from_rule(cls, spec: str) -> dict[str, Any]:
        """Options a method reads from the rule it was asked for (DFA's feedback kind in ``"dfa:gaussian"``).

        ``ForwardGNN(method=spec)`` passes them to the constructor; the default reads none.
        """
        return {}

    def make_blocks(self) -> nn.ModuleList:
        """The model's blocks (default: ``in_dim -> hidden -> ... -> hidden``, ``layers`` of them)."""
        return make_blocks(self.conv, [self.in_dim] + [self.hidden] * self.layers)

    def block_stack(self, blocks: nn.ModuleList) -> BlockStack | None:
        """The inductive scores as blocks and a linear head, when they are that (BP, DFA); ``None`` otherwise."""
        return None

    def fit(self, blocks: nn.ModuleList, data, epochs: int, lr: float, weight_decay: float, patience: int | None,
            eval_every: int, quiet: bool, checkpointing: Checkpointing | None = None) -> MethodFit:
        """Train ``blocks`` on ``data``; ``checkpointing`` (optional: a method without it cannot be checkpointed)
        hands the checkpoint path, resume flag and fingerprint to the schedule's Trainer(s)."""
        raise NotImplementedError

    def scores(self, blocks: nn.ModuleList, x: Tensor, edge_index: Tensor, y: Tensor | None = None,
               train: Tensor | None = None, evaluated: Tensor | None = None) -> Tensor:
        """Class scores ``[N, K]``: inductive (``y``/``train`` ``None``) or with the labels of ``train`` (the known
        nodes) used as in training. ``evaluated``: the nodes being scored (default: all outside ``train``), read by
        the methods with :attr:`scores_per_split`."""
        raise NotImplementedError

    def layer_losses(self, blocks: nn.ModuleList, data) -> list[Tensor]:
        """The losses of one training step, each attached to the parameters it trains (for checks)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"rule={self.rule}"


class LayerwiseMethod(GraphMethod):
    """A method trained greedily layer by layer on named streams (see the module doc).

    Subclasses implement :meth:`training_streams`, :meth:`scoring_streams`, :meth:`layer_loss` and
    :meth:`layer_scores`; they may override :meth:`combine`, :meth:`finish_layer` and :meth:`next_inputs`.
    """

    schedule: ClassVar[str] = "greedy layer-wise"
    options: ClassVar[tuple[str, ...]] = ("cache",)

    def __init__(self, in_dim: int, num_classes: int, hidden: int, layers: int, conv: str, seed: int = 0,
                 cache: bool = True) -> None:
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed)
        self.cache = cache

    # ---------------------------------------------------------------- what a method says
    def training_streams(self, x: Tensor, edge_index: Tensor, y: Tensor, train: Tensor,
                         generator: torch.Generator) -> Streams:
        """The graphs a layer's loss is computed on."""
        raise NotImplementedError

    def scoring_streams(self, x: Tensor, edge_index: Tensor, y: Tensor | None, train: Tensor | None,
                        evaluated: Tensor | None = None) -> Streams:
        """The graphs class scores are read from (transductive when ``y``/``train`` are given). Methods with
        :attr:`scores_per_split` also get ``evaluated``, the nodes scored (see :meth:`GraphMethod.scores`); while
        training, validation is scored with ``train`` known and ``evaluated`` the validation nodes."""
        raise NotImplementedError

    def layer_loss(self, outs: dict[str, Tensor], y: Tensor, train: Tensor, num_nodes: int, layer: int) -> Tensor:
        """The loss of layer ``layer`` from its outputs on the training streams."""
        raise NotImplementedError

    def layer_scores(self, outs: dict[str, Tensor], num_nodes: int, layer: int) -> Tensor:
        """``[N, K]`` class scores of layer ``layer`` from its outputs on the scoring streams."""
        raise NotImplementedError

    def combine(self, total: Tensor) -> Tensor:
        """The model's scores from the per-layer scores summed over layers."""
        return total

    def finish_layer(self, layer: int, outs: dict[str, Tensor], num_nodes: int) -> None:
        """Called once layer ``layer`` is trained, with its outputs on every stream."""

    def next_inputs(self, outs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each stream's input to the next layer from a layer's outputs (default: the stream's own output)."""
        return outs

    # ---------------------------------------------------------------- the engine
    def _scoring_streams(self, x, edge_index, y, train, evaluated) -> Streams:
        """:meth:`scoring_streams`, given ``evaluated`` only by the methods that read it (:attr:`scores_per_split`)."""
        if self.scores_per_split:
            return self.scoring_streams(x, edge_index, y, train, evaluated)
        return self.scoring_streams(x, edge_index, y, train)

    def scores(self, blocks, x, edge_index, y=None, train=None, evaluated=None) -> Tensor:
        n = x.shape[0]
        streams = self._scoring_streams(x, edge_index, y, train, evaluated)
        hs = {s: g[0] for s, g in streams.items()}
        total = None
        for l, block in enumerate(blocks):
            hs = {s: block(hs[s], streams[s][1]) for s in streams}
            part = self.layer_scores(hs, n, l)
            hs = self.next_inputs(hs)
            total = part if total is None else total + part
        return self.combine(total)

    def layer_losses(self, blocks, data) -> list[Tensor]:
        x, ei, y, train = data.x, data.edge_index, data.y, data.train_mask
        streams = self.training_streams(x, ei, y, train, torch.Generator().manual_seed(self.seed))
        inputs, losses = {s: g[0] for s, g in streams.items()}, []
        for l, block in enumerate(blocks):  # each block on the detached inputs the one below hands on
            outs = {s: block(inputs[s].detach(), streams[s][1]) for s in streams}
            losses.append(self.layer_loss(outs, y, train, x.shape[0], l))
            inputs = self.next_inputs(outs)
        return losses

    def fit(self, blocks, data, epochs, lr, weight_decay, patience, eval_every, quiet,
            checkpointing: Checkpointing | None = None) -> MethodFit:
        x, ei, y, train, val = data.x, data.edge_index, data.y, data.train_mask, data.val_mask
        n = x.shape[0]
        training = self.training_streams(x, ei, y, train, torch.Generator().manual_seed(self.seed))
        scoring = self._scoring_streams(x, ei, y, train, val)
        streams = {**scoring, **training}
        matrices: dict[int, Tensor] = {}  # one propagation matrix per distinct graph

        def matrix_for(block, name: str) -> Tensor | None:
            features, edges = streams[name]
            if not (self.cache and block.cacheable):
                return None
            if id(edges) not in matrices:
                matrices[id(edges)] = propagation_matrix(block.kind, edges, features.shape[0],
                                                         aggregation_dtype(x.dtype))
            return matrices[id(edges)]

        state = {"inputs": {s: g[0] for s, g in streams.items()},
                 "total": torch.zeros(n, self.num_classes, device=x.device)}

        def job(l: int, block) -> LayerJob:
            prepared = {s: prepare_input(block, state["inputs"][s], streams[s][1], self.cache, matrix_for(block, s))
                        for s in streams}
            # a stream both scored and trained on (SF's "pos"): the evaluation after a step computes, with a graph,
            # the very output the next step's loss needs (same input, same weights), so the loss takes it over
            # instead of computing it again (about a fifth of an SF fit at 2 layers on Cora); any change of the
            # weights (a step, a restored state) drops it (KeptOutputs)
            # (and in its own mode: see KeptOutputs)
            kept = KeptOutputs(block, prepared)

            def loss() -> Tensor:
                return self.layer_loss({s: kept.get(s, take=True) for s in training}, y, train, n, l)

            def evaluate() -> dict:
                outs = {s: kept.evaluated(s, keep=s in training) for s in scoring}
                with torch.no_grad():
                    scores = self.layer_scores(outs, n, l)
                return {"val_accuracy": masked_accuracy(state["total"] + scores, y, val)}

            def finish(result: FitResult) -> None:
                kept.clear()
                outs = {s: kept.evaluated(s) for s in streams}
                with torch.no_grad():
                    state["total"] = state["total"] + self.layer_scores({s: outs[s] for s in scoring}, n, l)
                    self.finish_layer(l, outs, n)
                state["inputs"] = self.next_inputs(outs)

            return LayerJob(loss, evaluate, finish)

        results = greedy_layerwise(blocks, job, epochs, lr=lr, weight_decay=weight_decay, patience=patience,
                                   eval_every=eval_every, quiet=quiet, desc=f"{self.rule} {self.conv} layer",
                                   device=x.device, checkpointing=checkpointing, unit="epoch")
        per_layer = [{"layer": l + 1, "epochs_run": r.steps_run, "best_epoch": r.best_step,
                      "val_accuracy": r.best.get("val_accuracy"),
                      "saved_bytes_per_step": r.first_step_cost.saved_bytes if r.first_step_cost else 0}
                     for l, r in enumerate(results)]
        return MethodFit(per_layer, [r.first_step_cost for r in results], sum(r.steps_run for r in results),
                         seconds=sum(r.seconds for r in results),
                         history=fit_history(results, per_layer=True), resumed=resumed_from(results))
