"""fwdlearn quickstart at tiny budgets: the report folder, its numbers next to chance, the plots, the next steps."""

import json

import pytest

from fwdlearn.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--graph", "sbm:300", "--graph-layers", "2", "--hidden", "8", "--epochs", "6", "--lag", "2",
        "--seq-steps", "6", "--samples", "10", "--quiet"]


def test_quickstart_writes_a_report_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", *TINY, "--name", "first"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "runs" / "first"
    assert f"report: {folder.relative_to(tmp_path) / 'report.md'}" in out and "next:" in out
    # --quiet silences progress and the report text, not the results (it printed the hints alone)
    assert out.count("graphs  sbm:300 ") == 2 and out.count("seq     ") == 3 and "test accuracy" in out
    assert sorted(p.name for p in folder.iterdir()) == ["graph-influence.png", "graph-training.png", "record.json",
                                                         "report.md", "sequence-influence.png", "sequence-training.png"]
    saved = json.loads((folder / "record.json").read_text())
    assert set(saved["files"]) == {"report", "graph-influence", "graph-training", "sequence-influence",
                                   "sequence-training"}  # (it named none)
    summary = saved["summary"]
    graphs, sequences = summary["graphs"], summary["sequences"]
    assert set(graphs["runs"]) == {"bp", "sf"} and set(sequences["runs"]) == {"bptt", "dsf", "ft-bptt"}
    assert 0 < graphs["chance"] < 1 and sequences["chance"] == pytest.approx(1 / 8)
    import torch

    from fwdlearn.graphs import load_graph

    data = load_graph("sbm:300", split="random", seed=0)
    for key, mask in (("chance", data.test_mask), ("val_chance", data.val_mask)):  # (the validation plot drew the
        labels = data.y[mask]  # test split's rate as its chance line)
        assert graphs[key] == pytest.approx(float(torch.bincount(labels).max()) / labels.numel())
    assert graphs["chance"] != graphs["val_chance"]
    assert all(r["R"] >= 0 and r["saved_bytes_per_step"] > 0 for r in graphs["runs"].values())
    report = (folder / "report.md").read_text()
    for phrase in ("Chance", "Bytes saved for backward per step", "R** is the influence-weighted mean distance",
                   "SF / BP", "DSF", "Fit seconds** are the whole training's wall time: BP trains the stack for at "
                   "most 6 epochs, SF each of the 2 layers", "lag 0 included"):
        assert phrase in report
    assert "cannot learn" not in report  # FT-BPTT is above chance on short lags (its recurrence keeps some input)
    assert "fwdlearn graph train --data sbm:300 --method sf" in out  # the graph it trained on
    from fwdlearn.data import data_dir

    assert "--name quickstart-dsf" in out  # not the README's --name dsf, which it would make fail
    root = data_dir()  # (a data folder without the corpus needs it as much as none: not only an unset one)
    assert ("needs FWDLEARN_DATA_DIR" in out) == (root is None or not (root / "tinyshakespeare" /
                                                                      "input.txt").is_file())
    # the folder is not overwritten without asking
    assert main(["quickstart", *TINY, "--name", "first"]) == 2
    assert "already holds a report" in capsys.readouterr().err
    (folder / "notes.txt").write_text("mine")  # with --overwrite and no plots, the old plots go; the user's file stays
    assert main(["quickstart", *TINY, "--name", "first", "--overwrite", "--no-plots"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "record.json", "report.md"]
    assert ".png" not in (folder / "report.md").read_text()  # (it named sequence-influence.png, not drawn)
    # R reads every lag of the window (a cut-off at 3 x lag dropped a quarter of DSF's influence)
    curves = [r["influence_curve"] for r in json.loads((folder / "record.json").read_text())["summary"]["sequences"]
              ["runs"].values()]
    assert {len(c) for c in curves} == {2 + 32}  # lags 0 .. length - 1 of a lag-2 task of length lag + 32


def test_a_quickstart_stopped_while_its_record_is_made_leaves_no_report_without_it(tmp_path, monkeypatch):
    """report.md was written before record.json was made: an interrupt (or an error) in between left a finished-looking
    report without its record; the two are written together now, both or neither."""
    import fwdlearn.cli.quickstart as qs
    import fwdlearn.records

    def interrupted():
        raise KeyboardInterrupt

    run = {"test_accuracy": 0.5, "fit_seconds": 1.0, "saved_bytes_per_step": 1, "R": 1.0, "accuracy": 0.5,
           "seconds_per_step": 0.1, "influence_curve": [1.0, 0.0], "history": []}  # (the parts' results, not trained)
    graphs = {"data": "karate", "nodes": 34, "classes": 2, "chance": 0.5, "val_chance": 0.5, "epochs": 1,
              "runs": {"bp": run, "sf": run}}
    sequences = {"task": "recall", "lag": 1, "chance": 0.125, "runs": {"bptt": run, "dsf": run, "ft-bptt": run}}
    monkeypatch.setattr(qs, "_graph_part", lambda *args: graphs)
    monkeypatch.setattr(qs, "_sequence_part", lambda *args: sequences)
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--graph", "karate", "--quiet", "--no-plots", "--name", "done"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "done").iterdir()) == ["record.json", "report.md"]
    assert json.loads((tmp_path / "runs" / "done" / "record.json").read_text())["files"] == {
        "report": "runs/done/report.md"}
    monkeypatch.setattr(fwdlearn.records, "library_versions", interrupted)  # (read while the record is made)
    assert main(["quickstart", "--graph", "karate", "--quiet", "--no-plots", "--name", "stopped"]) == 130
    assert [p.name for p in (tmp_path / "runs" / "stopped").iterdir()] == []


def test_a_quickstart_that_cannot_start_leaves_no_folder_and_names_a_fix_it_takes(tmp_path, monkeypatch, capsys):
    """A bad --device or --graph left an empty report folder; --graph cora without its files suggested --download,
    which quickstart does not take."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FWDLEARN_DATA_DIR", raising=False)
    for flags in (["--device", "bogus"], ["--graph", "nosuch"], ["--graph", "cora"]):
        assert main(["quickstart", *TINY, *flags, "--name", "x"]) == 2
        err = capsys.readouterr().err
        assert not (tmp_path / "runs").exists(), flags
    assert err.strip() == ("fwdlearn: error: --graph cora: its files are not in FWDLEARN_DATA_DIR (not set); "
                           "quickstart reads local data only: set FWDLEARN_DATA_DIR to a folder holding them (the "
                           "README's data table), or use --graph sbm or karate (built in)")


def test_a_quickstart_of_width_one_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """--hidden 1 (its floor) trained the graph models, then failed on a ZeroDivisionError traceback, or on the GRUs'
    refusal in Python's words ('give hidden=2 or more, or norm=False', a flag quickstart does not take)."""
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", *TINY, "--hidden", "1", "--name", "x"]) == 2
    assert capsys.readouterr().err.strip() == (
        "fwdlearn: error: --hidden 1: the model reads it through a LayerNorm, which over one channel gives its bias "
        "whatever it reads (x - mean(x) = 0), so the model could not see its input; give --hidden 2 or more")
    assert not (tmp_path / "runs").exists()


def test_a_second_quickstart_of_the_same_name_is_refused_while_the_first_runs(tmp_path, monkeypatch, capsys):
    """It took no lock: a second run with --overwrite replaced a live run's report without a word."""
    import os

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "busy"
    folder.mkdir(parents=True)
    (folder / "record.json.lock").write_text(str(os.getppid()))  # a live process holds the name
    assert main(["quickstart", *TINY, "--name", "busy", "--overwrite"]) == 2
    assert f"is writing {os.path.join('runs', 'busy', 'record.json')}" in capsys.readouterr().err
    (folder / "record.json.lock").write_text("999999999")  # a lock left by a process that is gone: taken over
    assert main(["quickstart", *TINY, "--name", "busy", "--no-plots"]) == 0


def test_the_report_compares_accuracy_with_chance_in_words():
    from fwdlearn.cli.quickstart import _against_chance

    assert _against_chance({"BP": {"test_accuracy": 0.9}, "SF": {"test_accuracy": 0.8}}, 0.3) == \
        "both models are above it."
    assert _against_chance({"BP": {"test_accuracy": 0.9}, "SF": {"test_accuracy": 0.2}}, 0.3).startswith(
        "only BP is above it")
    assert _against_chance({"BP": {"test_accuracy": 0.1}, "SF": {"test_accuracy": 0.2}}, 0.3).startswith(
        "neither model is above it")


def test_quickstart_refuses_torchrun_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["quickstart", *TINY, "--name", "tr"]) == 2
    assert "fwdlearn quickstart runs in one process: start it without torchrun" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tr").exists()


def test_quickstart_names_stay_under_runs(tmp_path, monkeypatch, capsys):
    """--name /abs or ../x made the report folder outside runs/ (the other commands refuse such names)."""
    monkeypatch.chdir(tmp_path)
    for name in ("../escape", str(tmp_path / "abs"), "."):
        assert main(["quickstart", *TINY, "--name", name]) == 2
        assert f"--name {name!r} must name a run under runs/ (no absolute path, no '..', not '.')\n" in \
            capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_quickstart_name_that_is_a_file_is_refused_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "qfile").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert main(["quickstart", *TINY, "--name", "qfile", *extra]) == 2
        assert capsys.readouterr().err.strip() == ("fwdlearn: error: runs/qfile is a file; quickstart writes a report "
                                                   "folder there: choose another --name")
    assert (tmp_path / "runs" / "qfile").read_text() == "mine"


def test_quickstart_help_says_where_its_report_goes(capsys):
    """--name's help was the training commands' (runs/<name>.json and .pt, --resume), none of which quickstart has."""
    with pytest.raises(SystemExit):
        main(["quickstart", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the report folder runs/<name>/ (record.json, report.md, the plots" in text and "--resume" not in text


def test_quickstart_without_matplotlib_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """--plots is on by default and the plots are drawn last: without the plot extra the whole run trained, then
    ended in an ImportError traceback (exit 1) with no report saved and an empty report folder left."""
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # (as if `pip install -e .` without [plot])
    assert main(["quickstart", *TINY, "--name", "noplot"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == ("fwdlearn: error: --plots needs matplotlib, which is not installed: pip install "
                           "'fwdlearn[plot]', or pass --no-plots")
    assert "graphs  " not in out and not (tmp_path / "runs").exists()  # (refused before training)
    assert main(["quickstart", *TINY, "--name", "noplot", "--no-plots"]) == 0  # the fix it names works
    assert sorted(p.name for p in (tmp_path / "runs" / "noplot").iterdir()) == ["record.json", "report.md"]


def test_a_quickstart_that_cannot_write_names_a_fix_quickstart_takes(tmp_path, monkeypatch, capsys):
    """Its report always goes under ./runs/, yet a folder it could not write said "choose another path": an absolute
    --name is refused and --json is not taken, so the only fixes are another folder to run from, or another --name
    when the obstacle is inside runs/. Without --name the message blamed --name all the same."""
    import os

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        locked = "/sys"  # root writes into read-only folders; a read-only file system stands in for one
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
    monkeypatch.chdir(locked)
    for name in (["--name", "x"], []):
        assert main(["quickstart", *TINY, *name]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("fwdlearn: error: cannot write runs/") and "is not writable" in err, err
        assert err.endswith("quickstart writes its report under runs/ in the current folder: run it from a folder "
                            "you can write"), err
        assert ("(--name)" in err) == bool(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("mine")  # a file called runs: moved, or quickstart run elsewhere
    assert main(["quickstart", *TINY, "--name", "x"]) == 2
    assert capsys.readouterr().err.strip().endswith("runs is a file, not a folder; quickstart writes its report under "
                                                    "runs/ in the current folder: move that file or run it from "
                                                    "another folder")
    (tmp_path / "runs").unlink()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "sub").write_text("mine")  # an obstacle inside runs/: another --name passes it
    assert main(["quickstart", *TINY, "--name", "sub/x"]) == 2
    assert capsys.readouterr().err.strip() == ("fwdlearn: error: cannot write runs/sub/x/record.json (--name): "
                                               "runs/sub is a file, not a folder; choose another --name")


def test_quickstart_says_when_the_data_folder_it_was_given_has_no_cora(tmp_path, monkeypatch):
    """A mistyped FWDLEARN_DATA_DIR trained the graph part on the built-in sbm without a word."""
    import warnings

    import torch

    from fwdlearn.cli.quickstart import QuickstartConfig, _graph
    from fwdlearn.errors import FwdlearnWarning

    config = QuickstartConfig()
    for root, says in ((tmp_path / "nosuch", "is not a folder"), (tmp_path, "has no Planetoid/Cora/raw/")):
        monkeypatch.setenv("FWDLEARN_DATA_DIR", str(root))
        with pytest.warns(FwdlearnWarning, match=f"FWDLEARN_DATA_DIR={root} {says}: the graph part trains on the "
                                                  "built-in sbm; point FWDLEARN_DATA_DIR at the folder that holds "
                                                  "Planetoid/"):
            assert _graph(config, torch.device("cpu"))[0] == "sbm"
    monkeypatch.delenv("FWDLEARN_DATA_DIR")  # unset: the built-in graph is the documented choice, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", FwdlearnWarning)
        assert _graph(config, torch.device("cpu"))[0] == "sbm"


def test_a_quickstart_folder_holding_another_run_is_refused_by_what_it_holds(tmp_path, monkeypatch, capsys):
    """--name sweep over runs/sweep/ of `graph train --name sweep/record` was refused as "already holds a report", and
    --overwrite then deleted that run's record.json (its checkpoint left without it, its --resume refused)."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "sweep"
    folder.mkdir(parents=True)
    (folder / "record.pt").write_text("a checkpoint")
    record = json.dumps({"job": "graph-train", "files": {"checkpoint": "runs/sweep/record.pt"}})
    (folder / "record.json").write_text(record)
    for extra in ([], ["--overwrite"]):
        assert main(["quickstart", *TINY, "--name", "sweep", *extra]) == 2
        assert capsys.readouterr().err.strip() == (
            "fwdlearn: error: runs/sweep/record.json is the record of a 'graph-train' run, not a quickstart report: "
            "quickstart would replace it (--overwrite replaces a quickstart report only); choose another --name")
    assert (folder / "record.json").read_text() == record
    (folder / "record.json").unlink()  # other runs' files beside it: named, not called a report
    (folder / "lr3.json").write_text("{}")
    assert main(["quickstart", *TINY, "--name", "sweep"]) == 2
    assert capsys.readouterr().err.strip() == (
        "fwdlearn: error: runs/sweep already holds files that are not a quickstart report's (lr3.json, record.pt); "
        "choose another --name (--overwrite would write the report among them)")


def test_a_quickstart_on_a_full_disk_names_the_file_and_leaves_no_plots(tmp_path, monkeypatch, capsys):
    """A full disk while the report was written said "[Errno 28] No space left on device" (no file, no fix) and left
    the plots in the folder without a record or a report. The command says it as every command does (the file, the
    cause in words, the fix: fwdlearn.files.describe_os_error), with quickstart's own way to write elsewhere."""
    import errno
    import os
    from pathlib import Path

    import fwdlearn.cli.quickstart as qs

    write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "report.md.tmp":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # (as a write says it: no file named)
        return write_text(self, *args, **kwargs)

    run = {"test_accuracy": 0.5, "fit_seconds": 1.0, "saved_bytes_per_step": 1, "R": 1.0, "accuracy": 0.5,
           "seconds_per_step": 0.1, "influence_curve": [1.0, 0.5], "history": [(1, 0.5), (2, 0.6)]}
    graphs = {"data": "karate", "nodes": 34, "classes": 2, "chance": 0.5, "val_chance": 0.5, "epochs": 1,
              "runs": {"bp": run, "sf": run}}
    sequences = {"task": "recall", "lag": 1, "chance": 0.125, "runs": {"bptt": run, "dsf": run, "ft-bptt": run}}
    monkeypatch.setattr(qs, "_graph_part", lambda *args: graphs)
    monkeypatch.setattr(qs, "_sequence_part", lambda *args: sequences)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Path, "write_text", full)
    assert main(["quickstart", "--graph", "karate", "--quiet", "--name", "full"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"fwdlearn: error: cannot write {os.path.join('runs', 'full', 'report.md')}: the disk is full "
        f"({os.strerror(errno.ENOSPC)}); free space on that disk, or run quickstart from another folder (its report "
        "goes under ./runs/ there)")
    assert [p.name for p in (tmp_path / "runs" / "full").iterdir()] == []


def test_the_next_graph_command_quotes_the_graph_for_the_shell():
    """--graph 'city:my roads/x.mat' printed --data city:my roads/x.mat, which the shell split into two words."""
    import shlex

    from fwdlearn.cli.quickstart import next_commands

    line = next(line for line in next_commands("city:my roads/x.mat").splitlines() if "graph train" in line)
    words = shlex.split(line, comments=True)
    assert words[words.index("--data") + 1] == "city:my roads/x.mat"
    assert "--data sbm --method sf" in next_commands("sbm")  # (a plain name as it was)


def test_quickstart_hands_each_flag_to_the_models_the_fits_and_the_influence(tmp_path, monkeypatch):
    """--graph-layers, --epochs, --samples, --lag and --seq-steps reach the models, fits and influence they set (one
    dropped on its way was recorded as given while its default ran: the report's words and curves follow the flags,
    not the models)."""
    import fwdlearn.graphs as graphs
    from fwdlearn.graphs import ForwardGNN
    from fwdlearn.sequences import RecurrentLM

    seen = []
    fit, influence = ForwardGNN.fit, graphs.hop_influence

    def spy_fit(self, data, **kwargs):
        seen.append(("fit", self.layers, kwargs["epochs"]))
        return fit(self, data, **kwargs)

    def spy_influence(model, data, max_hops, **kwargs):
        seen.append(("influence", max_hops, kwargs["samples"]))
        return influence(model, data, max_hops, **kwargs)

    tasks, seq_fit = [], RecurrentLM.fit

    def spy_seq_fit(self, task, **kwargs):
        tasks.append((task.lag, task.length, kwargs["steps"]))
        return seq_fit(self, task, **kwargs)

    monkeypatch.setattr(RecurrentLM, "fit", spy_seq_fit)
    monkeypatch.setattr(ForwardGNN, "fit", spy_fit)
    monkeypatch.setattr(graphs, "hop_influence", spy_influence)
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", *TINY, "--name", "flags", "--no-plots"]) == 0
    assert seen == [("fit", 2, 6), ("influence", 2, 10)] * 2  # bp, then sf
    assert tasks == [(2, 2 + 32, 6)] * 3  # bptt, dsf, ft-bptt
