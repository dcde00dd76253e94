"""The influence measures' inputs: dtypes (refused by name when model and data differ, float64 end to end), seed
containers (a set of nodes or positions) and a PyG Batch of several graphs."""

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCN
from torch_geometric.utils import to_undirected

from fwdlearn.graphs import hop_influence
from fwdlearn.sequences import lag_influence


def graph(nodes: int = 20, edges: int = 40, features: int = 4, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(nodes, features, generator=g),
                edge_index=to_undirected(torch.randint(0, nodes, (2, edges), generator=g)))


def gcn(features: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return GCN(features, 8, 2, 3).eval()


class Cumulative(torch.nn.Module):
    """A causal sequence model of plain layers (no RNN, whose own dtype error names the fix)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x):
        return torch.tanh(self.linear(x.cumsum(1)))


@pytest.mark.parametrize("variant", ["subgraph", "full"])
@pytest.mark.parametrize("model_dtype, data_dtype", [(torch.float64, torch.float32), (torch.float32, torch.float64),
                                                     (torch.float32, torch.bfloat16)])
def test_hop_influence_refuses_data_of_another_dtype_than_the_model_naming_the_fix(variant, model_dtype, data_dtype):
    data = graph()
    data.x = data.x.to(data_dtype)
    # (it was torch's "expected m1 and m2 to have the same dtype", naming neither tensor nor the conversion)
    with pytest.raises(TypeError, match=rf"data.x is {data_dtype} but the model's parameters are {model_dtype}"
                                        rf".*model.to\({data_dtype}\), or data.x.to\({model_dtype}\)"):
        hop_influence(gcn().to(model_dtype), data, 2, variant=variant)
    model = gcn().double()
    with pytest.raises(TypeError, match=r"data.x of dtype torch.float32 with a dtype error.*model.to\(torch.float32\)"):
        hop_influence(lambda x, edge_index: model(x, edge_index), graph(), 2, variant=variant)  # (a wrapper)


def test_a_model_that_converts_its_input_itself_is_measured_and_other_errors_pass_as_they_are():
    model = gcn().double()
    converted = hop_influence(lambda x, edge_index: model(x.double(), edge_index), graph(), 2)[2]
    data = graph()
    data.x = data.x.double()
    assert torch.allclose(converted.double(), hop_influence(model, data, 2)[2], rtol=1e-6)

    def broken(x, edge_index):
        raise RuntimeError("something else")
    with pytest.raises(RuntimeError, match="something else"):
        hop_influence(broken, graph(), 2)


@pytest.mark.parametrize("inputs_dtype", [torch.float64, torch.bfloat16])
def test_lag_influence_refuses_inputs_of_another_dtype_than_the_model_naming_the_fix(inputs_dtype):
    inputs = torch.randn(2, 6, 3).to(inputs_dtype)
    with pytest.raises(TypeError, match=rf"inputs is {inputs_dtype} but the model's parameters are torch.float32"
                                        rf".*model.to\({inputs_dtype}\), or inputs.to\(torch.float32\)"):
        lag_influence(Cumulative(), inputs, 3)


def test_lag_influence_refuses_inputs_on_the_meta_device_by_name():
    # (it was torch's "Tensor.item() cannot be called on meta tensors")
    with pytest.raises(ValueError, match="inputs is on the meta device"):
        lag_influence(lambda x: x, torch.empty(1, 4, 2, device="meta"), 2)


def test_float64_end_to_end_gives_float32_numbers_in_float64():
    data = graph()
    data64 = Data(x=data.x.double(), edge_index=data.edge_index)
    for variant in ("subgraph", "full"):
        curve32, r32, rows32 = hop_influence(gcn(), data, 2, variant=variant)
        curve64, r64, rows64 = hop_influence(gcn().double(), data64, 2, variant=variant)
        assert rows64.dtype == curve64.dtype == torch.float64 and rows32.dtype == torch.float32
        assert torch.allclose(rows32.double(), rows64, rtol=1e-5) and r64 == pytest.approx(r32, rel=1e-6)
    inputs = torch.randn(2, 6, 3)
    curve32, r32, rows32 = lag_influence(Cumulative(), inputs, 3)
    curve64, r64, rows64 = lag_influence(Cumulative().double(), inputs.double(), 3)
    assert rows64.dtype == curve64.dtype == torch.float64
    assert torch.allclose(rows32.double(), rows64, rtol=1e-5) and r64 == pytest.approx(r32, rel=1e-6)


def test_seed_nodes_and_positions_given_as_a_set_are_measured_in_increasing_order():
    # (a set failed with torch's "Could not infer dtype of set")
    data, model = graph(), gcn()
    expected = hop_influence(model, data, 2, nodes=[3, 4, 9])[2]
    for nodes in ({9, 3, 4}, frozenset({4, 9, 3})):
        assert torch.equal(hop_influence(model, data, 2, nodes=nodes)[2], expected)
    assert torch.equal(hop_influence(model, data, 2, nodes=(n for n in [3, 4, 9]))[2], expected)  # a generator
    with pytest.raises(TypeError, match="integer node ids"):
        hop_influence(model, data, 2, nodes={1.5, 2.0})
    inputs = torch.randn(2, 6, 3)
    assert torch.equal(lag_influence(Cumulative(), inputs, 3, positions={5, 3})[2],
                       lag_influence(Cumulative(), inputs, 3, positions=[3, 5])[2])


def test_seed_nodes_and_positions_given_as_a_dicts_keys_keep_the_dicts_order():
    # (a dict's keys are set-like but ordered: they were sorted, so the rows of per_seed no longer followed the dict)
    data, model = graph(), gcn()
    labels = {9: "a", 3: "b", 4: "c"}
    assert torch.equal(hop_influence(model, data, 2, nodes=labels.keys())[2],
                       hop_influence(model, data, 2, nodes=[9, 3, 4])[2])
    inputs = torch.randn(2, 6, 3)
    assert torch.equal(lag_influence(Cumulative(), inputs, 3, positions={5: 0, 3: 1}.keys())[2],
                       lag_influence(Cumulative(), inputs, 3, positions=[5, 3])[2])


def test_a_batch_of_graphs_is_measured_as_each_graph_alone():
    first, second = graph(), graph(12, 20, seed=1)
    batch = Batch.from_data_list([first, second])
    for variant in ("subgraph", "full"):
        rows = hop_influence(gcn(), batch, 2, nodes=[int(batch.ptr[1]) + n for n in (0, 5)], variant=variant)[2]
        assert torch.allclose(rows, hop_influence(gcn(), second, 2, nodes=[0, 5], variant=variant)[2])


def test_a_wrapper_failing_on_a_dtype_other_than_its_inputs_is_not_blamed_on_them():
    def indexes(x, edge_index):  # (torch's own error, about an index's dtype, not data.x's)
        return x.index_select(0, edge_index[0].int().float())
    with pytest.raises(RuntimeError, match="index"):
        hop_influence(indexes, graph(), 2)
