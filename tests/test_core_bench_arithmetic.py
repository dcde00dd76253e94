"""The benches' arithmetic on hand-computed figures: the tolerance of a claim's comparisons, the printed decimals,
the cost part's medians and memory figures, a step's memory increase."""

import pytest



def _computed(key, compute):
    """A bench's ``piece`` that runs every piece (no progress kept)."""
    return compute()

def test_a_claims_tolerance_scales_with_the_threshold_and_on_it_is_met():
    """ROUNDING times the threshold's size above 1 (84e-9 about 84, 1e-9 about 0.5); a value on its threshold meets
    at_least / at_most and is not below it."""
    from fwdlearn.bench import at_least, at_most, below

    assert at_least(84.0, 84) and at_most(84.0, 84) and not below(84.0, 84)
    assert at_least(84 - 5e-8, 84) and not at_least(84 - 1e-6, 84)  # (5e-8 < 84e-9; 1e-6 is not)
    assert at_most(1.05 + 1.02e-9, 1.05) and not at_most(1.05 + 2e-9, 1.05)  # (1.05e-9 about 1.05)
    assert not below(84 - 5e-8, 84) and below(84 - 1e-6, 84)
    assert at_most(0.5 + 0.9e-9, 0.5) and not at_most(0.5 + 1.1e-9, 0.5)  # (1e-9 below 1, not 0.5e-9)


def test_apart_prints_the_second_figure_to_the_decimals_of_the_first():
    from fwdlearn.bench import apart

    assert apart(12.3456, 12.3457, 2) == ("12.3456", "12.3457")  # (two digits before the point)
    assert apart(-0.0123, 0.0124, 3) == ("-0.012", "0.012")


def test_interleaved_costs_take_the_median_time_and_the_step_increase_of_memory(monkeypatch):
    """seconds: the median of the repeats (1, 2, 10 -> 2, not their mean 4.33); saved_mb: the saved activations
    without the parameters; peak_mb: the step's increase (3 MiB), not the process's peak (100 MiB)."""
    from fwdlearn.diagnostics.cost import Cost
    from fwdlearn.sequences import bench

    MIB = 1024 * 1024
    timed = iter([1.0, 2.0, 10.0])

    def measure(step, device=None, memory=True):
        if not memory:
            return Cost(next(timed), 0, 0, 0, 0, None)
        return Cost(0.5, saved_bytes=2 * MIB, saved_parameter_bytes=5 * MIB, peak_rss_bytes=100 * MIB,
                    rss_increase_bytes=3 * MIB, cuda_peak_bytes=None)

    monkeypatch.setattr(bench, "measure_cost", measure)
    out = bench.interleaved_costs({"dsf": lambda: None}, repeats=3)["dsf"]
    assert out["seconds"] == 2.0 and out["all_seconds"] == [1.0, 2.0, 10.0]
    assert out["saved_mb"] == 2.0 and out["peak_mb"] == 3.0


def test_a_steps_memory_increase_is_its_peak_less_its_start():
    from fwdlearn.diagnostics.cost import _PeakMemory

    peak = _PeakMemory()
    peak.start, peak.peak = 100 * 1024, 130 * 1024
    assert peak.increase == 30 * 1024
    peak.start = None  # (no /proc: not measured)
    assert peak.increase is None


def test_bench_seq_cost_rows_are_each_figure_over_bptts_same_figure(monkeypatch):
    """Each cost row's ratio is the mode's figure over BPTT's (the library kernel's, not torch's fused module's) for
    the same metric: seconds 1 / 2, saved 3 / 12, peak 5 / 20 for DSF; 4 / 2 seconds for the fused module."""
    from types import SimpleNamespace

    from fwdlearn.sequences import bench

    costs = {"bptt": {"seconds": 2.0, "saved_mb": 12.0, "peak_mb": 20.0},
             "dsf": {"seconds": 1.0, "saved_mb": 3.0, "peak_mb": 5.0},
             bench.TORCH_BPTT: {"seconds": 4.0, "saved_mb": 12.0, "peak_mb": 10.0}}
    monkeypatch.setattr(bench, "step_costs", lambda *args, **kwargs: costs)
    config = SimpleNamespace(cost_cells=["gru"], cost_layers=1, cost_hidden=8, cost_batch=2, cost_contexts=[16],
                             device="cpu", quiet=True)
    rows, extra = [], {}
    bench._cost_part(config, rows, extra, _computed)
    ratios = {(row["mode"], row["metric"]): (row["value"], row["bptt"], row["ratio"]) for row in rows}
    assert ratios[("dsf", "seconds/step")] == (1.0, 2.0, 0.5)
    assert ratios[("dsf", "saved for backward MiB")] == (3.0, 12.0, 0.25)
    assert ratios[("dsf", "peak RSS increase MiB")] == (5.0, 20.0, 0.25)
    assert ratios[(bench.TORCH_BPTT, "seconds/step")] == (4.0, 2.0, 2.0)
    assert ratios[("bptt", "seconds/step")] == (2.0, 2.0, 1.0) and extra["cost"]["gru"][16] is costs


class _FakeLM:
    """A model of the quality and recall parts with fixed figures per rule (val bpc, fit seconds, accuracy)."""

    figures = {"bptt": (2.0, 10.0, 0.8), "dsf": (2.2, 5.0, 0.4)}

    def __init__(self, *args, training, **kwargs):
        self.bpc, self.seconds, self.accuracy = self.figures[training]

    def to(self, device):
        return self

    def fit(self, *args, **kwargs):
        from types import SimpleNamespace

        return SimpleNamespace(seconds=self.seconds, result=SimpleNamespace(best_step=1), history=[])

    def evaluate(self, *args, **kwargs):
        return {"bpc": self.bpc, "loss": self.bpc, "accuracy": self.accuracy}


def test_bench_seq_quality_and_recall_rows_are_each_figure_over_bptts_same_figure(monkeypatch):
    """DSF's bits 2.2 / 2.0 = 1.1, its train seconds 5 / 10 = 0.5 (not over BPTT's bits), its recall accuracy
    0.4 / 0.8; recall scores 8 x 64 batches of the lag-4 task's 16 positions after the lag (20 - 4): 8192."""
    from types import SimpleNamespace

    import torch

    from fwdlearn.sequences import bench

    monkeypatch.setattr(bench, "RecurrentLM", _FakeLM)
    config = SimpleNamespace(data="tiny", train_split="train", valid_split="validation", model="gru", layers=1,
                             hidden=4, norm=False, reference_block=False, context=8, batch_size=2, steps=1,
                             level="char", quality_modes=["bptt", "dsf"], device="cpu", lr=1e-3, eval_every=1,
                             eval_tokens=None, quiet=True, seed=0, recall_lag=4, recall_symbols=8, recall_layers=1,
                             recall_hidden=4, recall_steps=1, recall_modes=["bptt", "dsf"], recall_batch=2,
                             recall_lr=1e-3, skip=["alignment"])
    corpus = SimpleNamespace(vocab_size=5, split=lambda name: torch.zeros(10, dtype=torch.long))
    rows, extra = [], {}
    bench._quality_part(config, corpus, rows, extra, _computed)
    bench._recall_part(config, rows, extra, _computed)
    ratios = {(row["mode"], row["metric"]): (row["value"], row["bptt"], row["ratio"]) for row in rows}
    assert ratios[("dsf", "val bits/char")] == (2.2, 2.0, pytest.approx(1.1))
    assert ratios[("dsf", "train seconds")] == (5.0, 10.0, 0.5)
    assert ratios[("dsf", "accuracy")] == (0.4, 0.8, 0.5)
    assert extra["recall"]["scored"] == 8 * 64 * 16 and extra["recall"]["chance"] == 1 / 8


class _FakeGNN:
    """A ForwardGNN of the graph bench whose fit reports fixed figures per (method, layers, split seed):
    accuracy, fit seconds, saved bytes, step memory."""

    figures = {("bp", 2, 0): (0.80, 1.0, 100, 50), ("bp", 2, 1): (0.90, 3.0, 300, 70),
               ("sf", 2, 0): (0.70, 2.0, 40, 20), ("sf", 2, 1): (0.80, 8.0, 60, 10),
               ("bp", 4, 0): (0.60, 4.0, 400, 90), ("bp", 4, 1): (0.70, 4.0, 200, 110),
               ("sf", 4, 0): (0.50, 1.0, 90, 30), ("sf", 4, 1): (0.90, 1.0, 30, 40)}

    def __init__(self, *args, layers, method, seed=0, **kwargs):
        self.key = (method, layers, seed)

    def fit(self, *args, **kwargs):
        from types import SimpleNamespace

        acc, seconds, saved, step = self.figures.get(self.key, (0.5, 1.0, 1, 1))
        figures = {"test_accuracy": acc, "fit_seconds": seconds, "saved_bytes_per_step": saved,
                   "step_memory_bytes": step, "method": self.key[0]}
        return SimpleNamespace(**figures, as_dict=lambda: dict(figures))


def test_bench_graph_rows_are_means_and_largest_over_splits_against_bp_at_the_same_depth(tmp_path, monkeypatch):
    """Over the splits: accuracy mean ± population std, fit seconds their mean, saved bytes and step memory their
    largest; each '/ BP' ratio against BP at the same depth, 'saved / same at 2 layers' against the same method."""
    import json

    from fwdlearn.cli import main
    from fwdlearn.graphs.nn import forward_gnn

    monkeypatch.setattr(forward_gnn, "ForwardGNN", _FakeGNN)
    out = tmp_path / "bench"
    assert main(["bench", "graph", "--data", "karate", "--depths", "2", "4", "--methods", "sf", "--splits", "2",
                 "--epochs", "1", "--link-layers", "0", "--quiet", "--out", str(out)]) == 0
    rows = {(r["method"], r["layers"]): r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    sf4, sf2 = rows[("sf", 4)], rows[("sf", 2)]
    assert sf4["accuracy_mean"] == pytest.approx(0.7) and sf4["accuracy_std"] == pytest.approx(0.2)
    assert sf4["accuracy"] == "70.00 ± 20.00" and sf4["acc_minus_bp"] == pytest.approx(5.0)  # (70 - 65 points)
    assert sf4["fit_seconds"] == 1.0 and sf4["time_vs_bp"] == pytest.approx(1 / 4)
    assert sf4["saved_bytes_per_step"] == 90 and sf4["saved_vs_bp"] == pytest.approx(90 / 400)
    assert sf4["saved_vs_2_layers"] == pytest.approx(90 / 60)
    assert sf4["step_memory_bytes"] == 40 and sf4["step_memory_vs_bp"] == pytest.approx(40 / 110)
    assert sf2["fit_seconds"] == 5.0 and sf2["time_vs_bp"] == pytest.approx(5 / 2)
    assert rows[("bp", 4)]["saved_vs_2_layers"] == pytest.approx(400 / 300)


def test_row_agreement_measures_each_row_against_its_own_scale_and_counts_dead_rows():
    """Rows of scale 2, 4 and 1e-6 (dead: below 1e-3 of 4): differences 0.1 / 2, 0.4 / 4 and 4e-5 / 4e-3 -> the
    largest, 0.1; one dead row."""
    import torch

    from fwdlearn.graphs.influence.bench import row_agreement

    reference = torch.tensor([[1.0, 2.0], [0.5, 4.0], [0.0, 1e-6]], dtype=torch.float64)
    mine = reference + torch.tensor([[0.1, 0.0], [0.0, 0.4], [4e-5, 0.0]], dtype=torch.float64)
    difference, dead = row_agreement(mine, reference)
    assert difference == pytest.approx(0.1) and dead == 1


def test_bench_influence_speed_row_takes_medians_and_extrapolates_pyg_to_every_seed(monkeypatch):
    """4 seeds, PyG on 2 of them (its seconds doubled); 3 repeats: layered 1, 2, 9 s (median 2), autograd 3 s, PyG 2,
    3, 4 s -> 4, 6, 8 (median 6): speed-ups 6 / 2 and 6 / 3; on a 6-cycle every 1-hop ball holds 3 nodes."""
    from types import SimpleNamespace

    import torch
    import torch_geometric.utils.influence as pyg_influence
    from torch_geometric.data import Data

    from fwdlearn.graphs.influence import bench

    durations = {"layered": [1.0, 2.0, 9.0], "autograd": [3.0, 3.0, 3.0], "pyg": [2.0, 3.0, 4.0]}
    ticks, now = [], 0.0
    for r in range(3):
        for side in ("layered", "autograd", "pyg"):
            ticks += [now, now + durations[side][r]]
            now += 100.0
    clock = iter(ticks)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(pyg_influence, "jacobian_l1_agg_per_hop", lambda *args: torch.tensor([1.0, 2.0]))

    def influence(model, data, layers, nodes, jacobian, normalize, quiet=True):
        rows = torch.tensor([[1.0, 2.0]]).repeat(len(nodes), 1)
        if jacobian == "autograd":
            rows[0, 1] = 2.2  # (0.2 / 2 off PyG's first row)
        return None, None, rows

    monkeypatch.setattr(bench, "hop_influence", influence)
    ring = torch.arange(6)
    edges = torch.stack([torch.cat([ring, (ring + 1) % 6]), torch.cat([(ring + 1) % 6, ring])])
    config = SimpleNamespace(seed=0, hidden=4, samples=4, pyg_samples=2, repeats=3)
    row = bench._speed_row(config, "ring", Data(x=torch.randn(6, 3), edge_index=edges), 1, True, torch.device("cpu"))
    assert row["seeds"] == 4 and row["PyG seeds"] == 2 and row["mean ball"] == 3.0
    assert row["fwdlearn s"] == 2.0 and row["autograd s"] == 3.0 and row["PyG s"] == 6.0
    assert row["speed-up"] == 3.0 and row["autograd speed-up"] == 2.0
    assert row["max rel. diff"] == pytest.approx(0.1) and row["dead rows"] == 0


def test_bench_graph_claims_on_hand_computed_figures():
    """sf at 8 layers 82 % meets '>= 80%'; saved 110 / 100 (BP 400 / 100); time 0.5 at 2 layers but 1.5 at 8: every
    depth must be below 1, so missed."""
    from fwdlearn.graphs.cli.bench import _checks

    summary = {("sf", 2): {"acc": 0.85, "saved": 100, "time": 1.0}, ("bp", 2): {"acc": 0.85, "saved": 100, "time": 2.0},
               ("sf", 8): {"acc": 0.82, "saved": 110, "time": 3.0}, ("bp", 8): {"acc": 0.7, "saved": 400, "time": 2.0}}
    lines = _checks(summary, {})
    assert lines[1] == "- sf >= 80% at 8 layers: 82.00% -> met"
    assert lines[2] == "- sf saved bytes/step 8 vs 2 layers <= 1.2: 1.10, BP 8/2 = 4.00 -> met"
    assert lines[3] == "- sf fit time / BP fit time < 1: 2 layers 0.50, 8 layers 1.50 -> MISSED"
