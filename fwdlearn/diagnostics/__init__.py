"""Diagnostics shared by every domain: influence per distance, gradient alignment, cost."""

from .alignment import Alignment, angle_degrees, cosine, feedback_alignment, gradient_alignment, per_sample_cosine
from .cost import Cost, CostReport, measure_cost, saved_bytes
from .influence import distance_totals, influence_curve, influence_range, jacobian_l1

__all__ = [
    "Alignment", "angle_degrees", "cosine", "feedback_alignment", "gradient_alignment", "per_sample_cosine",
    "Cost", "CostReport", "measure_cost", "saved_bytes",
    "jacobian_l1", "distance_totals", "influence_curve", "influence_range",
]
