"""fwdlearn graph train, bench graph and quickstart end to end with tiny settings."""

import json

import pytest

from fwdlearn.cli import main
from fwdlearn.errors import UsageError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_graph_train_writes_record_and_table(tmp_path, capsys):
    path = tmp_path / "run.json"
    args = ["graph", "train", "--data", "karate", "--method", "sf", "--layers", "2", "--hidden", "8", "--epochs", "5",
            "--splits", "2", "--quiet", "--json", str(path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean ± std" in out and "test_accuracy" in out
    record = json.loads(path.read_text())
    assert record["job"] == "graph-train" and len(record["metrics"]) == 2
    assert "test_accuracy_mean" in record["summary"]
    assert main(args) != 0  # the record exists: refused before any work
    assert "--overwrite" in capsys.readouterr().err


def test_graph_train_link_task(tmp_path, capsys):
    path = tmp_path / "link.json"
    assert main(["graph", "train", "--data", "karate", "--task", "link", "--method", "ce", "--layers", "2",
                 "--hidden", "8", "--epochs", "3", "--quiet", "--json", str(path)]) == 0
    assert 0.0 <= json.loads(path.read_text())["summary"]["test_auc"] <= 1.0


def test_graph_train_link_task_defaults_to_a_link_method(tmp_path, capsys):
    """--task link without --method was refused as "--method 'sf' is not a link method" (sf, the node task's default,
    was never typed): each task has its own default, sf for nodes and ce for links."""
    from fwdlearn.graphs.cli.train import GraphTrainConfig

    path = tmp_path / "link.json"
    assert main(["graph", "train", "--data", "karate", "--task", "link", "--layers", "1", "--hidden", "8",
                 "--epochs", "2", "--quiet", "--json", str(path)]) == 0
    record = json.loads(path.read_text())
    assert record["config"]["method"] == "ce" and record["metrics"][0]["method"] == "ce"
    assert GraphTrainConfig().method == "sf" and GraphTrainConfig(task="link").method == "ce"
    assert GraphTrainConfig(task="link", method="bp").method == "bp"


def test_graph_train_refuses_a_node_method_for_links(tmp_path, capsys):
    try:
        status = main(["graph", "train", "--data", "karate", "--task", "link", "--method", "sf",
                       "--json", str(tmp_path / "x.json")])
    except SystemExit as exit:
        status, message = 1, str(exit)
    else:
        message = capsys.readouterr().err
    assert status != 0 and "not a link method" in message


def test_bench_graph_tiny(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "graph", "--data", "karate", "--depths", "1", "2", "--methods", "bp", "sf", "--splits", "1",
                 "--epochs", "3", "--hidden", "8", "--link-layers", "1", "--link-epochs", "2", "--quiet",
                 "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    methods = {(r["method"], r["layers"]) for r in result["rows"]}
    assert {("bp", 1), ("sf", 1), ("bp", 2), ("sf", 2), ("ce", 1)} <= methods
    sf2 = next(r for r in result["rows"] if r["method"] == "sf" and r["layers"] == 2)
    assert sf2["time_vs_bp"] > 0 and sf2["saved_vs_bp"] > 0
    assert "step_memory_vs_bp" in sf2 and "peak_memory_bytes" not in sf2  # (the peak carried earlier cells' memory)
    md = out.with_suffix(".md").read_text()
    assert "Claims checked in this run" in md and "fwdlearn" in md and "step memory / BP" in md
    assert "{config" not in md and "2 epochs per layer" in md  # (the notes are formatted)
    assert "Link prediction: 64/16/20 edge split" in md


def _interrupt_at(monkeypatch, call: int) -> None:
    """Ctrl-C at the ``call``-th training step of this process (every Trainer counts)."""
    from fwdlearn.fit import Trainer

    original, calls = Trainer._one_step, [0]

    def one_step(self, step, i, result):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return original(self, step, i, result)

    monkeypatch.setattr(Trainer, "_one_step", one_step)


@pytest.mark.parametrize("task,method", [("node", "sf"), ("node", "bp"), ("node", "sf-top2input"), ("link", "ce"),
                                         ("link", "bp")])
def test_an_interrupted_graph_fit_resumes_to_the_same_weights(task, method, tmp_path, monkeypatch):
    import torch

    from fwdlearn.errors import TrainingInterrupted
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs.data.datasets import load_graph
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN
    from fwdlearn.graphs.nn.linkpred import ForwardLinkPredictor

    data = load_graph("karate", split="random", seed=0)

    def fit(**saving):
        seed_everything(0)
        if task == "node":
            model = ForwardGNN(data.num_features, data.num_classes, hidden=8, layers=3, method=method)
            return model, model.fit(data, epochs=8, lr=0.01, patience=None, eval_every=2, quiet=True, **saving)
        model = ForwardLinkPredictor(data.num_features, hidden=8, layers=3, method=method)
        return model, model.fit(data, epochs=8, lr=0.01, patience=None, eval_every=2, quiet=True, seed=0, **saving)

    reference, expected = fit()
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 13 if method in ("sf", "ce") else 5)  # layer 2 of 3, or step 5 of 8
        with pytest.raises(TrainingInterrupted, match="the last checkpoint is .*c.pt"):
            fit(checkpoint=tmp_path / "c.pt")
    resumed, report = fit(checkpoint=tmp_path / "c.pt", resume=True)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))
    assert report.epochs_run == expected.epochs_run
    assert expected.resumed is None and report.resumed["changed"] == {}  # the report says it continued a checkpoint
    before = torch.load(tmp_path / "c.pt", weights_only=False)["seconds"]  # timed before the interruption ...
    _, again = fit(checkpoint=tmp_path / "c.pt", resume=True)  # ... and counted in a resumed run's time
    assert again.fit_seconds >= before > 0
    assert again.cost.saved_bytes_per_step == expected.cost.saved_bytes_per_step > 0  # no step ran: the saved one


@pytest.mark.parametrize("task", ["node", "link"])
def test_a_layer_by_layer_fit_resumes_a_checkpoint_named_from_home(task, tmp_path, monkeypatch):
    """checkpoint="~/c.pt": the Trainers read the file at the expanded path, but the layer-by-layer schedule looked
    for "~/c.pt" as written, found nothing, and block 1's Trainer resumed the file of the block that was training:
    block 2's weights were loaded into block 1 (widths alike: test accuracy 0.29 for the 1.0 of the run it
    continued), or the resume failed as a checkpoint that "does not fit this model"."""
    import torch

    from fwdlearn.errors import TrainingInterrupted
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs.data.datasets import load_graph
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN
    from fwdlearn.graphs.nn.linkpred import ForwardLinkPredictor

    monkeypatch.setenv("HOME", str(tmp_path))
    data = load_graph("karate", split="random", seed=0)

    def fit(**saving):
        seed_everything(0)
        if task == "node":  # (as wide as the features: block 2's weights fit block 1)
            model = ForwardGNN(data.num_features, data.num_classes, hidden=data.num_features, layers=3, method="sf")
            return model, model.fit(data, epochs=8, lr=0.01, patience=None, eval_every=2, quiet=True, **saving)
        model = ForwardLinkPredictor(data.num_features, hidden=data.num_features, layers=3, method="ce")
        return model, model.fit(data, epochs=8, lr=0.01, patience=None, eval_every=2, quiet=True, seed=0, **saving)

    reference, _ = fit()
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 13)  # block 2 of 3
        with pytest.raises(TrainingInterrupted):
            fit(checkpoint="~/c.pt")
    assert (tmp_path / "c.pt").is_file()
    resumed, report = fit(checkpoint="~/c.pt", resume=True)
    assert report.resumed["from_step"] == 4  # block 2's Trainer continued, not block 1's
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))


def test_an_interrupt_outside_a_training_loop_still_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C between two layers, or at a later split's first step (before its first save), said 'fwdlearn:
    interrupted' or '... before the first checkpoint (runs/cut-split1.pt) was written' and no more, although
    runs/cut.pt held the run so far and --resume continued it to the uninterrupted result."""
    from fwdlearn.schedules import LocalOptimizers

    monkeypatch.chdir(tmp_path)
    args = ["graph", "train", "--data", "karate", "--method", "sf", "--layers", "2", "--hidden", "8", "--epochs", "4",
            "--patience", "0", "--splits", "2", "--quiet"]
    assert main([*args, "--name", "whole"]) == 0
    whole = json.loads((tmp_path / "runs" / "whole.json").read_text())
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 9)  # split 1's first step: split 0 ran 2 blocks x 4 epochs
        assert main([*args, "--name", "cut"]) == 130
    line, = capsys.readouterr().err.strip().splitlines()
    assert line == ("fwdlearn: interrupted at step 1 of block 1 of 2, split 1, before the first checkpoint "
                    "(runs/cut-split1.pt) was written; runs/cut.pt holds the run so far: run the same command with "
                    "--resume to continue (and --checkpoint runs/cut.pt if it had no --name)")
    assert main([*args, "--name", "cut", "--resume"]) == 0
    cut = json.loads((tmp_path / "runs" / "cut.json").read_text())
    assert [row["test_accuracy"] for row in cut["metrics"]] == [row["test_accuracy"] for row in whole["metrics"]]

    original, made, stop_at = LocalOptimizers.__init__, [0], [0]

    def between_layers(self, *a, **k):  # Ctrl-C as block 1 (or 2: block 1 saved and finished) of split 0 is set up
        made[0] += 1
        if made[0] == stop_at[0]:
            raise KeyboardInterrupt
        original(self, *a, **k)

    capsys.readouterr()
    for name, more, at, said in (("new", [], 2, "; runs/new.pt holds the run so far: run the same command with "
                                                "--resume"),
                                 ("whole", ["--overwrite"], 1, "")):  # (before its first save: the file there is
        made[0], stop_at[0] = 0, at                                   # the earlier run's, not this one's)
        with monkeypatch.context() as patch:
            patch.setattr(LocalOptimizers, "__init__", between_layers)
            assert main([*args, "--name", name, *more]) == 130
        line, = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("fwdlearn: interrupted" + said) and (said or line == "fwdlearn: interrupted"), line


def test_an_interrupt_in_a_later_split_names_the_checkpoint_to_resume_with(tmp_path, monkeypatch, capsys):
    """A run without --name interrupted in split 1 said to resume with --checkpoint runs/<run>-split1.pt, split 1's
    own file, which the resume took as split 0's and refused as 'made by a different run' (seed 1 vs 0)."""
    monkeypatch.chdir(tmp_path)
    args = ["graph", "train", "--data", "karate", "--method", "sf", "--layers", "2", "--hidden", "8", "--epochs", "4",
            "--patience", "0", "--splits", "2", "--quiet"]
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 11)  # split 1, block 1, step 3
        assert main(args) == 130
    first, = (path for path in (tmp_path / "runs").glob("graph-train-*.pt") if "-split" not in path.name)
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fwdlearn: interrupted at step 3 of block 1 of 2, split 1; the last checkpoint is "
                           f"runs/{first.stem}-split1.pt (block 1, step 2): run the same command with --resume to "
                           f"continue (and --checkpoint runs/{first.name} if it had no --name"), line
    assert main([*args, "--resume", "--checkpoint", f"runs/{first.name}"]) == 0


def test_an_overwriting_run_resumed_after_an_interrupt_trains_its_later_splits_afresh(tmp_path, monkeypatch, capsys):
    """--overwrite left the earlier run's runs/w-split1.pt in place until split 1's first save: interrupted in split
    0 and resumed as the message says, split 1 was the earlier run's, finished at its old learning rate, and reported
    as this run's (Cora: 0.5129 ± 0.2196 for the 0.7334 ± 0.0009 of an uninterrupted run)."""
    monkeypatch.chdir(tmp_path)
    args = ["graph", "train", "--data", "karate", "--method", "sf", "--layers", "2", "--hidden", "8", "--epochs", "4",
            "--patience", "0", "--splits", "2", "--quiet"]
    assert main([*args, "--lr", "0.001", "--name", "w"]) == 0
    assert main([*args, "--lr", "0.05", "--name", "fresh"]) == 0
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 2)  # split 0, block 1
        assert main([*args, "--lr", "0.05", "--name", "w", "--overwrite"]) == 130
    assert not (tmp_path / "runs" / "w-split1.pt").exists()
    capsys.readouterr()
    assert main([*args, "--lr", "0.05", "--name", "w", "--resume"]) == 0
    assert "nothing is left to train" not in capsys.readouterr().err
    record, fresh = (json.loads((tmp_path / "runs" / f"{name}.json").read_text()) for name in ("w", "fresh"))
    assert list(record["summary"]["resumed"]) == ["split 0"]  # split 1 trained afresh, at this run's rate
    assert [row["history"] for row in record["metrics"]] == [row["history"] for row in fresh["metrics"]]


def test_several_runs_of_a_public_planetoid_split_are_refused_however_the_name_is_spelled():
    """--data " cora" (or "Cora ") is Cora to load_graph, but the refusal compared the name unstripped and let
    --split public --splits 2 report the spread over model seeds as the spread over splits."""
    from fwdlearn.graphs.cli.train import GraphTrainConfig, train_runs

    for name in (" cora", "Cora ", "CiteSeer"):
        with pytest.raises(UsageError, match="--split public is one fixed split of"):
            train_runs(GraphTrainConfig(data=name, split="public", splits=2, epochs=1, layers=1, hidden=4, quiet=True))


def test_several_runs_of_the_public_split_of_a_city_network_are_refused(tmp_path, monkeypatch):
    """PyG's CityNetwork ships one fixed split, as Planetoid does; --split public --splits 3 went on to load it (and
    would have reported the spread over model seeds as the spread over splits)."""
    from fwdlearn.graphs.cli.train import GraphTrainConfig, train_runs

    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path))
    with pytest.raises(UsageError, match="--split public is one fixed split of citynetwork:paris: --splits 3"):
        train_runs(GraphTrainConfig(data="citynetwork:paris", split="public", splits=3, epochs=1, quiet=True))


def test_graph_train_keeps_a_checkpoint_per_split_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["graph", "train", "--data", "karate", "--method", "sf", "--layers", "2", "--hidden", "8", "--epochs", "4",
            "--patience", "0", "--splits", "2", "--quiet"]
    assert main([*args, "--name", "whole"]) == 0
    whole = json.loads((tmp_path / "runs" / "whole.json").read_text())
    assert set(whole["files"]) == {"checkpoint", "checkpoint split 1"}
    assert (tmp_path / "runs" / "whole.pt").exists() and (tmp_path / "runs" / "whole-split1.pt").exists()
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 11)  # split 1, its second layer
        assert main([*args, "--name", "cut"]) == 130
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fwdlearn: interrupted at step 3 of block 1 of 2, split 1; the last checkpoint is "
                           "runs/cut-split1.pt (block 1, step 2)")
    one = [*args[:args.index("--splits") + 1], "1", *args[args.index("--splits") + 2:]]
    assert main([*one, "--name", "cut", "--resume"]) == 2  # it finished, recorded as 1 split, split 1 half-trained
    assert ("runs/cut-split1.pt is split 1's checkpoint of this run: it has at least 2 splits; resume with --splits 2"
            in capsys.readouterr().err)
    assert main([*args, "--name", "cut", "--resume"]) == 0
    cut = json.loads((tmp_path / "runs" / "cut.json").read_text())
    assert [row["test_accuracy"] for row in cut["metrics"]] == [row["test_accuracy"] for row in whole["metrics"]]
    assert cut["summary"]["test_accuracy_mean"] == whole["summary"]["test_accuracy_mean"]
    assert "resumed" not in whole["summary"] and cut["summary"]["resumed"]["split 1"]["from_step"] == 2
    capsys.readouterr()  # another width: refused by its fingerprint before any frozen layer is loaded
    wider = [*args[:args.index("--hidden") + 1], "16", *args[args.index("--hidden") + 2:]]
    assert main([*wider, "--name", "cut", "--resume"]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert "was made by a different run: --hidden 8 (checkpoint) vs 16 (now). Resume with --hidden 8, or" in line


def test_graph_train_s_resume_refusal_says_the_flags_and_they_resume(tmp_path, monkeypatch, capsys):
    """A checkpoint made with other settings was refused in the fingerprint's words ("model.method 'local:prototype'
    (checkpoint) vs 'bp' (now); model.hidden 8 (checkpoint) vs 16 (now); model.seed 3 ... Resume with the settings and
    data it was made with"): it says the flags (the method as --method names it) and, as the fix, the flags to add;
    added to the command, they resume it. The graph keeps its words."""
    import re

    monkeypatch.chdir(tmp_path)
    args = ["graph", "train", "--data", "karate", "--layers", "2", "--hidden", "8", "--epochs", "2", "--patience", "0",
            "--seed", "3", "--quiet", "--name", "r"]
    assert main(args) == 0
    capsys.readouterr()
    other = [*args, "--resume", "--method", "bp", "--hidden", "16", "--conv", "sage", "--seed", "4"]
    assert main(other) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fwdlearn: error: the checkpoint runs/r.pt was made by a different run: --method sf "
                           "(checkpoint) vs bp (now); --conv gcn (checkpoint) vs sage (now); --hidden 8 (checkpoint) vs "
                           "16 (now); --seed 3 (checkpoint) vs 4 (now); graph '"), line
    assert line.endswith("Resume with --method sf --conv gcn --hidden 8 --seed 3 and the graph and split it was made "
                         "with, or start a new run (another --name or --checkpoint)"), line
    fix = re.search(r"Resume with (--.*?) and the graph", line)[1].split()
    assert main([*other, *fix]) == 0
    assert json.loads((tmp_path / "runs" / "r.json").read_text())["summary"]["resumed"]["split 3"]["from_step"] == 2


def test_a_later_split_s_resume_refusal_says_the_seed_of_the_run():
    """Split i trains with --seed + i: its checkpoint's seed is said as the --seed that gives it (a link predictor's
    seed is the fit's, a node model's the model's), the method by the name --method takes."""
    from fwdlearn.fit import CheckpointMismatch, check_fingerprint
    from fwdlearn.graphs.cli.train import GraphTrainConfig, _in_flags

    link = {"model": {"method": "local:ce", "hidden": 8}, "graph": "a" * 16, "seed": 5}
    with pytest.raises(CheckpointMismatch) as refused:
        check_fingerprint("r-split1.pt", {"fingerprint": link},
                          {"model": {"method": "local:ff", "hidden": 8}, "graph": "a" * 16, "seed": 8})
    said = str(_in_flags(refused.value, GraphTrainConfig(task="link", seed=7, splits=2), 1))
    assert said == ("the checkpoint r-split1.pt was made by a different run: --method ce (checkpoint) vs ff (now); "
                    "--seed 4 (checkpoint) vs 7 (now). Resume with --method ce --seed 4, or start a new run (another "
                    "--name or --checkpoint)")
    node = {"model": {"method": "local:prototype", "seed": 0}, "graph": "a" * 16}
    with pytest.raises(CheckpointMismatch) as refused:  # (a seed below the split's: no --seed gives it)
        check_fingerprint("r-split1.pt", {"fingerprint": node}, {"model": {"method": "bp", "seed": 2}, "graph": "a" * 16})
    said = str(_in_flags(refused.value, GraphTrainConfig(seed=1, splits=2), 1))
    assert "--method sf (checkpoint) vs bp (now); model.seed 0 (checkpoint) vs 2 (now). Resume with --method sf and " \
           "the model.seed it was made with" in said


def test_bench_graph_dfa_rows_use_their_learning_rate(tmp_path, capsys):
    out = tmp_path / "bench-dfa"
    assert main(["bench", "graph", "--data", "karate", "--depths", "2", "--methods", "dfa", "dfa:gaussian", "--splits",
                 "1", "--epochs", "3", "--hidden", "8", "--link-layers", "0", "--dfa-lr", "0.05", "--quiet",
                 "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [(r["method"], r["layers"]) for r in result["rows"]] == [("bp", 2), ("dfa", 2), ("dfa:gaussian", 2)]
    assert all(r["saved_vs_bp"] > 0 for r in result["rows"])
    md = out.with_suffix(".md").read_text()
    assert "DFA 0.05" in md and "Link prediction" not in md  # (the notes described the link part it did not run)


def test_the_cli_offers_every_registered_conv_and_method(tmp_path):
    """The choices are the registries' names, read when the parser is built: a conv registered later is accepted by
    every command that takes one (they were tuples spelled out in the CLI modules, refusing it)."""
    from fwdlearn.cli import build_parser
    from fwdlearn.graphs.methods import method_names
    from fwdlearn.graphs.registries import CONV_KINDS, LINK_METHODS

    commands = [("graph", "train"), ("influence", "graph"), ("bench", "graph")]
    CONV_KINDS.register("gcn2", CONV_KINDS.get("gcn"))
    try:
        parser = build_parser(commands)
        assert parser.parse_args(["graph", "train", "--conv", "gcn2"]).conv == "gcn2"
        assert parser.parse_args(["influence", "graph", "--models", "gcn", "gcn2"]).models == ["gcn", "gcn2"]
        args = parser.parse_args(["bench", "graph", "--conv", "gcn2", "--methods", *method_names(),
                                  "--link-methods", *LINK_METHODS])
        assert (args.conv, args.methods, args.link_methods) == ("gcn2", method_names(), list(LINK_METHODS))
        assert main(["graph", "train", "--data", "karate", "--conv", "gcn2", "--layers", "1", "--hidden", "8",
                     "--epochs", "1", "--quiet", "--json", str(tmp_path / "gcn2.json")]) == 0
        record = json.loads((tmp_path / "gcn2.json").read_text())
        assert record["config"]["conv"] == "gcn2" and record["metrics"][0]["conv"] == "gcn2"  # (built, not echoed)
    finally:
        CONV_KINDS.unregister("gcn2")
    with pytest.raises(SystemExit):
        build_parser(commands).parse_args(["graph", "train", "--conv", "gcn2"])


def test_graph_train_takes_a_link_method_by_its_rule(tmp_path, capsys):
    """ForwardLinkPredictor(method="local:ce") was accepted but --method local:ce refused: one resolver now."""
    path = tmp_path / "link.json"
    assert main(["graph", "train", "--data", "karate", "--task", "link", "--method", "local:ce", "--layers", "1",
                 "--hidden", "8", "--epochs", "2", "--quiet", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["metrics"][0]["method"] == "ce"
    assert "link: ce, ff, bp (or their rules)" in " ".join(_help(["graph", "train"]).split())


def _help(words):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*words, "--help"])
    return out.getvalue()


def test_bench_graph_link_rows_on_a_graph_without_a_public_split(tmp_path):
    """The link stage used the public split: on sbm:* (and amazon, coauthor, citationfull) it failed after the
    whole node sweep, writing nothing."""
    out = tmp_path / "sbm"
    assert main(["bench", "graph", "--data", "sbm:60", "--depths", "1", "--methods", "sf", "--splits", "1",
                 "--epochs", "2", "--hidden", "8", "--link-layers", "1", "--link-epochs", "2", "--quiet",
                 "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert any(r["method"] == "ce" for r in rows)


def test_an_interrupt_before_a_blocks_first_save_names_the_finished_block_below(tmp_path, monkeypatch, capsys):
    """It said 'before the first checkpoint was written' although the file held block 1, finished; resuming then
    printed 'nothing is left to train' and trained blocks 2 and 3."""
    from fwdlearn.errors import TrainingInterrupted
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs.data.datasets import load_graph
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

    data = load_graph("karate", split="random", seed=0)

    def fit(**saving):
        seed_everything(0)
        model = ForwardGNN(data.num_features, data.num_classes, hidden=8, layers=3, method="sf")
        return model.fit(data, epochs=4, lr=0.01, patience=None, eval_every=2, quiet=True,
                         checkpoint=tmp_path / "c.pt", **saving)

    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5)  # block 2's first epoch: block 1 ran epochs 1..4
        with pytest.raises(TrainingInterrupted, match=r"interrupted at step 1 of block 2 of 3; the last checkpoint is "
                                                      r".*c.pt \(block 1, finished\): run the same command with "
                                                      r"--resume"):
            fit()
    capsys.readouterr()
    assert fit(resume=True).epochs_run == 12
    assert "nothing is left to train" not in capsys.readouterr().err


def test_a_graph_checkpoint_is_refused_by_a_model_with_other_method_options(tmp_path):
    """The seed draws the virtual nodes' features and tau / update change the method: the fingerprint held neither."""
    from fwdlearn.graphs.data.datasets import load_graph
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

    data = load_graph("karate", split="random", seed=0)
    ForwardGNN(data.num_features, data.num_classes, hidden=8, layers=2, method="sf-top2input").fit(
        data, epochs=2, quiet=True, checkpoint=tmp_path / "c.pt")
    other = ForwardGNN(data.num_features, data.num_classes, hidden=8, layers=2, method="sf-top2input", tau=0.1,
                       seed=7, update="alternate")
    with pytest.raises(UsageError, match=r"model.seed 0 \(checkpoint\) vs 7 \(now\); model.tau 1.0 \(checkpoint\) vs "
                                         r"0.1 \(now\); model.update 'sync' \(checkpoint\) vs 'alternate' \(now\)"):
        other.fit(data, epochs=4, quiet=True, checkpoint=tmp_path / "c.pt", resume=True)


def test_graph_train_splits_keep_their_checkpoints_apart_from_other_runs(tmp_path, monkeypatch, capsys):
    """An --overwrite run with fewer splits left the earlier run's later split checkpoints, which a later --resume
    with more splits continued as its own; a --json naming a split's checkpoint was found only after training;
    --splits over Cora's one public split reported model seeds' spread as the splits'."""
    monkeypatch.chdir(tmp_path)
    base = ["graph", "train", "--data", "karate", "--layers", "1", "--hidden", "4", "--epochs", "1", "--quiet",
            "--name", "mix"]
    assert main([*base, "--splits", "3"]) == 0
    assert main([*base, "--splits", "2", "--overwrite"]) == 0
    assert not (tmp_path / "runs" / "mix-split2.pt").exists()  # removed with the run it belonged to
    assert main([*base, "--splits", "3"]) == 2  # (no --overwrite): refused, as the first checkpoint is
    assert main(["graph", "train", "--data", "karate", "--layers", "1", "--epochs", "1", "--quiet", "--name", "col",
                 "--splits", "2", "--json", "runs/col-split1.pt"]) == 2
    assert "--json and --name both name runs/col-split1.pt" in capsys.readouterr().err  # (its checkpoints: --name's)
    assert not (tmp_path / "runs" / "col.pt").exists()  # refused before any training
    assert main(["graph", "train", "--data", "cora", "--split", "public", "--splits", "2", "--quiet"]) == 2  # (2: the smallest refused)
    assert "--split public is one fixed split of cora" in capsys.readouterr().err


def test_bench_graph_takes_every_spelling_graph_train_takes(tmp_path, capsys):
    """--methods had the short names as its choices, so local:prototype (what graph train --method takes) was refused;
    now any spelling is read, and the rows (and the claims, keyed by ``sf``) carry the short name."""
    out = tmp_path / "spellings"
    assert main(["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "local:prototype", "BACKPROP",
                 "--splits", "1", "--epochs", "2", "--hidden", "8", "--link-layers", "1", "--link-epochs", "1",
                 "--link-methods", "local:ce", "--quiet", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["method"], r["layers"]) for r in rows] == [("bp", 1), ("sf", 1), ("bp", 1), ("ce", 1)]
    assert "sf fit time / BP fit time < 1: 1 layers" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("words,message", [
    (["--methods", "sf", "local:prototype"],
     "--methods names the method sf more than once (sf, local:prototype); give each once"),
    (["--methods", "nope"], "--methods: unknown graph method 'nope'; choose one of sf, sf-top2input"),
    (["--link-methods", "ce", "LOCAL:CE"],
     "--link-methods names the method ce more than once (ce, LOCAL:CE); give each once"),
])
def test_bench_graph_refuses_an_unknown_or_repeated_method_before_any_work(tmp_path, capsys, words, message):
    out = tmp_path / "refused"
    assert main(["bench", "graph", "--data", "karate", *words, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # (nothing written)


def test_bench_graph_learning_rate_follows_the_method_not_its_spelling():
    """ff-la got --ff-lr but local:ff:la, FF-LA and local:symba:la (the same methods) got --lr: the choice compared
    the spelling with a list of aliases."""
    from fwdlearn.graphs.cli.bench import BenchGraphConfig, _learning_rate

    config = BenchGraphConfig(lr=0.004, ff_lr=0.02, dfa_lr=0.03)
    for method in ("ff-la", "local:ff:la", "FF-LA", " ff-vn", "local:ff:vn", "ff-symba", "local:symba:la"):
        assert _learning_rate(config, method) == 0.02, method
    for method in ("dfa", "DFA:gaussian", "dfa:orthogonal"):
        assert _learning_rate(config, method) == 0.03, method
    for method in ("sf", "local:prototype", "sf-top2input", "local:prototype:top2loss", "bp", "backprop"):
        assert _learning_rate(config, method) == 0.004, method


def test_bench_graph_help_says_which_methods_lr_sets_and_patience_in_what():
    """--help said --lr set "the forward methods", yet the goodness and DFA methods (forward methods too) train at
    --ff-lr and --dfa-lr; and --patience gave no unit, yet it counts evaluations, one every --eval-every epochs (the
    docs' --eval-every 5 --patience 10 waits 50 epochs)."""
    import argparse

    from fwdlearn.config import add_dataclass_arguments
    from fwdlearn.graphs.cli.bench import BenchGraphConfig

    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, BenchGraphConfig)
    helps = {a.dest: a.help for a in parser._actions}
    assert "neither goodness nor DFA methods" in helps["lr"] and "--ff-lr and --dfa-lr" in helps["lr"]
    assert "in evaluations, one every --eval-every epochs" in helps["patience"]


def test_a_graph_config_built_in_python_is_checked_as_the_cli_checks_it():
    from fwdlearn.errors import UsageError
    from fwdlearn.graphs.cli.train import GraphTrainConfig, train_runs

    with pytest.raises(UsageError, match="--split public is one fixed split of cora: --splits 2"):
        train_runs(GraphTrainConfig(data="cora", split="public", splits=2, epochs=1, layers=1, hidden=4, quiet=True))
    with pytest.raises(UsageError, match="--method 'sf' is not a link method"):
        train_runs(GraphTrainConfig(data="karate", task="link", method="sf", epochs=1, quiet=True))


def test_a_node_split_is_refused_for_link_prediction(capsys):
    """--split public with --task link was ignored (the edges are split from --seed), yet failed on sbm with "sbm has
    no public split"."""
    status = main(["graph", "train", "--data", "sbm", "--task", "link", "--method", "ce", "--split", "public",
                   "--epochs", "1", "--quiet"])
    assert status == 2
    assert ("--split public chooses the node split, which --task link does not read; it splits the edges itself "
            "(drawn from --seed): leave --split out") in capsys.readouterr().err


def test_a_checkpoint_of_another_task_is_refused_naming_its_task(tmp_path, monkeypatch, capsys):
    """A --task link checkpoint resumed with --task node was refused as "model.method 'local:ce' (checkpoint) vs
    'local:prototype' (now)", naming no flag: its method is said as the task and method that resume it."""
    monkeypatch.chdir(tmp_path)
    flags = ["graph", "train", "--data", "karate", "--layers", "1", "--hidden", "8", "--epochs", "2", "--quiet",
             "--name", "lk"]
    assert main([*flags, "--task", "link"]) == 0
    assert main([*flags, "--task", "node", "--resume", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert ("the checkpoint runs/lk.pt was made by a different run: --task link --method ce (checkpoint) vs --method "
            "sf (now)") in err and "Resume with --task link --method ce" in err


def test_a_bp_checkpoint_of_the_other_task_is_refused_as_that_task_s(tmp_path, monkeypatch, capsys):
    """bp trains both tasks: a --task node bp checkpoint resumed with --task link --method bp was refused as
    "model.theta not recorded (checkpoint: an older fwdlearn) vs 2.0 (now)", blaming a version that did not write
    it."""
    monkeypatch.chdir(tmp_path)
    flags = ["graph", "train", "--data", "karate", "--layers", "1", "--hidden", "8", "--epochs", "2", "--quiet",
             "--method", "bp"]
    assert main([*flags, "--name", "n"]) == 0 and main([*flags, "--task", "link", "--name", "l"]) == 0
    capsys.readouterr()
    assert main([*flags, "--task", "link", "--name", "n", "--resume"]) == 2
    assert main([*flags, "--task", "node", "--name", "l", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "older fwdlearn" not in err
    assert ("the checkpoint runs/n.pt was made by another kind of run: its model has num_classes, seed, this --task "
            "link run's theta. It is another task's: resume it with the --task it was made with (--task node), or "
            "start a new run (another --name or --checkpoint)") in err
    assert ("the checkpoint runs/l.pt was made by another kind of run: its model has theta, this --task node run's "
            "num_classes, seed. It is another task's: resume it with the --task it was made with (--task link)") in err


def test_bench_graph_notes_spend_the_epoch_budget_as_each_method_does(tmp_path, capsys):
    """The notes and --epochs' help said 'per layer for the layer-by-layer methods and in total for BP and the
    top-down methods': a run of dfa (in total, as BP) read as trained per layer; a run without sf left the time claim
    out, where every other claim it did not measure says so."""
    out = tmp_path / "budget"
    assert main(["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "dfa", "ff-la", "--splits", "1",
                 "--epochs", "2", "--hidden", "4", "--link-layers", "0", "--quiet", "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "epoch budget 2 per layer for ff-la and in total for bp, dfa, early-stopping" in md
    assert "- sf fit time / BP fit time < 1: not measured in this run" in md
    from fwdlearn.graphs.cli.bench import BenchGraphConfig
    from dataclasses import fields

    help_ = next(f for f in fields(BenchGraphConfig) if f.name == "epochs").metadata["help"]
    assert "in total (BP, DFA" in help_


def test_a_bench_never_replaces_another_commands_run_record(tmp_path, monkeypatch, capsys):
    """bench graph --name foo writes its results to runs/foo.json, the record of 'graph train --name foo': refused
    without --overwrite ('pass --overwrite'), then replaced with it, leaving runs/foo.pt without its record."""
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "train", "--data", "karate", "--method", "sf", "--layers", "1", "--hidden", "4", "--epochs",
                 "1", "--splits", "1", "--quiet", "--name", "foo"]) == 0
    record = (tmp_path / "runs" / "foo.json").read_text()
    bench = ["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "sf", "--splits", "1", "--epochs",
             "1", "--hidden", "4", "--link-layers", "0", "--quiet"]
    for extra in ([], ["--overwrite"]):
        assert main([*bench, "--name", "foo", *extra]) == 2
        assert ("runs/foo.json is the run record of a 'graph-train' run, not a bench's results; --name foo would "
                "replace it" in capsys.readouterr().err)
    assert main([*bench, "--out", "runs/foo", "--overwrite"]) == 2
    assert "give the bench another --out" in capsys.readouterr().err
    assert (tmp_path / "runs" / "foo.json").read_text() == record and not (tmp_path / "runs" / "foo.md").exists()
    assert main([*bench, "--name", "bar"]) == 0 and main([*bench, "--name", "bar", "--overwrite"]) == 0  # its own


def test_a_bench_with_its_record_moved_removes_only_an_earlier_record_of_its_results(tmp_path, monkeypatch):
    """bench graph --name foo --json elsewhere --overwrite removed runs/foo-record.json as 'an earlier run's record of
    the results replaced' -- also where that file was graph train --name foo-record's run record, never checked,
    leaving runs/foo-record.pt without it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "foo-record.pt").write_bytes(b"")  # (as graph train --name foo-record leaves them)
    record = json.dumps({"job": "graph-train", "files": {"checkpoint": "runs/foo-record.pt"}, "cwd": str(tmp_path)})
    (tmp_path / "runs" / "foo-record.json").write_text(record)
    bench = ["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "sf", "--splits", "1", "--epochs",
             "1", "--hidden", "4", "--link-layers", "0", "--quiet", "--overwrite"]
    assert main([*bench, "--name", "foo", "--json", "runs/mine.json"]) == 0
    assert (tmp_path / "runs" / "foo-record.json").read_text() == record
    assert main([*bench, "--name", "bar"]) == 0  # a bench's own earlier record of the results it replaces does go
    assert main([*bench, "--name", "bar", "--json", "runs/bar-moved.json"]) == 0
    assert not (tmp_path / "runs" / "bar-record.json").exists()


@pytest.mark.parametrize("words,message", [
    (["--link-layers", "0", "--link-epochs", "5", "--link-lr", "0.1"],
     "--link-epochs, --link-lr set the link-prediction rows, which --link-layers 0 skips: add --link-layers N, or "
     "leave them out"),
    (["--link-layers", "0", "--link-methods", "ce"],
     "--link-methods sets the link-prediction rows, which --link-layers 0 skips"),
    (["--link-layers", "1", "--link-methods", "bp", "--link-lr", "0.1"],
     "--link-lr sets the learning rate of the forward link methods, and --link-methods names only bp"),
    (["--link-layers", "0", "--ff-lr", "0.1"],
     "--ff-lr sets the learning rate of the goodness methods (ff-la, ff-vn, ff-symba), and --methods bp sf names none "
     "of them: add one to --methods, or leave --ff-lr out"),
    (["--link-layers", "0", "--dfa-lr", "0.1"], "--dfa-lr sets the learning rate of the DFA methods"),
    (["--link-layers", "0", "--methods", "ff-la", "--lr", "0.1"], "--lr sets the learning rate of the forward methods"),
])
def test_bench_graph_refuses_a_flag_its_run_would_ignore(tmp_path, capsys, words, message):
    """--link-layers 0 --link-epochs 5 (or --ff-lr without a goodness method) ran, training nothing the flag set, and
    the record and the notes named the setting as if it had."""
    base = ["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "sf", "--splits", "1", "--epochs", "1",
            "--hidden", "4", "--quiet", "--out", str(tmp_path / "ignored")]
    words = [*base[:base.index("--methods")], *base[base.index("--methods") + 2:], *words] \
        if "--methods" in words else [*base, *words]
    assert main(words) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # (nothing written)


def test_bench_graph_time_claim_below_one_is_not_met_on_it():
    """'sf fit time / BP fit time < 1' read '1.00 -> met' for a ratio a hair below 1 (printed on the threshold) and
    '1.00 -> MISSED' for 1.0: the same figure beside both verdicts."""
    from fwdlearn.graphs.cli.bench import _checks

    for time in (1 - 1e-12, 1.0, 1 + 1e-12):
        summary = {("sf", 2): {"acc": 0.5, "saved": 1, "time": time}, ("bp", 2): {"acc": 0.5, "saved": 1, "time": 1.0}}
        assert _checks(summary, {})[3] == "- sf fit time / BP fit time < 1: 2 layers 1.00 -> MISSED", time
    summary = {("sf", 2): {"acc": 0.5, "saved": 1, "time": 0.996}, ("bp", 2): {"acc": 0.5, "saved": 1, "time": 1.0}}
    assert _checks(summary, {})[3] == "- sf fit time / BP fit time < 1: 2 layers 0.996 -> met"


def test_bench_graph_reads_its_graph_in_one_spelling_and_records_the_table_names(tmp_path, capsys):
    """--data ' Karate' (or ' Cora') was taken as typed: the claims said their Cora targets did not apply to Cora; the
    record's rows named sf by its rule (local:prototype) where the table and the summary said sf; the notes did not say
    which std or over what."""
    out = tmp_path / "spelled"
    assert main(["bench", "graph", "--data", " Karate", "--depths", "1", "--methods", "sf", "--splits", "2",
                 "--epochs", "1", "--hidden", "4", "--link-layers", "0", "--quiet", "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert md.startswith("### ForwardGNN vs BP on karate (gcn) by depth") and "this run: karate with gcn" in md
    assert "over the 2 splits: accuracy mean ± population standard deviation" in md
    record = json.loads((tmp_path / "spelled-record.json").read_text())
    assert record["config"]["data"] == "karate"
    assert [(m["method"], m["rule"]) for m in record["metrics"]] == [("bp", "bp")] * 2 + [("sf", "local:prototype")] * 2


def test_a_warning_met_in_every_split_is_shown_once(tmp_path, capsys):
    """A DFA fit that learns nothing warns with its own numbers (the lowest loss, the prior's): with --splits 3 the
    same long warning was printed three times, naming no split. It is shown once, then one line names the splits that
    met it again."""
    assert main(["graph", "train", "--data", "karate", "--method", "dfa", "--layers", "2", "--hidden", "4", "--epochs",
                 "20", "--patience", "0", "--lr", "1e-6", "--splits", "3", "--quiet", "--json",
                 str(tmp_path / "d.json")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if "the training loss never fell" in line]) == 1, err
    assert err[-1].startswith("fwdlearn: warning: split 1, split 2 met the warning above again (\"dfa gcn-2: in 20 "
                              "epochs the training loss"), err
    assert len(err) == 2


def test_a_second_situation_of_one_cause_within_a_split_is_shown():
    """OncePerCause hid every warning of a cause shown before, also within the part that showed it: a split's second
    situation (another layer's, its own numbers) was lost, and with one split the summary said "split 0 met the
    warning above again". Only a later split's is hidden."""
    import warnings

    from fwdlearn.errors import OncePerCause, warn

    once = OncePerCause()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        for split in range(2):
            with once.part(f"split {split}"):
                warn("layer 1 of 4: its output holds 12 NaN entries")
                warn("layer 3 of 4: its output holds 40 NaN entries")
        once.summary()
    assert [str(w.message)[:24] for w in shown] == ["layer 1 of 4: its output", "layer 3 of 4: its output",
                                                    "split 1 met the warning "]
    once = OncePerCause()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        with once.part("split 0"):
            warn("layer 1 of 4: its output holds 12 NaN entries")
            warn("layer 3 of 4: its output holds 40 NaN entries")
        once.summary()
    assert len(shown) == 2 and "met the warning above again" not in str(shown[-1].message)


def test_a_part_that_reads_what_every_part_reads_shows_its_warning_once_and_names_no_part():
    """The graph loaded for each split warns about the file (its directed edges), the same in every split: a part
    marked alike shows it once, hides the later parts' repeats (also under an "always" filter) and leaves them out of
    the summary, which named the splits as if each had met a cause of its own."""
    import warnings

    from fwdlearn.errors import OncePerCause, warn

    once = OncePerCause()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        for split in range(3):
            with once.part(f"the graph of split {split}", alike=True):
                warn("g.pt: data.edge_index is directed (60 of its 60 edges have no reverse edge)")
            with once.part(f"split {split}"):
                warn(f"dfa: the training loss never fell below {split + 1}.5")
        once.summary()
    assert [str(w.message)[:20] for w in shown] == ["g.pt: data.edge_inde", "dfa: the training lo",
                                                    "split 1, split 2 met"]


@pytest.mark.parametrize("method", ["sf", "bp"])
def test_a_graph_fit_in_a_log_counts_its_epochs_per_layer(method, capsys):
    """In a job's log each bar keeps its last state on a line of its own, counted in epochs: a layer-by-layer fit one
    bar per layer (epochs per layer), bp one bar (epochs in total); the log kept 0/5 for each, the unit 'it'."""
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs import ForwardGNN, load_graph

    data = load_graph("karate", split="random", seed=0)
    seed_everything(0)
    ForwardGNN(data.num_features, data.num_classes, hidden=4, layers=3, method=method).fit(
        data, epochs=5, patience=None, quiet=False)
    lines = [line.split("\r")[-1] for line in capsys.readouterr().err.split("\n")[:-1]]  # (each line's last redraw)
    assert len(lines) == (3 if method == "sf" else 1), lines
    assert all(" 5/5 [" in line and "epoch/s" in line for line in lines), lines


def test_bench_influence_interrupted_after_its_plot_leaves_no_plot_to_refuse_the_re_run(tmp_path, monkeypatch,
                                                                                       capsys):
    """bench influence drew <out>.png, then wrote its results and record: a failure or Ctrl-C there left the plot
    alone, and the re-run was refused for it ("<out>.png already exists ... --overwrite"). Its progress stays: the
    re-run with --resume reads every piece."""
    from fwdlearn.records import RunRecord

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    args = ["bench", "influence", "--graphs", "karate", "--depths", "1", "--samples", "2", "--pyg-samples", "1",
            "--repeats", "1", "--epochs", "0", "--hidden", "8", "--quiet", "--out", str(tmp_path / "i")]
    save_with = RunRecord.save_with
    monkeypatch.setattr(RunRecord, "save_with", interrupted)
    assert main(args) == 130
    assert [p.name for p in tmp_path.iterdir()] == ["i-progress.pt"]  # (i.png was left)
    monkeypatch.setattr(RunRecord, "save_with", save_with)
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i-record.json", "i.json", "i.md", "i.png"]


def test_graph_train_hands_each_flag_to_the_task_and_draws_a_split_per_seed(tmp_path, monkeypatch):
    """Every training flag reaches the task's train (--lr and --weight-decay swapped, or --eval-every dropped, left
    the tests passing), and each of --splits N trains on the split its own seed draws."""
    from fwdlearn.graphs.tasks import NodeClassification

    calls, train = [], NodeClassification.train

    def spy(self, data, **kwargs):
        calls.append({**kwargs, "train_mask": data.train_mask.clone()})
        return train(self, data, **kwargs)

    monkeypatch.setattr(NodeClassification, "train", spy)
    assert main(["graph", "train", "--data", "karate", "--method", "bp", "--conv", "sage", "--layers", "2",
                 "--hidden", "8", "--epochs", "4", "--lr", "0.02", "--weight-decay", "0.001", "--eval-every", "2",
                 "--patience", "0", "--splits", "2", "--seed", "3", "--quiet", "--json",
                 str(tmp_path / "r.json")]) == 0
    expected = {"method": "bp", "conv": "sage", "layers": 2, "hidden": 8, "epochs": 4, "lr": 0.02,
                "weight_decay": 0.001, "eval_every": 2, "patience": None}
    for seed, call in zip((3, 4), calls, strict=True):
        assert {k: call[k] for k in expected} == expected and call["seed"] == seed
    assert not calls[0]["train_mask"].equal(calls[1]["train_mask"])  # two splits, not one split twice
