"""hop_balls / induced_union against a plain breadth-first search and edge list (mutation round 24)."""

import numpy as np
import pytest

from fwdlearn.graphs.data.hop_balls import HopBalls, hop_balls, in_neighbour_matrix, induced_union, is_symmetric


def _graph(nodes: int = 25, edges: int = 60, seed: int = 0, symmetric: bool = False) -> np.ndarray:
    """A random multigraph: repeated edges and self-loops kept; both directions of each edge when ``symmetric``."""
    rng = np.random.default_rng(seed)
    edge_index = rng.integers(0, nodes, size=(2, edges))
    edge_index[:, 5] = edge_index[:, 3]  # (a repeated edge)
    edge_index[1, 7] = edge_index[0, 7]  # (a self-loop)
    if symmetric:
        edge_index = np.concatenate([edge_index, edge_index[::-1]], axis=1)
    return edge_index[:, rng.permutation(edge_index.shape[1])]


def _distances(edge_index: np.ndarray, seed: int, max_hops: int) -> dict[int, int]:
    """Breadth-first hop distances of the nodes whose messages reach ``seed`` in at most ``max_hops`` edges."""
    found, ring = {seed: 0}, [seed]
    for hop in range(1, max_hops + 1):
        ring = sorted({int(u) for u, v in edge_index.T if v in ring and u not in found})
        found.update({u: hop for u in ring})
    return found


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("max_hops", [0, 1, 2, 4])
def test_hop_balls_are_breadth_first_search_pairs_sorted_by_seed_then_node(symmetric, max_hops):
    edge_index = _graph(symmetric=symmetric)
    matrix = in_neighbour_matrix(edge_index, 25)
    seeds = np.array([7, 0, 24, 7, 13])  # (a repeated seed gets its own ball)
    for told in (None, symmetric):  # (the symmetric search, on its own finding or told, is the plain one's)
        balls = hop_balls(matrix, seeds, max_hops, symmetric=told)
        owner, node, hop = [], [], []
        for s, seed in enumerate(seeds):
            ball = sorted(_distances(edge_index, int(seed), max_hops).items())
            owner += [s] * len(ball)
            node += [u for u, _ in ball]
            hop += [h for _, h in ball]
        assert balls.owner.tolist() == owner and balls.node.tolist() == node and balls.hop.tolist() == hop
        assert balls.offsets.tolist() == np.searchsorted(owner, np.arange(6)).tolist()
        assert balls.seeds.tolist() == seeds.tolist() and balls.num_pairs == len(node)
        assert balls.node[balls.root].tolist() == seeds.tolist() and not balls.hop[balls.root].any()
        assert balls.owner[balls.root].tolist() == list(range(5))


@pytest.mark.parametrize("ordered", [True, False])
def test_induced_union_is_every_edge_inside_a_ball_with_its_multiplicity_and_weight(ordered):
    """Each ball's edges, repeats and self-loops included, in the edge list's order (``ordered``) or by target pair;
    ``entry`` carries each edge's weight (``matrix.data[entry]``) and position in the edge list."""
    edge_index = _graph(seed=3)
    weight = np.arange(1, edge_index.shape[1] + 1, dtype=np.float64)
    matrix = in_neighbour_matrix(edge_index, 25, weight)
    balls = hop_balls(matrix, [4, 19, 4], 2)
    union, entry = induced_union(matrix, balls, ordered=ordered)
    expected = []
    for s in range(3):
        lo, hi = balls.offsets[s], balls.offsets[s + 1]
        pair = {int(u): lo + i for i, u in enumerate(balls.node[lo:hi])}
        expected += [(pair[u], pair[v], e) for e, (u, v) in enumerate(edge_index.T.tolist()) if u in pair and v in pair]
    found = [(int(a), int(b), int(matrix.edge_order[c])) for (a, b), c in zip(union.T, entry)]
    assert found == expected if ordered else sorted(found) == sorted(expected)
    if not ordered:
        assert (np.diff(union[1]) >= 0).all()
    assert matrix.data[entry].tolist() == [weight[e] for _, _, e in found]
    assert (in_neighbour_matrix(edge_index, 25).data == 1).all()


def test_split_groups_seeds_up_to_max_pairs_and_never_leaves_a_group_empty():
    matrix = in_neighbour_matrix(_graph(seed=1), 25)
    balls = hop_balls(matrix, [3, 8, 8, 20, 11], 1)
    sizes = np.diff(balls.offsets).tolist()
    for max_pairs in (0, 1, sizes[0] + sizes[1], sizes[0] + sizes[1] + sizes[2] - 1, balls.num_pairs, 10 ** 6):
        groups = balls.split(max_pairs)
        counts, start = [], 0  # (greedy: a group takes seeds while its pairs fit, at least one seed)
        while start < 5:
            stop = start + 1
            while stop < 5 and sum(sizes[start:stop + 1]) <= max_pairs:
                stop += 1
            counts.append(stop - start)
            start = stop
        assert [g.seeds.shape[0] for g in groups] == counts, max_pairs
        for g in groups:
            assert g.offsets[0] == 0 and g.offsets[-1] == g.num_pairs and (g.owner[g.offsets[1:] - 1] ==
                                                                          np.arange(len(g.seeds))).all()
            assert (g.node[g.root] == g.seeds).all() and (g.hop[g.root] == 0).all()
        assert np.concatenate([g.node for g in groups]).tolist() == balls.node.tolist()


def test_is_symmetric_keys_do_not_overflow_on_a_graph_of_70000_nodes():
    """The keys ``u * N + v`` are int64: of the 32-bit CSR indices (``int32 * N`` stays int32) they would wrap around
    past 46,341 nodes."""
    n = 70000
    assert not is_symmetric(in_neighbour_matrix(np.array([[0, n - 1], [n - 1, 1]]), n))
    assert is_symmetric(in_neighbour_matrix(np.array([[0, n - 1], [n - 1, 0]]), n))


def test_hop_balls_take_no_seeds_and_refuse_seeds_of_another_shape():
    matrix = in_neighbour_matrix(_graph(), 25)
    empty = hop_balls(matrix, [], 3)  # (a float64 array of no seeds)
    assert isinstance(empty, HopBalls) and empty.num_pairs == 0 and empty.offsets.tolist() == [0]
    with pytest.raises(ValueError, match=r"seeds must be a 1-D array of integer node ids; got dtype int64 and shape "
                                         r"\(1, 2\)"):
        hop_balls(matrix, np.array([[1, 2]]), 3)
    with pytest.raises(ValueError, match=r"seeds must be node ids in \[0, 24\] \(the graph has 25 nodes\); got 1 "
                                         r"outside, e.g. 25"):
        hop_balls(matrix, [24, 25], 1)
