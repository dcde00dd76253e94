"""Edges of fwdlearn quickstart, most without training: the report's numbers and words from given results, the plots'
inputs, the folder checks (another run's killed save, leftovers, what a folder holds), --json, --quiet, the next
commands."""

import json
import warnings

import pytest

from fwdlearn.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _results(bp_seconds=2.0, sf_seconds=1.0, bp_bytes=4 * 1024 * 1024, sf_bytes=1024 * 1024, history=((5, 0.5),)):
    """The two parts' results (not trained): a 2-layer GCN, lag 3."""
    def run(**figures):
        return {"test_accuracy": 0.5, "fit_seconds": 1.0, "saved_bytes_per_step": 1, "R": 1.0, "accuracy": 0.5,
                "seconds_per_step": 0.01, "influence_curve": [1.0, 0.5, 0.25], "history": list(history), **figures}

    graphs = {"data": "karate", "nodes": 1234, "classes": 2, "chance": 0.5, "val_chance": 0.25, "epochs": 7,
              "runs": {"bp": run(fit_seconds=bp_seconds, saved_bytes_per_step=bp_bytes, test_accuracy=0.75, R=1.5),
                       "sf": run(fit_seconds=sf_seconds, saved_bytes_per_step=sf_bytes, test_accuracy=0.5, R=0.5)}}
    sequences = {"task": "delayed recall, lag 3, 8 symbols", "lag": 3, "chance": 0.125,
                 "runs": {"bptt": run(accuracy=0.9), "dsf": run(accuracy=0.8), "ft-bptt": run(accuracy=0.3)}}
    return graphs, sequences


def test_the_report_table_says_each_figure_of_its_own_model_and_the_ratios_sf_over_bp():
    from fwdlearn.cli.quickstart import _report

    graphs, sequences = _results()
    lines = _report(graphs, sequences, ["graph-training.png"], 12.4).splitlines()
    assert lines[2] == ("Whole run: 12 s. Files: `record.json` (every number, the config, versions), "
                        "`graph-training.png`.")
    assert lines[4] == "## 1. Graphs: a 2-layer GCN on karate (1,234 nodes, 2 classes)"
    assert lines[8:11] == ["| BP (end-to-end backprop) | 0.750 | 2.0 | 4.0 MiB | 1.50 |",
                           "| ForwardGNN SF (layer-local) | 0.500 | 1.0 | 1.0 MiB | 0.50 |",
                           "| SF / BP | | 0.50x | 0.25x | |"]
    assert "- **Chance** is 0.500: the accuracy of always guessing the most common class of the test nodes; only BP " \
           "is above it (more --epochs would help the other)." in lines
    assert "| FT-BPTT (no credit through time) | 0.300 | 10.0 | 1.00 |" in lines
    assert any(line.startswith("- **Chance** is 0.125 (8 equally likely symbols): the task asks for the token seen 3 "
                               "steps earlier") for line in lines)
    assert lines[-1].endswith("looks at lag 0 and lag 3; one that does not may spread its influence further.")


def test_an_accuracy_at_chance_is_not_above_it():
    from fwdlearn.cli.quickstart import _against_chance

    assert _against_chance({"BP": {"test_accuracy": 0.5}, "SF": {"test_accuracy": 0.5}}, 0.5) == \
        "neither model is above it yet: train longer (--epochs)."
    assert _against_chance({"BP": {"test_accuracy": 0.5}, "SF": {"test_accuracy": 0.6}}, 0.5) == \
        "only SF is above it (more --epochs would help the other)."


def test_the_plots_get_the_validation_chance_the_depth_and_the_distances(tmp_path, monkeypatch):
    """The training curves are validation accuracies: their chance line is the validation split's; a run with no
    evaluation yet has no curve (it is not drawn empty); the titles and axes name the GCN's depth and the distance."""
    from fwdlearn.cli.quickstart import PLOT_FILES, _plots
    from fwdlearn.diagnostics import plots

    calls = []
    monkeypatch.setattr(plots, "plot_curves", lambda series, path, *args: calls.append((series, args)) or path)
    monkeypatch.setattr(plots, "plot_influence_curves",
                        lambda curves, path, **kwargs: calls.append((curves, kwargs)) or path)
    graphs, sequences = _results()
    graphs["runs"]["sf"]["history"] = []
    assert _plots(tmp_path, graphs, sequences) == list(PLOT_FILES)
    (graph_curves, graph_args), (seq_curves, seq_args), (graph_influence, graph_kw), (_, seq_kw) = calls
    assert graph_curves == {"BP": ((5,), (0.5,))} and graph_args == (
        "epoch (SF: layer after layer)", "validation accuracy", "karate: GCN-2", 0.25)
    assert list(seq_curves) == ["BPTT", "DSF", "FT-BPTT"] and seq_args == (
        "step", "validation accuracy", "delayed recall, lag 3, 8 symbols", 0.125)
    assert graph_influence == {"BP": [1.0, 0.5, 0.25], "ForwardGNN SF": [1.0, 0.5, 0.25]}
    assert graph_kw == {"xlabel": "hops", "title": "karate"}
    assert seq_kw == {"xlabel": "lag", "title": "delayed recall, lag 3, 8 symbols"}


def _fake_parts(monkeypatch):
    import fwdlearn.cli.quickstart as qs

    graphs, sequences = _results()
    monkeypatch.setattr(qs, "_graph_part", lambda *args: graphs)
    monkeypatch.setattr(qs, "_sequence_part", lambda *args: sequences)


def test_quiet_prints_the_results_and_not_the_report_text(tmp_path, monkeypatch, capsys):
    _fake_parts(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--graph", "karate", "--no-plots", "--quiet", "--name", "q"]) == 0
    out = capsys.readouterr().out
    assert "# fwdlearn quickstart" not in out and "report: " in out and "next:" in out
    assert main(["quickstart", "--graph", "karate", "--no-plots", "--name", "loud"]) == 0
    assert "\n# fwdlearn quickstart\n" in capsys.readouterr().out


def test_quickstart_refuses_json_naming_the_flag_it_takes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--graph", "karate", "--no-plots", "--json", "x.json"]) == 2
    assert capsys.readouterr().err.strip() == ("fwdlearn: error: quickstart writes a report folder (record.json inside "
                                               "it); name it with --name, not --json")
    assert not (tmp_path / "runs").exists()


def test_overwrite_removes_a_killed_runs_leftovers_and_only_the_reports_files(tmp_path, monkeypatch):
    """A killed save's ``.tmp`` files (a plot's included, not drawn this time) go with the old report."""
    _fake_parts(monkeypatch)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "old"
    folder.mkdir(parents=True)
    for name in ("graph-training.png.tmp", "report.md.tmp", "notes.txt"):
        (folder / name).write_text("x")
    assert main(["quickstart", "--graph", "karate", "--quiet", "--no-plots", "--name", "old", "--overwrite"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "record.json", "report.md"]


def test_a_folder_holding_another_runs_killed_save_is_refused_as_that_run(tmp_path, monkeypatch, capsys):
    """A killed ``graph train --name x/record`` left its record as ``record.json.tmp`` with the list of renames: that
    save is finished first, and the record it makes is not replaced by ``--overwrite``."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "runs" / "x"
    folder.mkdir(parents=True)
    record = json.dumps({"job": "graph-train", "files": {}})
    (folder / "record.json.tmp").write_text(record)
    (folder / "record.json.renaming").write_text(json.dumps({"pid": 999999999,
                                                             "renames": [["record.json.tmp", "record.json"]]}))
    assert main(["quickstart", "--graph", "karate", "--no-plots", "--name", "x", "--overwrite"]) == 2
    assert capsys.readouterr().err.strip().startswith("fwdlearn: error: runs/x/record.json is the record of a "
                                                      "'graph-train' run, not a quickstart report")
    assert (folder / "record.json").read_text() == record


def test_what_a_folder_holds_is_named_by_whose_it_is(tmp_path):
    """A quickstart's own files, their killed saves (``.tmp``) and list of renames included, are a report; other files
    are named, three at most and a count."""
    from fwdlearn.cli.quickstart import _check_folder_contents

    folder = tmp_path / "r"
    folder.mkdir()
    for name in ("report.md.tmp", "record.json.renaming", "sequence-influence.png"):
        (folder / name).write_text("x")
    with pytest.raises(FileExistsError, match=r"already holds a report; choose another --name or pass --overwrite$"):
        _check_folder_contents(folder, False)
    _check_folder_contents(folder, True)
    for count, shown in ((3, "a.txt, b.txt, c.txt"), (5, "a.txt, b.txt, c.txt and 2 more")):
        for name in "abcde"[:count]:
            (folder / f"{name}.txt").write_text("x")
        with pytest.raises(FileExistsError, match=rf"not a quickstart report's \({shown}\); choose another --name"):
            _check_folder_contents(folder, False)


def test_a_data_folder_holding_cora_is_used_without_a_warning(tmp_path, monkeypatch):
    """The warning is for a data folder without Cora: one with Planetoid/Cora/raw/ picks cora and says nothing (its
    files missing are the loader's error)."""
    import torch

    from fwdlearn.cli.quickstart import QuickstartConfig, _graph
    from fwdlearn.data import DataNotFoundError
    from fwdlearn.errors import FwdlearnWarning

    (tmp_path / "Planetoid" / "Cora" / "raw").mkdir(parents=True)
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FwdlearnWarning)
        with pytest.raises(DataNotFoundError, match=rf"^--graph cora: its files are not in FWDLEARN_DATA_DIR "
                                                    rf"\({tmp_path}\); quickstart reads local data only"):
            _graph(QuickstartConfig(), torch.device("cpu"))


def test_the_next_commands_say_when_the_text_corpus_is_missing(tmp_path, monkeypatch):
    from fwdlearn.cli.quickstart import next_commands

    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))
    assert "--name quickstart-dsf   # needs FWDLEARN_DATA_DIR with tinyshakespeare/input.txt\n" in next_commands("sbm")
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("text")
    assert "--name quickstart-dsf\n" in next_commands("sbm")


def test_the_graph_results_name_each_method_in_capitals(tmp_path, capsys):
    """One line per method, printed under --quiet too."""
    import torch

    from fwdlearn.cli.quickstart import QuickstartConfig, _graph, _graph_part
    from fwdlearn.records import RunRecord

    config = QuickstartConfig(graph="karate", graph_layers=1, hidden=4, epochs=1, samples=200, quiet=True)
    name, data = _graph(config, torch.device("cpu"))
    out = _graph_part(config, name, data, RunRecord("quickstart", config, seed=0), quiet=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line[:29] for line in lines] == ["graphs  karate BP  test accur", "graphs  karate SF  test accur"]
    assert all(f"(chance {out['chance']:.3f})" in line for line in lines)
