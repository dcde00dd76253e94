r"""How well a training mode's state gradient matches the true one, by distance from the sequence end.

For a window of length :math:`T`, BPTT's true state gradient of layer :math:`l` is the total
derivative :math:`g^{\text{true}}_t = \partial\mathcal{L}/\partial s_t` (read from a step-by-step
unrolled graph); a mode such as DSF pushes :math:`g_t` instead. Their agreement per position,

.. math::
    c_t = \frac{1}{B}\sum_b \cos\big(g_{b,t},\, g^{\text{true}}_{b,t}\big), \qquad d = T - 1 - t,

is reported against the distance :math:`d` from the end of the window: at :math:`d = 0` both are the
local error :math:`e_{T-1}` (cosine 1 for the top layer); further back, BPTT's Jacobian products and
DSF's fixed decays diverge. Cosines come from :mod:`fwdlearn.diagnostics.alignment`; the parameter
gradients of both are compared with :func:`~fwdlearn.diagnostics.alignment.gradient_alignment`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fwdlearn.diagnostics.alignment import Alignment, cosine, gradient_alignment, per_sample_cosine
from fwdlearn.fit import training_mode

from fwdlearn.sequences.training import lm_loss
from fwdlearn.rules import DSF, FTBPTT, TimeRule, parse_rule
from fwdlearn.sequences.nn.time_rules import UNROLLED

__all__ = ["StateAlignment", "state_gradients", "state_alignment", "bucket_by_distance"]


@dataclass
class StateAlignment:
    """Per layer: cosine by distance from the end (``[T]``, index ``d``) and over the whole window;
    and the alignment of the parameter gradients."""

    by_distance: list[Tensor]
    overall: list[float]
    parameters: Alignment


def _time_rule(model, mode: str | TimeRule) -> TimeRule:
    if isinstance(mode, TimeRule):
        return mode
    if mode == "unrolled":
        return UNROLLED
    rule = parse_rule(mode).time
    if isinstance(rule, DSF) and rule.feedback is None:
        rule = DSF(model.config.feedback)  # the kind the model's feedback buffers were built with
    if not isinstance(rule, (DSF, FTBPTT)):
        raise ValueError(f"state gradients are read for 'unrolled' (true BPTT), 'ft-bptt' or 'dsf', not {mode!r}")
    return rule


def state_gradients(model, tokens: Tensor, targets: Tensor, mode: str | TimeRule) -> tuple[list[Tensor], dict[str, Tensor]]:
    """``(per-layer state gradients [B, T, S], parameter gradients)`` of one window under ``mode``
    (``"unrolled"`` gives BPTT's true total derivatives)."""
    rule = _time_rule(model, mode)
    model.zero_grad(set_to_none=True)
    probe: list = []
    with training_mode(True, model), torch.enable_grad():
        logits = model.forward_from_embeddings(model.embed(tokens), rule=rule, probe=probe)
        lm_loss(logits, targets).backward()
    grads = []
    for layer, item in enumerate(probe):
        grad = [s.grad for s in item] if isinstance(item, list) else [item.grad]
        if any(g is None for g in grad):
            raise ValueError(f"layer {layer}'s states get no gradient from the output under the depth rule "
                             f"{model.rule.depth} (its blocks learn from local losses or not at all): state alignment "
                             "compares time rules on the output's error, so measure a bp or dfa model")
        grads.append(torch.stack(grad, dim=1) if isinstance(item, list) else grad[0])
    params = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return [g.detach() for g in grads], params


def state_alignment(model, tokens: Tensor, targets: Tensor, mode: str | TimeRule = "dsf") -> StateAlignment:
    """Cosine between ``mode``'s state gradients and BPTT's true ones, per layer and distance from the end."""
    approx, approx_params = state_gradients(model, tokens, targets, mode)
    true, true_params = state_gradients(model, tokens, targets, "unrolled")
    by_distance, overall = [], []
    for a, b in zip(approx, true):
        per = per_sample_cosine(a, b, dim=-1).mean(dim=0)  # [T]
        by_distance.append(per.flip(0))  # index d = T - 1 - t
        overall.append(cosine(a, b))
    shared = sorted(set(approx_params) & set(true_params))
    params = gradient_alignment({n: approx_params[n] for n in shared}, {n: true_params[n] for n in shared})
    return StateAlignment(by_distance, overall, params)


def bucket_by_distance(curve: Tensor, edges: tuple[int, ...] = (0, 1, 4, 16, 64)) -> list[tuple[str, float]]:
    """Mean of ``curve[d]`` over distance buckets ``[e_i, e_{i+1})`` (the last one open-ended), labelled."""
    out = []
    bounds = [e for e in edges if e < len(curve)] + [len(curve)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        label = f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}"
        out.append((label, float(curve[lo:hi].mean())))
    return out
