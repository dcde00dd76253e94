r"""SF with top-down signals (ForwardGNN's SF-TopDown), one time step at a time: :class:`TopToInput`
and :class:`TopToLoss`.

States :math:`h_{l,t}` of every layer are kept from the previous time step (detached).

- **Top-To-Input** (``"sf-top2input"``): layer :math:`l` sees the layer below now and the
  layer above one step ago,

  .. math::
      h_{l,t} = \operatorname{block}_l\big([\,\bar h_{l-1,t} \,\Vert\, \bar h_{l+1,t-1}\,]\big),

  and the top layer's top-down input is a context vector :math:`c_i` (one-hot label of a
  training node or of a virtual node's class, :math:`\mathbf 1/K` for the others).
- **Top-To-Loss** (``"sf-top2loss"``): layer :math:`l` sees only the layer below, and its
  loss is taken on the mean with the detached upper layers of the previous step,

  .. math::
      r_{l,t} = \tfrac{1}{L-l+1}\Big(h_{l,t} + \sum_{m>l} \operatorname{sg}(h_{m,t-1})\Big).

In both, the loss of layer :math:`l` is SF's prototype cross-entropy on :math:`r_{l,t}`
(:math:`r = h` for Top-To-Input) with the virtual nodes' rows as prototypes. Training runs
one time step per epoch (states persist across epochs), every layer updated every step; a time step is
``"sync"`` (bottom up, as above) or ``"alternate"`` (the reference's alternating update: the even layers from the
previous step's states of their neighbours, then the odd layers from the even layers' new outputs below and above),
in training and evaluation alike.
Evaluation starts from zero states, runs ``steps`` (10) time steps and accumulates the
per-layer class probabilities of steps 2..steps-1 (2..9 at the default 10), as the reference's Top-To-Input does for
every ``--test-time-steps`` T: its ``train_forward.py`` sets the accumulated steps to ``range(T)[2:]`` unless
``--storable-time-steps`` is given (T = 20: steps 2..19 of every layer), and ``GNNTop2InputSF.eval_model`` adds each
layer's softmax at those steps. (The reference's Top-To-Loss reads no ``--test-time-steps``: it infers in one pass.)

Differences from the reference's code (measured in docs/benchmarks.md): its non-alternating update reads the previous
step's states below and above, where ``"sync"`` reads the layer below of this step; it starts from a bottom-up pass
where this starts from zero states; and its Top-To-Loss also averages normalised stored states, clips each layer's
gradient norm to 1 and infers in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.errors import check_range, check_representable, is_integer
from fwdlearn.fit import Carried, Checkpointing, Stateful, Trainer, evaluating
from fwdlearn.local import prototype_cross_entropy, prototype_logits
from fwdlearn.metrics import masked_accuracy
from fwdlearn.schedules import LocalOptimizers, local_step

from fwdlearn.graphs.methods.base import GraphMethod, MethodFit, fit_history
from fwdlearn.graphs.methods.virtual_nodes import add_virtual_nodes, virtual_features
from fwdlearn.graphs.nn.backbones import GNNBlock, normalize_rows

__all__ = ["TopToInput", "TopToLoss", "context_vectors", "topdown_step", "topdown_scores"]


def context_vectors(num_nodes: int, num_classes: int, labels: Tensor | None = None, mask: Tensor | None = None,
                    virtual: int = 0, device=None, dtype: torch.dtype | None = None) -> Tensor:
    """``[N + virtual, K]``: one-hot labels on ``mask``, ``1/K`` elsewhere, one-hot of class ``k`` for virtual node
    ``k`` (in ``dtype``, the features': default float32)."""
    ctx = torch.full((num_nodes + virtual, num_classes), 1.0 / num_classes, device=device, dtype=dtype)
    if mask is not None and labels is not None:
        ctx[:num_nodes][mask] = F.one_hot(labels[mask], num_classes).to(ctx.dtype)
    if virtual:
        ctx[num_nodes:] = torch.eye(num_classes, device=device, dtype=ctx.dtype)[:virtual]
    return ctx


def topdown_step(blocks: Sequence[nn.Module], method: "TopDown", x: Tensor, edge_index: Tensor,
                 states: Sequence[Tensor], context: Tensor, detach: bool = True, update: str = "sync") -> list[Tensor]:
    """One time step: the new outputs of every layer.

    ``update="sync"``: bottom up, layer :math:`l` reads layer :math:`l-1` of this step (and, Top-To-Input, layer
    :math:`l+1` of the previous one). ``"alternate"`` (the reference's alternating update): the even layers first,
    reading the previous step's states of their neighbours (layer 0: the input), then the odd layers, reading the
    even layers' new outputs below and above. What a block reads is ``method``'s (:meth:`TopDown.block_input`; the
    top layer's "above" is the context). With ``detach`` (training) each output is attached only to its own block;
    without it (inference) the outputs stay differentiable in ``x`` and in the states.
    """
    L = len(blocks)
    cut = (lambda t: t.detach()) if detach else (lambda t: t)

    def run(l: int, below: Tensor, above: Tensor | None) -> Tensor:
        top = context if l + 1 == L else above
        return blocks[l](method.block_input(cut(below), cut(top)), edge_index)

    outs: list[Tensor] = [x] * L
    if update == "sync":
        h = x
        for l in range(L):
            h = outs[l] = run(l, h, states[l + 1] if l + 1 < L else None)
        return outs
    for l in range(0, L, 2):
        outs[l] = run(l, x if l == 0 else states[l - 1], states[l + 1] if l + 1 < L else None)
    for l in range(1, L, 2):
        outs[l] = run(l, outs[l - 1], outs[l + 1] if l + 1 < L else None)
    return outs


def topdown_scores(blocks: Sequence[nn.Module], method: "TopDown", x: Tensor, edge_index: Tensor, context: Tensor,
                   hidden: int, num_real: int, prototypes: Tensor | None = None, tau: float = 1.0,
                   steps: int = 10, first: int = 2, last: int | None = None, update: str = "sync"
                   ) -> tuple[Tensor, Tensor]:
    """Multi-step evaluation: class probabilities summed over layers and steps ``first..last`` (``last``: default
    the final step, ``steps - 1``).

    Prototypes are the virtual nodes' rows (rows ``num_real..``) when ``prototypes`` is ``None``,
    else the stored ``[L, K, d]`` prototypes (for graphs without virtual nodes).

    Returns:
        ``[num_real, K]`` scores (normalised to sum to 1 per node) and the ``[L, K, d]`` prototypes
        used at the last evaluated step.
    """
    last = steps - 1 if last is None else last  # (a fixed 9 ran steps=20's last ten steps and discarded them)
    states = [x.new_zeros(x.shape[0], hidden) for _ in blocks]
    total = None
    protos_used = []
    for t in range(min(steps, last + 1)):  # (steps after the window change nothing)
        outs = topdown_step(blocks, method, x, edge_index, states, context, detach=False, update=update)
        reps = method.representations(outs, states, detach=False)
        if first <= t <= last:
            protos_used = []
            for l, r in enumerate(reps):
                c = r[num_real:] if prototypes is None else prototypes[l]
                protos_used.append(c)
                p = prototype_logits(r[:num_real], c, tau).softmax(-1)
                total = p if total is None else total + p
        states = outs
    if total is None:
        raise ValueError(f"no evaluation step in {first}..{last} with steps={steps}; use steps > {first}")
    return total / total.sum(-1, keepdim=True), torch.stack(protos_used) if protos_used else torch.empty(0)


class TopDown(GraphMethod):
    """SF-TopDown, trained by the simultaneous local schedule (every layer every step, or alternating).

    Rules ``local:prototype:top2input`` (alias ``sf-top2input``) and ``local:prototype:top2loss``
    (``sf-top2loss``); see the module doc.

    Args:
        tau: SF temperature.
        update: how a time step runs the layers, ``"sync"`` (bottom up) or ``"alternate"`` (even layers, then odd
            layers reading the even layers' new outputs); see :func:`topdown_step`.
        steps: evaluation time steps (class probabilities accumulated over steps 2..steps-1: 2..9 at the default).
    """

    options: ClassVar[tuple[str, ...]] = ("tau", "update", "steps")
    schedule: ClassVar[str] = "simultaneous local"

    def __init__(self, in_dim, num_classes, hidden, layers, conv, seed=0, tau: float = 1.0, update: str = "sync",
                 steps: int = 10):
        super().__init__(in_dim, num_classes, hidden, layers, conv, seed)
        if update not in ("sync", "alternate"):
            raise ValueError(f"unknown update {update!r}; use 'sync' or 'alternate'")
        if not is_integer(steps) or steps < 3:
            raise ValueError(f"steps must be an int >= 3 (evaluation accumulates the class probabilities of steps "
                             f"2..steps-1); got {steps!r}")
        check_range("tau", tau, gt=0)  # (checked at fit time only for > 0: NaN passed and 'diverged')
        check_representable("tau", tau)  # (1e-40 overflowed the logits it divides: 'diverged' again)
        self.tau, self.update, self.steps = tau, update, steps
        self.register_buffer("virtual_x", virtual_features(num_classes, in_dim, seed))
        self.register_buffer("prototypes", torch.zeros(layers, num_classes, hidden))

    def block_input(self, below: Tensor, above: Tensor) -> Tensor:
        """What a block reads from the layer below (this step) and the layer above (the previous step's state, or
        the context for the top layer): by default the layer below alone."""
        return below

    def representations(self, outs: Sequence[Tensor], states: Sequence[Tensor], detach: bool = True) -> list[Tensor]:
        """What each layer's loss and scores see: by default its output."""
        return list(outs)

    def _training_graph(self, x, edge_index, y, train) -> tuple[Tensor, Tensor, Tensor]:
        xa, ea = add_virtual_nodes(x, edge_index, train.nonzero().flatten(), y[train], self.virtual_x)
        ctx = context_vectors(x.shape[0], self.num_classes, y, train, virtual=self.num_classes, device=x.device,
                              dtype=x.dtype)
        return xa, ea, ctx

    def scores(self, blocks, x, edge_index, y=None, train=None) -> Tensor:
        n = x.shape[0]
        if train is None:
            ctx = context_vectors(n, self.num_classes, device=x.device, dtype=x.dtype)
            scores, _ = topdown_scores(blocks, self, x, edge_index, ctx, self.hidden, n, self.prototypes,
                                       self.tau, self.steps, update=self.update)
            return scores
        xa, ea, ctx = self._training_graph(x, edge_index, y, train)
        scores, _ = topdown_scores(blocks, self, xa, ea, ctx, self.hidden, n, None, self.tau, self.steps,
                                   update=self.update)
        return scores

    def _losses(self, blocks, xa, ea, ctx, states, y, train, n) -> tuple[list[Tensor], list[Tensor]]:
        outs = topdown_step(blocks, self, xa, ea, states, ctx, update=self.update)
        reps = self.representations(outs, states)
        return [prototype_cross_entropy(r[:n][train], r[n:], y[train], self.tau) for r in reps], outs

    def layer_losses(self, blocks, data) -> list[Tensor]:
        x, y, train = data.x, data.y, data.train_mask
        xa, ea, ctx = self._training_graph(x, data.edge_index, y, train)
        states = [xa.new_zeros(xa.shape[0], self.hidden) for _ in blocks]
        return self._losses(blocks, xa, ea, ctx, states, y, train, x.shape[0])[0]

    def fit(self, blocks, data, epochs, lr, weight_decay, patience, eval_every, quiet,
            checkpointing: Checkpointing | None = None) -> MethodFit:
        x, y, train, val = data.x, data.y, data.train_mask, data.val_mask
        n = x.shape[0]
        xa, ea, ctx = self._training_graph(x, data.edge_index, y, train)
        optimizers = LocalOptimizers(list(blocks), lr=lr, weight_decay=weight_decay)
        states = Carried([xa.new_zeros(xa.shape[0], self.hidden) for _ in blocks], device=xa.device)

        def step(i: int) -> dict:
            blocks.train()
            losses, outs = self._losses(blocks, xa, ea, ctx, states.value, y, train, n)
            values = local_step(losses, optimizers)
            states.value = [o.detach() for o in outs]
            return {"loss": float(sum(v for v in values if v == v))}

        def evaluate() -> dict:
            with evaluating(blocks), torch.no_grad():
                s, _ = topdown_scores(blocks, self, xa, ea, ctx, self.hidden, n, None, self.tau, self.steps,
                                      update=self.update)
            return {"val_accuracy": masked_accuracy(s, y, val)}

        saving = checkpointing.trainer_options() if checkpointing is not None else {}
        result = Trainer(epochs, patience=patience, eval_every=eval_every, quiet=quiet, unit="epoch",
                         desc=f"{self.rule} {self.conv}-{self.layers}", measure_first_step=True, device=x.device,
                         settings={"lr": lr, "weight_decay": weight_decay, "steps": epochs}, raise_limit=None,
                         **saving).run(
            step, evaluate, state=Stateful({"blocks": blocks, "optimizers": optimizers, "states": states},
                                           best=("blocks",)))
        blocks.eval()
        with torch.no_grad():
            _, protos = topdown_scores(blocks, self, xa, ea, ctx, self.hidden, n, None, self.tau, self.steps,
                                       update=self.update)
            self.prototypes.copy_(protos)
        per_layer = [{"epochs_run": result.steps_run, "best_epoch": result.best_step,
                      "val_accuracy": result.best.get("val_accuracy")}]
        return MethodFit(per_layer, [result.first_step_cost], result.steps_run, seconds=result.seconds,
                         history=fit_history([result], per_layer=False), resumed=result.resumed)


class TopToInput(TopDown):
    r"""SF Top-To-Input (Park et al., ICLR 2024; ``local:prototype:top2input``): layer :math:`l` sees the layer below
    now and the layer above one step ago (the context :math:`c` above the top layer),

    .. math::
        h_{l,t} = \operatorname{ReLU}\big(\operatorname{conv}_l([\,\bar h_{l-1,t} \,\Vert\, \bar h_{l+1,t-1}\,])\big),
        \qquad \bar h_i = h_i / \max(\lVert h_i \rVert_2, \epsilon),

    trained by SF's prototype cross-entropy on :math:`h_{l,t}`. As the reference feeds it to the conv, the blocks do
    not normalise that concatenation again (which rescaled it by 1/sqrt(2), or by 1 where the upper state is zero, and
    cost about 8 points on Cora at 4 layers)."""

    rule: ClassVar[str] = "local:prototype:top2input"

    def block_input(self, below: Tensor, above: Tensor) -> Tensor:
        # (normalize_rows, as the blocks normalise: F.normalize turned rows whose norm overflows, float32 features
        # of 1e20, into zeros, and a zero row of float16 into NaN)
        return torch.cat([normalize_rows(below), normalize_rows(above)], dim=-1)

    def make_blocks(self):
        H, K, L = self.hidden, self.num_classes, self.layers
        dims = [self.in_dim] + [H] * L
        return nn.ModuleList(GNNBlock(self.conv, dims[l] + (H if l + 1 < L else K), H, normalize=False)
                             for l in range(L))


class TopToLoss(TopDown):
    r"""SF Top-To-Loss (Park et al., ICLR 2024; ``local:prototype:top2loss``): layer :math:`l` (of :math:`L`) sees only
    the layer below, and its SF loss and scores read the mean with the detached upper layers of the previous step,

    .. math::
        r_{l,t} = \frac{1}{L-l+1}\Big(h_{l,t} + \sum_{m=l+1}^{L} \operatorname{sg}(h_{m,t-1})\Big)."""

    rule: ClassVar[str] = "local:prototype:top2loss"

    def representations(self, outs: Sequence[Tensor], states: Sequence[Tensor], detach: bool = True) -> list[Tensor]:
        """Layer :math:`l`'s output averaged with the upper layers' states of the previous step (detached in
        training)."""
        return [torch.stack([outs[l]] + [s.detach() if detach else s for s in states[l + 1:]]).mean(0)
                for l in range(len(outs))]
