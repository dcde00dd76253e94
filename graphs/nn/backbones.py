r"""GNN blocks shared by the BP baseline and every forward method.

One block is ForwardGNN's layer (Park et al., ICLR 2024, arXiv:2403.11004): row-wise L2 normalisation of the
input (no parameters), a convolution from :mod:`torch_geometric.nn`, then ReLU,

.. math::
    h^{(l)} = \operatorname{ReLU}\big(\operatorname{conv}_l(\bar h^{(l-1)}, A)\big), \qquad
    \bar h_i = h_i / \max(\lVert h_i \rVert_2, \epsilon).

The convolution is a :class:`~fwdlearn.graphs.nn.convs.ConvKind` looked up by name in
:data:`~fwdlearn.graphs.registries.CONV_KINDS`: ``"gcn"``, ``"sage"`` (mean aggregation), ``"gat"`` (4 heads
concatenated) or ``"mlp"`` (a :class:`~torch.nn.Linear` that ignores the edges).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fwdlearn.graphs.nn.convs import CONV_KINDS, ConvKind

__all__ = ["make_conv", "GNNBlock", "BlockStack", "make_blocks", "check_conv", "fixed_inputs", "row_scale",
           "normalize_rows", "EPS"]

_NARROW_IDS = (torch.int32, torch.int16, torch.int8, torch.uint8)  # edge ids PyG's convs read as int64

#: the :math:`\epsilon` of the input normalisation (``torch.nn.functional.normalize``'s default; in a dtype where it
#: rounds to 0, float16, that dtype's smallest positive number: :func:`normalize_rows`)
EPS = 1e-12


def row_scale(x: Tensor) -> Tensor:
    r"""A power of two :math:`s_i \le 1` per row of ``x`` (shape ``[..., 1]``, detached) under which
    :math:`\lVert s_i h_i \rVert_2` does not overflow: 1 unless the row's largest entry is past
    :math:`2^{m/4}` for the dtype's largest number :math:`2^m` (about 4e9 in float32 and bfloat16, 16 in float16).
    Scaling by it is exact, so :math:`\lVert h_i \rVert = \lVert s_i h_i \rVert / s_i` to rounding."""
    top = math.frexp(torch.finfo(x.dtype).max)[1] // 4
    _, exponent = torch.frexp(x.detach().abs().amax(dim=-1, keepdim=True))
    shift = (exponent - top).clamp_min(0)
    return torch.ldexp(torch.ones_like(shift, dtype=x.dtype), -shift)


def normalize_rows(x: Tensor, eps: float = EPS) -> Tensor:
    r""":math:`h_i / \max(\lVert h_i \rVert_2, \epsilon)` per row, as ``torch.nn.functional.normalize`` (the same
    numbers wherever its norm does not overflow), computed on the row scaled by :func:`row_scale`: there, float32 rows
    past about 1e19 (float16 rows of norm past 65504) had an infinite norm and came out as all zeros, so features of
    that scale trained a model on nothing (chance accuracy, where float64 learned).

    A row of zeros stays zeros in every dtype: :math:`\epsilon` is at least the dtype's smallest positive number
    (float16's :math:`2^{-24}`; 1e-12 is 0 there, and a zero row, a node without features or one whose ReLU outputs
    were all 0, came out as 0/0 = NaN, which message passing spread to every node within the layers' reach)."""
    if x.is_floating_point():
        info = torch.finfo(x.dtype)
        eps = max(eps, info.tiny * info.eps)  # (the smallest subnormal: every non-zero row is divided by its norm)
    if x.device.type == "cpu":  # (the check costs a device sync elsewhere: there every row is scaled, by 1 mostly)
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        if not bool(torch.isinf(norm).any()):  # (the usual case: F.normalize's own arithmetic, at its cost)
            return x / norm.clamp_min(eps)
    scale = row_scale(x)  # (exact: a row scaled by 1 gives the same numbers)
    scaled = x * scale
    return scaled / torch.linalg.vector_norm(scaled, dim=-1, keepdim=True).clamp_min(eps * scale)


def check_conv(conv: str) -> str:
    """``conv`` stripped and lower-cased, or a ``ValueError`` naming the choices (for a conv kind or a class given in place of a
    name, the name to pass: they were lower-cased into "unknown conv 'gcn()'")."""
    if not isinstance(conv, str):
        choices = ", ".join(CONV_KINDS)
        if isinstance(conv, ConvKind) or isinstance(conv, type):
            names = [name for name in CONV_KINDS if CONV_KINDS.get(name) is conv]
            what = f"the conv kind {conv!r}" if isinstance(conv, ConvKind) else f"the class {conv.__name__}"
            fix = (f"pass conv={names[0]!r}" if names else
                   "a conv is a ConvKind instance registered under a name (fwdlearn.graphs.nn.convs): "
                   "CONV_KINDS.register('my-conv', MyConv()), then conv='my-conv'")
            raise ValueError(f"conv takes the name of a conv in CONV_KINDS ({choices}); got {what}: {fix}")
        raise ValueError(f"unknown conv {conv!r}; choose one of {choices}")
    kind = conv.strip().lower()  # (as a method or a rule is read: " GCN" was refused where " SF " was taken)
    CONV_KINDS.get(kind)
    return kind


def make_conv(conv: str, in_dim: int, out_dim: int) -> nn.Module:
    """The conv ``in_dim -> out_dim`` of kind ``conv`` (:meth:`~fwdlearn.graphs.nn.convs.ConvKind.make`)."""
    kind = check_conv(conv)
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"conv widths must be >= 1, got in_dim={in_dim}, out_dim={out_dim}")
    return CONV_KINDS.get(kind).make(in_dim, out_dim)


class GNNBlock(nn.Module):
    r"""Normalise -> conv -> ReLU: :math:`h' = \operatorname{ReLU}(\operatorname{conv}(\bar h, A))`,
    :math:`\bar h_i = h_i / \max(\lVert h_i \rVert_2, \epsilon)` (without ``normalize``, :math:`\bar h = h`; without
    ``activation``, no ReLU).

    Besides ``block(x, edge_index)``, GCN and SAGE blocks can run from a precomputed
    neighbourhood aggregation (see :mod:`fwdlearn.graphs.nn.aggregation_cache`):
    for GCN :math:`\hat A \bar h W^\top + b`, for SAGE
    :math:`W_a\,\operatorname{mean}_{j \in N(i)} \bar h_j + W_r \bar h_i + b` (:mod:`~fwdlearn.graphs.nn.convs`),
    where the aggregations of the (frozen) input are computed once.

    Args:
        conv: a conv name of :data:`~fwdlearn.graphs.registries.CONV_KINDS` (``"gcn"``, ``"sage"``, ``"gat"``,
            ``"mlp"``).
        in_dim, out_dim: widths.
        activation: apply ReLU (the forward methods always do; the BP baseline's last block too,
            and a linear classifier sits on top).
        normalize: L2-normalise the input rows (always, in the models; ``False`` with
            ``activation=False`` makes the block linear in its input, for gradient identities).
    """

    def __init__(self, conv: str, in_dim: int, out_dim: int, activation: bool = True, normalize: bool = True) -> None:
        super().__init__()
        self.kind = check_conv(conv)
        #: what the conv computes (:mod:`~fwdlearn.graphs.nn.convs`)
        self.conv_kind: ConvKind = CONV_KINDS.get(self.kind)
        self.in_dim = in_dim
        self.conv = make_conv(self.kind, in_dim, out_dim)
        self.activation = activation
        self.normalize = normalize
        #: inside :func:`fixed_inputs`: ``[input, its key, its normalised rows]`` of the last constant input
        self._fixed: list | None = None

    @property
    def cacheable(self) -> bool:
        """Whether the block is linear after a fixed aggregation of its input (GCN, SAGE)."""
        return self.conv_kind.cacheable

    def _act(self, h: Tensor) -> Tensor:
        return F.relu(h) if self.activation else h

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"GNNBlock expects node features of shape [N, {self.in_dim}]; got {tuple(x.shape)}")
        if edge_index.dtype in _NARROW_IDS:  # (int32 ids pass the models' checks; PyG's SAGE raised a raw 'expected
            edge_index = edge_index.long()  # scalar type Long' on 16 or more input features)
        return self._act(self.conv_kind(self.conv, self._normalized(x), edge_index))

    def _normalized(self, x: Tensor) -> Tensor:
        """The L2-normalised rows of ``x``; inside :func:`fixed_inputs`, an input that needs no gradient is normalised
        once while the same tensor comes back unchanged (its version counts in-place edits)."""
        if not self.normalize:
            return x
        memo = getattr(self, "_fixed", None)  # (a block pickled whole by an older fwdlearn has none)
        if memo is None or x.requires_grad:
            return normalize_rows(x)
        key = (x._version, torch.is_autocast_enabled(x.device.type))
        if not memo or memo[0] is not x or memo[1] != key:
            memo[:] = [x, key, normalize_rows(x)]
        return memo[2]

    def from_aggregation(self, aggregated: Tensor, normalized: Tensor | None = None) -> Tensor:
        r"""The block's output from the precomputed aggregation of its normalised input.

        Args:
            aggregated: GCN: :math:`\hat A \bar h`; SAGE: :math:`\operatorname{mean}_{j \in N(i)} \bar h_j`;
                MLP: :math:`\bar h` itself (it aggregates nothing).
            normalized: SAGE only: the normalised input :math:`\bar h` (for the root term).
        """
        return self._act(self.conv_kind.from_aggregation(self.conv, aggregated, normalized))


def make_blocks(conv: str, dims: Sequence[int], last_activation: bool = True) -> nn.ModuleList:
    """Blocks ``dims[0] -> dims[1] -> ... -> dims[-1]``."""
    if len(dims) < 2:
        raise ValueError(f"make_blocks needs at least two widths (one layer), got {list(dims)}")
    blocks = [GNNBlock(conv, dims[i], dims[i + 1], activation=last_activation or i < len(dims) - 2)
              for i in range(len(dims) - 1)]
    return nn.ModuleList(blocks)


@contextmanager
def fixed_inputs(module: nn.Module) -> Iterator[None]:
    """Inside, every :class:`GNNBlock` of ``module`` normalises an input that needs no gradient once and reuses the
    result while the same tensor comes back unchanged: a full-batch fit reads the same features at every step and
    evaluation (on Cora, normalising the 1,433-wide input rows was about a tenth of a 2-layer BP fit). The
    normalised copy is dropped on leaving."""
    blocks = [m for m in module.modules() if isinstance(m, GNNBlock)]
    before = [getattr(block, "_fixed", None) for block in blocks]
    for block in blocks:
        block._fixed = []
    try:
        yield
    finally:
        for block, memo in zip(blocks, before):
            block._fixed = memo


@dataclass
class BlockStack:
    """A model that is GNN blocks run one after the other and a linear head on the last one's output (``None``: the
    last block's output is the model's). What a model offers through ``block_stack()`` so that
    :func:`~fwdlearn.graphs.influence.hop_influence` can take its Jacobian layer by layer
    (:mod:`~fwdlearn.graphs.influence.layered_jacobian`)."""

    blocks: list[GNNBlock]
    head: nn.Linear | None = None

    def __call__(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """The output the stack describes: the blocks one after the other, then the head."""
        for block in self.blocks:
            x = block(x, edge_index)
        return self.head(x) if self.head is not None else x
