r"""The hop-influence Jacobian of a stack of GNN blocks, layer by layer: pruned to the receptive field, all output
channels in one backward pass.

For a model :math:`f = W_o\,h^{(L)} + b_o` over :class:`~fwdlearn.graphs.nn.backbones.GNNBlock` s
(:math:`h^{(l)} = \sigma(\operatorname{conv}_l(\bar h^{(l-1)}))`, :math:`\bar h_i = h_i / \max(\lVert h_i\rVert, \epsilon)`)
run on the disjoint union of seeds' hop balls (:func:`~fwdlearn.graphs.data.hop_balls.induced_union`), the seed
rows of :math:`f` depend on :math:`h^{(l)}` only at nodes within :math:`L - l` hops of their seed. Sort the union's
nodes by hop; then the rows that matter after layer :math:`l` are a prefix :math:`n_{L-l}` (:math:`n_r` = nodes
within :math:`r` hops), and layer :math:`l` is

.. math::
    h^{(l)}_{:n_{L-l}} = \sigma\big(P_{:n_{L-l},\,:n_{L-l+1}}\, \bar h^{(l-1)}_{:n_{L-l+1}} W_l^\top + b_l\big)

with :math:`P` the conv's propagation matrix of the *whole* union (GCN: :math:`\tilde D^{-1/2}(A+I)\tilde D^{-1/2}`
with the degrees of every ball's induced subgraph, exactly as :class:`~torch_geometric.nn.GCNConv` computes them;
SAGE: the mean over in-neighbours, plus the root term) -- the same values as running every layer on every node.

The backward pass carries one cotangent per output channel :math:`c` at once, node-major
``Z [n, C, d]`` (starting from :math:`Z_{s,c} = W_o[c]` at every seed :math:`s`):

.. math::
    Z \leftarrow Z \odot \sigma'(a), \qquad Z \leftarrow P^\top (Z W), \qquad
    Z \leftarrow \frac{Z - \bar h\,\langle \bar h, Z\rangle}{\lVert h\rVert} \;(\text{rows with } \lVert h\rVert > \epsilon;
    Z/\epsilon \text{ otherwise}),

one sparse product of width :math:`C d` per layer instead of :math:`C` backward passes, over the receptive field
only. The masses :math:`m_p = \sum_{c,j} |Z_{p,c,j}|` at the input are
:func:`~fwdlearn.diagnostics.influence.jacobian_l1`'s (autograd's) up to float rounding (tested to 1e-5 relative).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from fwdlearn.graphs.nn.aggregation_cache import propagation_matrix
from fwdlearn.graphs.nn.backbones import EPS, BlockStack, GNNBlock, row_scale
from fwdlearn.graphs.nn.convs import CONV_KINDS

__all__ = ["layered_convs", "LAYERED_DTYPES", "Workspace", "block_stack", "layered_masses"]

#: the dtypes it computes in (its sparse CSR products have no half-precision kernels on a CPU)
LAYERED_DTYPES = (torch.float32, torch.float64)


def layered_convs() -> tuple[str, ...]:
    """The conv kinds the layered Jacobian handles: those linear after a fixed aggregation
    (:attr:`~fwdlearn.graphs.nn.convs.ConvKind.linear`; GAT's attention is not one)."""
    return tuple(name for name in CONV_KINDS if CONV_KINDS.get(name).linear)


def block_stack(model) -> BlockStack | None:
    """The model's :class:`BlockStack` when it offers one (``model.block_stack()``, e.g.
    :class:`~fwdlearn.graphs.ForwardGNN` trained by BP or DFA) made only of blocks whose conv is linear after a fixed
    aggregation (:func:`layered_convs`: GCN, SAGE, MLP); else ``None``."""
    offer = getattr(model, "block_stack", None)
    stack = offer() if callable(offer) else None
    if stack is None or not all(isinstance(b, GNNBlock) and b.conv_kind.linear for b in stack.blocks):
        return None
    return stack


class _Propagation:
    """A conv's propagation matrix on hop-sorted nodes: the rows of the first ``rows`` targets are a prefix of its
    entries. Forward (narrow inputs): gather + ``index_add_``; backward (``C d`` wide cotangents): one CSR product with
    the transpose, 8 % faster overall than gather + ``index_add_`` on road-graph unions of 2k nodes."""

    def __init__(self, kind: str, edges: Tensor, num_nodes: int, dtype: torch.dtype) -> None:
        matrix = propagation_matrix(kind, edges, num_nodes, dtype)  # coalesced: sorted by (target, source)
        (self.target, self.source), self.weight = matrix.indices(), matrix.values()
        self.ends = torch.searchsorted(self.target, torch.arange(num_nodes + 1, device=edges.device))
        by_source = torch.argsort(self.source * num_nodes + self.target)
        self.t_source, self.t_target, self.t_weight = (v[by_source] for v in (self.source, self.target, self.weight))

    def forward(self, x: Tensor, rows: int) -> Tensor:
        """:math:`P_{:rows} x` (``x [n_in, k]``)."""
        e = int(self.ends[rows])
        msg = x.index_select(0, self.source[:e]).mul_(self.weight[:e, None])
        return x.new_zeros(rows, x.shape[1]).index_add_(0, self.target[:e], msg)

    def backward(self, z: Tensor, inputs: int, out: Tensor | None = None) -> Tensor:
        r""":math:`P_{:rows}^\top z` (``z [rows, k]`` -> ``[inputs, k]``, into ``out`` when given)."""
        keep = self.t_target < z.shape[0]
        crow = torch.searchsorted(self.t_source[keep], torch.arange(inputs + 1, device=z.device))
        transpose = torch.sparse_csr_tensor(crow, self.t_target[keep], self.t_weight[keep], (inputs, z.shape[0]),
                                            check_invariants=False)
        return torch.mm(transpose, z, out=out) if out is not None else transpose @ z


class Workspace:
    """Two reusable buffers for the backward pass's ``[nodes, C, width]`` cotangents: each product is written into the
    buffer its input does not occupy, so no tensor of a few MB is allocated per layer (such fresh allocations are
    page-faulted in whenever glibc has returned the memory, which cost 20-25 % of the layered path's time in
    ``fwdlearn bench influence``). One workspace serves every batch of a :func:`hop_influence` call."""

    def __init__(self) -> None:
        self.buffers: list[Tensor | None] = [None, None]

    def other(self, t: Tensor, *shape: int) -> Tensor:
        """An uninitialised ``shape`` view of the buffer that does not hold ``t``."""
        numel = math.prod(shape)
        first = self.buffers[0]
        i = 1 if first is not None and first.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() else 0
        buffer = self.buffers[i]
        if buffer is None or buffer.numel() < numel or buffer.dtype != t.dtype or buffer.device != t.device:
            buffer = self.buffers[i] = t.new_empty(numel)
        return buffer[:numel].view(shape)


def _conv_backward(block: GNNBlock, prop: _Propagation | None, z: Tensor, inputs: int, space: Workspace) -> Tensor:
    r"""``z [rows, C, d_out]`` -> ``[inputs, C, d_in]``: :math:`P^\top (Z W_a) + Z W_r` (:math:`P = I` without a
    propagation; without a root term in ``space``'s buffers)."""
    (rows, C, d_out) = z.shape
    w, root = block.conv_kind.weights(block.conv)
    d_in = w.shape[1]
    if prop is None:  # no aggregation: P = I
        out = z.new_zeros(inputs, C, d_in)
        out[:rows] = z @ w
    elif root is None:
        if d_in > d_out:  # widening backward (a wide input): propagate the narrower cotangent first
            p = prop.backward(z.view(rows, -1), inputs, space.other(z, inputs, C * d_out))
            return torch.matmul(p.view(inputs, C, d_out), w, out=space.other(p, inputs, C, d_in))
        y = torch.matmul(z, w, out=space.other(z, rows, C, d_in))
        return prop.backward(y.view(rows, -1), inputs, space.other(y, inputs, C * d_in)).view(inputs, C, d_in)
    else:
        out = prop.backward((z @ w).reshape(rows, -1), inputs).reshape(inputs, C, -1)
    if root is not None:
        out[:rows] += z @ root
    return out


def layered_masses(stack: BlockStack, x: Tensor, edges: Tensor, hop: Tensor, num_seeds: int,
                   space: Workspace | None = None) -> Tensor:
    r"""``[P]``: :math:`\sum_{c,j} |\partial f_{r(p), c} / \partial x_{p, j}|` for every node ``p`` of a union of
    hop balls, as :func:`~fwdlearn.graphs.influence.hop_influence._ball_masses` by autograd.

    Args:
        stack: the model's blocks and head (:func:`block_stack`).
        x: ``[P, F]`` the union's input features.
        edges: ``[2, E]`` the union's edges (:func:`~fwdlearn.graphs.data.hop_balls.induced_union`): balls that
            share no node, each its own copy of its nodes (balls that share nodes give sums over their seeds).
        hop: ``[P]`` every node's hop distance from its own seed; exactly ``num_seeds`` nodes have hop 0 (the seeds).
        num_seeds: the number of balls in the union.
        space: buffers to reuse across calls (a fresh :class:`Workspace` when ``None``).
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return _masses(stack, x, edges, hop, num_seeds, space or Workspace())


def _unscaled_norm(dtype: torch.dtype) -> float:
    """A row norm below which :func:`~fwdlearn.graphs.nn.backbones.row_scale` is 1: :math:`2^{m/4 - 1}`, half the
    entry that it scales (a row's norm is at least its largest entry). Checked on the norm the normalisation computes
    anyway, it spares an 8-layer GCN's ``hop_influence`` row_scale's passes over every layer's input (4 % of its
    time)."""
    return 2.0 ** (math.frexp(torch.finfo(dtype).max)[1] // 4 - 1)


def _masses(stack: BlockStack, x: Tensor, edges: Tensor, hop: Tensor, num_seeds: int, space: Workspace) -> Tensor:
    P, L = x.shape[0], len(stack.blocks)
    order = torch.argsort(hop, stable=True)  # seeds first, then hop 1, ...: every receptive field is a prefix
    rank = torch.empty_like(order)
    rank[order] = torch.arange(P, device=order.device)
    sorted_hop = hop[order]
    edges = rank[edges]

    def within(r: int) -> int:  # nodes within r hops of their seed
        return int(torch.searchsorted(sorted_hop, torch.tensor(r, device=hop.device), right=True))

    kinds = {b.kind for b in stack.blocks if b.conv_kind.aggregates}
    props = {kind: _Propagation(kind, edges, P, x.dtype) for kind in kinds}
    # forward over the receptive field, keeping what the backward needs. A block's input scale 1/max(|h|, eps) is
    # folded into the ReLU mask of the block below (or, for the first block, into the masses): one pass fewer a layer
    h, saved, input_scale = x[order], [], None
    for l, block in enumerate(stack.blocks):
        rows = within(L - l - 1)
        bar, tangent = h, None
        if block.normalize:
            # (on the rows scaled by a power of two, as the blocks normalise them: the norm of a float32 row past
            # about 1e19 overflowed, and its features read as zeros)
            norm = h.norm(dim=-1, keepdim=True)
            if bool((norm < _unscaled_norm(h.dtype)).all()):  # (the usual case: no entry near 2^(m/4), so row_scale
                power = torch.ones_like(norm)  # is 1 everywhere and h * 1 is h: the same numbers, without its passes)
            else:
                power = row_scale(h)
                norm = (h * power).norm(dim=-1, keepdim=True)
            floor = EPS * power
            scale = power / norm.clamp_min(floor)
            bar = h * scale
            small = norm <= floor  # rows clamped at eps: h / eps, no projection
            tangent = (bar.masked_fill(small, 0) if bool(small.any()) else bar)[:, None, :]
            if saved:
                inputs, below_tangent, live = saved[-1]
                saved[-1] = (inputs, below_tangent, scale[:, :, None] if live is None else live.mul_(scale[:, :, None]))
            else:
                input_scale = scale[:, 0]
        prop = props.get(block.kind)  # the block's own output from its aggregation (none: P = I)
        h = block.from_aggregation(prop.forward(bar, rows) if prop is not None else bar[:rows], bar[:rows])
        saved.append((bar.shape[0], tangent, (h > 0).to(h.dtype)[:, None, :] if block.activation else None))
    # backward: every channel at once
    head = stack.head.weight if stack.head is not None else torch.eye(h.shape[1], dtype=x.dtype, device=x.device)
    z = head[None].repeat(num_seeds, 1, 1)  # [S, C, d_L]: channel c's cotangent at every seed
    for block, (inputs, tangent, live) in zip(reversed(stack.blocks), reversed(saved)):
        if live is not None:  # the ReLU's mask (times the scale of the next block's input normalisation)
            z = z.mul_(live)
        z = _conv_backward(block, props.get(block.kind), z, inputs, space)
        if tangent is not None:  # through h / max(|h|, eps), up to the scale folded into the mask below
            dot = torch.bmm(z, tangent.transpose(1, 2))  # [rows, C, 1]: <z_c, h / |h|> per row
            z = z.addcmul_(tangent, dot, value=-1)
    mass = torch.linalg.vector_norm(z, ord=1, dim=(1, 2))  # sum |z| without the [rows, C, d] copy of |z|
    if input_scale is not None:
        mass = mass * input_scale
    out = torch.zeros(P, dtype=x.dtype, device=x.device)
    out[order[: mass.shape[0]]] = mass
    return out
