"""Edges of ``fwdlearn graph train``, ``influence graph`` and ``bench influence`` (graphs/cli/train.py and
influence.py): the defaults a flag left out stands for, the seeds and splits said in what each command prints and
writes, and the refusals' exact words."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from fwdlearn.cli import main
from test_graph_cli import _interrupt_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))


def _train_flags(*extra):
    return ["graph", "train", "--data", "karate", "--method", "sf", "--layers", "2", "--hidden", "8", "--epochs", "4",
            "--patience", "0", "--quiet", *extra]


def test_graph_train_says_each_split_by_its_seed_in_the_table_the_record_and_its_files(tmp_path, monkeypatch,
                                                                                       capsys):
    """With --seed 3 --splits 2 the splits are seeds 3 and 4: the record's rows and its second checkpoint name seed 4
    (not split index 1), the mean row names the method, the table has every column, the summary the device; an
    interrupt in split 1 says its seed, and the resumed splits print what each continued from under their seeds."""
    monkeypatch.chdir(tmp_path)
    args = _train_flags("--splits", "2", "--seed", "3", "--name", "s")
    assert main(args) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "runs" / "s.json").read_text())
    assert [row["split"] for row in record["metrics"]] == [3, 4]
    assert set(record["files"]) == {"checkpoint", "checkpoint split 4"}
    assert record["summary"]["device"] == "cpu"
    assert out.splitlines()[0] == ("| split | method | conv | layers | test_accuracy | fit_seconds | "
                                   "saved_bytes_per_step | peak_memory_bytes |")
    assert [row["method"] for row in record["metrics"]] == ["sf", "sf"]  # (--method's name: the rule was shown,
    assert "\n| 3 | sf | gcn | 2 | " in out and "local:prototype" not in out  # local:prototype, where link said ce)
    assert "\n| mean ± std | sf |  |  | " in out and out.endswith("record: runs/s.json\n")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 11)  # split 1, block 1, step 3
        assert main([*args[:-1], "cut"]) == 130
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fwdlearn: interrupted at step 3 of block 1 of 2, split 1 (seed 4); the last checkpoint is "
                           "runs/cut-split1.pt"), line
    assert main([*args[:-1], "cut", "--resume", "--lr", "0.01"]) == 0  # (a new rate: each split says it)
    out = capsys.readouterr().out
    assert out.startswith("split 3: ") and "\nsplit 4: resumed from step 2" in out, out
    assert list(json.loads((tmp_path / "runs" / "cut.json").read_text())["summary"]["resumed"]) == ["split 3",
                                                                                                   "split 4"]


def test_graph_train_draws_a_generated_graph_once_and_splits_it_per_seed(tmp_path, monkeypatch):
    """A generated graph (sbm) is drawn once, from --seed: every split trains on the same edges, split by its own
    seed (drawn from each split's seed, the splits' spread would be the graphs')."""
    from fwdlearn.graphs.tasks import NodeClassification

    seen, train = [], NodeClassification.train

    def spy(self, data, **kwargs):
        seen.append((data.edge_index.clone(), data.train_mask.clone()))
        return train(self, data, **kwargs)

    monkeypatch.setattr(NodeClassification, "train", spy)
    assert main(["graph", "train", "--data", "sbm", "--method", "bp", "--layers", "1", "--hidden", "8", "--epochs",
                 "1", "--splits", "2", "--seed", "3", "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    (first_edges, first_mask), (edges, mask) = seen
    assert edges.equal(first_edges) and not mask.equal(first_mask)


def test_graph_train_rows_leave_out_what_the_report_resumed():
    """train_runs' rows hold the metrics (the split, the method, the scores), not the per-layer, history nor resumed
    entries of the report, which the record keeps apart."""
    from fwdlearn.graphs.cli.train import GraphTrainConfig, train_runs

    row, = train_runs(GraphTrainConfig(data="karate", layers=1, hidden=8, epochs=2, quiet=True))
    assert row["split"] == 0 and "test_accuracy" in row and "method" in row
    assert not {"per_layer", "history", "resumed"} & set(row)


def test_a_later_split_s_checkpoint_of_seed_i_is_said_as_seed_0():
    """Split 1 of a --seed 0 run trains with seed 1: a checkpoint with that seed is said as --seed 0 (not left in the
    fingerprint's words as if no --seed gave it)."""
    from fwdlearn.fit import CheckpointMismatch, check_fingerprint
    from fwdlearn.graphs.cli.train import GraphTrainConfig, _in_flags

    with pytest.raises(CheckpointMismatch) as refused:
        check_fingerprint("r-split1.pt", {"fingerprint": {"model": {"method": "bp", "seed": 1}, "graph": "a" * 16}},
                          {"model": {"method": "bp", "seed": 3}, "graph": "a" * 16})
    said = str(_in_flags(refused.value, GraphTrainConfig(seed=2, splits=2), 1))
    assert said == ("the checkpoint r-split1.pt was made by a different run: --seed 0 (checkpoint) vs 2 (now). Resume "
                    "with --seed 0, or start a new run (another --name or --checkpoint)")


def test_one_run_of_a_public_split_is_taken_and_link_prediction_is_refused_a_node_split_first():
    """--split public --splits 1 of Cora is one run of its fixed split (no spread to misreport); --task link with
    --split public --splits 2 is refused for the node split it does not read, not for a spread it never reports."""
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs.cli.train import GraphTrainConfig, _check_method

    _check_method(GraphTrainConfig(data="cora", split="public", splits=1))
    with pytest.raises(UsageError) as refused:
        _check_method(GraphTrainConfig(data="cora", task="link", split="public", splits=2))
    assert str(refused.value).startswith("--split public chooses the node split, which --task link does not read")


def test_graph_train_refuses_a_checkpoint_that_is_its_saved_graph(tmp_path, capsys):
    """--checkpoint naming the file --data file:<path> reads would be overwritten by the first save: refused before
    any work, the file left as it was."""
    import torch

    from fwdlearn.graphs.data.datasets import load_graph

    graph = tmp_path / "g.pt"
    torch.save(load_graph("karate", split="random", seed=0), graph)
    before = graph.read_bytes()
    assert main(["graph", "train", "--data", f"file:{graph}", "--layers", "1", "--hidden", "8", "--epochs", "1",
                 "--quiet", "--checkpoint", str(graph), "--json", str(tmp_path / "r.json")]) == 2
    assert f"is the file --data {graph} reads" in capsys.readouterr().err
    assert graph.read_bytes() == before and not (tmp_path / "r.json").exists()


def test_the_graph_configs_defaults_and_bounds_are_those_their_help_names():
    """Left out, each flag is the default the docs' commands rely on; --splits takes 1 to 1000, --lr above 0."""
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs.cli.influence import InfluenceGraphConfig
    from fwdlearn.graphs.cli.train import GraphTrainConfig

    train = asdict(GraphTrainConfig())
    assert {k: train[k] for k in ("data", "task", "method", "conv", "layers", "hidden", "epochs", "lr", "weight_decay",
                                  "patience", "eval_every", "split", "splits")} == {
        "data": "cora", "task": "node", "method": "sf", "conv": "gcn", "layers": 4, "hidden": 128, "epochs": 300,
        "lr": 1e-3, "weight_decay": 5e-4, "patience": 100, "eval_every": 1, "split": "random", "splits": 1}
    influence = asdict(InfluenceGraphConfig())
    assert {k: influence[k] for k in ("data", "models", "layers", "hidden", "epochs", "lr", "patience", "max_hops",
                                      "samples", "variant", "jacobian", "hops")} == {
        "data": "synthetic-city:2500", "models": ["gcn"], "layers": 8, "hidden": 64, "epochs": 0, "lr": 3e-3,
        "patience": 50, "max_hops": 0, "samples": 500, "variant": "subgraph", "jacobian": "auto", "hops": 16}
    assert InfluenceGraphConfig(max_hops=0).max_hops == 0
    for config, message in ((dict(splits=0), "--splits must be >= 1, got 0"),
                            (dict(splits=1001), "--splits must be <= 1000, got 1001"),
                            (dict(lr=0.0), "--lr must be > 0, got 0.0")):
        with pytest.raises(UsageError) as refused:
            GraphTrainConfig(**config)
        assert str(refused.value) == message
    assert GraphTrainConfig(splits=1000).splits == 1000


def test_the_influence_bench_defaults_are_the_settings_of_the_docs_figures():
    """docs/benchmarks.md runs bench influence with --threads 1 --quiet --out and --overwrite: every setting left out
    is the default, so the defaults are the settings its record holds."""
    from fwdlearn.graphs.cli.influence import BenchInfluenceConfig

    saved = json.loads((DOCS / "influence-results-record.json").read_text())["config"]
    left_out = set(saved) - {"out", "overwrite", "threads", "quiet", "debug"}
    defaults = asdict(BenchInfluenceConfig())
    assert {key: defaults[key] for key in left_out} == {key: saved[key] for key in left_out}


def test_influence_graph_names_the_data_as_read_in_its_hops_refusal(capsys):
    """--data " karate" is karate: the refusal of --hops names it without the spaces typed around it."""
    assert main(["influence", "graph", "--data", " karate", "--hops", "3", "--quiet"]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error: --hops sets the eccentricity labels of city: and "
                                       "synthetic-city data; --data karate has labels of its own: leave it out\n")


def test_influence_graph_trains_each_model_from_the_same_seed(tmp_path, capsys):
    """Every model is trained and measured from --seed: an mlp's row is the same after a gcn as alone; the record keeps
    each curve, named <model>-<layers> in the summary, and the run says its plot."""
    flags = ["influence", "graph", "--data", "karate", "--layers", "2", "--hidden", "8", "--epochs", "3",
             "--samples", "5", "--quiet"]
    both, alone, plot = tmp_path / "b.json", tmp_path / "a.json", tmp_path / "p.png"
    assert main([*flags, "--models", "gcn", "mlp", "--json", str(both), "--plot", str(plot)]) == 0
    assert capsys.readouterr().out.endswith(f"plot: {plot}\nrecord: {both}\n")
    assert main([*flags, "--models", "mlp", "--json", str(alone)]) == 0
    assert "plot: " not in capsys.readouterr().out
    after, single = (json.loads(path.read_text()) for path in (both, alone))
    keep = ("R", "test_accuracy", "val_accuracy", "epochs_run", "curve")
    assert {k: after["metrics"][1][k] for k in keep} == {k: single["metrics"][0][k] for k in keep}
    assert list(after["summary"]["curves"]) == ["gcn-2", "mlp-2"]
    assert after["summary"]["curves"]["mlp-2"] == single["metrics"][0]["curve"]


def test_an_interrupt_of_one_split_or_of_a_run_without_checkpoints_names_no_split(tmp_path, monkeypatch, capsys):
    """Only a run of several splits with checkpoints says the split a Ctrl-C stopped and resumes with split 0's file:
    one split is the run, and train_runs without checkpoints has no file to resume with."""
    from fwdlearn.errors import TrainingInterrupted
    from fwdlearn.graphs.cli.train import GraphTrainConfig, train_runs

    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 3)
        assert main(_train_flags("--name", "one")) == 130
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fwdlearn: interrupted at step 3 of block 1 of 2; the last checkpoint is runs/one.pt (block "
                           "1, step 2): run the same command with --resume to continue"), line
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 11)  # split 1
        with pytest.raises(TrainingInterrupted) as stop:
            train_runs(GraphTrainConfig(data="karate", layers=2, hidden=8, epochs=4, patience=0, splits=2, quiet=True))
    assert "split" not in str(stop.value)


def test_a_layer_by_layer_checkpoint_of_another_depth_is_refused_as_its_layers_once(tmp_path, monkeypatch, capsys):
    """A layer-by-layer fit's fingerprint has its blocks besides model.layers, the same number: both are --layers,
    said once (not "blocks 2 (checkpoint) vs 3 (now)" beside it)."""
    monkeypatch.chdir(tmp_path)
    flags = ["graph", "train", "--data", "karate", "--hidden", "8", "--epochs", "2", "--quiet", "--name", "b"]
    assert main([*flags, "--layers", "2"]) == 0
    capsys.readouterr()
    assert main([*flags, "--layers", "3", "--resume"]) == 2
    assert capsys.readouterr().err == ("fwdlearn: error: the checkpoint runs/b.pt was made by a different run: --layers "
                                       "2 (checkpoint) vs 3 (now). Resume with --layers 2, or start a new run (another "
                                       "--name or --checkpoint)\n")


def test_a_checkpoint_of_another_graph_names_the_graph_once_in_the_fix(tmp_path, monkeypatch, capsys):
    """Another graph differs in its features and classes too (model.in_dim, model.num_classes): the fix names them as
    the graph and split they follow from, beside the flags to add, not as entries of the fingerprint."""
    monkeypatch.chdir(tmp_path)
    flags = ["graph", "train", "--layers", "1", "--epochs", "1", "--quiet", "--name", "g"]
    assert main([*flags, "--data", "karate", "--hidden", "8"]) == 0
    capsys.readouterr()
    assert main([*flags, "--data", "sbm", "--hidden", "16", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fwdlearn: error: the checkpoint runs/g.pt was made by a different run: --hidden 8 "
                          "(checkpoint) vs 16 (now); model.in_dim 34 (checkpoint) vs 32 (now); "), err
    assert err.endswith(". Resume with --hidden 8 and the graph and split it was made with, or start a new run "
                        "(another --name or --checkpoint)\n"), err


def test_influence_graph_on_a_rank_but_0_trains_and_measures_without_a_word(tmp_path, monkeypatch, capsys):
    """Under torchrun only rank 0 reports: another rank's fit and measurement show no progress (its bars would
    interleave with rank 0's), and it prints and writes nothing."""
    import fwdlearn.distributed as distributed
    import fwdlearn.graphs.influence.hop_influence as hop
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

    quiet, fit, measure = [], ForwardGNN.fit, hop.hop_influence

    def fitting(self, *args, **kwargs):
        quiet.append(kwargs["quiet"])
        return fit(self, *args, **kwargs)

    def measuring(*args, **kwargs):  # (measured as rank 0 would: one process holds every seed)
        quiet.append(kwargs["quiet"])
        with monkeypatch.context() as patch:
            patch.setattr(distributed, "rank", lambda: 0)
            return measure(*args, **kwargs)

    monkeypatch.setattr(ForwardGNN, "fit", fitting)
    monkeypatch.setattr(hop, "hop_influence", measuring)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    record = tmp_path / "r.json"
    assert main(["influence", "graph", "--data", "karate", "--layers", "2", "--hidden", "8", "--epochs", "2",
                 "--samples", "3", "--json", str(record)]) == 0
    assert quiet == [True, True] and capsys.readouterr() == ("", "") and not record.exists()


def test_a_width_a_conv_cannot_build_is_refused_in_the_flags_words_from_python_too():
    """check_conv_widths (train_runs and influence graph call it before any work) says gat's width as --hidden, the
    flag to change, not as the conv's hidden= argument."""
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs.cli.train import check_conv_widths

    check_conv_widths(["gcn", "gat"], 8)
    with pytest.raises(UsageError) as refused:
        check_conv_widths(["gcn", "gat"], 6)
    assert str(refused.value) == ("gat concatenates 4 heads, so its width must be a multiple of 4; got 6 (choose e.g. "
                                  "--hidden 4)")


def test_a_link_run_on_a_replaced_graph_file_is_not_told_of_a_node_split(tmp_path, monkeypatch, capsys):
    """--task link reads no node split: the refusal of a saved graph replaced by an older copy says the features or
    edges differ and offers no "or the run used another --split", which --task link refuses."""
    import os

    import torch
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    monkeypatch.chdir(tmp_path)
    generator = torch.Generator().manual_seed(0)
    x, edges = torch.randn(40, 5, generator=generator), torch.randint(0, 40, (2, 60), generator=generator)
    torch.save(Data(x=x, edge_index=to_undirected(edges, num_nodes=40)), "g.pt")
    run = ["graph", "train", "--data", "file:g.pt", "--task", "link", "--layers", "1", "--hidden", "8", "--epochs", "2",
           "--quiet", "--json", "r.json"]
    assert main(run) == 0
    capsys.readouterr()
    torch.save(Data(x=x, edge_index=to_undirected(edges[:, 2:], num_nodes=40)), "g.pt")
    written = (tmp_path / "r.pt").stat().st_mtime
    os.utime("g.pt", (written - 60, written - 60))  # (an older copy put in its place)
    assert main([*run, "--resume"]) == 2
    assert capsys.readouterr().err == (
        "fwdlearn: error: the checkpoint r.pt was trained on another graph than the one read from g.pt now (its "
        "features or edges differ): the file was replaced since (by a copy not modified after the checkpoint was "
        "written). To resume, restore the file and the flags the run was made with; to train on the graph as it is, "
        "start a new run (another --name or --checkpoint, or --overwrite to replace this one)\n")
