r"""Cached neighbourhood aggregation: the source of ForwardGNN's speed-up.

A GCN layer is :math:`\hat A \bar h W + b` with
:math:`\hat A = \tilde D^{-1/2}(A + I)\tilde D^{-1/2}`, and a mean-SAGE layer is
:math:`W_l (D^{-1} A \bar h) + W_r \bar h + b`. Both are *linear in the parameters after a
parameter-free aggregation of the input*: :math:`\hat A \bar h = (\hat A \bar h)` does not
depend on :math:`W`. When a layer is trained on a **frozen** input (layer-by-layer training,
where layer :math:`l` starts after layers :math:`1..l-1` are done and their outputs are
detached), that aggregation is computed once and every epoch of layer :math:`l` is a
dense matrix product, with no message passing:

.. math::
    Z_l = \hat A\,\bar h^{(l-1)} \;\text{(once)}, \qquad h^{(l)} = \operatorname{ReLU}(Z_l W_l + b_l)
    \;\text{(every epoch)}.

It applies to GCN and SAGE (mean) blocks trained layer by layer. It does **not** apply to
GAT (the attention coefficients depend on the weights), to end-to-end BP or to methods
whose layer input changes during training (the top-down methods, whose inputs include the
previous step's upper layers; simultaneous training of all layers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from fwdlearn.fit import training_mode
from fwdlearn.graphs.nn.backbones import GNNBlock, normalize_rows
from fwdlearn.graphs.nn.convs import CONV_KINDS

__all__ = ["propagation_matrix", "aggregation_dtype", "CachedInput", "prepare_input", "run_block", "KeptOutputs"]


def aggregation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a cached aggregation is computed in: the input's, or float32 for a half-precision input. The sparse
    product sums each node's neighbours in its own dtype, and a bfloat16 sum stalls once it dwarfs its terms: at a
    node of 700 neighbours the aggregation of a bfloat16 GCN block was 43% off (28% for SAGE's mean), where the same
    block's message passing (``cache=False``) was within bfloat16's rounding."""
    return torch.promote_types(dtype, torch.float32)


def propagation_matrix(kind: str, edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    r"""The sparse aggregation operator :math:`P` ``[N, N]`` of a conv kind (COO, coalesced; row = target, column =
    source): :meth:`~fwdlearn.graphs.nn.convs.ConvKind.propagation` (GCN: :math:`\hat A` exactly as
    :class:`~torch_geometric.nn.GCNConv` normalises it; SAGE: the mean over in-neighbours)."""
    if edge_index.dtype != torch.int64:  # (narrow ids pass the models' checks, as the blocks read them: SAGE's
        edge_index = edge_index.long()  # degree count failed on int16/int8/uint8 ones: 'Expected dtype int32/int64')
    matrix = CONV_KINDS.get(kind).propagation(edge_index, num_nodes, dtype)
    if matrix is None:
        cached = [name for name in CONV_KINDS if CONV_KINDS.get(name).cacheable]
        raise ValueError(f"no cached aggregation for conv {kind!r}; it applies to {', '.join(map(repr, cached))}")
    return matrix


@dataclass
class CachedInput:
    """A frozen block input, ready for :func:`run_block`: the normalised input and its aggregation."""

    normalized: Tensor | None
    aggregated: Tensor | None
    x: Tensor | None = None  # uncached: the raw input and its edges
    edge_index: Tensor | None = None


def prepare_input(block: GNNBlock, x: Tensor, edge_index: Tensor, cache: bool = True,
                  matrix: Tensor | None = None) -> CachedInput:
    """Precompute the aggregation of a frozen input ``x`` for ``block`` (when it applies and ``cache``).

    Args:
        matrix: the propagation matrix, if already built for this graph and conv kind (best in
            :func:`aggregation_dtype` of ``x``'s dtype, the one the product is computed in).
    """
    x = x.detach()
    if not (cache and block.cacheable):
        return CachedInput(None, None, x, edge_index)
    normalized = normalize_rows(x) if block.normalize else x
    wide = aggregation_dtype(x.dtype)
    if matrix is None:
        matrix = propagation_matrix(block.kind, edge_index, x.shape[0], wide)
    aggregated = torch.sparse.mm(matrix.to(wide), normalized.to(wide)).to(x.dtype)
    return CachedInput(normalized if block.conv_kind.reads_root(block.conv) else None, aggregated)


def run_block(block: GNNBlock, cached: CachedInput) -> Tensor:
    """The block's output on a prepared input (from the cache, or by message passing)."""
    if cached.aggregated is not None:
        return block.from_aggregation(cached.aggregated, cached.normalized)
    return block(cached.x, cached.edge_index)


class KeptOutputs:
    """A block's outputs on prepared inputs (:func:`run_block`), kept while its weights are unchanged.

    In a layer-by-layer fit the evaluation after a step computes the block's output on an input that the next step's
    loss reads too (same input, same weights): it keeps the output, with its graph, and the loss takes it over
    (``take=True``) instead of computing it again. Any change of the weights (a step, a restored state) changes their
    versions, and every kept output is dropped.

    That holds for a conv that computes the same in ``train()`` and ``eval()`` mode
    (:attr:`~fwdlearn.graphs.nn.convs.ConvKind.mode_free`: the built-in ones). Any other (a user's conv with dropout)
    computes the loss's outputs in ``train()`` mode and the evaluation's, and the outputs a finished layer hands on, in
    ``eval()`` mode, and keeps nothing: its validation read dropout-noised outputs, and chose the layer's best state
    by them.

    Args:
        block: the block being trained.
        prepared: its prepared inputs by name (:func:`prepare_input`).
    """

    def __init__(self, block: GNNBlock, prepared: Mapping[str, CachedInput]) -> None:
        self.block, self.prepared = block, prepared
        self.mode_free = block.conv_kind.mode_free
        self._weights: tuple[tuple[int, int], ...] | None = None
        self._outputs: dict[str, Tensor] = {}

    def get(self, name: str, take: bool = False) -> Tensor:
        """The output on input ``name`` for a training loss (with its graph, in ``train()`` mode): the kept one while
        the weights are unchanged, else computed now; ``take``: and forget it (a loss takes it over)."""
        weights = tuple((id(p), p._version) for p in self.block.parameters())
        if weights != self._weights:
            self._outputs.clear()
            self._weights = weights
        if name not in self._outputs:
            with torch.enable_grad(), training_mode(True, self.block):  # (for the training loss that takes it over)
                self._outputs[name] = run_block(self.block, self.prepared[name])
        return self._outputs.pop(name) if take else self._outputs[name]

    def evaluated(self, name: str, keep: bool = False) -> Tensor:
        """The output on input ``name`` for an evaluation or to hand on (detached): with ``keep`` (an input the next
        step's loss reads) and a mode-free conv, the one :meth:`get` keeps for that loss; else computed now without a
        graph, in ``eval()`` mode unless the conv is mode-free."""
        if keep and self.mode_free:
            return self.get(name).detach()
        with torch.no_grad(), training_mode(self.mode_free and self.block.training, self.block):
            return run_block(self.block, self.prepared[name])

    def clear(self) -> None:
        """Forget the kept outputs (and their graphs)."""
        self._outputs.clear()
