"""The benches' verdicts, rows and notes on hand-made figures (mutation round 22: bench seq, bench dfa, bench
influence): each claim line whole, each note only for the part that ran, each row's setting and baseline."""

import math
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("a stitch in time saves nine, and a rolling stone gathers no moss.\n" * 30)
    return path


def _computed(key, compute):
    """A bench's ``piece`` that runs every piece (no progress kept)."""
    return compute()


# --- bench seq: claims -------------------------------------------------------------------------------------------


def test_bench_seq_cost_claims_read_contexts_in_order_and_meet_the_target_on_it():
    """A worst ratio of exactly 0.7 meets '<= 0.7' (not strictly below it); 'by T' lists the contexts in increasing
    order whatever order the run stored them in; a context without DSF (or without the baseline) is left out of the
    ratios rather than failing, and the fused module's lines cover only the contexts it was timed at."""
    from fwdlearn.sequences.bench import TORCH_BPTT, _verdicts

    cost = {512: {"bptt": {"seconds": 1.0}, "dsf": {"seconds": 0.6}, TORCH_BPTT: {"seconds": 0.5}},
            128: {"bptt": {"seconds": 2.0}, "dsf": {"seconds": 1.4}},
            64: {"bptt": {"seconds": 1.0}}}
    assert _verdicts({"cost": {"gru": cost}}) == [
        "- GRU: DSF faster than BPTT at T=512: yes (time ratio 0.600; by T: 128: 0.700, 512: 0.600)",
        "- GRU: DSF step <= 0.7 x BPTT at every T (the step-cost target): yes (worst 0.700)",
        "- GRU: DSF faster than BPTT through torch's fused module at T=512: NO (time ratio 1.200; by T: 512: 1.200)",
        "- GRU: DSF step <= 0.7 x BPTT through torch's fused module at every T (the step-cost target): NO "
        "(worst 1.200)"]


def test_bench_seq_quality_claims_need_their_own_baseline_only():
    """A run of DSF and FT-BPTT without BPTT checks 'better than FT-BPTT' alone (no 'within 5% of BPTT' lookup)."""
    from fwdlearn.sequences.bench import _verdicts

    quality = {"dsf": {"val_bpc": 2.0}, "ft-bptt": {"val_bpc": 2.1}}
    assert _verdicts({"quality": quality}) == ["- DSF better than FT-BPTT: yes (2.0000 vs 2.1000 bits/token)"]


def test_bench_seq_recall_difference_on_its_three_standard_errors_is_not_above():
    """'DSF above FT-BPTT' is strict: a difference equal to its 3 standard errors (printed alike) reads NO."""
    from fwdlearn.sequences.bench import _recall_verdicts

    n, ft = 8192, 0.125
    dsf = ft + 0.02
    for _ in range(60):  # the fixed point dsf - ft = 3 sqrt((dsf(1 - dsf) + ft(1 - ft)) / n)
        dsf = ft + 3 * math.sqrt((dsf * (1 - dsf) + ft * (1 - ft)) / n)
    line = _recall_verdicts({"chance": 0.125, "scored": n, "dsf": {"accuracy": dsf}, "ft-bptt": {"accuracy": ft}})[-1]
    assert line == ("- delayed recall: DSF above FT-BPTT: NO (0.141 vs 0.125: difference 0.016, 3 standard errors of "
                    "the difference 0.016)")


# --- bench seq: rows ---------------------------------------------------------------------------------------------


def test_a_steps_peak_is_cudas_increase_on_a_gpu_and_nan_where_nothing_measured_it():
    from fwdlearn.diagnostics.cost import Cost
    from fwdlearn.sequences.bench import MIB, _increase_mb

    both = Cost(1.0, 0, 0, 0, rss_increase_bytes=3 * MIB, cuda_peak_bytes=10 * MIB, cuda_increase_bytes=2 * MIB)
    assert _increase_mb(both) == 2.0  # (the GPU's own allocation, not the host process's resident set)
    assert _increase_mb(Cost(1.0, 0, 0, 0, rss_increase_bytes=3 * MIB, cuda_peak_bytes=None)) == 3.0
    assert math.isnan(_increase_mb(Cost(1.0, 0, 0, 0, rss_increase_bytes=None, cuda_peak_bytes=None)))


def test_bench_seq_cost_rows_on_a_gpu_name_cudas_peak(monkeypatch):
    from fwdlearn.sequences import bench

    costs = {"bptt": {"seconds": 2.0, "saved_mb": 1.0, "peak_mb": 4.0}, "dsf": {"seconds": 1.0, "saved_mb": 1.0,
                                                                                 "peak_mb": 1.0}}
    monkeypatch.setattr(bench, "step_costs", lambda *args, **kwargs: costs)
    config = SimpleNamespace(cost_cells=["gru"], cost_layers=1, cost_hidden=8, cost_batch=2, cost_contexts=[16],
                             device="cuda:1", quiet=True)
    rows = []
    bench._cost_part(config, rows, {}, _computed)
    assert {row["metric"] for row in rows} == {"seconds/step", "saved for backward MiB", "CUDA peak increase MiB"}
    assert rows[0]["setting"] == "GRU 1x8 plain blocks, batch 2, cuda:1"


def test_bench_seq_times_torchs_fused_module_with_the_kernels_off_and_only_for_a_cell_that_has_one(monkeypatch):
    from contextlib import contextmanager

    from fwdlearn.sequences import bench

    flags = []

    @contextmanager
    def kernels(on):
        flags.append(on)
        yield

    monkeypatch.setattr(bench, "use_kernels", kernels)
    config = SimpleNamespace(device="cpu", seed=0, cost_batch=2, cost_hidden=4, cost_layers=1, cost_repeats=1,
                             cost_modes=["bptt", "dsf"])
    costs = bench.step_costs(config, 4, cell="gru")
    assert list(costs) == ["bptt", "dsf", bench.TORCH_BPTT]
    assert flags == [True, True, False] * 3  # (warm-up, one timed repeat, the step measured for memory)
    assert list(bench.step_costs(config, 4, cell="lstm")) == ["bptt", "dsf"]


def test_bench_seq_blocks_name_the_layout_the_models_were_built_with():
    from fwdlearn.sequences.bench import _block

    assert _block(SimpleNamespace(norm=False, reference_block=False)) == ""
    assert _block(SimpleNamespace(norm=True, reference_block=False)) == ", pre-LN + MLP blocks"
    assert _block(SimpleNamespace(norm=True, reference_block=True)) == ", the DSF reference's block"


class _FakeLM:
    """A quality model whose fit and evaluation give fixed figures and whose state is its rule's name."""

    def __init__(self, *args, training, **kwargs):
        self.training_rule = training

    def to(self, device):
        return self

    def fit(self, *args, **kwargs):
        return SimpleNamespace(seconds=1.0, result=SimpleNamespace(best_step=1), history=[])

    def evaluate(self, *args, **kwargs):
        return {"bpc": 2.0, "loss": 1.4}

    def state_dict(self):
        return {"rule": torch.tensor([ord(c) for c in self.training_rule])}


def _seq_config(**changes):
    config = dict(data="tiny", train_split="train", valid_split="validation", model="gru", layers=1, hidden=4,
                  norm=False, reference_block=False, context=8, batch_size=2, steps=1, level="char",
                  quality_modes=["bptt", "dsf"], device="cpu", lr=1e-3, eval_every=1, eval_tokens=None, quiet=True,
                  seed=0, skip=[], align_batch=2, align_context=6)
    config.update(changes)
    return SimpleNamespace(**config)


def test_bench_seq_keeps_the_trained_dsf_models_state_for_the_alignment_part_only(monkeypatch):
    """The DSF model's state goes into its piece (a resumed run rebuilds the model from it), no other mode's, and
    none when the alignment part is skipped; the quality rows hold no state."""
    from fwdlearn.sequences import bench

    monkeypatch.setattr(bench, "RecurrentLM", _FakeLM)
    corpus = SimpleNamespace(vocab_size=5, split=lambda name: torch.zeros(10, dtype=torch.long))
    for skip, kept in (([], {"dsf"}), (["alignment"], set())):
        done = {}

        def piece(key, compute):
            done[key] = compute()
            return done[key]

        extra = {}
        models = bench._quality_part(_seq_config(skip=skip), corpus, [], extra, piece)
        assert {key.split("/")[1] for key, d in done.items() if d["state"] is not None} == kept
        assert set(models) == {"bptt", "dsf"} and "state" not in extra["quality"]["dsf"]
    assert done["quality/dsf"]["val_bpc"] == 2.0 and done["quality/dsf"]["train_seconds"] == 1.0


def test_bench_seq_alignment_reads_the_trained_dsf_model_when_the_quality_part_trained_one(monkeypatch):
    from fwdlearn.sequences import bench

    read = []

    def alignment(model, x, y, mode):
        read.append((model, tuple(x.shape), mode))
        return SimpleNamespace(by_distance=[torch.tensor([1.0, 0.5])], overall=0.75,
                               parameters=SimpleNamespace(cosine=0.25))

    monkeypatch.setattr(bench, "state_alignment", alignment)
    monkeypatch.setattr(bench, "RecurrentLM", _FakeLM)
    corpus = SimpleNamespace(vocab_size=5, split=lambda name: torch.arange(20))
    trained, rows, extra = object(), [], {}
    bench._alignment_part(_seq_config(), corpus, rows, extra, {"dsf": trained, "bptt": object()})
    assert [(model is trained, shape, mode) for model, shape, mode in read] == [(True, (2, 6), "dsf"),
                                                                                (True, (2, 6), "ft-bptt")]
    assert extra["alignment"]["model"] == "trained dsf model"
    assert rows[-1]["setting"] == "trained dsf model, 2 validation windows of T=6"
    assert rows[-1]["metric"] == "parameter-gradient cosine" and rows[-1]["value"] == 0.25
    read.clear()
    extra = {}
    bench._alignment_part(_seq_config(), corpus, [], extra, {})
    assert isinstance(read[0][0], _FakeLM) and read[0][0].training_rule == "dsf"
    assert extra["alignment"]["model"] == "untrained model"


# --- bench seq: refusals and notes -------------------------------------------------------------------------------


def _captured(monkeypatch, module, run) -> dict:
    """``run()`` (a bench's run_bench) up to its ``module.run_parts`` (captured, not run): the config, the parts and
    the notes it was given."""
    captured = {}

    def run_parts(config, job, parts, verdicts, columns, title, notes, **kwargs):
        captured.update(config=config, parts=parts, notes=notes)
        return None, None

    monkeypatch.setattr(module, "run_parts", run_parts)
    run()
    return captured


def _seq_run(monkeypatch, text_file, **changes):
    """bench seq's run_bench up to run_parts (captured, not run): its arguments."""
    from fwdlearn.sequences import bench
    from fwdlearn.sequences.cli.bench import SeqBenchConfig

    config = SeqBenchConfig(data=str(text_file), hidden=8, recall_hidden=8, **changes)
    return _captured(monkeypatch, bench, lambda: bench.run_bench(config))


def test_bench_seq_notes_describe_only_the_parts_that_run(monkeypatch, text_file):
    def described(**changes):
        return [note.split(":")[0] if ":" in note.split(" ")[0] else note.split(" ")[0]
                for note in _seq_run(monkeypatch, text_file, **changes)["notes"]]

    assert described() == ["`bptt`", "Cost", "Quality", "Alignment"]
    assert described(skip=["quality", "alignment"]) == ["`bptt`", "Cost"]
    assert described(skip=["cost", "alignment"]) == ["`bptt`", "Quality"]
    assert described(skip=["cost", "quality"]) == ["`bptt`", "Alignment"]


def test_bench_seq_refuses_the_reference_block_without_norm_and_the_recall_seeds_only_when_recall_runs(
        monkeypatch, text_file):
    from fwdlearn.errors import UsageError

    with pytest.raises(UsageError, match=r"^--reference-block is the DSF reference's pre-LayerNorm block: it needs "
                                         r"--norm, not --no-norm$"):
        _seq_run(monkeypatch, text_file, reference_block=True, norm=False)
    assert _seq_run(monkeypatch, text_file, reference_block=True)["notes"]  # (with --norm: taken)
    with pytest.raises(UsageError, match=r"^--seed 271828 draws the recall task's test samples: give another --seed, "
                                         r"or --skip recall$"):
        _seq_run(monkeypatch, text_file, seed=271828)
    assert _seq_run(monkeypatch, text_file, seed=271828, skip=["recall"])["config"].seed == 271828


# --- bench dfa -----------------------------------------------------------------------------------------------------


def test_bench_dfa_shallow_gap_is_printed_with_its_sign():
    from fwdlearn.sequences.bench_dfa import _verdicts

    assert _verdicts({"transformer": {"dfa": {"val_bpc": 2.6}, "shallow": {"val_bpc": 2.5}}}) == [
        "- DFA beats the shallow control by >= 0.1 bits/char: NO (2.600 vs 2.500, -0.100)"]
    assert _verdicts({"transformer": {"dfa": {"val_bpc": 2.5}, "shallow": {"val_bpc": 2.5}}}) == [
        "- DFA beats the shallow control by >= 0.1 bits/char: NO (2.500 vs 2.500, +0.000)"]


def test_bench_dfa_claims_print_the_published_ratios_the_step_costs_and_the_recurrent_ratios_whole():
    """Published WikiText-103 perplexity ratios to BP: 52.0 / 29.8 = 1.74, 93.3 / 29.8 = 3.13; each DFA rule's step
    time and saved bytes over BP's; each recurrent DFA rule against its own time rule."""
    from fwdlearn.sequences.bench_dfa import _verdicts

    t = {"bp": {"perplexity": 10.0}, "dfa": {"perplexity": 15.0}, "dfa:micro": {"perplexity": 30.0}}
    cost = {"bp": {"seconds": 2.0, "saved_mb": 8.0}, "dfa": {"seconds": 1.0, "saved_mb": 2.0},
            "dfa:micro": {"seconds": 3.0, "saved_mb": 4.0}}
    rec = {"bptt": {"val_bpc": 2.0}, "dsf": {"val_bpc": 2.5}, "dfa+bptt": {"val_bpc": 3.0},
           "dfa+dsf": {"val_bpc": 4.0}}
    assert _verdicts({"transformer": t, "cost": cost, "recurrent": rec}) == [
        "- macro closer to BP than micro (published pattern): yes (perplexity ratio to BP: macro 1.500, micro 3.000; "
        "published on WikiText-103: macro 1.74, micro 3.13)",
        "- dfa step time / BP: 0.500; saved for backward / BP: 0.250",
        "- dfa:micro step time / BP: 1.500; saved for backward / BP: 0.500",
        "- recurrent dfa+bptt vs bptt: 3.000 vs 2.000 bits/char (ratio 1.500)",
        "- recurrent dfa+dsf vs dsf: 4.000 vs 2.500 bits/char (ratio 1.600)"]


def _dfa_run(monkeypatch, text_file, **changes):
    """bench dfa's run_bench up to run_parts (captured, not run): its arguments."""
    from fwdlearn.sequences import bench_dfa
    from fwdlearn.sequences.cli.bench_dfa import DfaBenchConfig

    settings = dict(data=str(text_file), hidden=8, layers=1, heads=2, context=8, batch_size=2, rnn_hidden=8,
                    rnn_layers=1)
    config = DfaBenchConfig(**{**settings, **changes})
    return _captured(monkeypatch, bench_dfa, lambda: bench_dfa.run_bench_dfa(config))


def test_bench_dfa_notes_describe_alignment_only_where_a_part_that_runs_has_a_dfa_rule(monkeypatch, text_file):
    def described(**changes):
        return [note.split(" ")[0] for note in _dfa_run(monkeypatch, text_file, **changes)["notes"]]

    assert described() == ["`baseline`", "Alignment:", "Published", "Cost:", "`train"]
    assert described(skip=["transformer", "cost"], rnn_rules=["bptt", "dsf"]) == ["`baseline`", "`train"]
    assert described(skip=["transformer", "cost"]) == ["`baseline`", "Alignment:", "`train"]
    assert described(skip=["cost", "recurrent"], rules=["bp", "dfa"]) == ["`baseline`", "Alignment:", "Published",
                                                                          "`train"]


def test_bench_dfa_recurrent_rows_name_their_blocks_budget_and_splits(monkeypatch, text_file):
    """--rnn-steps sets the recurrent part's budget (0: --steps), --no-rnn-norm its plain blocks; the splits are
    named only when they are not train / validation."""
    def setting(**changes):
        captured = _dfa_run(monkeypatch, text_file, skip=["transformer", "cost"], rnn_rules=["bptt"], **changes)
        rows, extra = [], {}
        figures = {"val_bpc": 2.0, "perplexity": 4.0, "train_seconds": 1.0}
        captured["parts"](captured["config"], rows, extra, lambda key, compute: dict(figures))
        assert {row["baseline"] for row in rows} == {2.0, 4.0, 1.0}  # (bptt: the recurrent part's baseline)
        return rows[0]["setting"]

    data = str(text_file)
    assert setting(steps=3) == f"{data}, GRU 1x8 pre-LN + MLP blocks, T=8, B=2, 3 steps"
    assert setting(steps=3, rnn_steps=2, rnn_norm=False) == f"{data}, GRU 1x8 plain blocks, T=8, B=2, 2 steps"
    assert setting(train_split="validation", valid_split="train") == (
        f"{data} (trained on validation, evaluated on train), GRU 1x8 pre-LN + MLP blocks, T=8, B=2, 1000 steps")


def test_bench_dfa_plot_draws_the_block_outputs_of_the_dfa_rules_only(monkeypatch):
    from fwdlearn.diagnostics import plots
    from fwdlearn.sequences.bench_dfa import _plot

    drawn = {}
    monkeypatch.setattr(plots, "plot_alignment", lambda curves, path, title: drawn.update(curves=curves, path=path,
                                                                                           title=title) or path)
    results = {"bp": {"val_bpc": 2.0}, "dfa:micro": {"alignment_curve": {"block0.out": [(1, 0.5)],
                                                                         "block0.mlp": [(1, 0.1)]}}}
    _plot(SimpleNamespace(out="o", layers=1, hidden=8), results)
    assert drawn == {"curves": {"dfa:micro block0.out": [(1, 0.5)]}, "path": "o-alignment.png",
                     "title": "transformer 1x8: alignment at block outputs"}


# --- bench influence -----------------------------------------------------------------------------------------------


def test_bench_influences_untrained_models_give_a_class_per_label_or_hidden_outputs_two_at_least():
    from torch_geometric.data import Data

    from fwdlearn.graphs.influence.bench import untrained_outputs

    x = torch.zeros(4, 2)
    assert untrained_outputs(Data(x=x, y=torch.tensor([0, 2, 1, 0])), 5) == 3
    assert untrained_outputs(Data(x=x, y=torch.zeros(4, dtype=torch.long)), 5) == 5  # (one class: not a classifier)
    assert untrained_outputs(Data(x=x), 1) == 2


def test_row_agreement_counts_a_row_on_the_dead_floor_as_live():
    """A row whose largest entry is exactly DEAD_ROW times the largest row's is not below it: live."""
    from fwdlearn.graphs.influence.bench import DEAD_ROW, row_agreement

    reference = torch.tensor([[1.0, 0.0], [DEAD_ROW, 0.0], [DEAD_ROW / 2, 0.0]], dtype=torch.float64)
    assert row_agreement(reference.clone(), reference) == (0.0, 1)


def test_pygs_graph_numbers_the_nodes_of_no_edge_first_and_keeps_a_graph_that_needs_no_change():
    from torch_geometric.data import Data

    from fwdlearn.graphs.influence.bench import _edges_first

    x = torch.arange(5, dtype=torch.float).unsqueeze(1)
    data = Data(x=x, edge_index=torch.tensor([[0, 2], [2, 0]]))  # (nodes 1, 3 and 4 on no edge; 3 and 4 past both)
    pyg, ids = _edges_first(data)
    assert ids.tolist() == [3, 0, 4, 1, 2]  # (node v is ids[v] in PyG's graph: 1, 3, 4 first, then 0, 2)
    assert torch.equal(pyg.x[ids], x) and pyg.edge_index.tolist() == [[3, 4], [4, 3]]
    middle = Data(x=x, edge_index=torch.tensor([[1, 2, 4], [2, 1, 2]]))  # (0 and 3 on no edge, but before node 4)
    same, ids = _edges_first(middle)
    assert same is middle and ids.tolist() == [0, 1, 2, 3, 4]


class _Graph(SimpleNamespace):
    def to(self, device):
        return self


class _FakeGNN:
    """A model of the trained part whose fit gives a fixed accuracy and whose hop influence a fixed R."""

    figures = {("mlp", 2): (0.5, 0.0), ("gcn", 2): (0.6, 1.5), ("gcn", 3): (0.8, 2.0), ("sf", 3): (0.4, 3.0)}

    def __init__(self, key):
        self.accuracy, self.R = self.figures[key]

    def to(self, device):
        return self

    def fit(self, *args, **kwargs):
        return SimpleNamespace(test_accuracy=self.accuracy)


def test_bench_influence_forward_rows_are_the_forward_models_figures_over_the_deep_bp_gcns(monkeypatch):
    from fwdlearn.graphs.influence import bench

    monkeypatch.setattr(bench, "make_model", lambda kind, features, classes, layers, hidden: _FakeGNN((kind, layers)))
    monkeypatch.setattr(bench, "ForwardGNN", lambda *args, layers, method, **kwargs: _FakeGNN((method, layers)))
    monkeypatch.setattr(bench, "hop_influence", lambda model, *args, **kwargs: (None, model.R, torch.zeros(7, 4)))
    config = SimpleNamespace(layers=3, seed=0, hidden=4, epochs=1, samples=7, forward_method="sf")
    rows = []
    seeds = bench._trained_ranges(config, _Graph(num_features=2, num_classes=2), rows, True, torch.device("cpu"),
                                  _computed)
    assert seeds == 7
    forward = [(r["metric"], r["value"], r["baseline"], r["ratio"]) for r in rows
               if r["experiment"].startswith("BP vs")]
    assert forward == [("test accuracy (sf)", 0.4, 0.8, 0.5), ("R (sf)", 3.0, 2.0, 1.5)]


def test_bench_influence_notes_without_a_forward_method_say_the_epochs(tmp_path):
    from fwdlearn.graphs.cli.influence import BenchInfluenceConfig
    from fwdlearn.graphs.influence.bench import _trained_note

    assert _trained_note(BenchInfluenceConfig(data="karate", epochs=3, forward_method="")) == (
        "Trained models: karate; BP models trained with Adam lr 0.01, patience 50; 3 epochs.")
    assert _trained_note(BenchInfluenceConfig(data="karate", epochs=3, forward_method="sf")) == (
        "Trained models: karate; BP models trained with Adam lr 0.01, patience 50; ForwardGNN sf with its fit "
        "defaults; 3 epochs (per layer for sf).")


def test_bench_influence_notes_name_the_models_the_floor_and_the_load_times(tmp_path):
    import json

    from fwdlearn.cli import main

    out = tmp_path / "n"
    assert main(["bench", "influence", "--graphs", "karate", "--depths", "1", "--samples", "4", "--pyg-samples", "2",
                 "--repeats", "1", "--hidden", "4", "--epochs", "0", "--threads", "1", "--quiet",
                 "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "Untrained GCN (the package's blocks: L2-normalise, GCNConv, ReLU; a linear classifier), hidden 4, " \
           "max_hops = layers. " in md
    assert "dead rows (largest entry below 0.001 of the largest row's: all ReLUs dead" in md
    other = json.loads(out.with_suffix(".json").read_text())["other"]
    assert [(r["experiment"], r["model"], r["metric"]) for r in other] == [
        ("karate (34 nodes)", "-", "seconds to load (labels + features)")]


@pytest.mark.parametrize("graphs, depths", [([], [1]), (["karate"], []), ([], [])])
def test_bench_influence_refuses_no_graph_or_no_depth_from_python(graphs, depths):
    """(The config class refuses empty lists itself; run_bench checks a config built otherwise.)"""
    from fwdlearn.graphs.influence.bench import run_bench

    with pytest.raises(ValueError, match=r"^--graphs needs at least one graph and --depths at least one depth$"):
        run_bench(SimpleNamespace(graphs=graphs, depths=depths, epochs=0))
