r"""Alignment between a learning rule's signal and the true backprop gradient.

For two signals :math:`a` and :math:`b` (flattened),

.. math::
    \cos(a, b) = \frac{\langle a, b\rangle}{\lVert a\rVert\,\lVert b\rVert}, \qquad
    \angle(a, b) = \frac{180}{\pi}\arccos\cos(a, b).

A rule whose signal has a positive cosine with the gradient descends the loss
(to first order); 0 degrees means it *is* the gradient direction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["cosine", "angle_degrees", "per_sample_cosine", "Alignment", "gradient_alignment", "feedback_alignment"]


def _same_shape(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"cannot align tensors of different shapes {tuple(a.shape)} and {tuple(b.shape)}")


def _flat_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    _same_shape(a, b)
    return a.detach().reshape(-1).double(), b.detach().reshape(-1).double()


def _scaled(x: Tensor, dim: int | None = None) -> Tensor:
    r"""``x`` in float64 over its largest magnitude (along ``dim``, else overall): the same direction, of norm between
    1 and :math:`\sqrt{n}`, so that neither the norms' product nor the dot product leaves float64's range (float64
    vectors of entries near 1e-160 read as orthogonal, 0.0, and near 1e160 as NaN). A zero vector stays zero, a NaN
    stays NaN and an infinity becomes NaN (inf / inf). ``x`` itself is left as it is.

    The largest magnitude is read from ``x``'s own values, ``max(max x, -min x)`` (exactly what it is in float64), and
    the division by it makes the float64 copy: no copy of :math:`|x|` and no float64 copy before the division (they
    made a cosine of float32 gradients about three times as slow as it was unscaled)."""
    if not x.is_floating_point() or x.dim() == 0:  # (integers and bools as their float64 values; a 0-d x below)
        x = x.double()
    if x.numel() == 0:
        return x.double()
    extremes = {} if dim is None else {"dim": dim, "keepdim": True}  # (amax and amin: aminmax along a dim is slower)
    peak = torch.maximum(x.amax(**extremes), -x.amin(**extremes)).double()  # (a NaN stays NaN: all three propagate it)
    peak = torch.where(peak > 0, peak, 1.0).reshape([1] * x.dim() if dim is None else peak.shape)
    return x / peak  # (float64: peak has x's dimensions, so it is not a 0-d tensor a float32 x would keep its dtype by)


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two tensors, flattened (0.0 if either is all zeros, and only then, however small or
    large their entries; NaN if either holds a NaN or an infinity: a diverged gradient is not orthogonal to the
    other)."""
    _same_shape(a, b)
    fa, fb = _scaled(a.detach().reshape(-1)), _scaled(b.detach().reshape(-1))
    denom = fa.norm() * fb.norm()
    return 0.0 if denom == 0 else float(fa @ fb / denom)


def angle_degrees(a: Tensor, b: Tensor) -> float:
    """Angle between two tensors, flattened, in degrees (0 = same direction, 180 = opposite; NaN as :func:`cosine`)."""
    return _degrees(cosine(a, b))


def _degrees(c: float) -> float:
    """The angle of cosine ``c`` in degrees (NaN for NaN)."""
    return c if math.isnan(c) else math.degrees(math.acos(max(-1.0, min(1.0, c))))


def per_sample_cosine(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """Cosine along ``dim`` for every sample (e.g. per token or per node); shape ``a.shape`` without ``dim``, in
    ``a``'s dtype. Computed in float64 and, as :func:`cosine`, 0.0 where either vector is all zeros -- and only
    there (``torch.nn.functional.cosine_similarity`` clamps each norm to an ``eps``, which turned the cosine of two
    equal vectors of norm below it into about 0). A vector holding a NaN or an infinity gives NaN."""
    _same_shape(a, b)
    fa, fb = _scaled(a.detach(), dim), _scaled(b.detach(), dim)  # (in float64's range at any size)
    denom = fa.norm(dim=dim) * fb.norm(dim=dim)
    dot = (fa * fb).sum(dim=dim)
    zero = denom == 0  # (not "denom > 0", which a NaN fails too: a diverged row read as orthogonal)
    out = torch.where(zero, 0.0, dot / torch.where(zero, 1.0, denom))
    return out.to(a.dtype) if a.dtype.is_floating_point else out


@dataclass
class Alignment:
    """Per-tensor and overall alignment of two gradient sets."""

    per_tensor: dict[str, tuple[float, float]]  # name -> (cosine, degrees)
    cosine: float
    degrees: float


def gradient_alignment(a: Mapping[str, Tensor] | Sequence[Tensor],
                       b: Mapping[str, Tensor] | Sequence[Tensor]) -> Alignment:
    """Cosine and angle per tensor and over all tensors concatenated.

    Args:
        a, b: two gradient sets with the same names (dicts) or the same order (lists), tensors each (a ``None``
            gradient is refused, naming it).
    """
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("gradient_alignment needs two dicts or two sequences, not one of each")
    if isinstance(a, Mapping):
        if set(a) != set(b):  # type: ignore[arg-type]
            raise ValueError(f"gradient sets have different names: {sorted(set(a) ^ set(b))}")  # type: ignore[arg-type]
        names = list(a)
        pairs = [(a[n], b[n]) for n in names]  # type: ignore[index]
    else:
        if len(a) != len(b):
            raise ValueError(f"gradient sets have different lengths: {len(a)} and {len(b)}")
        names = [str(i) for i in range(len(a))]
        pairs = list(zip(a, b))
    if not pairs:
        raise ValueError("gradient_alignment needs at least one tensor")
    missing = [(n, "both sets" if x is None and y is None else "the first set" if x is None else "the second set")
               for n, (x, y) in zip(names, pairs) if x is None or y is None]
    if missing:  # (a parameter's .grad the loss did not reach; it failed as "'NoneType' object has no attribute")
        named = repr if isinstance(a, Mapping) else (lambda n: f"entry {n}")
        raise ValueError("gradient_alignment got None for " + ", ".join(f"{named(n)} ({which})"
                                                                        for n, which in missing)
                         + ": a parameter whose .grad the loss did not fill; leave it out of both sets, e.g. "
                         "{n: p.grad for n, p in model.named_parameters() if p.grad is not None}")
    cosines = {n: cosine(x, y) for n, (x, y) in zip(names, pairs)}
    per_tensor = {n: (c, _degrees(c)) for n, c in cosines.items()}  # (each cosine once: its angle is read from it)
    fa = torch.cat([_flat_pair(x, y)[0] for x, y in pairs])
    fb = torch.cat([_flat_pair(x, y)[1] for x, y in pairs])
    overall = cosine(fa, fb)
    return Alignment(per_tensor, overall, _degrees(overall))


def feedback_alignment(pairs: Mapping[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    r"""DFA's alignment at every feedback point: the cosine between the DFA signal :math:`e\,B_l` and the true
    gradient :math:`\partial\mathcal{L}/\partial h_l`, per sample (per token, per node), averaged:

    .. math::
        a_l = \frac{1}{N}\sum_{n=1}^{N} \cos\big((e\,B_l)_n,\ (\partial\mathcal{L}/\partial h_l)_n\big).

    Args:
        pairs: ``{point: (dfa_signal [..., d_l], true_gradient [..., d_l])}``, e.g.
            :meth:`fwdlearn.feedback.FeedbackProbe.compare`'s result.

    Returns:
        ``{point: a_l}`` in ``[-1, 1]``; positive means the feedback descends the loss at that point.
    """
    return {name: float(per_sample_cosine(signal, true, dim=-1).double().mean())
            for name, (signal, true) in pairs.items()}
