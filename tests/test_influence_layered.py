"""The layered Jacobian (receptive field only, every channel in one backward pass) equals autograd's and PyG's."""

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn import GCNConv
from torch_geometric.utils.influence import jacobian_l1_agg_per_hop

from fwdlearn.graphs import ForwardGNN, hop_influence
from fwdlearn.graphs.influence.layered_jacobian import block_stack, layered_convs
from fwdlearn.graphs.nn.backbones import BlockStack, GNNBlock
from fwdlearn.graphs.nn.convs import CONV_KINDS, ConvKind

from test_influence_graph import Stack, random_graph


def assert_rows_close(mine: torch.Tensor, reference: torch.Tensor, rtol: float = 1e-5) -> None:
    """Every row within ``rtol`` of its largest entry, up to float32 noise of the whole (rows of nearly all-dead
    ReLUs hold only that noise)."""
    scale = reference.abs().max(dim=1, keepdim=True).values
    tolerance = rtol * scale + 1e-6 * float(scale.max())
    assert torch.all((mine - reference).abs() <= tolerance), ((mine - reference).abs() - tolerance).max()


@pytest.mark.parametrize("conv", ["gcn", "sage", "mlp"])
@pytest.mark.parametrize("max_hops", [2, 3, 5])  # fewer hops than layers, as many, more (border degrees change)
def test_layered_equals_autograd_and_pyg(conv, max_hops):
    data = random_graph(nodes=50, edges=80, features=5, seed=2)
    torch.manual_seed(0)
    model = ForwardGNN(5, 4, conv=conv, hidden=8, layers=3, method="bp").eval()
    nodes = torch.arange(50)
    curve, _, layered = hop_influence(model, data, max_hops, nodes=nodes, jacobian="layered", nodes_per_batch=40)
    reference_curve, _, autograd = hop_influence(model, data, max_hops, nodes=nodes, jacobian="autograd")
    assert layered.abs().sum() > 0
    assert_rows_close(layered, autograd)
    assert torch.allclose(curve, reference_curve, rtol=1e-5)
    reference = torch.stack([jacobian_l1_agg_per_hop(model, data, max_hops, n, "cpu") for n in (0, 3, 4, 17)])
    assert_rows_close(layered[[0, 3, 4, 17]], reference)


def test_layered_rows_below_the_normalisation_eps():
    """A zero row and a row below F.normalize's eps (its derivative is 1/eps, no projection), as autograd has them.
    Both paths warn that R cannot be trusted beside those rows' 1/eps (the warnings were left in the run's summary)."""
    from fwdlearn.errors import FwdlearnWarning

    data = random_graph(nodes=30, edges=50, features=5, seed=3)
    data.x[3] = 0.0
    data.x[4] *= 1e-14
    torch.manual_seed(0)
    model = ForwardGNN(5, 4, conv="gcn", hidden=8, layers=2, method="bp").eval()
    numerically_zero = (r"R: the median seed's self-influence \([^)]+\) is numerically zero next to the largest "
                        r"\([^)]+e\+1\d\).*\(an all-zero feature row: the input normalisation's 1/eps\)")
    with pytest.warns(FwdlearnWarning, match=numerically_zero):
        _, _, layered = hop_influence(model, data, 2, jacobian="layered", normalize=False)
    with pytest.warns(FwdlearnWarning, match=numerically_zero):
        _, _, autograd = hop_influence(model, data, 2, jacobian="autograd", normalize=False)
    assert layered.max() > 1e9  # the 1/eps derivative of the zero and tiny rows is there
    assert torch.allclose(layered, autograd, rtol=1e-4, atol=1e-5)


class PlainStack(torch.nn.Module):
    """Blocks without normalisation or a ReLU on top and no head: the options the layered path must honour."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([GNNBlock("gcn", 4, 6, normalize=False), GNNBlock("sage", 6, 6),
                                           GNNBlock("gcn", 6, 3, activation=False)])

    def forward(self, x, edge_index):
        for block in self.blocks:
            x = block(x, edge_index)
        return x

    def block_stack(self):
        return BlockStack(list(self.blocks))


def test_layered_honours_block_options_and_a_missing_head():
    data = random_graph(nodes=40, edges=70, seed=1)
    torch.manual_seed(1)
    model = PlainStack()
    _, _, layered = hop_influence(model, data, 4, jacobian="layered")
    _, _, autograd = hop_influence(model, data, 4, jacobian="autograd")
    assert_rows_close(layered, autograd)


def test_which_models_offer_a_block_stack():
    assert block_stack(ForwardGNN(4, 3, layers=2, method="bp")) is not None
    assert block_stack(ForwardGNN(4, 3, layers=2, method="dfa")) is not None
    assert block_stack(ForwardGNN(4, 3, layers=2, method="sf")) is None  # scores from every layer's prototypes
    assert block_stack(ForwardGNN(4, 3, layers=2, conv="gat", hidden=8, method="bp")) is None  # attention
    data = random_graph()
    sf = ForwardGNN(4, 3, layers=2, method="sf")
    with pytest.raises(ValueError, match="jacobian='layered' needs variant='subgraph' and a model with block_stack"):
        hop_influence(sf, data, 2, nodes=[0], jacobian="layered")
    with pytest.raises(ValueError, match="unknown jacobian 'dense'; choose 'auto', 'layered' or 'autograd'"):
        hop_influence(sf, data, 2, nodes=[0], jacobian="dense")
    pyg = Stack(GCNConv, 4, 8, 3, layers=2)  # any model: auto falls back to autograd
    _, _, auto = hop_influence(pyg, data, 2, nodes=[0, 1])
    _, _, autograd = hop_influence(pyg, data, 2, nodes=[0, 1], jacobian="autograd")
    assert torch.equal(auto, autograd)


def test_half_precision_goes_through_autograd_and_a_wrong_input_width_is_named():
    data = random_graph(nodes=30, edges=50, features=4, seed=3)
    torch.manual_seed(0)
    model = ForwardGNN(4, 3, hidden=8, layers=2, method="bp").eval()
    half, model_half = Data(x=data.x.half(), edge_index=data.edge_index), model.half()
    _, _, auto = hop_influence(model_half, half, 2, nodes=[0, 1, 2])
    _, _, autograd = hop_influence(model_half, half, 2, nodes=[0, 1, 2], jacobian="autograd")
    assert torch.equal(auto, autograd)
    with pytest.raises(ValueError, match="jacobian='layered' computes in float32 or float64; got torch.float16"):
        hop_influence(model_half, half, 2, nodes=[0], jacobian="layered")
    model.float()
    with pytest.raises(ValueError, match=r"data.x must have shape \[N, 4\] \(the model's input width\); got \(30, 5\)"):
        hop_influence(model, Data(x=torch.randn(30, 5), edge_index=data.edge_index), 2, nodes=[0], jacobian="layered")


@pytest.mark.parametrize("conv", ["gcn", "sage"])
def test_layered_on_a_directed_multigraph(conv):
    """Receptive fields follow edge direction, duplicate edges count twice -- as in PyG's per-seed reference."""
    g = torch.Generator().manual_seed(5)
    edge_index = torch.randint(0, 40, (2, 120), generator=g)
    edge_index = torch.cat([edge_index, edge_index[:, :10]], dim=1)  # ten duplicated edges
    data = Data(x=torch.randn(40, 5, generator=g), edge_index=edge_index)
    torch.manual_seed(0)
    model = ForwardGNN(5, 4, conv=conv, hidden=8, layers=3, method="bp").eval()
    _, _, layered = hop_influence(model, data, 3, jacobian="layered", normalize=False)
    reference = torch.stack([jacobian_l1_agg_per_hop(model, data, 3, n, "cpu") for n in range(40)])
    assert_rows_close(layered, reference)


class SumConv(ConvKind):
    """A conv kind a user adds in one class: PyG's GraphConv, :math:`W_a \\sum_{j \\in N(i)} \\bar h_j + W_r \\bar h_i + b`."""

    name = "graphconv"
    linear = True

    def make(self, in_dim, out_dim):
        from torch_geometric.nn import GraphConv

        return GraphConv(in_dim, out_dim, aggr="add")

    def propagation(self, edge_index, num_nodes, dtype):
        ones = torch.ones(edge_index.shape[1], dtype=dtype)
        return torch.sparse_coo_tensor(edge_index.flip(0), ones, (num_nodes, num_nodes), check_invariants=False).coalesce()

    def weights(self, conv):
        return conv.lin_rel.weight, conv.lin_root.weight

    def from_aggregation(self, conv, aggregated, normalized):
        return conv.lin_rel(aggregated) + conv.lin_root(normalized)


def test_a_registered_conv_kind_gets_the_cache_and_the_layered_jacobian():
    """One ConvKind subclass and one register call: ForwardGNN builds it, layer-wise methods train it from the cached
    aggregation (the same outputs as message passing), and the layered Jacobian of it equals autograd's."""
    from fwdlearn.graphs.data.datasets import random_split
    from fwdlearn.graphs.nn.aggregation_cache import prepare_input, run_block

    CONV_KINDS.register("graphconv", SumConv())
    try:
        data = random_graph(nodes=40, edges=70, features=5, seed=4)
        torch.manual_seed(0)
        block = GNNBlock("graphconv", 5, 6)
        assert block.cacheable and "graphconv" in layered_convs()
        cached = run_block(block, prepare_input(block, data.x, data.edge_index))
        assert torch.allclose(cached, block(data.x, data.edge_index), atol=1e-6)
        model = ForwardGNN(5, 4, conv="graphconv", hidden=8, layers=3, method="bp").eval()
        _, _, layered = hop_influence(model, data, 3, nodes=torch.arange(40), jacobian="layered")
        _, _, autograd = hop_influence(model, data, 3, nodes=torch.arange(40), jacobian="autograd")
        assert layered.abs().sum() > 0
        assert_rows_close(layered, autograd)
        sf = ForwardGNN(5, 4, conv="graphconv", hidden=8, layers=2, method="sf")
        data.y = torch.arange(40) % 4
        data.train_mask, data.val_mask, data.test_mask = random_split(40, fractions=(0.5, 0.25, 0.25))
        sf.fit(data, epochs=2, patience=None, quiet=True)
        assert sf.predict(data).shape == (40,)
    finally:
        CONV_KINDS.unregister("graphconv")
    with pytest.raises(ValueError, match="unknown conv 'graphconv'; choose one of gcn, sage, gat, mlp"):
        GNNBlock("graphconv", 5, 6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layered_skips_row_scale_with_the_same_numbers(dtype, monkeypatch):
    """The normalisation skips row_scale's passes where no row can reach its threshold (its norm below half of it):
    bitwise the masses of the path that scales every row, at feature scales below, around and past it."""
    from fwdlearn.graphs.influence import layered_jacobian

    data = random_graph(nodes=50, edges=80, features=5, seed=2)
    torch.manual_seed(0)
    model = ForwardGNN(5, 4, conv="gcn", hidden=8, layers=3, method="bp").eval().to(dtype)
    for factor in (1.0, 1e-30, 2.0 ** 31, 1e12, 1e25):
        scaled = data.clone()
        scaled.x = data.x.to(dtype) * factor
        fast = hop_influence(model, scaled, 3, nodes=torch.arange(50), jacobian="layered", normalize=False)[2]
        with monkeypatch.context() as patch:
            patch.setattr(layered_jacobian, "_unscaled_norm", lambda dtype: 0.0)  # every layer through row_scale
            scaled_rows = hop_influence(model, scaled, 3, nodes=torch.arange(50), jacobian="layered",
                                        normalize=False)[2]
        assert fast.abs().sum() > 0
        assert torch.equal(fast, scaled_rows), factor
