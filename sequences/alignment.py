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
from fwdlearn.fit import on_device, training_mode

from fwdlearn.sequences.training import window_loss
from fwdlearn.rules import DSF, FTBPTT, TimeRule, parse_rule
from fwdlearn.sequences.nn.language_model import LanguageModel
from fwdlearn.sequences.nn.recurrent import RecurrentLM
from fwdlearn.sequences.nn.time_rules import UNROLLED

__all__ = ["StateAlignment", "state_gradients", "state_alignment", "bucket_by_distance"]


@dataclass
class StateAlignment:
    """Per layer: the mean over the batch of per-position cosines by distance from the end (``[T]``, index ``d``),
    and ``overall``, the cosine of the whole window's gradients concatenated (positions with large gradients weigh
    more: it is not the curve's mean); and the alignment of the parameter gradients."""

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
    elif isinstance(rule, DSF) and rule.feedback != model.config.feedback:  # (its buffers were read: the kind ignored)
        raise ValueError(f"{mode!r} names {rule.feedback} feedback, but this model's DSF feedback matrices are "
                         f"{model.config.feedback} (the gradients are read with the model's own): pass 'dsf', or "
                         f"build the model with feedback={rule.feedback!r}")
    if not isinstance(rule, (DSF, FTBPTT)):
        raise ValueError(f"state gradients are read for 'unrolled' (true BPTT), 'ft-bptt' or 'dsf', not {mode!r}")
    return rule


def state_gradients(model, tokens: Tensor, targets: Tensor,
                    mode: str | TimeRule) -> tuple[list[Tensor], dict[str, Tensor]]:
    r"""``(per-layer state gradients [B, T, S], parameter gradients)`` of one window under ``mode``
    (``"unrolled"`` gives BPTT's true total derivatives). The loss is the window's by its targets
    (:func:`~fwdlearn.sequences.training.window_loss`: MSE on the non-NaN float targets of a regression task). The
    model's parameter gradients (``.grad``) are left as they were. The window may be on any device: it is read on the
    model's.

    Raises:
        ValueError: a model that carries no state through time (not a
            :class:`~fwdlearn.sequences.nn.recurrent.RecurrentLM`; a model of torch's own, such as ``nn.GRU``, has
            no time rule to run), or whose depth rule is not backprop: under DFA or
            a local rule the "true" reference would be that rule's signal carried back through time, not
            :math:`\partial\mathcal{L}/\partial s_t`.
    """
    if not isinstance(model, (RecurrentLM, LanguageModel)):  # (torch's nn.GRU was said to carry no state)
        raise ValueError(f"state alignment runs a fwdlearn RecurrentLM, whose time rule is what feeds the gradient of "
                         f"its state back through time; a {type(model).__module__}.{type(model).__name__} is not "
                         "one: build the model as RecurrentLM(vocab_size, cell='gru', ...) (or "
                         "make_language_model('gru', vocab_size, ...))")
    if not isinstance(model, RecurrentLM):  # (a transformer failed with "'TransformerConfig' object has no attribute
        # 'feedback'", or "forward_from_embeddings() got an unexpected keyword argument 'rule'")
        raise ValueError(f"state alignment compares the state gradients a recurrent model's time rule pushes with "
                         f"BPTT's; a {type(model).__name__} carries no state through time: measure a RecurrentLM "
                         "(e.g. make_language_model('gru', ...))")
    if str(model.rule.depth) != "bp":
        raise ValueError(f"state alignment compares time rules with BPTT's true state gradient, which needs "
                         f"backprop through depth; this model trains by {model.rule.depth} through depth: measure a "
                         "model of the same time rule trained by bp through depth (e.g. 'dsf', not 'dfa+dsf')")
    rule = _time_rule(model, mode)
    tokens, targets = on_device(tokens, model.device), on_device(targets, model.device)  # (CPU tokens failed in a
    # GPU model's embedding)
    kept = {p: p.grad for p in model.parameters()}
    model.zero_grad(set_to_none=True)
    try:
        probe: list = []
        with training_mode(True, model), torch.enable_grad():
            logits = model.forward_from_embeddings(model.embed(tokens), rule=rule, probe=probe)
            window_loss(logits, targets).backward()
        grads = []
        for item in probe:
            grad = [s.grad for s in item] if isinstance(item, list) else [item.grad]
            grads.append(torch.stack(grad, dim=1) if isinstance(item, list) else grad[0])
        params = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    finally:
        for p, grad in kept.items():  # (a reading between backward() and step() must not lose the gradients)
            p.grad = grad
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
    """Mean of ``curve[d]`` over distance buckets ``[e_i, e_{i+1})`` (the last one open-ended), labelled. The edges
    start at 0 and increase (a first edge above 0 would drop the distances below it)."""
    if not edges or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must start at 0 and increase, got {edges}")
    out = []
    bounds = [e for e in edges if e < len(curve)] + [len(curve)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        label = f"{lo}" if hi == lo + 1 else f"{lo}-{hi - 1}"
        out.append((label, float(curve[lo:hi].mean())))
    return out
