"""Edge cases of hop_influence and its layered Jacobian: per-hop totals against a brute-force autograd Jacobian of the
induced hop ball on tiny graphs, block options the layered path folds together, and argument checks."""

import networkx as nx
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from fwdlearn.graphs import hop_influence
from fwdlearn.graphs.influence.hop_influence import select_seeds
from fwdlearn.graphs.influence.layered_jacobian import Workspace, layered_masses
from fwdlearn.graphs.nn.backbones import BlockStack, GNNBlock


class Blocks(torch.nn.Module):
    """GNN blocks and an optional linear head, offering them as its block stack (the layered path)."""

    def __init__(self, blocks, head: torch.nn.Linear | None = None) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.head = head

    def forward(self, x, edge_index):
        return self.block_stack()(x, edge_index)

    def block_stack(self):
        return BlockStack(list(self.blocks), self.head)


def brute_force(model, data: Data, seeds, max_hops: int) -> torch.Tensor:
    """``[seed, hop]``: the L1 mass of ``torch.autograd.functional.jacobian`` of the seed's row of ``model`` run on
    the induced subgraph of the seed's ``max_hops`` ball (in-neighbours: messages flow source -> target), binned by
    networkx's shortest-path hops."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(data.num_nodes))
    graph.add_edges_from(data.edge_index.t().tolist())
    rows = []
    for v in seeds:
        hops = nx.single_source_shortest_path_length(graph.reverse(), v, cutoff=max_hops)
        ball = torch.tensor(sorted(hops))
        edges, _ = subgraph(ball, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes)
        row = int((ball == v).nonzero())
        jac = torch.autograd.functional.jacobian(lambda x: model(x, edges)[row], data.x[ball])  # [C, |ball|, F]
        mass = jac.abs().sum(dim=(0, 2))
        total = torch.zeros(max_hops + 1, dtype=data.x.dtype)
        for i, u in enumerate(ball.tolist()):
            total[hops[u]] += mass[i]
        rows.append(total)
    return torch.stack(rows)


def tiny_graph(nodes: int = 9, features: int = 3, seed: int = 0, dtype=torch.float64) -> Data:
    """A path 0 - 1 - ... - 5 with a one-way shortcut 6 -> 2, a pair 7 - 8, both directions elsewhere."""
    g = torch.Generator().manual_seed(seed)
    pairs = [(i, i + 1) for i in range(5)] + [(7, 8)]
    edges = [e for a, b in pairs for e in ((a, b), (b, a))] + [(6, 2)]
    return Data(x=torch.randn(nodes, features, generator=g, dtype=dtype), edge_index=torch.tensor(edges).t())


def assert_equal_to_brute_force(model, data, max_hops: int, seeds=None, **kwargs) -> torch.Tensor:
    seeds = list(range(data.num_nodes)) if seeds is None else seeds
    expected = brute_force(model, data, seeds, max_hops)
    assert expected.abs().sum() > 0
    for jacobian in ("layered", "autograd"):
        _, _, per_seed = hop_influence(model, data, max_hops, nodes=seeds, normalize=False, jacobian=jacobian,
                                       **kwargs)
        assert per_seed.dtype == torch.float64
        torch.testing.assert_close(per_seed, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
    return expected


@pytest.mark.parametrize("max_hops", [0, 1, 3])
def test_layered_and_autograd_equal_a_brute_force_jacobian_with_mixed_block_options(max_hops):
    """A linear block below a normalising one (its input scale lands on no ReLU mask), a SAGE root term, an MLP
    block, a head: every seed's per-hop totals are the brute-force Jacobian's, for fewer hops than layers too."""
    torch.manual_seed(0)
    model = Blocks([GNNBlock("gcn", 3, 5, activation=False), GNNBlock("sage", 5, 4), GNNBlock("mlp", 4, 4)],
                   torch.nn.Linear(4, 2)).double().eval()
    assert_equal_to_brute_force(model, tiny_graph(), max_hops, batch_size=3, nodes_per_batch=5)


def test_a_relu_at_exactly_zero_passes_no_gradient_as_in_autograd():
    """Seeds whose first pre-activation is exactly 0 (zero features, zero bias): ReLU's derivative there is 0, as
    autograd's, so the mass through those entries is 0, not W's."""
    torch.manual_seed(1)
    first = GNNBlock("gcn", 3, 4, normalize=False)
    torch.nn.init.zeros_(first.conv.bias)
    model = Blocks([first, GNNBlock("gcn", 4, 2, activation=False)]).double().eval()
    data = tiny_graph()
    data.x[7:] = 0.0  # the isolated pair 7 - 8: every pre-activation of the first block is 0 there
    expected = assert_equal_to_brute_force(model, data, 2)
    assert not expected[7:].any()  # (the mutant h >= 0 gave them the mass of the weights)


def test_a_row_below_the_normalisation_eps_is_scaled_not_projected():
    """A zero feature row and one far below eps: ``h / max(|h|, eps)`` has derivative 1/eps there, no projection."""
    torch.manual_seed(2)
    model = Blocks([GNNBlock("sage", 3, 6), GNNBlock("gcn", 6, 3, activation=False)],
                   torch.nn.Linear(3, 2)).double().eval()
    data = tiny_graph()
    data.x[1] = 0.0
    data.x[3] *= 1e-20
    expected = assert_equal_to_brute_force(model, data, 2, seeds=[1, 2, 3, 4])
    assert expected[0, 0] > 1e9  # hop 0 of seed 1 through its own zero row


def test_a_workspace_reused_in_another_dtype_gives_that_dtypes_numbers():
    """One workspace, a float64 then a float32 call (its float64 buffers must not be written as float32)."""
    torch.manual_seed(3)
    model = Blocks([GNNBlock("gcn", 3, 6), GNNBlock("gcn", 6, 6)], torch.nn.Linear(6, 3)).double().eval()
    data = tiny_graph()
    hop = torch.zeros(9, dtype=torch.long)
    space = Workspace()
    wide = layered_masses(model.block_stack(), data.x, data.edge_index, hop, 9, space)
    model.float()
    narrow = layered_masses(model.block_stack(), data.x.float(), data.edge_index, hop, 9, space)
    assert narrow.dtype == torch.float32
    torch.testing.assert_close(narrow.double(), wide, rtol=1e-5, atol=0.0)


def test_the_full_variant_bins_every_hop_up_to_max_hops():
    """Whole-graph Jacobian: node 0 is 3 hops from seed 3 on the path, so with max_hops=3 its mass is binned."""
    torch.manual_seed(4)
    model = Blocks([GNNBlock("gcn", 3, 8), GNNBlock("gcn", 8, 8), GNNBlock("gcn", 8, 2, activation=False)])
    model = model.double().eval()
    data = tiny_graph()
    _, _, full = hop_influence(model, data, 3, nodes=[3], variant="full", normalize=False)
    jac = torch.autograd.functional.jacobian(lambda x: model(x, data.edge_index)[3], data.x)  # [C, N, F]
    mass = jac.abs().sum(dim=(0, 2))
    expected = torch.stack([mass[3], mass[2] + mass[4], mass[1] + mass[5] + mass[6], mass[0]])
    torch.testing.assert_close(full[0], expected, rtol=1e-6, atol=0.0)
    assert full[0, 3] > 0


def test_a_model_separable_false_is_measured_one_ball_at_a_time(monkeypatch):
    """``separable = False``: every ball is measured alone, whatever batch_size (one union per seed)."""
    import fwdlearn.graphs.influence.hop_influence as module

    torch.manual_seed(5)
    model = Blocks([GNNBlock("gcn", 3, 8), GNNBlock("gcn", 8, 2, activation=False)]).double().eval()
    model.separable = False
    counts = []
    real = module.layered_masses
    monkeypatch.setattr(module, "layered_masses", lambda *a: counts.append(a[4]) or real(*a))
    assert_equal_to_brute_force(model, tiny_graph(), 2, seeds=[0, 3, 7], batch_size=8)
    assert counts == [1, 1, 1]


def test_arguments_at_their_bounds():
    data = tiny_graph()
    model = Blocks([GNNBlock("gcn", 3, 2, activation=False)]).double().eval()
    assert torch.equal(select_seeds(5), torch.arange(5))
    assert len(select_seeds(5, samples=9)) == 5 and len(select_seeds(5, samples=1)) == 1
    with pytest.raises(ValueError, match=r"samples must be >= 1 \(or None for every node\), got 0"):
        select_seeds(5, samples=0)
    with pytest.raises(ValueError, match="nodes_per_batch must be 'auto', None or an int >= 1, got 0"):
        hop_influence(model, data, 1, nodes_per_batch=0)
    assert hop_influence(model, data, 1, nodes_per_batch=1, nodes=[2])[2].shape == (1, 2)
    one = Data(x=torch.randn(1, 3, dtype=torch.float64), edge_index=torch.zeros(2, 0, dtype=torch.long))
    curve, _, per_seed = hop_influence(model, one, 0, normalize=False)  # one node, hop 0 only
    assert per_seed.shape == (1, 1) and per_seed[0, 0] > 0 and torch.equal(curve, per_seed[0])
    with pytest.raises(ValueError, match="jacobian='layered' needs variant='subgraph'"):
        hop_influence(model, data, 1, variant="full", jacobian="layered")


def test_a_forward_pre_hook_sends_the_model_through_autograd():
    """A pre-hook (here scaling the input) is skipped by the block stack: measured through autograd, with a warning."""
    torch.manual_seed(6)
    model = Blocks([GNNBlock("gcn", 3, 4, normalize=False), GNNBlock("gcn", 4, 2, activation=False)]).double().eval()
    data = tiny_graph()
    model.register_forward_pre_hook(lambda module, args: (args[0] * 3.0, args[1]))
    with pytest.warns(UserWarning, match=r"is not the blocks and head its block_stack\(\) offers"):
        _, _, per_seed = hop_influence(model, data, 2, normalize=False)
    expected = brute_force(model, data, range(9), 2)
    torch.testing.assert_close(per_seed, expected, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="jacobian='layered': model"):
        hop_influence(model, data, 2, jacobian="layered")


class Forwarding(torch.nn.Module):
    """A model whose forward is its blocks and head, in a base class."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([GNNBlock("gcn", 3, 8), GNNBlock("sage", 8, 2, activation=False)])

    def forward(self, x, edge_index):
        for block in self.blocks:
            x = block(x, edge_index)
        return x


class OfferingBelowItsForward(Forwarding):
    """A subclass that only offers the block stack: its forward (the base's) is the stack's, so the layered path
    measures it, without a warning."""

    def block_stack(self):
        return BlockStack(list(self.blocks))


def test_a_block_stack_offered_below_the_class_of_the_forward_is_used(monkeypatch):
    import warnings

    import fwdlearn.graphs.influence.hop_influence as module

    torch.manual_seed(7)
    model = OfferingBelowItsForward().double().eval()
    calls = []
    real = module.layered_masses
    monkeypatch.setattr(module, "layered_masses", lambda *a: calls.append(a[4]) or real(*a))
    data = tiny_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, per_seed = hop_influence(model, data, 2, nodes=[0, 2, 6], normalize=False, jacobian="layered")
    assert calls == [3]
    torch.testing.assert_close(per_seed, brute_force(model, data, [0, 2, 6], 2), rtol=1e-6, atol=1e-9)


class Doubled(torch.nn.Module):
    """Its outputs are its one-channel stack's, twice: rows that broadcast against the stack's but are not its shape."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([GNNBlock("gcn", 3, 8), GNNBlock("gcn", 8, 1, activation=False)])

    def forward(self, x, edge_index):
        return self.block_stack()(x, edge_index).expand(-1, 2)

    def block_stack(self):
        return BlockStack(list(self.blocks))


def test_a_block_stack_of_another_output_width_is_not_used():
    torch.manual_seed(8)
    model = Doubled().double().eval()
    data = tiny_graph()
    with pytest.warns(UserWarning, match=r"is not the blocks and head its block_stack\(\) offers"):
        _, _, per_seed = hop_influence(model, data, 2, nodes=[0, 3], normalize=False)
    torch.testing.assert_close(per_seed, brute_force(model, data, [0, 3], 2), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("variant", ["subgraph", "full"])
def test_a_graph_level_output_is_refused_naming_its_shape(variant):
    """One row for the whole graph (a pooled output) is not one row per node: the seed rows would not exist."""
    torch.manual_seed(9)
    model = Blocks([GNNBlock("gcn", 3, 2, activation=False)]).double().eval()
    pooled = lambda x, edge_index: model(x, edge_index).mean(dim=0, keepdim=True)  # noqa: E731
    with pytest.raises(ValueError, match=r"model\(x, edge_index\) must return \[num_nodes, channels\]; got \(1, 2\) "
                                         r"for \d+ nodes"):
        hop_influence(pooled, tiny_graph(), 1, nodes=[0], variant=variant)


class Remembering(Blocks):
    """A model with an attribute named ``cached`` that is not a conv's flag (a dict of its own)."""

    def __init__(self) -> None:
        super().__init__([GNNBlock("gcn", 3, 2, activation=False)])
        self.cached = {"seen": 1}
        self._cached_note = "kept"


def test_an_attribute_named_cached_that_is_not_true_is_left_as_it_is():
    torch.manual_seed(10)
    model = Remembering().double().eval()
    hop_influence(model, tiny_graph(), 1, nodes=[0, 1])
    assert model.cached == {"seen": 1} and model._cached_note == "kept"
