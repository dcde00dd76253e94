"""Diagnostics: influence totals and R by hand; alignment angles; cost counters."""

import math
import os

import pytest
import torch
from torch import nn

from fwdlearn.diagnostics import (
    angle_degrees, distance_totals, gradient_alignment, influence_curve, influence_range, measure_cost,
    per_sample_cosine, saved_bytes,
)


def test_influence_on_linear_map_with_known_jacobian():
    # y = W x on a path of 4 scalar nodes; seeds 0 and 3; distance = |u - seed|.
    W = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 2.0, 4.0], [1.0, 0.0, -3.0, 2.0]])
    jac = torch.autograd.functional.jacobian(lambda x: W @ x, torch.zeros(4))
    seeds = [0, 3]
    mass = jac[seeds].abs()  # [2, 4]
    dist = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    totals = distance_totals(mass, dist, max_distance=2)
    torch.testing.assert_close(totals, torch.tensor([[1.0, 2.0, 0.5], [2.0, 3.0, 0.0]]))  # distance 3 dropped
    torch.testing.assert_close(influence_curve(totals, normalize=False), torch.tensor([1.5, 2.5, 0.25]))
    torch.testing.assert_close(influence_curve(totals), torch.tensor([1.0, 2.5 / 1.5, 0.25 / 1.5]))
    r0 = (0 * 1 + 1 * 2 + 2 * 0.5) / 3.5
    r1 = (0 * 2 + 1 * 3) / 5.0
    assert influence_range(totals) == pytest.approx((r0 + r1) / 2)


def test_influence_agrees_with_pyg_helpers():
    from torch_geometric.utils.influence import avg_total_influence, influence_weighted_receptive_field

    totals = torch.rand(10, 5)
    torch.testing.assert_close(influence_curve(totals), avg_total_influence(totals))
    assert influence_range(totals) == pytest.approx(influence_weighted_receptive_field(totals), rel=1e-6)


def test_influence_input_errors():
    with pytest.raises(ValueError, match=r"distance must have shape \(2, 3\)"):
        distance_totals(torch.ones(2, 3), torch.zeros(2, 4, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="integer tensor"):
        distance_totals(torch.ones(2, 3), torch.zeros(3), 1)


def test_alignment_same_and_opposite():
    g = {"w": torch.randn(3, 4), "b": torch.randn(4)}
    same = gradient_alignment(g, g)
    assert same.degrees == pytest.approx(0.0, abs=1e-4) and same.cosine == pytest.approx(1.0)
    opposite = gradient_alignment(g, {k: -v for k, v in g.items()})
    assert opposite.degrees == pytest.approx(180.0, abs=1e-4)
    assert opposite.per_tensor["w"][1] == pytest.approx(180.0, abs=1e-4)
    assert angle_degrees(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    torch.testing.assert_close(per_sample_cosine(torch.eye(2), torch.tensor([[1.0, 0.0], [1.0, 0.0]])), torch.tensor([1.0, 0.0]))
    # tiny gradients keep their direction (cosine_similarity's eps = 1e-12 on each norm gave 1.4e-15 for equal rows),
    # and a zero row gives 0 as cosine() does
    tiny = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]) * 1e-20
    torch.testing.assert_close(per_sample_cosine(tiny, tiny), torch.tensor([1.0, 0.0]))
    assert per_sample_cosine(tiny, tiny).dtype == torch.float32
    with pytest.raises(ValueError, match="different names"):
        gradient_alignment({"a": torch.ones(1)}, {"b": torch.ones(1)})


def test_saved_bytes_counts_activations_and_grows_with_depth():
    def saved(depth):
        model = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Tanh()) for _ in range(depth)])
        with saved_bytes() as box:
            model(torch.randn(32, 64)).sum()
        return box

    one, four = saved(1), saved(4)
    # one 32x64 float tensor per layer (the tanh output, shared by Linear and Tanh backward) plus the input
    assert one.bytes == 2 * 32 * 64 * 4
    assert four.bytes - one.bytes == 3 * 32 * 64 * 4
    # weights are saved only where the layer's input needs a gradient: not for the first layer
    assert one.parameter_bytes == 0 and four.parameter_bytes == 3 * 64 * 64 * 4
    with saved_bytes() as box, torch.no_grad():
        nn.Linear(64, 64)(torch.randn(32, 64))
    assert box.bytes == 0


def test_saved_bytes_counts_two_graphs_in_one_block_whatever_their_addresses():
    """A storage freed in the block and a new one the allocator puts at its address are two storages: the count is
    the sum over both passes (it once depended on the second pass's row count through address reuse)."""
    w = torch.randn(128, 128, requires_grad=True)
    totals = []
    for rows in (1000, 1001):
        with saved_bytes() as box:
            for r in (1000, rows):
                torch.tanh(torch.randn(r, 128) @ w).sum().backward()  # saves the input and the output
        totals.append(box.bytes)
    assert totals == [2 * 2 * 1000 * 128 * 4, 2 * (1000 + 1001) * 128 * 4]


def test_saved_bytes_counts_a_sparse_tensor_by_its_indices_and_values():
    A = torch.eye(50).to_sparse()  # 50 values (float32) and 2 x 50 indices (int64)
    x = torch.randn(50, 8, requires_grad=True)
    with saved_bytes() as box:
        torch.sparse.mm(A, x).sum()
    assert box.bytes == 50 * 4 + 2 * 50 * 8


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_a_sparse_tensor_saved_twice_is_counted_once():
    from fwdlearn.diagnostics.cost import SavedBytes

    A = torch.eye(50).to_sparse()
    for t in (A, A.to_sparse_csr()):
        box = SavedBytes()
        box.add(t)
        once = box.bytes
        box.add(t)  # (its parts are fresh views each time: they must not release the storage's key)
        assert box.bytes == once > 0


def test_without_proc_the_step_increase_is_not_invented(monkeypatch):
    """Without /proc (macOS) only the process's lifetime peak exists: the step's increase is unknown (it was that
    lifetime peak, times 1024 on macOS, whose ru_maxrss is in bytes)."""
    from fwdlearn.diagnostics import cost as cost_module

    monkeypatch.setattr(cost_module, "_rss_bytes", lambda: None)
    CostReport = cost_module.CostReport
    cost = measure_cost(lambda: torch.ones(1000))
    assert cost.rss_increase_bytes is None and cost.peak_rss_bytes > 0
    assert CostReport.from_costs([cost]).step_memory_bytes == 0


def test_measure_cost_reports_a_step():
    model = nn.Linear(128, 128)
    x = torch.randn(256, 128)
    cost = measure_cost(lambda: model(x).tanh().sum().backward())
    assert cost.seconds > 0 and cost.saved_bytes >= 256 * 128 * 4
    assert cost.peak_rss_bytes > 0 and cost.cuda_peak_bytes is None


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc")
def test_measure_cost_counts_memory_the_allocator_kept_from_an_earlier_step():
    def step():  # ~190 MB in 48 KB tensors: served from the heap, which keeps it after they are freed
        keep = [torch.ones(12_000) for _ in range(4_000)]
        return len(keep)

    first, second = measure_cost(step), measure_cost(step)
    for cost in (first, second):
        assert cost.rss_increase_bytes > 0.8 * 4_000 * 48_000
    timed = measure_cost(step, memory=False)
    assert timed.seconds > 0 and timed.saved_bytes == 0 and timed.rss_increase_bytes == 0


def test_plot_influence_curves_writes_an_image(tmp_path):
    from fwdlearn.diagnostics.plots import plot_influence_curves

    path = plot_influence_curves({"a": [1.0, 0.5, 0.0], "b": [1.0, 0.1, 0.01]}, tmp_path / "sub" / "c.png", xlabel="lag")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_speedups_writes_an_image(tmp_path):
    from fwdlearn.diagnostics.plots import plot_speedups

    series = {"8 layers": [(109.0, 2.0, "westminster"), (25.3, 7.5, "california")], "16 layers": [(70.3, 3.0, "ca")]}
    path = plot_speedups(series, tmp_path / "s.png", xlabel="mean ball size", baseline="PyG")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refuse_overwrite_names_the_file_and_the_flag(tmp_path):
    from fwdlearn.records import refuse_overwrite

    existing = tmp_path / "r.json"
    existing.write_text("{}")
    refuse_overwrite(tmp_path / "new.json", "", existing, overwrite=True)  # allowed
    with pytest.raises(FileExistsError, match=r"r.json already exists; choose another output path or pass --overwrite"):
        refuse_overwrite(tmp_path / "new.json", existing)


def test_range_leaves_out_seeds_of_numerically_zero_influence():
    """A seed whose ReLUs are all dead has rounding noise for totals; it used to count as a seed of its own, so R
    differed between batchings (torchrun vs one process) and between the Jacobian paths."""
    totals = torch.tensor([[1.0, 2.0, 1.0], [2.0, 1.0, 0.0]])
    noise = torch.tensor([[0.0, 0.0, 2e-7]])  # a dead seed's row, as one batching leaves it
    assert influence_range(torch.cat([totals, noise])) == influence_range(totals)
    assert influence_range(torch.cat([totals, torch.zeros(1, 3)])) == influence_range(totals)
    huge = torch.tensor([[1e12, 0.0, 0.0]])  # a seed beside an all-zero feature row (1/eps): the others stay
    small = torch.tensor([[1e-3, 1e-3, 0.0]])  # a real, small influence (e.g. features at a large scale)
    with pytest.warns(Warning, match="far above the rest"):  # (its median seed is numerically zero next to huge)
        assert influence_range(torch.cat([totals, huge, small])) == pytest.approx(
            (influence_range(totals) * 2 + 0 + 0.5) / 4)
    giants = torch.tensor([[1.0, 1e12, 0.0]]).repeat(5, 1)  # most balls hold an all-zero feature row at distance 1
    assert influence_range(torch.cat([totals, giants])) == pytest.approx((influence_range(totals) * 2 + 5) / 7)


def test_range_warns_when_most_seeds_are_dead_and_its_floor_is_their_noise():
    """The dead-seed floor is set by the median seed: with most seeds dead (a narrow or deep untrained GCN: 177 of 200
    on the Minnesota roads) the median is rounding noise, the dead seeds pass the floor and R took their noise in
    silence (2.48 by the layered Jacobian, 2.50 by autograd, 2.54 in float64, for the live seeds' 2.52)."""
    import warnings

    from fwdlearn.errors import FwdlearnWarning

    live = torch.tensor([[1.0, 2.0, 1.0], [2.0, 1.0, 0.0]])
    noise = torch.tensor([[1e-17, 0.0, 3e-17], [2e-17, 1e-17, 0.0], [3e-17, 0.0, 0.0]])  # dead seeds, one batching's
    with pytest.warns(FwdlearnWarning, match=r"median seed's self-influence \(3e-17\) is numerically zero next to "
                                             r"the largest \(2\).* 3 of the 5 seeds it averages .*narrow or deep"):
        influence_range(torch.cat([live, noise]))
    with pytest.warns(FwdlearnWarning, match=r"median seed's total influence"):  # (no self-influence: the totals)
        influence_range(torch.cat([live, noise])[:, [1, 2, 0]] * torch.tensor([0.0, 1.0, 1.0]))
    with warnings.catch_warnings():  # a few dead seeds, or most balls beside an all-zero feature row: no warning
        warnings.simplefilter("error")
        influence_range(torch.cat([live, noise[:1]]))
        influence_range(torch.cat([live, torch.tensor([[1.0, 1e12, 0.0]]).repeat(5, 1)]))


def test_roc_auc_is_the_pairwise_probability_with_ties_counted_half():
    """Tie-averaged ranks (scipy's rankdata, without importing scipy inside a timed fit: 1.9 s on the first call)."""
    import scipy.stats

    from fwdlearn.metrics import average_ranks, roc_auc

    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 12, (200,), generator=gen).float()  # many ties
    labels = torch.rand(200, generator=gen) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean()
    assert roc_auc(scores, labels) == pytest.approx(float(pairwise), rel=1e-12)
    torch.testing.assert_close(average_ranks(scores.double()), torch.tensor(scipy.stats.rankdata(scores.numpy())))
    nan = scores.clone()
    nan[3] = float("nan")  # a diverged model: NaN, as rankdata gives, not a finite AUC that may look best
    assert math.isnan(roc_auc(nan, labels))
    with pytest.raises(ValueError, match="roc_auc needs positives and negatives; got 0 positives and 3 negatives"):
        roc_auc(torch.rand(3), torch.zeros(3, dtype=torch.bool))


def test_a_cost_report_takes_the_largest_peak_and_the_largest_increase_each_on_its_own():
    """The increase came from the step with the largest peak: (peak 1000, +500) and (1100, +50) reported +50."""
    from fwdlearn.diagnostics.cost import Cost, CostReport

    steps = [Cost(1.0, 10, 0, 1000, 500, None), Cost(1.0, 30, 0, 1100, 50, None)]
    report = CostReport.from_costs(steps)
    assert (report.saved_bytes_per_step, report.peak_memory_bytes, report.step_memory_bytes) == (30, 1100, 500)
    gpu = CostReport.from_costs([Cost(1.0, 0, 0, 0, 0, 9000, 700)])  # CUDA: the allocated memory's increase
    assert (gpu.peak_memory_bytes, gpu.step_memory_bytes) == (9000, 700)


def test_masked_accuracy_reads_only_boolean_masks():
    """An int64 0/1 mask indexed rows 0 and 1 (so [0, 0, 1, 1, 1] scored rows 0, 0, 1, 1, 1): refused, naming the
    conversions; a mask of another length too."""
    from fwdlearn.metrics import masked_accuracy

    scores = torch.eye(5)
    y = torch.tensor([0, 1, 0, 3, 4])
    assert masked_accuracy(scores, y, torch.tensor([False, False, True, True, True])) == pytest.approx(2 / 3)
    with pytest.raises(TypeError, match=r"masked_accuracy: the mask must be boolean \(True on the rows to score\); got "
                                        r"torch.int64. A 0/1 mask: mask.bool\(\); row indices idx: torch.zeros\(5, "
                                        r"dtype=torch.bool\).index_fill_\(0, idx.long\(\), True\)"):
        masked_accuracy(scores, y, torch.tensor([0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"masked_accuracy: the mask must have one entry per row of y, shape \(5,\); "
                                         r"got \(5, 2\)"):
        masked_accuracy(scores, y, torch.ones(5, 2, dtype=torch.bool))


def test_masked_accuracy_is_the_python_ratio_not_a_float32_mean():
    """A float32 mean gave 812 of 1000 as 0.8119999766349792, which reports and run records printed and stored."""
    from fwdlearn.metrics import masked_accuracy

    y = torch.zeros(1000, dtype=torch.long)
    scores = torch.zeros(1000, 2)
    scores[:812, 0] = scores[812:, 1] = 1
    got = masked_accuracy(scores, y)
    assert type(got) is float and got == 0.812 and repr(got) == "0.812"
    assert masked_accuracy(scores, y, torch.arange(1000) < 7) == 1.0
    assert masked_accuracy(scores[805:], y[805:]) == 7 / 195


def test_the_accuracy_of_nan_scores_is_nan_as_their_auc_is():
    """argmax reads NaN as the largest score: all-NaN scores (a diverged model) were scored as class 0 every time, an
    accuracy of 0.5 here, and a fit kept such a state as its best without a word (roc_auc gives NaN)."""
    from fwdlearn.errors import NonFiniteLossError
    from fwdlearn.fit import Trainer
    from fwdlearn.metrics import masked_accuracy

    y = torch.tensor([0, 0, 1, 2])
    nan = torch.full((4, 3), float("nan"))
    assert math.isnan(masked_accuracy(nan, y))
    scores = torch.eye(3)[[0, 1, 1, 2]]
    scores[0, 1] = float("nan")
    assert math.isnan(masked_accuracy(scores, y))
    assert masked_accuracy(scores, y, torch.tensor([False, True, True, True])) == pytest.approx(2 / 3)  # unscored row
    with pytest.raises(NonFiniteLossError, match="step 1: the validation val_accuracy is nan"):
        Trainer(3, quiet=True).run(lambda i: {"loss": 1.0}, lambda: {"val_accuracy": masked_accuracy(nan, y)})


def test_roc_auc_needs_one_label_per_score():
    from fwdlearn.metrics import roc_auc

    with pytest.raises(ValueError, match=r"roc_auc reads labels 0 \(negative\) and 1 \(positive\); got values "
                                         r"\[-1.0, 1.0\]"):
        roc_auc(torch.tensor([0.1, 0.5, 0.9]), torch.tensor([-1, 1, 1]))  # ("3 positives and 0 negatives" before)
    with pytest.raises(ValueError, match=r"got values \[0.0, 0.3, 1.0\]"):
        roc_auc(torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.0, 0.3, 1.0]))  # 0.3 counted as a positive
    assert roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([0.0, 1.0])) == 1.0

    with pytest.raises(ValueError, match="roc_auc needs one label per score; got 3 scores and 2 labels"):
        roc_auc(torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0, 1]))


def test_saved_bytes_leaves_nothing_behind_on_tensors_that_outlive_it():
    """Every saved tensor got a weakref.finalize that lived as long as the tensor: over a parameter or the input, one
    more per measurement (and its box), without bound in a process that measures one model again and again."""
    import weakref

    from fwdlearn.diagnostics.cost import saved_bytes

    lin, x = torch.nn.Linear(8, 8), torch.randn(4, 8)
    before = len(weakref.finalize._registry)
    for _ in range(50):
        with saved_bytes() as box:
            loss = lin(x).square().sum()
        loss.backward()
        assert box.bytes > 0  # (the input, which outlives the block, and the square's input)
    assert len(weakref.finalize._registry) == before


def test_saved_bytes_lets_a_graph_it_measured_be_freed_without_a_backward():
    """The pack hook kept each saved tensor itself: a node that saves its own output (tanh) then held its grad_fn
    through torch's C++ graph, a cycle Python's collector cannot see, so a graph measured and not backpropagated, or
    backpropagated with retain_graph=True (as hop_influence(variant="full") does), was never freed, nor the parameters
    it saved: a model measured in a loop stayed in memory, one graph per call."""
    import gc
    import weakref

    from fwdlearn.diagnostics.cost import saved_bytes

    for backward in (False, True):
        lin, x = torch.nn.Linear(8, 8), torch.randn(4, 8, requires_grad=True)
        weight = weakref.ref(lin.weight)
        with saved_bytes() as box:
            out = torch.tanh(lin(x))
        if backward:
            (grad,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
            with torch.no_grad():
                expected = (1 - torch.tanh(lin(x)) ** 2) @ lin.weight
            assert torch.allclose(grad, expected, atol=1e-6)  # (the saved tensors still read right)
        assert (box.bytes, box.parameter_bytes) == (4 * 8 * 4, 4 * 8 * 4 + 8 * 8 * 4)  # tanh's output; x, the weight
        del lin, out
        gc.collect()
        assert weight() is None


def test_saved_bytes_counts_a_storage_once_across_views_of_it():
    """A saved view freed inside the block while its base lived let the next view of the same storage count it
    again (16,000 bytes for an 8,000-byte storage)."""
    import gc

    from fwdlearn.diagnostics.cost import saved_bytes

    w = torch.randn(1000, requires_grad=True)
    base = torch.randn(2000)
    with saved_bytes() as box:
        y = base[:1000] * w
        del y
        gc.collect()
        y = base[1000:] * w  # (alive after the block: its graph holds the second view)
    assert y.grad_fn is not None and box.bytes == base.untyped_storage().nbytes() == 8000


def test_masked_accuracy_refuses_scores_that_are_not_one_row_per_label():
    """1-D scores (one probability per example) were read as one example's class scores: their argmax, a single
    index, was compared with every label (scores [0.1, 0.9] against labels [1, 1] gave 1.0, not 0.5); scores with
    another number of rows than y raised torch's IndexError about a mask the caller never gave."""
    from fwdlearn.metrics import masked_accuracy

    y = torch.tensor([1, 1])
    with pytest.raises(ValueError, match=r"masked_accuracy: scores must be \[N, classes\] with one row per label, "
                                         r"N = 2; got \(2,\): scores of a binary task, one per example: "
                                         r"torch.stack\(\[1 - p, p\], -1\)"):
        masked_accuracy(torch.tensor([0.1, 0.9]), y)
    with pytest.raises(ValueError, match=r"scores must be \[N, classes\] with one row per label, N = 3; got \(2, 2\)$"):
        masked_accuracy(torch.eye(2), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"masked_accuracy: y must be a vector of class ids, shape \[N\]; got \(2, 1\) "
                                         r"\(one-hot labels: y.argmax\(-1\); a column: y.view\(-1\)\)"):
        masked_accuracy(torch.eye(2), y.view(-1, 1))
    p = torch.tensor([0.1, 0.9])
    assert masked_accuracy(torch.stack([1 - p, p], -1), y) == pytest.approx(0.5)  # the fix the message names


def test_distance_totals_names_a_distance_vector_of_another_length():
    """A shared [N] distance vector of another length than mass's inputs raised torch's expand error (its own
    check, naming both shapes, was never reached)."""
    with pytest.raises(ValueError, match=r"distance must have shape \(2, 3\) \(or \[3\]\) to match mass; got \(2,\)"):
        distance_totals(torch.ones(2, 3), torch.tensor([0, 1]), max_distance=2)
    torch.testing.assert_close(distance_totals(torch.ones(2, 3), torch.tensor([0, 1, 1]), max_distance=1),
                               torch.tensor([[1.0, 2.0], [1.0, 2.0]]))


def test_a_nan_gradient_is_not_read_as_orthogonal():
    """cosine, angle_degrees and per_sample_cosine tested ``norm > 0``, which a NaN fails as a zero vector does: a
    diverged gradient came out as cosine 0.0, 90 degrees (and feedback_alignment averaged it in as 0). All zeros
    still give 0.0."""
    from fwdlearn.diagnostics.alignment import cosine, feedback_alignment

    nan_row = torch.tensor([[1.0, float("nan")], [1.0, 0.0]])
    other = torch.tensor([[2.0, 4.0], [1.0, 0.0]])
    assert math.isnan(cosine(nan_row, other)) and math.isnan(angle_degrees(nan_row, other))
    per = per_sample_cosine(nan_row, other)
    assert math.isnan(per[0]) and per[1] == 1.0
    assert math.isnan(feedback_alignment({"p": (nan_row, other)})["p"])
    assert cosine(torch.zeros(2), torch.ones(2)) == 0.0 and angle_degrees(torch.zeros(2), torch.ones(2)) == 90.0
    assert per_sample_cosine(torch.zeros(1, 2), torch.ones(1, 2)).tolist() == [0.0]


def test_gradient_alignment_names_a_gradient_that_is_none():
    """A parameter the loss did not reach has ``.grad`` None: gradient_alignment failed with "'NoneType' object has
    no attribute 'shape'"."""
    with pytest.raises(ValueError, match=r"got None for 'b' \(the second set\): a parameter whose \.grad the loss "
                                         r"did not fill; leave it out of both sets"):
        gradient_alignment({"w": torch.ones(2), "b": torch.ones(1)}, {"w": torch.ones(2), "b": None})
    with pytest.raises(ValueError, match=r"got None for entry 1 \(both sets\)"):
        gradient_alignment([torch.ones(2), None], [torch.ones(2), None])


def test_plots_write_under_the_home_folder_and_leave_null_entries_out(tmp_path, monkeypatch):
    """``~/...`` made a folder named ``~`` in the working folder (matplotlib does not expand it; the model files and
    checkpoints do); a curve read back from a record's JSON, whose NaN is ``null``, failed with "float() argument must
    be ... not 'NoneType'"."""
    from fwdlearn.diagnostics.plots import plot_alignment, plot_influence_curves

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    path = plot_influence_curves({"gcn": [1.0, None, 0.25]}, "~/figs/c.png")
    assert path == home / "figs" / "c.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_alignment({"block0.out": [(0, 0.1), (5, 0.3)]}, "~/a.svg") == home / "a.svg"
    assert (home / "a.svg").is_file() and not any(work.iterdir())


def test_a_pgf_plot_is_refused_before_the_run_without_tex(monkeypatch):
    """.pgf passed check_plot_format, and matplotlib, which writes it through TeX, failed after the whole run with
    "'xelatex' not found" (a traceback, no record)."""
    import shutil

    from fwdlearn.errors import UsageError
    from fwdlearn.runs import check_plot_format

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match=r"--plot c\.pgf: matplotlib writes \.pgf through xelatex, which is not "
                                         r"installed; install a TeX system with xelatex, or end the name with \.pdf"):
        check_plot_format("c.pgf")
    with pytest.raises(UsageError, match=r"cannot write the format \.txt; end the name with one of (?!.*\.pgf)"):
        check_plot_format("c.txt")
    check_plot_format("c.png")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    check_plot_format("c.pgf")


def test_float64_cosines_hold_for_gradients_of_any_size():
    """The norms' product of float64 vectors of entries near 1e-170 underflowed to 0 (cosine 0.0: read as orthogonal,
    though only all-zero vectors are) and near 1e160 overflowed (NaN: read as diverged, though every entry is
    finite): a float64 RNN's state gradients far back in a long window are that small."""
    from fwdlearn.diagnostics.alignment import cosine, feedback_alignment

    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64)
    expected = 13 / 14
    for scale in (1e-170, 1e-160, 1e160):
        assert cosine(a * scale, b * scale) == pytest.approx(expected, rel=1e-12), scale
        assert gradient_alignment([a * scale], [b * scale]).cosine == pytest.approx(expected, rel=1e-12), scale
        rows = per_sample_cosine(torch.stack([a, a]) * scale, torch.stack([b, a]) * scale)
        torch.testing.assert_close(rows, torch.tensor([expected, 1.0], dtype=torch.float64))
        assert feedback_alignment({"p": ((a * scale)[None], (b * scale)[None])})["p"] == pytest.approx(expected)
    assert cosine(a * 1e-170, torch.zeros(3, dtype=torch.float64)) == 0.0  # all zeros: still 0.0
    assert math.isnan(cosine(torch.tensor([1.0, float("inf")]), torch.ones(2)))  # an infinity: still NaN
    assert cosine(torch.zeros(0), torch.zeros(0)) == 0.0
    assert per_sample_cosine(torch.zeros(2, 0), torch.zeros(2, 0)).tolist() == [0.0, 0.0]


def test_masked_accuracy_refuses_one_score_per_example_and_negative_labels():
    """One logit per example of a binary task, [N, 1], has argmax 0 on every row: its accuracy was the share of
    negatives (0.6 here, whatever the logits); a negative label (an "unlabelled" placeholder) was scored as a miss.
    Rows the mask leaves out may hold any placeholder."""
    from fwdlearn.metrics import masked_accuracy

    y = torch.tensor([0, 1, 1, 0, 0])
    logit = torch.tensor([[-2.0], [3.0], [1.0], [-1.0], [-0.5]])  # every example right
    with pytest.raises(ValueError, match=r"masked_accuracy: scores have 1 class\(es\), 0 \.\. 0, but a scored label is "
                                         r"1: one score s per example of a binary task: torch.cat\(\[torch.zeros_like"):
        masked_accuracy(logit, y)
    assert masked_accuracy(torch.cat([torch.zeros_like(logit), logit], -1), y) == 1.0
    assert masked_accuracy(torch.eye(3), torch.tensor([0, 1, 7])) == pytest.approx(2 / 3)  # (no class for 7: a miss)
    with pytest.raises(ValueError, match="but a scored label is -1: leave unlabelled rows out of the mask$"):
        masked_accuracy(torch.eye(3)[[0, 1, 2]], torch.tensor([0, -1, 2]))
    unlabeled = torch.tensor([0, -1, 2])  # (a placeholder outside the mask)
    assert masked_accuracy(torch.eye(3), unlabeled, torch.tensor([True, False, True])) == 1.0


def _drawn(monkeypatch):
    """The figures the plot functions draw, kept to read back."""
    from fwdlearn.diagnostics import plots

    figures, made = [], plots._figure

    def kept(figsize):
        fig, ax = made(figsize)
        figures.append(fig)
        return fig, ax

    monkeypatch.setattr(plots, "_figure", kept)
    return figures


def test_plots_give_every_series_its_own_look_and_keep_the_legend_off_the_curves(tmp_path, monkeypatch):
    """Past the ten colours of matplotlib's cycle a series was drawn as the first one (``bench dfa --layers 6``: 'dfa
    block0.out' and 'dfa:micro block4.out' both solid blue with round markers); eight entries or more sat in a legend
    inside the axes, over the curves (the docs' dfa-transformer-alignment.png hid the micro curves under it)."""
    from matplotlib.colors import to_hex

    from fwdlearn.diagnostics.plots import plot_alignment, plot_influence_curves, plot_speedups

    figures = _drawn(monkeypatch)
    plot_alignment({f"point{i}": [(0, 0.1 * i), (5, 0.1 * i + 0.05)] for i in range(12)}, tmp_path / "a.png")
    plot_influence_curves({f"m{i}": [1.0, 0.5 / (i + 1)] for i in range(12)}, tmp_path / "i.png")
    plot_speedups({f"s{i}": [(10.0 + i, 2.0, "g")] for i in range(12)}, tmp_path / "s.png", "size", "PyG")
    for figure in figures[:2]:
        ax = figure.axes[0]
        lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        looks = {(to_hex(line.get_color()), line.get_linestyle(), line.get_marker()) for line in lines}
        assert len(lines) == len(looks) == 12
        figure.canvas.draw()  # the legend to the right of the axes, not on them
        assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    markers = {(to_hex(c.get_facecolor()[0]), str(c.get_paths()[0].vertices.round(3).tolist()))
               for c in figures[2].axes[0].collections}
    assert len(markers) == 12


def test_an_influence_curve_not_drawn_is_named_in_the_legend_and_distances_are_whole(tmp_path, monkeypatch):
    """``influence graph --models gcn mlp`` (the README's command): the MLP's curve is 1 at hop 0 and 0 beyond, off
    the log scale, so its one point lay under the GCN's and its legend entry named a series nowhere to be seen; the
    hop axis read 0.25, 0.5, ... hops, a curve of lag 0 alone -0.04 to 0.04, and quickstart's epochs 2.5, 3.5, ..."""
    from fwdlearn.diagnostics.plots import plot_curves, plot_influence_curves

    figures = _drawn(monkeypatch)
    plot_influence_curves({"gcn-3": [1.0, 3.0, 2.3, 1.6], "mlp-3": [1.0, 0.0, 0.0, 0.0], "dsf": [1.0, None, 0.5, 0.0]},
                          tmp_path / "c.png")
    plot_influence_curves({"gru": [1.0], "lstm": [1.0]}, tmp_path / "one.png", xlabel="lag")
    plot_curves({"BP": ([2], [0.2]), "SF": ([2, 4, 6], [1.0, 0.6, 0.2])}, tmp_path / "t.png", "epoch", "accuracy")
    plot_curves({"BP": ([2], [0.2])}, tmp_path / "t1.png", "epoch", "accuracy")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "gcn-3", "mlp-3 (0 at hops 1-3: not drawn)", "dsf (0 at hops 3; n/a at hops 1: not drawn)"]
    for figure in figures:
        figure.canvas.draw()
        ticks = [t for t in figure.axes[0].get_xticks() if figure.axes[0].get_xlim()[0] <= t
                 <= figure.axes[0].get_xlim()[1]]
        assert ticks and all(t == int(t) >= 0 for t in ticks), ticks


def test_plots_keep_no_figure_and_leave_the_pyplot_backend_alone(tmp_path):
    """Every plot was a pyplot figure, closed only once written: a call that failed while drawing (x and y of
    different lengths) kept its figure open for the life of the process (25 failed calls, 25 figures and
    matplotlib's 'More than 20 figures' warning); and each call ran matplotlib.use("Agg"), which switched the
    process's backend (a notebook's inline one) to Agg for the rest of the session."""
    import matplotlib
    import matplotlib.pyplot as plt

    from fwdlearn.diagnostics.plots import plot_curves, plot_influence_curves

    plt.close("all")
    before = plt.get_backend()
    plt.switch_backend("svg")  # (any backend other than Agg: a notebook's inline one, say)
    try:
        for _ in range(3):
            with pytest.raises(ValueError, match="x and y must have same first dimension"):
                plot_curves({"run": ([1, 2, 3], [0.1, 0.2])}, tmp_path / "c.png", "step", "loss")
            with pytest.raises(ValueError, match="could not convert string to float"):
                plot_influence_curves({"gcn": [1.0, "x"]}, tmp_path / "i.png")
        assert plot_curves({"run": ([1, 2], [0.1, 0.2])}, tmp_path / "c.png", "step", "loss").stat().st_size > 0
        assert plt.get_fignums() == [] and matplotlib.get_backend() == "svg"
    finally:
        plt.switch_backend(before)
