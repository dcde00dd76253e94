"""Diagnostics shared by every domain: influence per distance, gradient alignment, cost."""

from .alignment import Alignment, angle_degrees, cosine, gradient_alignment, per_sample_cosine
from .cost import Cost, measure_cost, saved_bytes
from .influence import distance_totals, influence_curve, influence_range

__all__ = [
    "Alignment", "angle_degrees", "cosine", "gradient_alignment", "per_sample_cosine",
    "Cost", "measure_cost", "saved_bytes",
    "distance_totals", "influence_curve", "influence_range",
]
