r"""The BP baseline for node classification: end-to-end backprop of cross-entropy.

.. math::
    \mathcal{L} = -\frac{1}{|T|}\sum_{i \in T} \log \operatorname{softmax}\big(f(X, A)_i\big)_{y_i},

one Adam over all parameters, the gradient flowing through every layer. This is the
package's one BP node-classification trainer: it works for any ``model(x, edge_index)``
that returns class logits ``[N, K]`` (``ForwardGNN(method="bp")`` uses it, and so can any PyG
model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.diagnostics.cost import measure_cost
from fwdlearn.fit import Trainer

__all__ = ["train_node_classifier", "masked_accuracy", "memory_figures", "measured_step", "cost_summary"]


def masked_accuracy(scores: Tensor, y: Tensor, mask: Tensor) -> float:
    """Accuracy of ``argmax(scores)`` against ``y`` on ``mask`` (NaN for an empty mask)."""
    if not bool(mask.any()):
        return float("nan")
    return float((scores[mask].argmax(-1) == y[mask]).float().mean())


def memory_figures(cost) -> dict[str, Any]:
    """``peak_memory_bytes`` (CUDA peak allocated on a GPU, else peak process RSS) and ``step_memory_bytes``."""
    if cost.cuda_peak_bytes is not None:
        return {"peak_memory_bytes": int(cost.cuda_peak_bytes), "step_memory_bytes": int(cost.cuda_peak_bytes)}
    return {"peak_memory_bytes": int(cost.peak_rss_bytes), "step_memory_bytes": int(cost.rss_increase_bytes)}


def measured_step(one_step: Callable[[int], float], costs: list, device) -> Callable[[int], dict]:
    """A :class:`~fwdlearn.fit.Trainer` step running ``one_step(epoch) -> loss``; the first call is measured
    with :func:`~fwdlearn.diagnostics.cost.measure_cost` and its cost appended to ``costs``."""
    def step(epoch: int) -> dict:
        if not costs:
            box: dict = {}
            costs.append(measure_cost(lambda: box.update(loss=one_step(epoch)), device))
            return {"loss": box["loss"]}
        return {"loss": one_step(epoch)}

    return step


def cost_summary(costs: list) -> dict[str, int]:
    """``saved_bytes_per_step`` of the largest measured step and the :func:`memory_figures` of the highest
    peak (zeros when nothing was measured)."""
    if not costs:
        return {"saved_bytes_per_step": 0, "peak_memory_bytes": 0, "step_memory_bytes": 0}
    memory = max((memory_figures(c) for c in costs), key=lambda m: m["peak_memory_bytes"])
    return {"saved_bytes_per_step": int(max(c.saved_bytes for c in costs)), **memory}


def train_node_classifier(model: nn.Module, data, epochs: int = 200, lr: float = 1e-3, weight_decay: float = 5e-4,
                          patience: int | None = 100, eval_every: int = 1, quiet: bool = True,
                          desc: str = "bp") -> dict[str, Any]:
    """Train ``model(x, edge_index) -> logits`` by BP on ``data.train_mask``; keep the best validation state.

    The first step is measured with :func:`fwdlearn.diagnostics.cost.measure_cost` (bytes saved
    for backward, peak memory). Runs on the device of ``data.x`` (the model is moved there).

    Returns:
        ``val_accuracy``, ``test_accuracy``, ``train_accuracy``, ``fit_seconds``, ``epochs_run``,
        ``saved_bytes_per_step``, ``peak_memory_bytes``, ``step_memory_bytes``.
    """
    device = data.x.device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, edge_index, y, train = data.x, data.edge_index, data.y, data.train_mask
    costs: list = []

    def one_step() -> float:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x, edge_index)[train], y[train])
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    step = measured_step(lambda epoch: one_step(), costs, device)

    def evaluate() -> dict:
        model.eval()
        with torch.no_grad():
            return {"val_accuracy": masked_accuracy(model(x, edge_index), y, data.val_mask)}

    start = time.perf_counter()
    result = Trainer(epochs, patience=patience, eval_every=eval_every, quiet=quiet, desc=desc).run(
        step, evaluate, state=model)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        scores = model(x, edge_index)
    out = {"val_accuracy": masked_accuracy(scores, y, data.val_mask),
           "test_accuracy": masked_accuracy(scores, y, data.test_mask),
           "train_accuracy": masked_accuracy(scores, y, train),
           "fit_seconds": seconds, "epochs_run": result.epochs_run, **cost_summary(costs)}
    return out
