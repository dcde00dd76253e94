"""The graph building blocks at their edges: the negative sampler's refusals, the cached aggregation against PyG's own
convs (to 1e-6, on directed graphs), the kinds' weights and messages, the blocks' checks and the normalisation."""

import pytest
import torch

from fwdlearn.graphs.nn.negatives import NegativeSampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_sampler_refuses_bool_or_negative_edge_ids():
    """A bool mask is not an edge list (it would be read as ids 0 and 1), and a negative id is no node (-1 would be
    keyed as another pair)."""
    with pytest.raises(ValueError, match=r"^edge_index must be a \[2, num_edges\] tensor of integer node ids; got "
                                         r"torch.bool of shape \(2, 2\)$"):
        NegativeSampler(torch.tensor([[True, False], [False, True]]), 3)
    with pytest.raises(ValueError, match=r"^edge_index has node ids in \[-1, 1\] but num_nodes=3: ids index the nodes "
                                         r"0 \.\. num_nodes - 1 \(give the graph's node count\)$"):
        NegativeSampler(torch.tensor([[-1, 0], [0, 1]]), 3)


# --- the cached aggregation ---------------------------------------------------------------------------------------

def directed_graph(n: int = 12, edges: int = 30, seed: int = 0):
    """Node features and a directed edge list (no reverse edges forced: checks the message direction)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, n, (2, edges), generator=g)


def test_propagation_names_the_kinds_it_applies_to():
    from fwdlearn.graphs.nn.aggregation_cache import propagation_matrix

    _, edge_index = directed_graph()
    for kind in ("gat", "mlp"):
        with pytest.raises(ValueError, match=rf"^no cached aggregation for conv '{kind}'; it applies to 'gcn', "
                                             r"'sage'(, '[^']+')*$") as caught:
            propagation_matrix(kind, edge_index, 12)
        assert "'gat'" not in str(caught.value).split("applies to")[1]
        assert "'mlp'" not in str(caught.value).split("applies to")[1]


@pytest.mark.parametrize("kind", ["gcn", "sage"])
def test_the_propagation_matrix_is_coalesced_and_reads_narrow_ids(kind):
    from fwdlearn.graphs.nn.aggregation_cache import propagation_matrix

    _, edge_index = directed_graph()
    wide = propagation_matrix(kind, edge_index, 12)
    assert wide.is_coalesced() and wide.shape == (12, 12) and wide.dtype == torch.float32
    for dtype in (torch.int32, torch.int16, torch.uint8):
        narrow = propagation_matrix(kind, edge_index.to(dtype), 12)
        torch.testing.assert_close(narrow.to_dense(), wide.to_dense(), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["gcn", "sage"])
def test_a_block_without_normalisation_is_cached_as_pyg_computes_it(kind):
    from fwdlearn.graphs.nn.aggregation_cache import prepare_input, run_block
    from fwdlearn.graphs.nn.backbones import GNNBlock

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    x = x * 7  # (rows far from unit norm: a normalised aggregation is far off)
    block = GNNBlock(kind, 5, 4, activation=False, normalize=False)
    expected = block.conv(x, edge_index)  # PyG's conv on the raw input
    cached = run_block(block, prepare_input(block, x, edge_index))
    torch.testing.assert_close(cached, expected, rtol=0, atol=1e-6)


def test_prepare_input_without_cache_keeps_the_raw_input_and_a_cached_one_has_no_graph():
    from fwdlearn.graphs.nn.aggregation_cache import prepare_input, run_block
    from fwdlearn.graphs.nn.backbones import GNNBlock

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    x.requires_grad_()
    block = GNNBlock("gcn", 5, 4)
    plain = prepare_input(block, x, edge_index, cache=False)
    assert plain.aggregated is None and plain.normalized is None and plain.edge_index is edge_index
    assert torch.equal(plain.x, x) and not plain.x.requires_grad
    cached = prepare_input(block, x, edge_index)
    assert cached.x is None and not cached.aggregated.requires_grad
    assert cached.normalized is None  # (GCN has no root term: nothing kept for it)
    torch.testing.assert_close(run_block(block, cached), run_block(block, plain), rtol=0, atol=1e-6)


def test_a_given_matrix_in_another_dtype_is_read_in_the_input_dtype():
    from fwdlearn.graphs.nn.aggregation_cache import prepare_input, propagation_matrix, run_block
    from fwdlearn.graphs.nn.backbones import GNNBlock

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    block = GNNBlock("sage", 5, 4)
    matrix = propagation_matrix("sage", edge_index, 12, torch.float64)
    prepared = prepare_input(block, x, edge_index, matrix=matrix)
    assert prepared.aggregated.dtype == torch.float32 and prepared.normalized is not None
    torch.testing.assert_close(run_block(block, prepared), block(x, edge_index), rtol=0, atol=1e-6)


def test_sage_without_root_weight_is_cached_without_the_root_term():
    from torch_geometric.nn import SAGEConv

    from fwdlearn.graphs.nn.aggregation_cache import prepare_input, run_block
    from fwdlearn.graphs.nn.backbones import GNNBlock
    from fwdlearn.graphs.nn.convs import SAGE_KIND

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    block = GNNBlock("sage", 5, 4)
    block.conv = SAGEConv(5, 4, aggr="mean", root_weight=False)
    weight, root = SAGE_KIND.weights(block.conv)
    assert weight is block.conv.lin_l.weight and root is None and not SAGE_KIND.reads_root(block.conv)
    prepared = prepare_input(block, x, edge_index)
    assert prepared.normalized is None
    torch.testing.assert_close(run_block(block, prepared), block(x, edge_index), rtol=0, atol=1e-6)


def test_a_sage_block_asks_for_the_normalised_input_of_its_root_term():
    from fwdlearn.graphs.nn.backbones import GNNBlock

    block = GNNBlock("sage", 5, 4)
    with pytest.raises(ValueError, match=r"^a SAGE block needs the normalised input for its root term; pass "
                                         r"normalized=$"):
        block.from_aggregation(torch.zeros(3, 5))


@pytest.mark.parametrize("kind", ["gat", "mlp"])
def test_an_uncacheable_block_is_prepared_uncached(kind):
    from fwdlearn.graphs.nn.aggregation_cache import prepare_input, run_block
    from fwdlearn.graphs.nn.backbones import GNNBlock, normalize_rows

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    block = GNNBlock(kind, 5, 8)
    assert not block.cacheable and not block.conv_kind.reads_root(block.conv)
    prepared = prepare_input(block, x, edge_index)
    assert prepared.aggregated is None and prepared.x is not None
    assert torch.equal(run_block(block, prepared), block(x, edge_index))
    if kind == "mlp":  # (P = I: its aggregation is the normalised input itself)
        torch.testing.assert_close(block.from_aggregation(normalize_rows(x)), block(x, edge_index), rtol=0, atol=0)
        assert torch.equal(block(x, edge_index), block(x, edge_index.flip(0)[:, :3]))  # it reads no edges


def noisy_block():
    """A block of a user's conv kind that is not mode-free: dropout, then a linear map (uncached: no linearity)."""
    from fwdlearn.graphs.nn.backbones import GNNBlock
    from fwdlearn.graphs.nn.convs import ConvKind

    class Noisy(ConvKind):
        name = "noisy"

        def __call__(self, conv, x, edge_index):
            return conv(x)

    block = GNNBlock("mlp", 5, 4, activation=False)
    block.conv_kind = Noisy()
    block.conv = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(5, 4))
    return block


def test_kept_outputs_of_a_conv_with_dropout_train_in_train_mode_and_evaluate_in_eval_mode():
    """A conv that is not mode-free: the loss's output is computed in train() mode (dropout), an evaluation's in
    eval() mode (none), also where it is to be kept for the next step, and the block's own mode is left as it was."""
    from fwdlearn.graphs.nn.aggregation_cache import KeptOutputs, prepare_input

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    block = noisy_block()
    prepared = prepare_input(block, x, edge_index)
    with torch.no_grad():
        block.eval()
        clean = block(x, edge_index)
        block.train()
    kept = KeptOutputs(block, {"a": prepared})
    assert not kept.mode_free
    trained = kept.get("a")
    assert trained.requires_grad and not torch.equal(trained, clean)  # (dropped inputs)
    for keep in (False, True):
        evaluated = kept.evaluated("a", keep=keep)
        assert torch.equal(evaluated, clean) and not evaluated.requires_grad
    assert block.training
    block.eval()
    assert torch.equal(kept.evaluated("a"), clean) and not block.training


def test_an_evaluation_kept_for_the_loss_is_detached_and_clear_forgets_it():
    from fwdlearn.graphs.nn.aggregation_cache import KeptOutputs, prepare_input, run_block
    from fwdlearn.graphs.nn.backbones import GNNBlock

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    block = GNNBlock("sage", 5, 4)
    prepared = prepare_input(block, x, edge_index)
    kept = KeptOutputs(block, {"a": prepared})
    evaluated = kept.evaluated("a", keep=True)
    held = kept.get("a")
    assert not evaluated.requires_grad and held.requires_grad and torch.equal(evaluated, held)
    kept.clear()
    again = kept.get("a")
    assert again is not held and torch.equal(again, held) and torch.equal(again, run_block(block, prepared))


# --- the conv kinds ------------------------------------------------------------------------------------------------

def test_gat_names_a_width_that_fits_and_has_no_linear_form():
    from fwdlearn.graphs.nn.backbones import GNNBlock
    from fwdlearn.graphs.nn.convs import GAT_KIND

    for width, fits in ((3, 4), (6, 4), (10, 8)):
        with pytest.raises(ValueError, match=rf"^gat concatenates 4 heads, so its width must be a multiple of 4; got "
                                             rf"{width} \(choose e\.g\. hidden={fits}\)$"):
            GNNBlock("gat", 5, width)
    block = GNNBlock("gat", 5, 8)
    assert block.conv.heads == 4 and block.conv.out_channels == 2 and block.conv.concat
    assert block(*directed_graph()).shape == (12, 8)
    assert not GAT_KIND.reads_root(block.conv)
    with pytest.raises(TypeError, match="^a gat conv is not linear after a fixed aggregation$"):
        GAT_KIND.weights(block.conv)
    with pytest.raises(ValueError, match=r"^a GAT block has no cached aggregation \(its attention depends on the "
                                         r"weights\); call block\(x, edge_index\) instead$"):
        block.from_aggregation(torch.zeros(12, 5))


def test_a_kind_without_a_linear_form_says_to_call_the_block():
    from fwdlearn.graphs.nn.convs import ConvKind

    class Plain(ConvKind):
        name = "plain"

    kind = Plain()
    assert not kind.cacheable and not kind.reads_root(None) and repr(kind) == "Plain()"
    with pytest.raises(ValueError, match=r"^a plain block has no cached aggregation \(its conv is not linear after a "
                                         r"fixed aggregation of its input\); call block\(x, edge_index\) instead$"):
        kind.from_aggregation(None, torch.zeros(2, 2), None)


def test_the_built_in_kinds_say_what_they_are():
    from fwdlearn.graphs.nn.convs import GAT_KIND, GCN_KIND, MLP_KIND, SAGE_KIND

    assert [k.cacheable for k in (GCN_KIND, SAGE_KIND, GAT_KIND, MLP_KIND)] == [True, True, False, False]
    assert all(k.mode_free for k in (GCN_KIND, SAGE_KIND, GAT_KIND, MLP_KIND))
    assert [k.aggregates for k in (GCN_KIND, SAGE_KIND, GAT_KIND, MLP_KIND)] == [True, True, True, False]


def test_gcn_without_bias_is_cached_as_pyg_computes_it():
    from torch_geometric.nn import GCNConv

    from fwdlearn.graphs.nn.aggregation_cache import prepare_input, run_block
    from fwdlearn.graphs.nn.backbones import GNNBlock

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    block = GNNBlock("gcn", 5, 4, activation=False)
    with torch.no_grad():
        block.conv.bias.fill_(0.5)
    torch.testing.assert_close(run_block(block, prepare_input(block, x, edge_index)), block(x, edge_index), rtol=0,
                               atol=1e-6)
    block.conv = GCNConv(5, 4, bias=False)
    torch.testing.assert_close(run_block(block, prepare_input(block, x, edge_index)), block(x, edge_index), rtol=0,
                               atol=1e-6)


# --- the blocks ----------------------------------------------------------------------------------------------------

def test_conv_names_are_read_stripped_and_lower_cased_and_a_kind_or_class_is_named():
    from fwdlearn.graphs.nn.backbones import check_conv
    from fwdlearn.graphs.nn.convs import GCN, GCN_KIND

    assert check_conv(" GCN ") == "gcn" and check_conv("Sage") == "sage"
    with pytest.raises(ValueError, match=r"^conv takes the name of a conv in CONV_KINDS \(gcn, sage, gat, mlp[^)]*\); "
                                         r"got the conv kind GCN\(\): pass conv='gcn'$"):
        check_conv(GCN_KIND)
    with pytest.raises(ValueError, match=r"; got the class GCN: a conv is a ConvKind instance registered under a "
                                         r"name \(fwdlearn\.graphs\.nn\.convs\): CONV_KINDS\.register\('my-conv', "
                                         r"MyConv\(\)\), then conv='my-conv'$"):
        check_conv(GCN)
    with pytest.raises(ValueError, match=r"^unknown conv 3; choose one of gcn, sage, gat, mlp"):
        check_conv(3)


def test_conv_and_block_widths_are_checked():
    from fwdlearn.graphs.nn.backbones import GNNBlock, make_blocks, make_conv

    for dims in ((0, 4), (4, 0)):
        with pytest.raises(ValueError, match=rf"^conv widths must be >= 1, got in_dim={dims[0]}, out_dim={dims[1]}$"):
            make_conv("gcn", *dims)
    with pytest.raises(ValueError, match=r"^make_blocks needs at least two widths \(one layer\), got \[5\]$"):
        make_blocks("gcn", [5])
    with pytest.raises(ValueError, match=r"^GNNBlock expects node features of shape \[N, 5\]; got \(12, 4\)$"):
        GNNBlock("gcn", 5, 4)(torch.zeros(12, 4), directed_graph()[1])


def test_make_blocks_drops_only_the_last_activation():
    from fwdlearn.graphs.nn.backbones import make_blocks

    blocks = make_blocks("sage", [5, 6, 7, 3], last_activation=False)
    assert [(b.in_dim, b.activation) for b in blocks] == [(5, True), (6, True), (7, False)]
    x, edge_index = directed_graph()
    for block in blocks:
        x = block(x, edge_index)
    assert bool((x < 0).any())  # no ReLU on the last one
    assert [b.activation for b in make_blocks("sage", [5, 6, 3])] == [True, True]


def test_a_sage_block_reads_narrow_edge_ids_as_int64():
    """PyG's SAGE raised 'expected scalar type Long' on int32 ids with 16 or more input features."""
    from fwdlearn.graphs.nn.backbones import GNNBlock

    torch.manual_seed(0)
    x = torch.randn(12, 16)
    edge_index = directed_graph()[1]
    block = GNNBlock("sage", 16, 4)
    expected = block(x, edge_index)
    for dtype in (torch.int32, torch.int16):
        assert torch.equal(block(x, edge_index.to(dtype)), expected)


def test_a_block_stack_runs_its_blocks_then_its_head():
    from fwdlearn.graphs.nn.backbones import BlockStack, make_blocks

    torch.manual_seed(0)
    x, edge_index = directed_graph()
    blocks = list(make_blocks("gcn", [5, 6, 4]))
    head = torch.nn.Linear(4, 2)
    hidden = blocks[1](blocks[0](x, edge_index), edge_index)
    assert torch.equal(BlockStack(blocks)(x, edge_index), hidden)
    assert torch.equal(BlockStack(blocks, head)(x, edge_index), head(hidden))


def test_nested_fixed_inputs_keep_the_outer_memo(monkeypatch):
    """Leaving an inner fixed_inputs gives the block back the outer one's normalised input, not none."""
    from fwdlearn.graphs.nn import backbones
    from fwdlearn.graphs.nn.backbones import GNNBlock, fixed_inputs

    x, edge_index = directed_graph()
    block = GNNBlock("gcn", 5, 4)
    calls = []
    normalize = backbones.normalize_rows
    monkeypatch.setattr(backbones, "normalize_rows", lambda x, *a, **k: calls.append(x) or normalize(x, *a, **k))
    with fixed_inputs(block):
        first = block(x, edge_index)
        with fixed_inputs(block):
            assert torch.equal(block(x, edge_index), first)
        assert torch.equal(block(x, edge_index), first)
        assert len(calls) == 2  # the outer memo once, the inner one once
    assert block._fixed is None


# --- the normalisation ---------------------------------------------------------------------------------------------

def test_row_scale_is_one_below_its_threshold_and_a_power_of_two_above():
    from fwdlearn.graphs.nn.backbones import row_scale

    x = torch.tensor([[0.5, -2.0], [0.0, 0.0], [2.0 ** 40, 1.0], [-(2.0 ** 31), 0.0]])
    assert torch.equal(row_scale(x), torch.tensor([[1.0], [1.0], [2.0 ** -9], [1.0]]))
    assert torch.equal(row_scale(torch.tensor([[0.25], [40.0]], dtype=torch.float16)),
                       torch.tensor([[1.0], [0.25]], dtype=torch.float16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_normalize_rows_of_huge_and_zero_rows(dtype):
    """A row whose norm overflows the dtype is normalised as in float64; a zero row stays zeros (no NaN)."""
    from fwdlearn.graphs.nn.backbones import normalize_rows

    big = torch.finfo(dtype).max / 2
    x = torch.tensor([[big] * 8, [0.0] * 8, [3.0, 4.0] + [0.0] * 6], dtype=dtype)
    assert bool(torch.isinf(torch.linalg.vector_norm(x, dim=-1)).any())
    expected = torch.nn.functional.normalize(x.double(), dim=-1).to(dtype)
    torch.testing.assert_close(normalize_rows(x), expected)
    assert torch.equal(normalize_rows(x[1:2]), torch.zeros(1, 8, dtype=dtype))
