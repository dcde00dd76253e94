r"""Training schedules, written once: how a rule's losses become parameter updates.

* **End-to-end step** (:func:`end_to_end_step`): one loss through the whole model,

  .. math::
      \theta \leftarrow \theta - \eta\,\operatorname{clip}\big(\nabla_\theta \mathcal{L}(f_\theta(x))\big),

  after checking that :math:`\mathcal{L}` is finite. BP baselines, and every rule whose
  synthetic feedback lives inside the graph (DFA, DSF), train with it: the rule changes what
  ``backward()`` computes, not the step.
* **Simultaneous local** (:func:`local_step`): every block :math:`l` has its own loss on a
  *detached* input (:func:`layerwise_forward`), so one backward of the sum is exact per block,

  .. math::
      h_l = f_l(\operatorname{sg}(h_{l-1})), \qquad
      \nabla_{\theta_l} \sum_k \mathcal{L}_k = \nabla_{\theta_l} \mathcal{L}_l ,

  and every block's optimizer steps (:class:`LocalOptimizers`).
* **Greedy layer-wise** (:func:`greedy_layerwise`): block :math:`l` is trained alone, on the frozen
  outputs of blocks :math:`1..l-1`, to its best validation score (early stopping, best state
  restored), then frozen; then block :math:`l+1`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fwdlearn.errors import InputError, NonFiniteLossError, TrainingInterrupted, UsageError, check_range
from fwdlearn.fit import (Checkpointing, FitResult, Stateful, Trainer, check_fingerprint, check_finite,
                          load_optimizer_state, read_checkpoint, weights_changed)

__all__ = ["end_to_end_step", "layerwise_forward", "LocalOptimizers", "local_step", "LayerJob",
           "greedy_layerwise"]


def _parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _gradient_norm(group: Sequence[Tensor]) -> float:
    """The total 2-norm of the gradients of ``group``, sparse ones included (``clip_grad_norm_`` has no kernel for
    them: an ``nn.Embedding(sparse=True)`` stepped by SGD without ``clip`` failed once every step measured it)."""
    grads = [p.grad for p in group if p.grad is not None]
    if not grads:
        return 0.0
    norms = [torch.linalg.vector_norm(g.coalesce().values() if g.is_sparse else g).to(grads[0].device)
             for g in grads]
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def end_to_end_step(loss: Tensor, optimizer: torch.optim.Optimizer, clip: float | None = None,
                    grad_norm: bool = False, parameters: Sequence[Tensor] | None = None,
                    clip_groups: Sequence[Sequence[Tensor]] | None = None) -> dict[str, float]:
    r"""One end-to-end step: check ``loss`` is finite, zero the gradients, backward, clip, update.

    Args:
        loss: the scalar loss of the whole model (its graph carries any feedback points).
        optimizer: steps every parameter it holds.
        clip: clip the total gradient norm to this value (``None``: no clipping).
        grad_norm: report the total gradient norm (always when ``clip`` is set).
        parameters: the parameters whose gradient norm is measured and clipped (default: every parameter the
            optimizer holds); the optimizer still steps all of its own, the others with their gradients unclipped.
        clip_groups: clip each group's norm to ``clip`` on its own instead of the total (default: one group,
            ``parameters``). A layer-local rule passes one group per block, so that no block's update depends on
            another block's loss through a shared clipping factor.

    Returns:
        ``{"loss": float}`` and, with ``clip`` or ``grad_norm``, ``"grad_norm"`` (the total norm, before clipping).

    Raises:
        NonFiniteLossError: the loss, or the gradient of a finite loss, is NaN or infinite (a backward pass that
            overflowed); no step is taken, so the parameters keep their finite values.
    """
    check_range("clip", clip, gt=0, optional=True)  # (0 zeroes every gradient; a negative clip ascends)
    value = check_finite("loss", loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    out = {"loss": value}
    groups = ([list(group) for group in clip_groups] if clip_groups is not None
              else [list(parameters) if parameters is not None else _parameters(optimizer)])
    # (measured every step: an overflowing backward -- DSF's Gaussian feedback over a long window -- gave a finite
    # loss and an inf gradient, which clipping turned into NaN weights; the run then stopped a step later on a NaN
    # loss, blaming the learning rate, and left the model NaN)
    norms = [float(torch.nn.utils.clip_grad_norm_(group, clip)) if clip is not None else _gradient_norm(group)
             for group in groups if group]
    total = math.sqrt(sum(n * n for n in norms))
    if not math.isfinite(total):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"the gradient norm is {total} while the loss is finite ({value:.4g}): the backward pass overflowed, and "
            "no step was taken (the parameters keep their values). A synthetic feedback that grows over time (DSF's "
            "Gaussian A, spectral radius above 1, over a long window: use dsf:diagonal or dsf:orthogonal, or a shorter "
            "context), or weights or inputs too large for the dtype (lower the learning rate) are the usual causes")
    if clip is not None or grad_norm:
        out["grad_norm"] = total
    optimizer.step()
    return out


def layerwise_forward(blocks: Sequence[nn.Module], x: Tensor, *args: Any, **kwargs: Any) -> list[Tensor]:
    r"""Run ``blocks`` in order, each on the detached output of the previous one.

    .. math::
        h_0 = x, \qquad h_l = f_l(\operatorname{sg}(h_{l-1}), \ldots)

    Extra arguments (an ``edge_index``, a mask) are passed to every block.

    Returns:
        The outputs :math:`[h_1, \ldots, h_L]`, each attached only to its own block.
    """
    outputs: list[Tensor] = []
    h = x
    for block in blocks:
        h = block(h.detach(), *args, **kwargs)
        outputs.append(h)
    return outputs


class LocalOptimizers:
    """One optimizer per block, stepped together from the blocks' own losses.

    Because each block's input is detached, the gradient of :math:`\\sum_l \\mathcal{L}_l`
    w.r.t. block :math:`l`'s parameters is the gradient of :math:`\\mathcal{L}_l` alone, so one
    backward of the sum is exact and cheaper than one backward per loss.

    Args:
        modules: the blocks (each gets an optimizer over its own parameters; a block
            without parameters gets none).
        lr, weight_decay: optimizer settings (ForwardGNN uses Adam, 1e-3, 5e-4).
        optimizer: the optimizer class.
    """

    def __init__(self, modules: Sequence[nn.Module], lr: float = 1e-3, weight_decay: float = 5e-4,
                 optimizer: type[torch.optim.Optimizer] = torch.optim.Adam) -> None:
        self.modules = list(modules)
        self.optimizers: list[torch.optim.Optimizer | None] = []
        for m in self.modules:
            params = [p for p in m.parameters() if p.requires_grad]
            self.optimizers.append(optimizer(params, lr=lr, weight_decay=weight_decay) if params else None)

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            if opt is not None:
                opt.zero_grad(set_to_none=True)

    def step(self, losses: Sequence[Tensor | None], only: Sequence[int] | None = None) -> list[float]:
        """:func:`local_step` with these optimizers."""
        return local_step(losses, self, only)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [None if o is None else o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load the optimizers' moments; their current settings (learning rate, ...) are kept."""
        load_optimizer_state(self, state)


def local_step(losses: Sequence[Tensor | None], optimizers: LocalOptimizers,
               only: Sequence[int] | None = None) -> list[float]:
    """The simultaneous local step: zero, one backward of the summed block losses, step each block.

    Args:
        losses: one scalar loss per block (``None`` for a block that is not trained now), each
            attached only to its own block (detached inputs).
        optimizers: the blocks' :class:`LocalOptimizers` (one optimizer per block).
        only: indices of the blocks to step (default: all with a loss).

    Returns:
        The loss values as floats (NaN for blocks not stepped).

    Raises:
        NonFiniteLossError: a block's loss, or the gradient of a block's finite loss, is NaN or infinite (a backward
            that overflowed); no block is stepped, so every parameter keeps its value (as :func:`end_to_end_step`).
    """
    if len(losses) != len(optimizers.modules):
        raise ValueError(f"local_step got {len(losses)} losses for {len(optimizers.modules)} blocks")
    active = [i for i, loss in enumerate(losses) if loss is not None and (only is None or i in only)]
    values = [check_finite(f"loss of block {i}", losses[i]) if i in active else float("nan")
              for i in range(len(losses))]
    optimizers.zero_grad()
    total = sum(losses[i] for i in active if losses[i].requires_grad)
    if isinstance(total, Tensor):
        total.backward()
    for i in active:  # (checked before any block steps: an overflowing block stepped its weights to NaN)
        norm = _gradient_norm(list(optimizers.modules[i].parameters()))
        if not math.isfinite(norm):
            optimizers.zero_grad()
            raise NonFiniteLossError(
                f"the gradient norm of block {i} is {norm} while its loss is finite ({values[i]:.4g}): the backward "
                "pass overflowed, and no block was stepped (the parameters keep their values); lower the learning "
                "rate, or scale the inputs down")
    for i in active:
        if optimizers.optimizers[i] is not None:
            optimizers.optimizers[i].step()
    return values


@dataclass
class LayerJob:
    """What :func:`greedy_layerwise` needs to train one block.

    Attributes:
        loss: the block's loss for one step (computed on its frozen input).
        evaluate: validation metrics, including the monitored key.
        finish: called with the block's :class:`~fwdlearn.fit.FitResult` once its best state is back
            and it is in ``eval()`` mode (compute its outputs for the next block, store prototypes, ...).
    """

    loss: Callable[[], Tensor]
    evaluate: Callable[[], Mapping[str, Any]]
    finish: Callable[[FitResult], None] = field(default=lambda result: None)


def greedy_layerwise(blocks: Sequence[nn.Module], job: Callable[[int, nn.Module], LayerJob], steps: int,
                     lr: float = 1e-3, weight_decay: float = 5e-4, monitor: str = "val_accuracy", mode: str = "max",
                     patience: int | None = None, eval_every: int = 1, quiet: bool = False, desc: str = "layer",
                     device: torch.device | str | None = None,
                     optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
                     checkpointing: Checkpointing | None = None, unit: str = "step") -> list[FitResult]:
    """Train ``blocks`` one after another, each to its best validation score, then freeze it.

    For block ``l``: ``job(l, block)`` gives its :class:`LayerJob`; a :class:`~fwdlearn.fit.Trainer`
    runs up to ``steps`` steps of ``loss`` with the block's own optimizer (early stopping on
    ``monitor``, the best state restored, the first step's cost measured), then ``finish`` is
    called. Blocks are set to ``train()`` while they learn and left in ``eval()``.

    Checkpoints (``checkpointing``): one file, holding the training block's Trainer checkpoint (its weights,
    its optimizer, its best weights when not the last) and, as the checkpoint's context, the weights and
    results of the blocks already frozen. Resuming restores the frozen blocks, replays their ``finish``
    and continues the block that was training.

    Each block's progress bar is labelled ``"{desc} {l + 1}/{len(blocks)}"`` and counts ``unit`` (``"epoch"``: a
    graph's full-batch steps).

    Returns:
        One :class:`~fwdlearn.fit.FitResult` per block (``first_step_cost`` holds the measured step).
    """
    results: list[FitResult] = []
    start = 0
    plan = checkpointing
    # (the path as the Trainer reads it, ~ expanded: unexpanded, "~/run.pt" was not found here, and the Trainer of
    # block 1 resumed the file of the block that was training, loading its weights into block 1; a folder: the
    # Trainer names it)
    path = Path(plan.path).expanduser() if plan is not None else None
    if plan is not None and plan.resume and path.is_file():
        ckpt = read_checkpoint(path)
        check_fingerprint(path, ckpt, plan.trainer_options(blocks=len(blocks))["fingerprint"])  # before loading
        context = ckpt.get("context") or {}
        if "layer" not in context or context["layer"] >= len(blocks):
            raise InputError(f"{path} was not written by a layer-by-layer fit of {len(blocks)} blocks; pass "
                             "the checkpoint of this run")
        start = context["layer"]
        then = (ckpt.get("settings") or {}).get("steps")
        if start > 0 and then is not None and then != steps:
            frozen = "block 1 is" if start == 1 else f"blocks 1-{start} are"  # (was "blocks 1-1 are")
            raise UsageError(f"{path}: {frozen} frozen after training with a budget of {then} "
                             f"steps (epochs) each; a layer-by-layer run cannot change its budget on resume ({steps} "
                             f"now), as the frozen blocks would keep the old one. Resume with a budget of {then} "
                             f"(--epochs {then} for graph train, epochs={then} in Python), or start over (--overwrite; "
                             "overwrite=True in Python) with the new budget")
        for l in range(start):
            blocks[l].load_state_dict(context["frozen"][l])
        weights_changed()
        results = list(context["done"])
    for l, block in enumerate(blocks):
        work = job(l, block)
        if l < start:  # frozen before the interruption: its outputs feed the next block again
            block.eval()
            work.finish(results[l])
            continue
        optimizers = LocalOptimizers([block], lr=lr, weight_decay=weight_decay, optimizer=optimizer)

        def step(_: int, work: LayerJob = work, block: nn.Module = block, optimizers: LocalOptimizers = optimizers
                 ) -> dict[str, float]:
            block.train()
            return {"loss": optimizers.step([work.loss()])[0]}

        def context(l: int = l) -> dict[str, Any]:
            return {"layer": l, "done": results[:l], "frozen": [blocks[j].state_dict() for j in range(l)]}

        saving: dict[str, Any] = {}
        if plan is not None:  # a later block replaces the file the block before it saved
            saving = {**plan.trainer_options(blocks=len(blocks)), "resume": plan.resume and l == start,
                      "overwrite": plan.overwrite or l > start, "context": context}
        trainer = Trainer(steps, monitor=monitor, mode=mode, patience=patience, eval_every=eval_every, quiet=quiet,
                          desc=f"{desc} {l + 1}/{len(blocks)}", measure_first_step=True, device=device, unit=unit,
                          settings={"lr": lr, "weight_decay": weight_decay, "steps": steps},
                          last_part=l == len(blocks) - 1, raise_limit=None,  # (no caller sets the limit)
                          **saving)
        try:
            result = trainer.run(step, work.evaluate, state=Stateful({"block": block, "optimizer": optimizers},
                                                                      best=("block",)))
        except TrainingInterrupted as stop:
            where = f"block {l + 1} of {len(blocks)}"  # (every block counts its steps from 1: "step 14" alone
            if plan is None or stop.saved_step is not None or l == start:  # did not say of which block)
                saved = f"block {l + 1}, step {stop.saved_step}" if stop.saved_step is not None else ""
                raise TrainingInterrupted(stop.step, stop.checkpoint, stop.saved_step, where=where,
                                          saved=saved) from None
            # before this block's first save the file still holds the block below, finished: resumable from there
            raise TrainingInterrupted(stop.step, stop.checkpoint, results[-1].steps_run, where=where,
                                      saved=f"block {l}, finished") from None
        block.eval()
        work.finish(result)
        results.append(result)
    return results
