r"""Lag-wise Jacobian influence of a sequence model.

For a model mapping input embeddings :math:`x \in \mathbb{R}^{B \times T \times E}` to
outputs :math:`y \in \mathbb{R}^{B \times T \times C}`, the influence of input
position :math:`\tau` on output position :math:`t` of sequence :math:`b` is

.. math::
    I(t, \tau) = \sum_{i=1}^{C} \sum_{e=1}^{E}
       \left| \frac{\partial y_{b,t,i}}{\partial x_{b,\tau,e}} \right|,

binned by the lag :math:`k = t - \tau` into :math:`T_k(t)`; the curve and the range
:math:`R` (influence-weighted mean lag) come from :mod:`fwdlearn.diagnostics.influence`.
A causal model has :math:`I(t, \tau) = 0` for :math:`\tau > t` (negative lags).

All measured positions of a chunk are computed together: the batch is replicated
once per position, so every (sequence, position) row has its own copy of the input, and
:func:`fwdlearn.diagnostics.influence.jacobian_l1` gives every row at once.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext

import torch
from torch import Tensor

from fwdlearn.diagnostics.influence import (DEAD_SEED, check_repeatable, chosen_indices, distance_totals,
                                            influence_curve, influence_range, jacobian_l1, model_device,
                                            naming_dtype_mismatch, output_tolerance, refuse_inference_mode,
                                            uncompiled)
from fwdlearn.errors import check_bool, check_finite_tensor, check_int, check_not_meta, check_seed, warn
from fwdlearn.fit import evaluating, on_device, progress

__all__ = ["lag_influence", "lag_masses"]


def _embedding_function(model, inputs: Tensor) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """``(f, x)``: the map from embeddings to outputs and the embeddings to differentiate."""
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor: [batch, time] token ids or [batch, time, features] "
                        f"embeddings; got {type(inputs).__name__} (convert it with torch.as_tensor)")
    if inputs.is_floating_point():  # (embeddings; tokens are refused by the model's own check, naming tokens)
        check_not_meta("inputs", inputs, "the influence is the Jacobian at their values")  # (torch's "Tensor.item()
        # cannot be called on meta tensors")
    inputs = on_device(inputs, model_device(model))  # (a GPU model given CPU tokens failed in its embedding)
    if not inputs.dtype.is_floating_point:
        if not (hasattr(model, "embed") and hasattr(model, "forward_from_embeddings")):
            raise TypeError("integer token inputs need a model with embed(tokens) and forward_from_embeddings(emb); "
                            "otherwise pass float embeddings of shape [batch, time, features]")
        with torch.no_grad():
            inputs = model.embed(inputs)
    if inputs.dim() != 3 or inputs.shape[0] == 0 or inputs.shape[1] == 0:
        raise ValueError(f"inputs must be [batch >= 1, time >= 1, features] embeddings or [batch, time] tokens; "
                         f"got shape {tuple(inputs.shape)}")
    check_finite_tensor("the input tensor", inputs, "influence through NaN/inf inputs is undefined")
    forward = model.forward_from_embeddings if hasattr(model, "forward_from_embeddings") else model
    if not callable(forward):
        raise TypeError(f"model must be callable on embeddings [B, T, E]; got {type(model).__name__}")
    return forward, inputs.detach()


def _as_output(out) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _checked_output(out, rows: int, length: int) -> Tensor:
    """The model's outputs ``[rows, length, channels]`` (a tuple's or a list's first element, as ``(logits, state)``),
    else a refusal naming the wrapper that measures it. (A dict of outputs failed with "'dict' object has no attribute
    'dim'"; outputs ``[batch, time]`` were named by the shape of the batch of copies, ``(12, 6)`` for 2 sequences.)"""
    out = _as_output(out)
    if isinstance(out, Tensor) and out.dim() == 3 and out.shape[:2] == (rows, length):
        return out
    found = (tuple(out.shape) if isinstance(out, Tensor) else
             f"a {type(out).__name__} with keys {list(out)}" if isinstance(out, Mapping) else type(out).__name__)
    raise ValueError(f"the model must return outputs [batch, time, channels] (or a tuple whose first element they are, "
                     f"as (logits, state)); called on {rows} sequences of {length} positions (one copy of a sequence "
                     f"per measured position) it returned {found}. Measure the outputs through a function of the "
                     "embeddings that gives them, with the model in eval mode (a wrapper is not put in it for you): "
                     "model.eval(); lag_influence(lambda x: model(x)['logits'], ...) for a dict, "
                     "lambda x: model(x).unsqueeze(-1) for one output per position")


def _check_sequences_apart(forward: Callable[[Tensor], Tensor], x: Tensor) -> None:
    """Refuse a model whose outputs for one sequence change with another sequence before it in the batch: every
    measured position has its own copy of the sequence in one batch, so rows that mix give another model's Jacobian,
    in silence (PyTorch's ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN`` read ``[time, batch, features]`` unless built with
    ``batch_first=True``: the copies were read as time steps, R 0.35 for 1.09, with mass at future lags). Checked on
    the first sequence, after itself and after a random one: two batches of one shape, so the same kernels and the
    same rounding (a batch of one beside a batch of two differed by rounding, which a chaotic but legitimate model --
    a tanh RNN of recurrent gain 4, batch_first -- grew to 2.0 over 400 steps, and was refused); the tolerance (1 % of
    the outputs' scale, more in half precision) is a margin on top."""
    one = x[:1]
    gen = torch.Generator().manual_seed(0)
    other = (torch.randn(one.shape, generator=gen, dtype=torch.float32, device="cpu")
             * (1 + float(one.abs().mean()))).to(one)
    with torch.no_grad():
        same, pair = _as_output(forward(torch.cat([one, one]))), _as_output(forward(torch.cat([other, one])))
        again = _as_output(forward(torch.cat([one, one])))
    if not (isinstance(same, Tensor) and isinstance(pair, Tensor) and same.is_floating_point()
            and same.dim() == 3 and same.shape[0] == 2 and pair.shape == same.shape):
        return  # (an output of another shape is named by the measurement itself)
    if isinstance(again, Tensor):  # (F.dropout(x, p) keeps training=True in eval mode: it was refused as a model that
        check_repeatable(same, again, "the model", "lag_influence", "chunk of positions")  # mixes its sequences)
    if float((pair[1:] - same[1:]).abs().max()) > output_tolerance(same[1:]):
        raise ValueError("the model mixes the sequences of a batch (the outputs of one sequence change when another is "
                         "put before it), so its lag influence cannot be measured: every position is measured on its "
                         "own copy of the sequence, one batch row each. Inputs are [batch, time, features]; a "
                         "torch.nn.GRU / LSTM / RNN reads [time, batch, features] unless built with batch_first=True")


def _select_positions(length: int, positions: int | Sequence[int] | Tensor | None, seed: int) -> Tensor:
    """All positions (``None``), a count drawn with ``seed`` (an integer scalar: Python, NumPy or a 0-d tensor),
    or the positions given (a list / 1-D tensor of ids, or a boolean mask over the ``length`` positions); on the CPU,
    whatever the default device (its seeded draw is its CPU generator's)."""
    if positions is None:
        return torch.arange(length, device="cpu")
    if isinstance(positions, Tensor) and positions.dim() == 0 and not positions.dtype.is_floating_point \
            and positions.dtype != torch.bool and not positions.is_meta:  # (a meta count is named below, not by
        positions = int(positions)                                        # torch's "Tensor.item() ... meta tensors")
    if isinstance(positions, bool):
        raise TypeError("positions must be None, a count, position ids or a boolean mask; got a bool")
    if isinstance(positions, numbers.Integral):
        positions = int(positions)
        if positions < 1:
            raise ValueError(f"positions must be >= 1 when given as a count, got {positions}")
        generator = torch.Generator().manual_seed(check_seed(seed))
        return torch.randperm(length, generator=generator, device="cpu")[: min(positions, length)].sort().values
    return chosen_indices(positions, length, "positions", "position")


def lag_masses(model, inputs: Tensor, positions: int | Sequence[int] | Tensor | None = None, seed: int = 0,
               chunk: int = 64, quiet: bool = True) -> tuple[Tensor, Tensor]:
    r"""``(mass [S, T], lag [S, T])`` with :math:`S = B \cdot P` rows (sequence-major) and ``lag = t - tau``.

    Negative lags (future inputs) are included so causality can be checked. An ``nn.Module`` is evaluated in
    ``eval()`` mode (the plain forward, not a training rule's wiring) and restored.
    """
    model = uncompiled(model)  # (a torch.compile'd module's backward refuses the retained graph of the measure)
    with evaluating(model if isinstance(model, torch.nn.Module) else None):
        return _lag_masses(model, inputs, positions, seed, chunk, quiet)


#: elements of the head's input Jacobian that one chunk of positions may hold on the head path (256 MiB in float32;
#: where one position's alone is larger, the outputs are measured one token of the vocabulary at a time, as before)
HEAD_JACOBIAN_ELEMENTS = 1 << 26


def _linear_head(model, forward: Callable[[Tensor], Tensor], x: Tensor) -> torch.nn.Linear | None:
    """The model's ``head`` when it is an ``nn.Linear`` with fewer inputs than outputs (a language model's head over
    its vocabulary) whose output is what ``forward`` returns, else ``None``. Its outputs' Jacobian is then
    ``W`` times its inputs' (:func:`~fwdlearn.diagnostics.influence.jacobian_l1`'s ``readout``): ``H`` backward
    passes instead of one per token of the vocabulary (a word-level GRU of 6,207 words measured 530 s a model, its
    bar at 0/1). The output must be ``F.linear`` of the head's input with its weight and bias, on every sequence of
    the batch: an ``nn.Linear`` subclass with a forward of its own (a soft-capped head, ``c * tanh(y / c)``), a forward
    hook that changes the head's output, or an in-place edit of it after the head (``logits[..., pad] = -inf``) is not
    ``W`` times its input's Jacobian (they read 9-67 % off, in silence), and is measured one token at a time. (Checked
    on the first sequence alone, an all-padding one, whose logits are near 0, let a soft-capped head through: the
    others' masses 17 % off. The same kernel gives equal bits, so the margin is float32's in any precision:
    bfloat16's own, 16 eps, was 12 % of the largest logit and let a soft cap through, 3 % off.)"""
    head = getattr(model, "head", None)
    if not isinstance(head, torch.nn.Linear) or head.in_features >= head.out_features:
        return None
    with torch.no_grad(), _HeadTap(head) as tap:
        out = _as_output(forward(x))
        features = tap.get("input")
        if tap.get("output") is not out or not isinstance(features, Tensor) or not out.is_floating_point():
            return None
        linear = torch.nn.functional.linear(features, head.weight, head.bias)  # (the same kernel: equal bit for bit)
    if linear.shape != out.shape or linear.dtype != out.dtype:
        return None
    eps = min(torch.finfo(out.dtype).eps, torch.finfo(torch.float32).eps)
    tolerance = 16 * eps * float(linear.abs().max())
    return head if float((out - linear).abs().max()) <= tolerance else None


class _HeadTap:
    """A context holding a forward hook on ``head`` that keeps its last call's input and output (a dict)."""

    def __init__(self, head: torch.nn.Module) -> None:
        self.head, self.seen = head, {}

    def __enter__(self) -> dict:
        def keep(module, args, output):
            self.seen.update(input=args[0] if args else None, output=output)
        self.handle = self.head.register_forward_hook(keep)
        return self.seen

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _lag_masses(model, inputs: Tensor, positions, seed: int, chunk: int, quiet: bool) -> tuple[Tensor, Tensor]:
    chunk = check_int("chunk", chunk, 1, " (positions measured together)")
    refuse_inference_mode()
    forward, x = _embedding_function(model, inputs)
    with naming_dtype_mismatch(model, x, "inputs", "lag_influence"):  # (the model's first calls)
        _check_sequences_apart(forward, x)
    batch, length, width = x.shape
    chosen = _select_positions(length, positions, seed)
    head = _linear_head(model, forward, x)
    per_position = 0 if head is None else head.in_features * batch * length * width  # (the head inputs' Jacobian)
    if per_position > HEAD_JACOBIAN_ELEMENTS:
        head = None
    elif head is not None:  # (held at once for a chunk of positions: fewer of them)
        chunk = min(chunk, HEAD_JACOBIAN_ELEMENTS // per_position)
    masses = []
    bar = progress(total=len(chosen), desc="influence", quiet=quiet, unit="position")  # (positions, as asked for: it
    for part in torch.split(chosen, chunk):                                              # counted the chunks)
        p = len(part)
        copies = x.repeat_interleave(p, dim=0)  # [B*p, T, E], row b*p + j measures position part[j]
        rows = torch.arange(batch * p, device=x.device)
        times = part.to(x.device).repeat(batch)

        def picked(inputs: Tensor) -> Tensor:
            with _HeadTap(head) if head is not None else nullcontext({}) as tap:
                out = _checked_output(forward(inputs), batch * p, length)
            if head is not None:
                features = tap.get("input")
                if tap.get("output") is not out or not isinstance(features, Tensor) or \
                        features.shape[:2] != out.shape[:2]:  # (it did on the batch: _linear_head)
                    raise ValueError(f"the model's output is not its head's ({type(head).__name__}) on every call, "
                                     "so it cannot be measured through the head: measure its outputs with "
                                     "fwdlearn.diagnostics.influence.jacobian_l1")
                return features[rows, times]  # [B*p, H]: the head's input, read out by its weight below
            return out[rows, times]  # [B*p, C]: each copy's own position, disjoint inputs per row

        mass = jacobian_l1(picked, copies, readout=None if head is None else head.weight)  # [B*p, T]
        masses.append((mass.reshape(batch, p, length), part))
        bar.update(p)
    bar.close()
    mass = torch.cat([m for m, _ in masses], dim=1).reshape(batch * len(chosen), length)
    times = torch.cat([t for _, t in masses]).repeat(batch)
    lag = times[:, None] - torch.arange(length, device="cpu")[None, :]  # (beside the CPU positions and masses)
    return mass.cpu(), lag


def _warn_future_mass(mass: Tensor, lag: Tensor) -> None:
    """Warn when the outputs read future inputs (mass at negative lags, above :data:`DEAD_SEED` float epsilons of the
    whole): lags ``0..max_lag`` leave it out, so a bidirectional model read as a one-sided range (a transformer without
    its causal mask, a quarter of its mass in the future, gave R 0.43, in silence). A causal model's is exactly 0."""
    total, future = float(mass.sum()), float(mass[lag < 0].sum())
    eps = torch.finfo(mass.dtype).eps if mass.is_floating_point() else 0.0
    if total > 0 and future > DEAD_SEED * eps * total:
        warn(f"the model is not causal: {future / total:.1%} of the Jacobian mass is at negative lags (outputs read "
             "future inputs: a transformer without a causal mask, a bidirectional RNN), which lag_influence leaves out "
             "(it bins lags 0..max_lag): the curve and R describe the past inputs only. "
             "fwdlearn.sequences.influence.lag_masses(model, inputs) returns every lag, negative ones included; a "
             "causal model (attention mask=nn.Transformer.generate_square_subsequent_mask(T)) has none")


def lag_influence(model, inputs: Tensor, max_lag: int, positions: int | Sequence[int] | Tensor | None = None,
                  normalize: bool = True, seed: int = 0, chunk: int = 64,
                  quiet: bool = True) -> tuple[Tensor, float, Tensor]:
    r"""Per-lag Jacobian influence :math:`T_k(t)` for ``k = 0..max_lag``, its mean curve and :math:`R`.

    Args:
        model: maps embeddings ``[B, T, E]`` to ``[B, T, C]`` (a tuple's first item is used). If it
            has ``forward_from_embeddings`` that is used; integer ``inputs`` are embedded with
            ``model.embed`` first. An ``nn.Module`` is evaluated in ``eval()`` mode and restored. A model whose
            ``head`` is an ``nn.Linear`` with fewer inputs than outputs, and gives the output (a language model's head
            over its vocabulary), is measured through the head's inputs times its weight: one backward pass per head
            input instead of one per token (the same masses to float rounding); a head whose output is not
            ``F.linear`` of its input (an ``nn.Linear`` subclass with its own forward, a forward hook or an in-place
            edit changing its output) is measured one token at a time.
        inputs: ``[B, T, E]`` float embeddings or ``[B, T]`` integer tokens, on any device: an ``nn.Module``'s are
            moved to its device (its first parameter's), as its ``evaluate`` and ``generate`` take them. Embeddings
            are not converted: of another dtype than the model's parameters (float32 ones for a float64 model) they
            are refused naming the fix, ``model.to(inputs.dtype)`` or ``inputs.to(dtype)``, unless the model runs on
            them; tokens are embedded in the model's dtype. Inputs on the meta device are refused (no values).
        max_lag: largest lag binned.
        positions: output positions measured: all (None), a count drawn with ``seed``, a list of positions (a
            ``range``, an array, a tensor; a set in increasing order) or a boolean mask over them.
        normalize: divide the curve by its lag-0 value (:math:`R` uses the raw totals).
        seed: draws the positions when ``positions`` is a count.
        chunk: positions measured together (memory bound; results do not depend on it).
        quiet: no progress bar.

    Returns:
        ``(curve [max_lag+1], R, per_position [B * P, max_lag+1])``, rows sequence-major, on the CPU; ``curve`` and
        ``per_position`` in the embeddings' dtype (float64 for a float64 model: the same numbers as float32 to float32
        rounding) or, for half-precision ones, float32 (the sums are taken in it); ``R`` a Python float.

    A position :math:`t` has no input at a lag :math:`k > t`: its :math:`T_k(t)` is 0 and the curve's mean counts it
    (as a graph seed without nodes at :math:`k` hops counts in PyG's average), so the curve at lag :math:`k` is the
    share of positions :math:`\ge k` times their mean (16 positions drawn from 64, ``seed=0``: 7 of them reach lag 32,
    so the curve there is 7/16 of what they show). To compare lags on an equal footing measure positions
    ``>= max_lag`` (``positions=range(max_lag, T)``). The sequences of the batch must not interact (each position is
    measured on its own copy, one batch row each): a model whose outputs for one sequence change with another beside
    it is refused, and so is a random one (two calls on the same input differ: ``F.dropout(x, p)`` without
    ``training=self.training``). Lags ``0..max_lag`` hold the past inputs only: a model that reads future inputs (a
    transformer without a causal mask, a bidirectional RNN) is measured with a warning giving the share of its mass
    left out (:func:`lag_masses` returns every lag, negative ones included).
    """
    check_int("max_lag", max_lag, 0)
    normalize = check_bool("normalize", normalize)  # (before the measurement, not after it)
    mass, lag = lag_masses(model, inputs, positions, seed, chunk, quiet)
    _warn_future_mass(mass, lag)
    totals = distance_totals(mass, lag, max_lag)
    return influence_curve(totals, normalize=normalize), influence_range(totals), totals
