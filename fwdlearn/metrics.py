r"""Task metrics shared by every domain.

* :func:`masked_accuracy`: :math:`\frac{1}{|M|}\sum_{i \in M} [\arg\max_k s_{ik} = y_i]`;
* :func:`roc_auc`: :math:`\big(\sum_{i \in P} r_i - |P|(|P|+1)/2\big) / (|P|\,|N|)`, with :math:`r_i` the
  (tie-averaged) rank of positive :math:`i` among all scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_accuracy", "roc_auc", "average_ranks"]


def masked_accuracy(scores: Tensor, y: Tensor, mask: Tensor | None = None) -> float:
    """Accuracy of ``argmax(scores, -1)`` against ``y`` on ``mask`` (every row when ``None``).

    ``scores`` is ``[N, K]`` (one row of class scores per example) and ``y`` ``[N]``; ``mask`` is a boolean vector
    with one entry per row of ``y``; an integer tensor is refused, not read as row indices (indexing by a 0/1 mask
    would score rows 0 and 1). NaN when a scored row holds a NaN score, as :func:`roc_auc` is: ``argmax`` reads NaN
    as the largest score (all-NaN rows were read as class 0), which gave a diverged model an accuracy. The accuracy is
    the Python float ``hits / scored`` (``0.812`` for 812 of 1000, not float32's ``0.8119999766``).

    Raises:
        TypeError: the mask is not boolean. ValueError: ``scores`` is not ``[N, K]`` for ``y``'s ``N`` (1-D scores
        were read as one example's class scores, their argmax compared with every label), ``y`` is not 1-D, the mask
        has another shape, it selects no row (an accuracy over nothing is undefined), a scored label is negative (a
        placeholder for "unlabelled" inside the mask), or ``scores`` is ``[N, 1]`` with a label 1 (one score per
        example of a binary task has argmax 0 on every row, which read as the share of negatives). A label past the
        ``K >= 2`` classes of ``scores`` is a miss: the model has no class for it.
    """
    if y.dim() != 1:
        raise ValueError(f"masked_accuracy: y must be a vector of class ids, shape [N]; got {tuple(y.shape)}"
                         + (" (one-hot labels: y.argmax(-1); a column: y.view(-1))" if y.dim() == 2 else ""))
    if scores.dim() != 2 or scores.shape[0] != y.shape[0]:
        fix = (": scores of a binary task, one per example: torch.stack([1 - p, p], -1) for probabilities p, "
               "or compare (p > 0.5).long() with y" if scores.dim() == 1 else "")
        raise ValueError(f"masked_accuracy: scores must be [N, classes] with one row per label, N = {y.shape[0]}; "
                         f"got {tuple(scores.shape)}{fix}")
    if mask is None:
        mask = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
    if mask.dtype != torch.bool:
        raise TypeError(f"masked_accuracy: the mask must be boolean (True on the rows to score); got {mask.dtype}. "
                        f"A 0/1 mask: mask.bool(); row indices idx: torch.zeros({y.shape[0]}, dtype=torch.bool)"
                        ".index_fill_(0, idx.long(), True)")
    if mask.shape != y.shape[:1]:
        raise ValueError(f"masked_accuracy: the mask must have one entry per row of y, shape ({y.shape[0]},); got "
                         f"{tuple(mask.shape)}")
    if not bool(mask.any()):
        raise ValueError("masked_accuracy: the mask selects no example; an accuracy over no examples is undefined")
    scored, labels = scores[mask], y[mask]
    low = int(labels.min())
    if low < 0 or (scores.shape[1] == 1 and int(labels.max()) >= 1):  # (rows outside the mask may hold a placeholder
        # such as -1; a label past the classes of [N, K >= 2] scores is a miss: the model has no class for it)
        fix = (": one score s per example of a binary task: torch.cat([torch.zeros_like(s), s], -1) (class 1 where "
               "s > 0)" if low >= 0 else ": leave unlabelled rows out of the mask")
        raise ValueError(f"masked_accuracy: scores have {scores.shape[1]} class(es), 0 .. {scores.shape[1] - 1}, but a "
                         f"scored label is {low if low < 0 else int(labels.max())}{fix}")
    if scored.is_floating_point() and bool(torch.isnan(scored).any()):
        return float("nan")
    # (counted, then divided in Python: a float32 mean printed 812 / 1000 as 0.8119999766349792 and stored it so)
    return int((scored.argmax(-1) == labels).sum()) / labels.numel()


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    r"""Area under the ROC curve of ``scores`` for binary ``labels`` (ties get average ranks)."""
    s, y = scores.detach().flatten().cpu().double(), labels.detach().flatten().cpu()
    if y.dtype != torch.bool:
        if not bool(((y == 0) | (y == 1)).all()):
            values = [round(float(v), 6) for v in y.unique()]
            raise ValueError(f"roc_auc reads labels 0 (negative) and 1 (positive); got values "
                             f"{values[:5]}{' ...' if len(values) > 5 else ''}")
        y = y.bool()
    if s.numel() != y.numel():
        raise ValueError(f"roc_auc needs one label per score; got {s.numel()} scores and {y.numel()} labels")
    p, n = int(y.sum()), int((~y).sum())
    if p == 0 or n == 0:
        raise ValueError(f"roc_auc needs positives and negatives; got {p} positives and {n} negatives")
    return float((average_ranks(s)[y].sum() - p * (p + 1) / 2) / (p * n))


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of ``values`` (1-D), ties sharing the mean of their ranks (``scipy.stats.rankdata``'s default),
    as float64; all NaN when a value is NaN (as rankdata's default), so a diverged model's AUC is NaN."""
    if bool(torch.isnan(values).any()):
        return torch.full(values.shape, float("nan"), dtype=torch.float64)
    unique, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0).double()  # the highest rank of each distinct value
    return (last - (counts.double() - 1) / 2)[inverse]
