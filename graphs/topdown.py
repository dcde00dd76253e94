r"""SF with top-down signals (ForwardGNN's SF-TopDown), one time step at a time.

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
one time step per epoch (states persist across epochs); updates are ``"sync"`` (every layer
every step) or ``"alternate"`` (even layers on even steps, odd layers on odd steps).
Evaluation starts from zero states, runs ``steps`` (10) time steps and accumulates the
per-layer class probabilities of steps 2..9.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.local import prototype_logits

__all__ = ["context_vectors", "topdown_step", "representations", "topdown_scores"]


def context_vectors(num_nodes: int, num_classes: int, labels: Tensor | None = None, mask: Tensor | None = None,
                    virtual: int = 0, device=None) -> Tensor:
    """``[N + virtual, K]``: one-hot labels on ``mask``, ``1/K`` elsewhere, one-hot of class ``k`` for virtual node ``k``."""
    ctx = torch.full((num_nodes + virtual, num_classes), 1.0 / num_classes, device=device)
    if mask is not None and labels is not None:
        ctx[:num_nodes][mask] = F.one_hot(labels[mask], num_classes).float()
    if virtual:
        ctx[num_nodes:] = torch.eye(num_classes, device=device)[:virtual]
    return ctx


def topdown_step(blocks: Sequence[nn.Module], kind: str, x: Tensor, edge_index: Tensor, states: Sequence[Tensor],
                 context: Tensor, detach: bool = True) -> list[Tensor]:
    """One time step: the new outputs of every layer.

    With ``detach`` (training) each output is attached only to its own block; without it
    (inference) the outputs stay differentiable in ``x`` and in the states.
    """
    outs: list[Tensor] = []
    h = x
    cut = (lambda t: t.detach()) if detach else (lambda t: t)
    for l, block in enumerate(blocks):
        if kind == "sf-top2input":
            top = states[l + 1] if l + 1 < len(blocks) else context
            inp = torch.cat([F.normalize(cut(h), dim=-1), F.normalize(cut(top), dim=-1)], dim=-1)
        else:
            inp = cut(h)
        h = block(inp, edge_index)
        outs.append(h)
    return outs


def representations(kind: str, outs: Sequence[Tensor], states: Sequence[Tensor], detach: bool = True) -> list[Tensor]:
    """What each layer's loss and scores see: its output (Top-To-Input) or the Top-To-Loss mean."""
    if kind != "sf-top2loss":
        return list(outs)
    return [torch.stack([outs[l]] + [s.detach() if detach else s for s in states[l + 1:]]).mean(0)
            for l in range(len(outs))]


def topdown_scores(blocks: Sequence[nn.Module], kind: str, x: Tensor, edge_index: Tensor, context: Tensor,
                   hidden: int, num_real: int, prototypes: Tensor | None = None, tau: float = 1.0,
                   steps: int = 10, first: int = 2, last: int = 9) -> tuple[Tensor, Tensor]:
    """Multi-step evaluation: class probabilities summed over layers and steps ``first..last``.

    Prototypes are the virtual nodes' rows (rows ``num_real..``) when ``prototypes`` is ``None``,
    else the stored ``[L, K, d]`` prototypes (for graphs without virtual nodes).

    Returns:
        ``[num_real, K]`` scores (normalised to sum to 1 per node) and the ``[L, K, d]`` prototypes
        used at the last evaluated step.
    """
    states = [x.new_zeros(x.shape[0], hidden) for _ in blocks]
    total = None
    protos_used = []
    for t in range(steps):
        outs = topdown_step(blocks, kind, x, edge_index, states, context, detach=False)
        reps = representations(kind, outs, states, detach=False)
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
