r"""Hop-wise Jacobian influence of a graph model, batched over many seeds.

For a model :math:`f(X, A) \in \mathbb{R}^{N \times C}` and a seed node :math:`v`,
the influence of node :math:`u` on :math:`v` is the L1 norm of a Jacobian block

.. math::
    I(v, u) = \sum_{i=1}^{C} \sum_{j=1}^{F}
      \left| \frac{\partial f(X, A)_{v,i}}{\partial X_{u,j}} \right|,

and the per-hop totals are :math:`T_h(v) = \sum_{u:\,\operatorname{hop}(v,u) = h} I(v, u)`
(Liang et al. 2025). The curve and the range :math:`R` come from
:mod:`fwdlearn.diagnostics.influence`.

Two variants:

- ``"subgraph"`` (as :func:`torch_geometric.utils.total_influence`): the model runs on
  the induced subgraph of :math:`v`'s ``max_hops``-hop ball, so nodes on the border
  of the ball see fewer neighbours than in the whole graph (degree-normalised
  convolutions such as GCN weigh them differently) and nothing beyond ``max_hops``
  can contribute. Seeds are batched: the balls of many seeds are put side by side in
  one disjoint graph, the model runs once, and one vector-Jacobian product per
  output channel :math:`i`, with cotangent :math:`e_i` at every seed's own row,
  returns :math:`\partial f_{v,i} / \partial X_{\mathcal{B}(v)}` for all seeds at once
  (the balls do not touch, so the rows do not mix; the :math:`|\cdot|` is taken per
  entry, so the rows are exact). Cost: linear in the number of seeds. A model that
  offers ``block_stack()`` (the package's GCN/SAGE models trained by BP or DFA) gets
  the same Jacobian layer by layer instead, over each seed's receptive field only and
  with every channel in one backward pass
  (:mod:`~fwdlearn.graphs.influence.layered_jacobian`; ``jacobian=`` chooses).
- ``"full"``: the exact Jacobian of the model on the whole graph. Influence from
  beyond ``max_hops`` is computed but not binned (it is left out of the curve and of
  :math:`R`), and border degrees are the true ones. It needs one backward pass of the
  whole graph per (seed, channel), batched with ``is_grads_batched``, so it is much
  slower; use it to check what the induced-subgraph truncation changes.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from fwdlearn.diagnostics.cost import saved_bytes
from fwdlearn.diagnostics.influence import (check_repeatable, chosen_indices, distance_totals, influence_curve,
                                            influence_range, jacobian_l1, model_device, naming_dtype_mismatch,
                                            output_tolerance, uncompiled)
from fwdlearn.distributed import gather_rows, same_on_every_process, shard_bounds
from fwdlearn.errors import check_bool, check_finite_tensor, check_int, check_seed, is_integer, warn
from fwdlearn.fit import evaluating, frozen, progress

from fwdlearn.graphs.data.datasets import check_graph_inputs, check_one_graph, warn_unweighted
from fwdlearn.graphs.data.hop_balls import hop_balls, in_neighbour_matrix, induced_union, is_symmetric
from fwdlearn.graphs.influence.layered_jacobian import (LAYERED_DTYPES, Workspace, block_stack, layered_convs,
                                                        layered_masses)
from fwdlearn.graphs.nn.backbones import BlockStack

__all__ = ["hop_influence", "select_seeds"]

GraphModel = Callable[[Tensor, Tensor], Tensor]

#: ``variant="full"``: the most gradient elements one batched backward holds: seed-channel pairs x the larger of
#: ``x`` (nodes x features) and the activations the model's forward saves for backward (each pair's backward has a
#: gradient of each of them: a 4-layer GCN of width 64 on a graph of 5,000 nodes and 40,000 edges saves 112 times
#: x's 160,000 elements, and its 20 seeds in one backward peaked at 3.4 GB where x alone allowed 100 pairs); 2^26:
#: 256 MB in float32. On a large graph it, not ``batch_size``, sets the pairs per backward, down to one output channel
#: of one seed (measured as fast per seed on Cora: 9-11 s for 18 seeds at 7 to 126 pairs, whose peak grew from 0.9 to
#: 6.1 GB)
FULL_GRADIENT_ELEMENTS = 2 ** 26


def select_seeds(num_nodes: int, samples: int | None = None, nodes: Sequence[int] | Tensor | None = None,
                 seed: int = 0) -> Tensor:
    """The seed nodes (on the CPU, whatever the default device): ``nodes`` as given (integer ids, or a boolean mask
    over the nodes such as ``data.test_mask``), else ``samples`` distinct nodes drawn with ``seed`` (all when None).
    (Under ``torch.set_default_device("cuda")`` they were made on the GPU, and the seeded draw put its CPU generator's
    numbers there, which CUDA refuses.)"""
    if nodes is not None:
        if samples is not None:
            raise ValueError("give either samples= (random seeds) or nodes= (explicit seeds), not both")
        return chosen_indices(nodes, num_nodes, "nodes=", "node")
    if samples is None:
        return torch.arange(num_nodes, device="cpu")
    if not is_integer(samples):
        raise TypeError(f"samples must be an int (or None for every node); got {samples!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1 (or None for every node), got {samples}")
    generator = torch.Generator().manual_seed(check_seed(seed))
    return torch.randperm(num_nodes, generator=generator, device="cpu")[: min(samples, num_nodes)]


def _ball_masses(model: GraphModel, sub_x: Tensor, sub_edges: Tensor, root: Tensor) -> Tensor:
    r"""``[P]``: :math:`\sum_{i,j} |\partial f_{r(p), i} / \partial X_{p, j}|` for every pair ``p`` of the union.

    The balls are disjoint, so :func:`fwdlearn.diagnostics.influence.jacobian_l1` on the seeds' rows
    gives every seed's block of the Jacobian at once.
    """
    def seed_rows(inputs: Tensor) -> Tensor:
        return _rows(model, inputs, sub_edges)[root]

    return jacobian_l1(seed_rows, sub_x)


def _check_signature(model: GraphModel) -> None:
    """Refuse a model that cannot be called as ``model(x, edge_index)`` (a ``forward(data)``, a required ``batch``)
    before it is called: Python's "forward() takes 2 positional arguments but 3 were given" named neither the call
    hop_influence makes nor how to adapt the model. A signature Python cannot read is let through."""
    target = model.forward if isinstance(model, torch.nn.Module) else model
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, None)
    except TypeError as error:
        raise TypeError(
            f"hop_influence calls model(x, edge_index), as PyG's total_influence does, but {type(model).__name__}"
            f"{'.forward' if target is not model else ''}{signature} cannot be called so ({error}). Measure it "
            "through a function of (x, edge_index) that calls it as it expects, with the model in eval mode (a "
            "wrapper is not put in it for you): model.eval(); hop_influence(lambda x, edge_index: "
            "model(Data(x=x, edge_index=edge_index)), data, ...) for a forward(data); lambda x, edge_index: "
            "model(x, edge_index, x.new_zeros(len(x), dtype=torch.long)) for a batch vector of one graph") from None


@contextmanager
def _caches_off(module: torch.nn.Module | None) -> Iterator[None]:
    """Turn off, for the block, the graph caches of the module's convs built with ``cached=True`` (PyG's ``GCNConv``,
    ``SGConv``, ``APPNP``, ``GCN2Conv``, ...: their ``_cached_*`` normalised edges or propagated features), then give
    each back its flag and its cache. Such a conv reuses the first graph it saw on every later call: measured on the
    hop balls it read the user's whole graph's cached edges (PyG's "Found indices in 'edge_index' that are larger than
    22"), or, with an empty cache, read every ball as the first one (R 1.38 for 1.27, in silence) and kept that ball's
    edges for the user's next call on the whole graph. ``None`` is skipped."""
    saved = []
    for sub in module.modules() if module is not None else ():
        if getattr(sub, "cached", None) is True and not isinstance(sub, torch.jit.ScriptModule):
            cache = {name: value for name, value in vars(sub).items() if name.startswith("_cached")}
            saved.append((sub, cache))
            sub.cached = False
            for name in cache:
                setattr(sub, name, None)
    try:
        yield
    finally:
        for sub, cache in saved:
            sub.cached = True
            for name, value in cache.items():
                setattr(sub, name, value)


def _check_inputs(data, max_hops: int, variant: str, stack: BlockStack | None) -> tuple[Tensor, Tensor]:
    # the package's models (those with a block ``stack``) read data.x as it is; any other model may cast it itself
    dtype = next(iter(stack.blocks[0].parameters())).dtype if stack is not None else None
    check_one_graph(data, "hop_influence")  # (a HeteroData or a tuple was told the graph has no features)
    x, edge_index = check_graph_inputs(data, dtype=dtype)
    check_finite_tensor("data.x", x, "influence through NaN/inf features is undefined; clean or impute them first")
    if x.shape[0] == 0:
        raise ValueError("the graph has no nodes (data.x is [0, num_features]); there is no influence to measure")
    check_int("max_hops", max_hops, 0)
    if variant not in ("subgraph", "full"):
        raise ValueError(f"unknown variant {variant!r}; choose 'subgraph' (as PyG's total_influence) or 'full'")
    warn_unweighted(data, "hop_influence", (  # (a PyG GCN on a weighted path: hop 0 read 0.35 for 0.16, in silence)
        "hop_influence calls model(x, edge_index), as PyG's total_influence does, so a model that weighs its edges is "
        "measured as if they were unweighted. To measure it with them (whole graph only): model.eval(); "
        "hop_influence(lambda x, ei: model(x, ei, {passed}), Data(x=data.x, edge_index=data.edge_index), ..., "
        "variant='full')"))
    return x, edge_index


def _subgraph_totals(model: GraphModel, x: Tensor, edge_index: Tensor, matrix, seeds: Tensor, max_hops: int,
                     batch_size: int, quiet: bool, nodes_per_batch: int | None = None,
                     stack: BlockStack | None = None) -> Tensor:
    symmetric = is_symmetric(matrix)
    rows: list[Tensor] = []
    space = Workspace()
    bar = progress(total=len(seeds), desc="influence", quiet=quiet, unit="seed")
    pieces = (piece for chunk in torch.split(seeds, batch_size)
              for piece in hop_balls(matrix, chunk.numpy(), max_hops, symmetric=symmetric).split(nodes_per_batch))
    for balls in pieces:
        count = balls.seeds.shape[0]
        union_edges, _ = induced_union(matrix, balls)
        node = torch.from_numpy(balls.node).to(x.device)
        sub_edges = torch.from_numpy(union_edges).to(edge_index.device)
        root = torch.from_numpy(balls.root).to(x.device)
        if stack is not None:
            mass = layered_masses(stack, x.detach()[node], sub_edges, torch.from_numpy(balls.hop).to(x.device), count,
                                  space)
        else:
            mass = _ball_masses(model, x.detach()[node], sub_edges, root)
        # one flat row: bucket (seed s, hop h) -> s * (k + 1) + h, then fold back to [S, k + 1]
        bucket = torch.from_numpy(balls.owner * (max_hops + 1) + balls.hop).to(mass.device)
        flat = distance_totals(mass[None], bucket[None], count * (max_hops + 1) - 1)
        rows.append(flat.reshape(count, max_hops + 1))
        bar.update(count)
    bar.close()
    return torch.cat(rows)


def _runs_more_than_its_stack(model: GraphModel) -> bool:
    """Whether ``model(x, edge_index)`` may run more than the blocks and head its ``block_stack()`` offers, whatever
    one ball shows: a ``forward`` of a subclass below the class that offers the stack (it may change the graph, e.g.
    ``to_undirected``, which a ball without a one-way edge does not reveal), or a forward (pre-)hook on the model or
    one of its modules."""
    mro = type(model).__mro__
    offers = next((c for c in mro if "block_stack" in vars(c)), None)
    runs = next((c for c in mro if "forward" in vars(c) or "__call__" in vars(c)), None)
    if offers is not None and runs is not None and runs is not offers and issubclass(runs, offers):
        return True
    modules = model.modules() if isinstance(model, torch.nn.Module) else ()
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _probe(model: GraphModel, stack: BlockStack | None, x: Tensor, edge_index: Tensor, matrix, seed: int,
           max_hops: int) -> tuple[BlockStack | None, bool]:
    """``(stack, separable)`` checked on one seed's ball: ``stack`` kept only if it computes what ``model`` does
    (a subclass's own ``forward`` or a hook would be skipped by the layered path: refused whatever the ball shows, see
    :func:`_runs_more_than_its_stack`), ``separable``: whether the ball's
    rows stay the same with another component beside it (a copy of the ball with other features; no graph-wide
    statistic such as PyG's ``LayerNorm(mode="graph")``, ``GraphNorm`` or ``PairNorm``). A model's own
    ``separable`` attribute is taken as it is. A random model is refused first (:func:`_check_repeats`: the stack's
    rows or the pair's repeat the ball's, else a second call). ``matrix``: :func:`in_neighbour_matrix` of the graph."""
    balls = hop_balls(matrix, np.array([seed]), max_hops)
    edges, _ = induced_union(matrix, balls)
    node, root = torch.from_numpy(balls.node).to(x.device), torch.from_numpy(balls.root).to(x.device)
    ball_x, ball_edges = x.detach()[node], torch.from_numpy(edges).to(edge_index.device)
    if stack is not None and _runs_more_than_its_stack(model):
        stack = None
    with torch.no_grad():
        rows = _rows(model, ball_x, ball_edges)
        alone = rows[root]
        tol = 16 * torch.finfo(alone.dtype).eps * (1 + float(alone.abs().max())) if alone.is_floating_point() else 0
        repeats = []  # the ball's rows as other calls gave them (the stack's; the pair's first component)
        if stack is not None:
            h = stack(ball_x, ball_edges)
            if h.shape != (len(ball_x), alone.shape[1]) or float((h[root] - alone).abs().max()) > tol:
                stack = None
            else:
                repeats.append(h)
        separable = getattr(model, "separable", None)
        pair = None
        if separable is None:
            gen = torch.Generator().manual_seed(0)
            other = torch.randn(ball_x.shape, generator=gen, device="cpu").to(ball_x) * (1 + ball_x.abs().mean())
            pair = _rows(model, torch.cat([ball_x, other]), torch.cat([ball_edges, ball_edges + len(ball_x)], dim=1))
            repeats.append(pair[: len(ball_x)])
        _check_repeats(model, ball_x, ball_edges, rows, repeats)  # (before a change is blamed on the graph)
        if pair is not None:
            separable = float((pair[root] - alone).abs().max()) <= tol
            if not separable:
                warn("model(x, edge_index) reads the whole graph (one hop ball's outputs change with another "
                     "component beside it: a graph-wide statistic such as LayerNorm(mode='graph'), GraphNorm "
                     "or PairNorm): its seeds are measured one ball at a time, as PyG does (slower); set "
                     "model.separable = False to skip this check")
    return stack, bool(separable)


def _rows(model: GraphModel, x: Tensor, edge_index: Tensor) -> Tensor:
    with naming_dtype_mismatch(model, x, "data.x", "hop_influence"):  # (torch's "mat1 and mat2 must have the same
        out = model(x, edge_index)                                    # dtype" named neither tensor)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
        found = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model(x, edge_index) must return [num_nodes, channels]; got {found} for {x.shape[0]} nodes "
                         "(measure another output through a wrapper that gives the node outputs, with the model in "
                         "eval mode: model.eval(); hop_influence(lambda x, edge_index: model(x, edge_index)[0], data, "
                         "...) for a tuple, or ...unsqueeze(-1) for one output per node)")
    return out


def _check_repeats(model: GraphModel, x: Tensor, edge_index: Tensor, rows: Tensor, repeats: list[Tensor]) -> None:
    """Refuse a random model (:func:`~fwdlearn.diagnostics.influence.check_repeatable`) whose ``rows``, the first call
    ``model(x, edge_index)``, no call in ``repeats`` (the same input's rows from another call: the block stack's, the
    probe's pair) gave again within :func:`~fwdlearn.diagnostics.influence.output_tolerance`: the model is called a
    second time only then (a second forward on the probe's ball at every call cost 2-3 % of the CPU time of an 8-layer
    GCN's layered measurement of 200 seeds of the California roads, and of the speed-up ``bench influence``
    reports)."""
    if not rows.is_floating_point():  # (check_repeatable compares floating-point outputs only)
        return
    tol = output_tolerance(rows)
    if any(again.shape == rows.shape and bool(((again - rows).abs() <= tol).all()) for again in repeats):
        return
    with torch.no_grad():
        again = _rows(model, x, edge_index)
    check_repeatable(rows, again, "model(x, edge_index)", "hop_influence", "batch of seeds")


def _repeatable_rows(model: GraphModel, x: Tensor, edge_index: Tensor) -> Tensor:
    """``model(x, edge_index)`` (:func:`_rows`, without gradients), refused when a second call on the same input gives
    other outputs (:func:`~fwdlearn.diagnostics.influence.check_repeatable`: its rows changed from call to call, and
    the change was reported as a graph-wide statistic)."""
    with torch.no_grad():
        first = _rows(model, x, edge_index)
    _check_repeats(model, x, edge_index, first, [])
    return first


def _full_totals(model: GraphModel, x: Tensor, edge_index: Tensor, seeds: Tensor, max_hops: int,
                 batch_size: int, quiet: bool) -> Tensor:
    num_nodes = x.shape[0]
    matrix = in_neighbour_matrix(edge_index.cpu().numpy(), num_nodes)
    x_var = x.detach().clone().requires_grad_(True)
    with saved_bytes() as saved:  # what the backward of one pair has gradients of
        out = _rows(model, x_var, edge_index)  # (a tuple gave 'tuple' object has no attribute 'dim')
    channels = out.shape[1]
    rows: list[Tensor] = []
    eye = torch.eye(channels, dtype=out.dtype, device=out.device)
    wide = torch.promote_types(x.dtype, torch.float32)  # (as jacobian_l1: a bfloat16 sum over channels and features
    # stalls once the total dwarfs each term)
    # every pair's backward holds a gradient of the whole x and of every activation saved: fewer pairs than batch_size
    # on a large graph (126 on Cora held 6 GB; 100 on a 5,000-node graph of width-64 activations 3.4 GB), down to one
    # channel of one seed
    per_pair = max(x.numel(), saved.bytes // max(1, out.element_size()), 1)
    pairs = max(1, min(batch_size, FULL_GRADIENT_ELEMENTS // per_pair))
    per_call, group = max(1, pairs // channels), min(channels, pairs)  # seeds, and channels, per backward
    bar = progress(total=len(seeds), desc="influence", quiet=quiet, unit="seed")  # (seeds, as the subgraph variant's
    for chunk in torch.split(seeds, per_call):                                      # bar: it counted the calls)
        mass = torch.zeros(len(chunk), num_nodes, dtype=wide, device=x.device)
        for first in range(0, channels, group):
            picked = eye[first: first + group]
            # cotangent b = (seed s, channel i): e_i at row seeds[s]
            cot = torch.zeros(len(chunk), len(picked), num_nodes, channels, dtype=out.dtype, device=out.device)
            cot[torch.arange(len(chunk)), :, chunk.to(out.device), :] = picked
            (grads,) = torch.autograd.grad(out, x_var, cot.reshape(-1, num_nodes, channels), retain_graph=True,
                                           is_grads_batched=True)
            mass += grads.reshape(len(chunk), len(picked), num_nodes, -1).abs().sum(dim=(1, 3), dtype=wide).detach()
            del grads, cot
        balls = hop_balls(matrix, chunk.numpy(), max_hops)
        distance = torch.full((len(chunk), num_nodes), -1, dtype=torch.long)
        distance[torch.from_numpy(balls.owner), torch.from_numpy(balls.node)] = torch.from_numpy(balls.hop)
        rows.append(distance_totals(mass, distance.to(mass.device), max_hops))
        bar.update(len(chunk))
    bar.close()
    return torch.cat(rows)


def hop_influence(model: GraphModel, data, max_hops: int, samples: int | None = None,
                  nodes: Sequence[int] | Tensor | None = None, normalize: bool = True, seed: int = 0,
                  batch_size: int = 256, variant: Literal["subgraph", "full"] = "subgraph",
                  quiet: bool = True, nodes_per_batch: int | None | Literal["auto"] = "auto",
                  jacobian: Literal["auto", "layered", "autograd"] = "auto") -> tuple[Tensor, float, Tensor]:
    r"""Per-hop Jacobian influence :math:`T_h(v)`, its mean curve and the range :math:`R`.

    Args:
        model: any callable ``model(x, edge_index) -> Tensor[N, C]`` (PyG GNNs, ForwardGNN
            models). An ``nn.Module`` is evaluated in ``eval()`` mode (no dropout) with its parameters
            not requiring gradients (only input gradients are taken), and its convs built with ``cached=True`` (PyG's
            ``GCNConv``, ``SGConv``, ``APPNP``: a cache holds the first graph a conv saw, not the hop balls)
            computing without their cache, all restored afterwards (the caches as they were). One that cannot be
            called so (a ``forward(data)``, a required ``batch``) is refused, naming the wrapper that measures it
            (``lambda x, edge_index: model(Data(x=x, edge_index=edge_index))``, after ``model.eval()``: a wrapper is
            not put in eval mode, nor are the cached convs of the module it calls turned off: build those with
            ``cached=False``, or set ``conv.cached = False`` and ``conv._cached_edge_index = None``). A random model
            (two calls on the same input differ: ``F.dropout(x, p)`` without ``training=self.training``, a wrapped
            module in train mode) is refused.
        data: a ``torch_geometric.data.Data`` with float ``x`` and ``edge_index``, on any device: for an
            ``nn.Module`` they are moved to its device (its first parameter's), as :meth:`ForwardGNN.scores
            <fwdlearn.graphs.ForwardGNN.scores>` takes them; a plain callable's stay where they are. The model is
            called as ``model(x, edge_index)``: ``data.edge_weight`` and ``data.edge_attr`` are not passed (a warning
            says so when ``data`` has them; with ``variant="full"`` a callable that passes them measures them).
            ``x`` is not converted: it must have the dtype the model computes in (float32, float64, or float16 /
            bfloat16 for a half-precision model); features of another dtype than the model's parameters (a float64
            model given float32 ``x``) are refused naming the fix, ``model.to(x.dtype)`` or ``data.x.to(dtype)``,
            unless the model runs on them (one that converts its input itself). A
            :class:`~torch_geometric.data.Batch` of several graphs is measured as one graph of disconnected
            components, so every seed's hop ball stays in its own graph and its totals are those of its graph alone
            (with ``variant="full"``, for a model without a graph-wide statistic, which would span the batch); seed
            ids (``nodes``, the rows of ``per_seed``) are the batch's node ids (``batch.ptr[g]`` + the node's id
            in graph ``g``) and ``samples`` draws among all of them. The model is not given ``batch.batch``.
        max_hops: largest hop distance :math:`k` binned.
        samples: number of random seed nodes (drawn with ``seed``); ``None`` = every node.
        nodes: explicit seed nodes (instead of ``samples``): integer ids (a list, ``range``, array or tensor),
            whose order the rows of ``per_seed`` follow (a set's in increasing order), or a boolean mask over the nodes
            (``data.test_mask``).
        normalize: divide the curve by its hop-0 value (:math:`R` always uses raw totals).
        seed: random seed for drawing ``samples``.
        batch_size: seeds per batch (``"subgraph"``) or seed-channel pairs per backward (``"full"``; fewer when
            their gradients w.r.t. the whole ``x``, or the activations the model saves for backward when those are
            larger, would hold more than :data:`FULL_GRADIENT_ELEMENTS` entries, down to one channel of one seed).
        variant: ``"subgraph"`` (PyG's definition, induced ``max_hops`` ball) or ``"full"`` (whole graph).
        quiet: no progress bar.
        nodes_per_batch: ``"subgraph"`` only: a batch is cut further so that its balls hold at most
            this many (seed, node) pairs together, the nodes of their disjoint union (``None``: no cap).
            ``"auto"``: 2048 on CPU, where a union of about that size measured fastest (1024 and 4096
            were 10-50% slower on road graphs at 8 and 16 layers: smaller unions pay per-operation
            overhead, larger ones leave the cache), no cap on a GPU. Results do not depend on it. A model whose
            attribute ``separable`` is ``False`` (ForwardGNN's FF methods: shared virtual nodes, a graph-wide
            feature shift) is measured one seed's ball at a time, as PyG does, whatever the batch settings; a model
            without the attribute is checked on one ball first (its rows with another component beside it), and one
            that reads the whole graph (PyG's ``LayerNorm(mode="graph")``, ``GraphNorm``, ``PairNorm``) is measured
            one ball at a time too, with a warning.
        jacobian: ``"subgraph"`` only. ``"layered"``: layer by layer over each seed's receptive field, every output
            channel in one backward pass (:mod:`~fwdlearn.graphs.influence.layered_jacobian`), for models that offer
            ``model.block_stack()`` of GCN, SAGE or MLP blocks (:class:`~fwdlearn.graphs.ForwardGNN` trained by
            ``bp`` or ``dfa``); ``"autograd"``: one backward pass per output channel through ``model(x, edge_index)``,
            for any model; ``"auto"``: layered when the model offers it and the features are float32 or float64
            (half precision goes through autograd). Both give the same totals up to float rounding. A model whose
            ``model(x, edge_index)`` may not be its stack's blocks and head (a subclass's own ``forward``, a forward
            hook, or outputs unlike the stack's on the first seed's ball) is measured through autograd (``"auto"``,
            with a warning) or refused (``"layered"``).

    Under ``torchrun`` (an initialised ``torch.distributed`` process group) every process
    measures a contiguous share of the seeds and the rows are gathered in seed order, so
    every process returns the same result as one process would (see :mod:`fwdlearn.distributed`). Every process must
    be given the same graph, seeds, ``max_hops`` and model: inputs that differ (a graph file rewritten while the
    processes read it, a model seeded per process) are refused by every process alike, naming what differs.

    Returns:
        ``(curve [k+1], R, per_seed [S, k+1])``, on the CPU; ``curve`` and ``per_seed`` (the raw totals) are in the
        features' dtype (float64 for a float64 model and ``x``: the same numbers as float32 to float32 rounding) or,
        for half-precision features, float32 (the sums are taken in it, by either variant); ``R`` is a Python float.
    """
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, edge_index) -> [N, C]; got {type(model).__name__}")
    model = uncompiled(model)  # (a torch.compile'd module's backward refused the retained graph of the measure)
    if hasattr(model, "forward_from_embeddings") and hasattr(model, "check_tokens"):  # (it was called on the graph and
        # refused data.x as "tokens must be integer ids", naming neither the model nor the measure that fits it)
        raise TypeError(f"hop_influence measures a graph model, model(x, edge_index); {type(model).__name__} is a "
                        "sequence model: measure it per lag with fwdlearn.sequences.lag_influence(model, tokens, "
                        "max_lag)")
    _check_signature(model)
    normalize = check_bool("normalize", normalize)  # (before the measurement, not after it)
    offered = block_stack(model)
    x, edge_index = _check_inputs(data, max_hops, variant, offered)
    graph_edges = edge_index  # (where the graph is: its hop balls are found on the CPU)
    device = model_device(model)
    if device is not None:  # (a GPU model given a CPU graph failed in its first layer: the devices differ)
        x, edge_index = x.to(device), edge_index.to(device)
    max_hops = operator.index(max_hops)  # a numpy or 0-d tensor integer as a plain int
    batch_size = check_int("batch_size", batch_size, 1)
    if nodes_per_batch == "auto":
        nodes_per_batch = None if x.is_cuda else 2048
    elif nodes_per_batch is not None and (not is_integer(nodes_per_batch) or nodes_per_batch < 1):
        raise ValueError(f"nodes_per_batch must be 'auto', None or an int >= 1, got {nodes_per_batch!r}")
    if jacobian not in ("auto", "layered", "autograd"):
        raise ValueError(f"unknown jacobian {jacobian!r}; choose 'auto', 'layered' or 'autograd'")
    stack = offered if jacobian != "autograd" and variant == "subgraph" else None
    if jacobian == "layered" and stack is None:
        raise ValueError("jacobian='layered' needs variant='subgraph' and a model with block_stack() of "
                         f"{'/'.join(layered_convs())} blocks and a linear head (ForwardGNN trained by bp or dfa); "
                         "use jacobian='autograd' for any other model")
    if stack is not None and x.dtype not in LAYERED_DTYPES:  # its sparse products
        if jacobian == "layered":
            raise ValueError(f"jacobian='layered' computes in float32 or float64; got {x.dtype} features. Use "
                             "jacobian='autograd', or convert the model and data with .float()")
        stack = None
    if stack is not None and x.shape[1] != stack.blocks[0].in_dim:
        raise ValueError(f"data.x must have shape [N, {stack.blocks[0].in_dim}] (the model's input width); "
                         f"got {tuple(x.shape)}")
    seeds = select_seeds(x.shape[0], samples, nodes, seed)
    module = model if isinstance(model, torch.nn.Module) else None
    # (under torchrun: every process must measure one model on one graph; a file rewritten while the processes read
    # it, or a model seeded per process, mixed two measurements in the gathered rows, in silence)
    same_on_every_process(
        "hop_influence", "give every process the same graph, seed nodes and model (the same file, unchanged while the "
        "job reads it; the model built with one seed or loaded from one file), and the same max_hops",
        sizes={"nodes": x.shape[0], "features": x.shape[1], "edges": edge_index.shape[1], "seed nodes": len(seeds),
               "max_hops": max_hops},
        contents={"data.x": x, "data.edge_index": edge_index, "the seed nodes": seeds,
                  "the model's parameters and buffers": ([*module.parameters(), *module.buffers()]
                                                         if module is not None else [])})
    start, stop = shard_bounds(len(seeds))  # the whole list on one process; this rank's share under torchrun
    with evaluating(module), frozen(module), _caches_off(module):
        matrix = None
        if variant == "subgraph":  # (every process probes the first seed: they decide alike, none waits for another)
            matrix = in_neighbour_matrix(graph_edges.cpu().numpy(), x.shape[0])
            offered_stack = stack
            stack, separable = _probe(model, stack, x, edge_index, matrix, int(seeds[0]), max_hops)
            if offered_stack is not None and stack is None:
                problem = ("model(x, edge_index) is not the blocks and head its block_stack() offers (a forward or a "
                           "hook of its own)")
                if jacobian == "layered":
                    raise ValueError(f"jacobian='layered': {problem}; use jacobian='autograd'")
                warn(f"{problem}: its influence is measured through autograd")
            if not separable:
                batch_size = 1  # balls in one union would see each other (shared virtual nodes, a graph-wide statistic)
        else:  # (every process, a process without seeds too: all refuse a random model alike)
            _repeatable_rows(model, x, edge_index)  # (no probe on a ball: a random model is refused here)
        if stop <= start:  # (in the dtype the other processes' rows have: all_gather needs one)
            per_seed = x.new_zeros(0, max_hops + 1, dtype=torch.promote_types(x.dtype, torch.float32))
        elif variant == "subgraph":
            per_seed = _subgraph_totals(model, x, edge_index, matrix, seeds[start:stop], max_hops, batch_size, quiet,
                                        nodes_per_batch, stack)
        else:
            with torch.enable_grad():
                per_seed = _full_totals(model, x, edge_index, seeds[start:stop], max_hops, batch_size, quiet)
    per_seed = gather_rows(per_seed).cpu()
    return influence_curve(per_seed, normalize=normalize), influence_range(per_seed), per_seed
