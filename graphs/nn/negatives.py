r"""Negative pairs for link prediction, drawn in torch: :class:`NegativeSampler`.

The pairs are those of PyG's :func:`torch_geometric.utils.negative_sampling` (its default ``"sparse"`` method on one
graph, not ``force_undirected``): ordered pairs :math:`(u, v)` with :math:`u \ne v` that are not among the given edges,
distinct, drawn uniformly. How they are drawn differs (for speed, and for seeding by torch):

- the draws come from torch's generator (the global one, which :func:`~fwdlearn.fit.seed_everything` seeds and a
  checkpoint keeps, or a given ``generator``), not from Python's ``random`` module, and run on the edges' device;
- the edges' sorted keys are built once, with the sampler, and every draw tests membership by
  :func:`torch.searchsorted`; PyG keys the edges again and ``np.isin`` sorts them at every call, and its draw is a
  ``random.sample`` of Python integers (on Cora's training edges, one thread: 2.7 ms of CPU a call, 0.54 ms here).

The count: ``sampler(num)`` gives exactly ``min(num, available)`` pairs, ``available`` being the ordered pairs of
distinct nodes that are not edges. PyG gives the same count save for a shortfall after its three tries (possible on
small graphs only). Where its oversampled draw (1.1 times ``num`` over the share of non-edges) would cover every pair
(a dense graph), both list the non-edges; PyG then returns the first ones in key order, the same pairs at every call,
and this sampler a uniform choice among them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fwdlearn.errors import check_int

__all__ = ["NegativeSampler"]

#: how many more pairs than needed a draw takes over the expected share of non-edges (PyG's oversampling)
OVERSAMPLE = 1.1


class NegativeSampler:
    r"""Uniform negative pairs of one graph: ``sampler(num)`` is ``[2, min(num, available)]``, distinct ordered pairs
    :math:`(u, v)`, :math:`u \ne v`, none of them an edge of ``edge_index``, in random order (module docstring).

    Args:
        edge_index: the edges ``[2, E]`` to exclude (as given: an undirected graph lists both directions, and then
            both directions of each edge are excluded), integer node ids; self-loops and repeats are ignored.
        num_nodes: the nodes ``0 .. num_nodes - 1`` the pairs are drawn from (an int >= 1, above every edge id).

    The edges are keyed and sorted once, here; each call draws on ``edge_index``'s device from torch's global
    generator (``generator``: another one, on that device).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int) -> None:
        n = check_int("num_nodes", num_nodes, 1)
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2 \
                or edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
            # (a [E, 2] list failed with "too many values to unpack (expected 2)"; float ids were truncated in silence)
            found = (f"got {edge_index.dtype} of shape {tuple(edge_index.shape)}" if isinstance(edge_index, Tensor)
                     else f"got {type(edge_index).__name__}")
            hint = (": transpose it (.t())" if isinstance(edge_index, Tensor) and edge_index.dim() == 2
                    and edge_index.shape[1] == 2 and edge_index.shape[0] != 2 else "")
            raise ValueError(f"edge_index must be a [2, num_edges] tensor of integer node ids; {found}{hint}")
        if edge_index.numel() and not 0 <= int(edge_index.min()) <= int(edge_index.max()) < n:
            raise ValueError(f"edge_index has node ids in [{int(edge_index.min())}, {int(edge_index.max())}] but "
                             f"num_nodes={n}: ids index the nodes 0 .. num_nodes - 1 (give the graph's node count)")
        row, col = edge_index.long()
        self.num_nodes, self.device = n, edge_index.device
        #: ordered pairs without self-loops, keyed u * (n - 1) + v - (v > u) in [0, n (n - 1)) as PyG keys them
        self.population = n * (n - 1)
        self.edge_keys = torch.unique(self._key(row[row != col], col[row != col]))  # sorted, distinct
        #: the pairs a call can return: the population less the edges
        self.available = self.population - self.edge_keys.numel()

    def _key(self, row: Tensor, col: Tensor) -> Tensor:
        return row * (self.num_nodes - 1) + col - (col > row).long()

    def _pair(self, key: Tensor) -> Tensor:
        row = torch.div(key, self.num_nodes - 1, rounding_mode="floor")
        col = key % (self.num_nodes - 1)
        return torch.stack([row, col + (col >= row).long()])

    def _is_edge(self, keys: Tensor) -> Tensor:
        if not self.edge_keys.numel():
            return torch.zeros_like(keys, dtype=torch.bool)
        at = torch.searchsorted(self.edge_keys, keys).clamp_(max=self.edge_keys.numel() - 1)
        return self.edge_keys[at] == keys

    def __call__(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``[2, min(num, available)]`` distinct non-edge pairs, drawn uniformly (int64, on the edges' device)."""
        num = min(check_int("num", num, 0, " (the number of negative pairs)"), self.available)
        options = {"device": self.device, "generator": generator}
        if num == 0:
            return torch.empty(2, 0, dtype=torch.long, device=self.device)
        size = int(OVERSAMPLE * num * self.population / self.available)  # expect 1.1 num non-edges in a draw
        if size >= self.population:  # (a dense graph: list the non-edges, as PyG does)
            keys = torch.arange(self.population, device=self.device)
            found = keys[~self._is_edge(keys)]
        else:  # draw with replacement, drop the edges and the repeats, until num are found (usually one draw)
            found = torch.empty(0, dtype=torch.long, device=self.device)
            while found.numel() < num:
                keys = torch.randint(self.population, (size,), **options)
                found = torch.unique(torch.cat([found, keys[~self._is_edge(keys)]]))
        # the distinct non-edges of the draws are a uniform set given their number, so a uniform choice among them
        # is a uniform choice among all non-edges
        return self._pair(found[torch.randperm(found.numel(), **options)[:num]])
