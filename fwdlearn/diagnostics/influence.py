r"""Jacobian influence per distance, and the influence-weighted range :math:`R`.

Domain-free: the caller supplies, for each seed :math:`s` (an output node, an output
position), the L1 mass of the Jacobian of its output w.r.t. every input element,

.. math::
    I(s, u) = \sum_{i,j} \left|\frac{\partial y_{s,i}}{\partial x_{u,j}}\right|,

and the distance of every input element from the seed (hops in a graph, lags in a
sequence). This module sums the mass per distance,

.. math::
    T_h(s) = \sum_{u:\ \operatorname{dist}(s,u) = h} I(s, u),

averages it over seeds (optionally normalised by distance 0), and computes the
range, the influence-weighted mean distance

.. math::
    R = \frac{1}{S}\sum_s \frac{\sum_h h\,T_h(s)}{\sum_h T_h(s)}

from the un-normalised rows (Liang et al. 2025, as ``torch_geometric.utils.total_influence``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["distance_totals", "influence_curve", "influence_range"]


def distance_totals(mass: Tensor, distance: Tensor, max_distance: int) -> Tensor:
    r"""Per-seed totals :math:`T_h(s)` for :math:`h = 0, \ldots, D`.

    Args:
        mass: ``[S, N]`` Jacobian L1 masses of ``S`` seeds over ``N`` input elements.
        distance: ``[S, N]`` (or ``[N]``, shared by all seeds) integer distances; entries
            below 0 or above ``max_distance`` are ignored (unreachable, out of range).
        max_distance: :math:`D`.

    Returns:
        ``[S, D + 1]`` tensor of totals.
    """
    if mass.dim() != 2:
        raise ValueError(f"mass must have shape [seeds, inputs]; got {tuple(mass.shape)}")
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    if distance.dim() == 1:
        distance = distance.unsqueeze(0).expand_as(mass)
    if distance.shape != mass.shape:
        raise ValueError(
            f"distance must have shape {tuple(mass.shape)} (or [{mass.shape[1]}]) to match mass; "
            f"got {tuple(distance.shape)}"
        )
    if distance.dtype.is_floating_point:
        raise TypeError("distance must be an integer tensor (hops or lags)")
    valid = (distance >= 0) & (distance <= max_distance)
    slot = torch.where(valid, distance, torch.full_like(distance, max_distance + 1))
    totals = torch.zeros(mass.shape[0], max_distance + 2, dtype=mass.dtype, device=mass.device)
    totals.scatter_add_(1, slot.long(), torch.where(valid, mass, torch.zeros_like(mass)))
    return totals[:, : max_distance + 1]


def influence_curve(totals: Tensor, normalize: bool = True) -> Tensor:
    r"""Mean over seeds of :math:`T_h`, divided by its distance-0 value when ``normalize``.

    Args:
        totals: ``[S, D + 1]`` from :func:`distance_totals`.
    """
    if totals.dim() != 2 or totals.shape[0] == 0:
        raise ValueError(f"totals must have shape [seeds >= 1, D + 1]; got {tuple(totals.shape)}")
    curve = totals.mean(dim=0)
    if normalize:
        if curve[0] == 0:
            raise ZeroDivisionError("the distance-0 influence is zero, so the curve cannot be normalised; use normalize=False")
        curve = curve / curve[0]
    return curve


def influence_range(totals: Tensor) -> float:
    r"""The influence-weighted mean distance :math:`R` (from un-normalised per-seed totals).

    Seeds whose total influence is zero are left out of the mean.
    """
    if totals.dim() != 2 or totals.shape[0] == 0:
        raise ValueError(f"totals must have shape [seeds >= 1, D + 1]; got {tuple(totals.shape)}")
    row_sums = totals.sum(dim=1)
    keep = row_sums > 0
    if not bool(keep.any()):
        raise ZeroDivisionError("every seed has zero total influence; R is undefined")
    distances = torch.arange(totals.shape[1], dtype=totals.dtype, device=totals.device)
    per_seed = (totals[keep] @ distances) / row_sums[keep]
    return float(per_seed.mean())
