"""A bench interrupted between pieces goes on with --resume: the pieces finished are read from <out>-progress.pt,
not run again, and the results equal an uninterrupted run's (its timings aside); bad resumes are refused by name."""

import json
import random
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest
import torch

from fwdlearn.bench_progress import BenchProgress, plain
from fwdlearn.cli import main
from fwdlearn.errors import InputError, UsageError
from fwdlearn.graphs.nn.forward_gnn import ForwardGNN
from fwdlearn.sequences.nn.language_model import LanguageModel

SEQ = ["bench", "seq", "--data", "corpus.txt", "--quiet", "--cost-contexts", "4", "--cost-hidden", "4",
       "--cost-repeats", "1", "--quality-modes", "bptt", "dsf", "ft-bptt", "--steps", "3", "--hidden", "8", "--layers",
       "1", "--context", "8", "--batch-size", "2", "--eval-every", "3", "--eval-tokens", "64", "--recall-steps", "2",
       "--recall-hidden", "8", "--recall-layers", "1", "--recall-modes", "dsf", "--align-context", "8",
       "--align-batch", "2"]
GRAPH = ["bench", "graph", "--data", "karate", "--depths", "1", "2", "--methods", "sf", "--splits", "2", "--epochs",
         "3", "--hidden", "8", "--link-layers", "2", "--link-epochs", "2", "--quiet"]


@pytest.fixture
def folder(tmp_path, monkeypatch, one_torch_thread):
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran"]
    draw = random.Random(0)
    (tmp_path / "corpus.txt").write_text(" ".join(draw.choice(words) for _ in range(3000)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def interrupting(monkeypatch, cls, at: int) -> dict:
    """Make ``cls.fit`` raise KeyboardInterrupt at its ``at``-th call; returns the counter (``calls["n"]``, the calls
    so far; ``calls["at"]``, the call interrupted: 0, none)."""
    calls = {"n": 0, "at": at}
    fit = cls.fit

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["at"]:
            raise KeyboardInterrupt
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(cls, "fit", counted)
    return calls


def untimed(rows: list[dict]) -> list[dict]:
    """The rows whose figures are no timing (a resumed run's timings come from two processes)."""
    return [row for row in rows if row.get("experiment") != "cost" and not str(row.get("experiment")).startswith(
        "cost") and "seconds" not in str(row.get("metric"))]


def test_an_interrupted_seq_bench_resumes_with_the_pieces_it_finished_and_the_uninterrupted_run_s_figures(
        folder, monkeypatch, capsys):
    calls = interrupting(monkeypatch, LanguageModel, 3)  # (quality bptt and dsf finished, ft-bptt interrupted)
    assert main([*SEQ, "--out", "s"]) == 130
    err = capsys.readouterr().err
    assert ("s-progress.pt holds the run so far: run the same command with --resume to continue (and --out s if it "
            "had no --out or --name)") in err
    saved = torch.load("s-progress.pt", weights_only=True)
    assert list(saved["pieces"]) == ["cost/gru/T=4", "quality/bptt", "quality/dsf"]
    assert saved["pieces"]["quality/dsf"]["state"] is not None  # (the alignment part reads the trained DSF model)
    assert saved["pieces"]["quality/bptt"]["state"] is None
    assert not Path("s.json").exists()

    assert main([*SEQ, "--out", "s"]) == 2  # (without --resume: refused, nothing replaced)
    assert ("s-progress.pt holds the progress of an interrupted run of this bench: pass --resume to continue it (same "
            "settings), --overwrite to start over, or give another --out") in capsys.readouterr().err

    calls.update(n=0, at=0)
    assert main([*SEQ, "--out", "s", "--resume"]) == 0
    assert calls["n"] == 2  # ft-bptt and recall ran; bptt and dsf were read
    assert not Path("s-progress.pt").exists()  # (the finished run leaves nothing to resume)
    resumed = json.loads(Path("s.json").read_text())
    assert " s in this process (resumed: see the end). " in Path("s.md").read_text()
    assert ("Resumed (--resume): 3 of the 5 pieces were finished by an earlier, interrupted run and read from "
            "s-progress.pt (cost/gru/T=4, quality/bptt, quality/dsf); 2 ran in this one.") in " ".join(
        Path("s.md").read_text().split())
    record = json.loads(Path("s-record.json").read_text())
    assert record["summary"]["resumed_pieces"] == ["cost/gru/T=4", "quality/bptt", "quality/dsf"]

    calls.update(n=0, at=0)
    assert main([*SEQ, "--out", "u"]) == 0  # the same bench, uninterrupted
    whole = json.loads(Path("u.json").read_text())
    assert untimed(resumed["rows"]) == untimed(whole["rows"])  # (the alignment rows read the rebuilt DSF model)
    assert any(row["experiment"] == "alignment" for row in untimed(whole["rows"]))
    assert "Resumed" not in Path("u.md").read_text()
    assert all("state" not in figures for figures in whole["quality"].values())  # (the DSF weights stay out of it)


def test_resume_refuses_other_settings_no_progress_and_no_name(folder, monkeypatch, capsys):
    interrupting(monkeypatch, LanguageModel, 2)
    assert main([*SEQ, "--out", "s"]) == 130
    capsys.readouterr()
    assert main([*SEQ, "--out", "s", "--resume", "--steps", "4", "--hidden", "16"]) == 2
    assert ("--resume: the interrupted run that saved s-progress.pt had other settings (--hidden 8 there, 16 here; "
            "--steps 3 there, 4 here); its pieces measured those: resume with the settings it was started with, or "
            "start over with --overwrite in place of --resume") in capsys.readouterr().err
    assert main([*SEQ, "--out", "elsewhere", "--resume"]) == 2
    assert ("--resume was given but elsewhere-progress.pt does not exist: no interrupted run of this bench saved its "
            "progress there (a finished run removes it); check --out, or run without --resume"
            ) in capsys.readouterr().err
    assert main([*SEQ, "--resume"]) == 2
    assert ("--resume continues an interrupted bench from its <out>-progress.pt, which the bench saves as each piece "
            "ends: pass the --out (or --name) it was run with") in capsys.readouterr().err
    assert main(["bench", "graph", "--data", "karate", "--out", "s", "--resume", "--quiet"]) == 2  # another bench's
    assert ("--resume: s-progress.pt holds the progress of an interrupted 'bench seq' run, not of this 'bench graph': "
            "give this bench another --out ('fwdlearn bench seq ... --resume' continues that run)"
            ) in capsys.readouterr().err
    assert Path("s-progress.pt").is_file()  # (every refusal left it)


def test_resume_refuses_data_changed_since_the_interrupt(folder, monkeypatch, capsys):
    """The pieces read were measured on the corpus as it was: a resume on an edited one would mix two data sets."""
    interrupting(monkeypatch, LanguageModel, 2)
    assert main([*SEQ, "--out", "s"]) == 130
    Path("corpus.txt").write_text(Path("corpus.txt").read_text() + " the end")
    capsys.readouterr()
    assert main([*SEQ, "--out", "s", "--resume"]) == 2
    assert ("--resume: --data corpus.txt: the file changed (or went) since the interrupted run that saved "
            "s-progress.pt measured its pieces on it: put back what it read, or start over with --overwrite in place "
            "of --resume") in capsys.readouterr().err


def test_a_damaged_progress_is_refused_with_a_fix_that_works_with_overwrite_given(folder, monkeypatch, capsys):
    """The fix a refused --resume named, "start over with --overwrite", refused the same way once --overwrite was
    added beside --resume (which still reads the file): it says --overwrite in place of --resume."""
    interrupting(monkeypatch, LanguageModel, 2)
    assert main([*SEQ, "--out", "s"]) == 130
    Path("s-progress.pt").write_bytes(Path("s-progress.pt").read_bytes()[:100])  # (cut short)
    capsys.readouterr()
    assert main([*SEQ, "--out", "s", "--resume", "--overwrite"]) == 2
    assert ("cannot read s-progress.pt as a bench's progress (UnpicklingError: it is cut short: a torch file (a zip "
            "archive) without the directory that ends it); it may have been cut short; start over with --overwrite in "
            "place of --resume") in capsys.readouterr().err


def test_another_bench_s_progress_is_refused_even_with_overwrite(folder, monkeypatch, capsys):
    """bench graph --out x called bench seq's interrupted x-progress.pt 'an interrupted run of this bench', and with
    --overwrite removed it: the seq run's finished fits were lost."""
    interrupting(monkeypatch, LanguageModel, 3)
    assert main([*SEQ, "--out", "x"]) == 130
    capsys.readouterr()
    for extra in ([], ["--overwrite"]):
        assert main([*GRAPH, "--out", "x", *extra]) == 2
        assert ("x-progress.pt holds the progress of an interrupted 'bench seq' run, not of this 'bench graph': give "
                "this bench another --out ('fwdlearn bench seq ... --resume' continues that run; --overwrite removes "
                "no other bench's progress)") in capsys.readouterr().err
    assert list(torch.load("x-progress.pt", weights_only=True)["pieces"]) == [
        "cost/gru/T=4", "quality/bptt", "quality/dsf"]  # (kept whole)
    assert not Path("x.json").exists()


def test_an_interrupt_inside_a_fit_names_the_progress_without_denying_it(folder, monkeypatch, capsys):
    """Ctrl-C inside a bench's fit said "this run keeps no checkpoint; s-progress.pt holds the run so far"."""
    from fwdlearn.errors import TrainingInterrupted

    calls, fit = {"n": 0}, LanguageModel.fit

    def stopped(self, *args, **kwargs):  # (the second fit stopped at its step 2, as a fit's loop reports it)
        calls["n"] += 1
        if calls["n"] == 2:
            raise TrainingInterrupted(2, None, None)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LanguageModel, "fit", stopped)
    assert main([*SEQ, "--out", "s"]) == 130
    err = capsys.readouterr().err
    assert ("fwdlearn: interrupted at step 2, in a fit that keeps no checkpoint of its own (it runs again); "
            "s-progress.pt holds the run so far: run the same command with --resume") in err
    assert "keeps no checkpoint;" not in err
    Path("s-progress.pt").unlink()
    calls["n"] = 1  # (the first fit stopped: nothing saved yet)
    assert main([*SEQ, "--skip", "cost", "--out", "s"]) == 130
    assert capsys.readouterr().err == (
        "fwdlearn: interrupted at step 2, in a fit that keeps no checkpoint of its own (it runs again), before "
        "s-progress.pt held anything to continue from (it is saved as each part of the run ends)\n")


def test_overwrite_starts_an_interrupted_bench_over(folder, monkeypatch, capsys):
    calls = interrupting(monkeypatch, LanguageModel, 3)
    assert main([*SEQ, "--out", "s"]) == 130
    calls.update(n=0, at=0)
    assert main([*SEQ, "--out", "s", "--overwrite"]) == 0
    assert calls["n"] == 4  # every fit ran again
    assert "Resumed" not in Path("s.md").read_text() and not Path("s-progress.pt").exists()


def test_an_interrupted_graph_bench_resumes_each_finished_fit(folder, monkeypatch, capsys):
    calls = interrupting(monkeypatch, ForwardGNN, 5)  # (the warm-up fit, then 3 of the 8 node fits)
    assert main([*GRAPH, "--out", "g"]) == 130
    assert list(torch.load("g-progress.pt", weights_only=True)["pieces"]) == [
        "node/bp/layers=1/split=0", "node/bp/layers=1/split=1", "node/sf/layers=1/split=0"]
    calls.update(n=0, at=0)
    assert main([*GRAPH, "--out", "g", "--resume", "--device", "cpu"]) == 0  # (it ran on cpu, as --device auto)
    assert calls["n"] == 1 + 5  # the warm-up and the five fits not finished
    calls.update(n=0, at=0)
    assert main([*GRAPH, "--out", "h"]) == 0
    resumed, whole = (json.loads(Path(f"{out}.json").read_text())["rows"] for out in "gh")
    assert [(r["method"], r["layers"], r["accuracy_mean"]) for r in resumed] == [
        (r["method"], r["layers"], r["accuracy_mean"]) for r in whole]
    logged = json.loads(Path("g-record.json").read_text())["metrics"]
    assert len([row for row in logged if row.get("split") is not None]) == 8  # (read fits are in the record too)


def test_an_interrupted_influence_bench_reads_its_speed_rows(folder, monkeypatch, capsys):
    bench = ["bench", "influence", "--graphs", "karate", "--depths", "1", "2", "--samples", "4", "--pyg-samples", "2",
             "--repeats", "1", "--data", "karate", "--layers", "2", "--epochs", "2", "--hidden", "8", "--quiet"]
    interrupting(monkeypatch, ForwardGNN, 2)  # (the speed rows, the MLP's fit, then the GCN's interrupted)
    assert main([*bench, "--out", "i"]) == 130
    saved = torch.load("i-progress.pt", weights_only=True)["pieces"]
    assert list(saved) == ["speed/karate/layers=1", "speed/karate/layers=2", "trained/mlp-2"]
    import torch_geometric.utils.influence as pyg

    monkeypatch.setattr(pyg, "jacobian_l1_agg_per_hop", None)  # (a speed row timed again would call it)
    assert main([*bench, "--out", "i", "--resume"]) == 0
    rows = json.loads(Path("i.json").read_text())["rows"]
    assert [row["speed-up"] for row in rows] == [saved[key]["speed-up"] for key in list(saved)[:2]]


def test_an_interrupted_dfa_bench_reads_its_finished_rules(folder, monkeypatch, capsys):
    bench = ["bench", "dfa", "--data", "corpus.txt", "--skip", "cost", "recurrent", "--rules", "bp", "dfa", "--steps",
             "2", "--hidden", "8", "--layers", "1", "--heads", "2", "--context", "8", "--batch-size", "2",
             "--eval-every", "2", "--eval-tokens", "64", "--no-plot", "--quiet"]
    calls = interrupting(monkeypatch, LanguageModel, 2)
    assert main([*bench, "--out", "d"]) == 130
    calls.update(n=0, at=0)
    assert main([*bench, "--out", "d", "--resume"]) == 0
    assert calls["n"] == 1
    calls.update(n=0, at=0)
    assert main([*bench, "--out", "e"]) == 0
    resumed, whole = (untimed(json.loads(Path(f"{out}.json").read_text())["rows"]) for out in "de")
    assert resumed == whole and len(whole) == 5  # bits and perplexity of two rules, DFA's alignment


def test_a_piece_is_kept_as_the_values_a_resumed_run_reads_back(tmp_path):
    """A NumPy float, torch's version string (a str subclass) and a NumPy bool would be pickled as their classes,
    which torch's safe reader refuses on --resume (found: torch.__version__ in the first draft); they are kept as
    Python's own types, tensors on the CPU, and a value of any other type is refused as it is kept, naming it."""
    value = {"acc": np.float32(0.5), "ok": np.bool_(True), "n": np.int64(3), "version": torch.__version__,
             "curve": [(1, 2.0)], "t": torch.ones(2, requires_grad=True)}
    kept = plain(value, "piece")
    assert type(kept["acc"]) is float and type(kept["ok"]) is bool and type(kept["n"]) is int
    assert type(kept["version"]) is str and kept["curve"] == [(1, 2.0)] and not kept["t"].requires_grad

    @dataclass
    class Report:
        acc: float

    with pytest.raises(TypeError, match=r"piece\['report'\]: a Report cannot be kept in a bench's progress"):
        plain({"report": Report(1.0)}, "piece")

    @dataclass
    class Config:
        steps: int = 3
        quiet: bool = False

    progress = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=False)
    assert progress.piece("a", lambda: value)["acc"] == 0.5
    with pytest.raises(ValueError, match="the bench asked for its piece 'a' twice"):
        progress.piece("a", lambda: 1)
    again = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(quiet=True), resume=True)  # (quiet: no setting)
    read = again.piece("a", lambda: pytest.fail("a finished piece ran again"))
    assert {k: v for k, v in read.items() if k != "t"} == {k: v for k, v in kept.items() if k != "t"}
    assert torch.equal(read["t"], kept["t"])
    assert again.piece("b", lambda: 2) == 2 and again.resumed == ["a"]
    with pytest.raises(UsageError, match=r"other settings \(--steps 3 there, 4 here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(steps=4), resume=True)
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt is not a bench's progress"):
        BenchProgress.open(tmp_path / "other.pt", "bench-x", Config(), resume=True)


def test_another_version_of_torch_or_fwdlearn_is_refused(tmp_path, monkeypatch):
    import fwdlearn.bench_progress as progress_module

    @dataclass
    class Config:
        steps: int = 3

    BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=False).piece("a", lambda: 1)
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert progress_module._versions()["torch"] == "9.9.9"
    with pytest.raises(UsageError, match=r"other settings \(torch .+ there, 9.9.9 here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=True)


@pytest.mark.parametrize("config", ["fwdlearn.graphs.cli.bench:BenchGraphConfig",
                                    "fwdlearn.graphs.cli.influence:BenchInfluenceConfig",
                                    "fwdlearn.sequences.cli.bench:SeqBenchConfig",
                                    "fwdlearn.sequences.cli.bench_dfa:DfaBenchConfig"])
def test_every_config_field_but_where_the_files_go_and_what_is_printed_is_a_setting(config):
    """core-api.md: a resumed run needs the interrupted run's settings, "every config field but name, json, out,
    overwrite, quiet, debug, resume" (mutants: --seed left out of the comparison resumed another seed's pieces; --json
    or --overwrite kept in it refused a resume that only moved the record or replaced a finished run's results)."""
    import importlib
    from dataclasses import fields

    from fwdlearn.bench_progress import bench_settings

    module, name = config.split(":")
    cls = getattr(importlib.import_module(module), name)
    settings = bench_settings(cls())
    assert set(settings) == {f.name for f in fields(cls)} - {"name", "json", "out", "overwrite", "quiet", "debug",
                                                             "resume"}
    assert {"seed", "threads", "device"} <= set(settings)


def test_a_piece_returns_what_a_resumed_run_reads_and_settings_compare_lists_as_lists(tmp_path):
    """BenchProgress.piece returns the plain value it saved (a NumPy float as Python's, a tensor detached on the CPU),
    so an uninterrupted run computes with the values a resumed one reads back; a setting given as a tuple and then as
    a list is the same setting; a file whose pieces are no dict is no bench's progress."""

    @dataclass
    class Config:
        depths: tuple = (1, 2)

    progress = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=False)
    value = progress.piece("a", lambda: {"acc": np.float32(0.5), "t": torch.ones(2, requires_grad=True)})
    assert type(value["acc"]) is float and not value["t"].requires_grad
    again = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(depths=[1, 2]), resume=True)
    assert again.piece("a", lambda: pytest.fail("a finished piece ran again"))["acc"] == 0.5
    saved = torch.load(tmp_path / "p.pt", weights_only=True)
    torch.save({**saved, "pieces": [1]}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="bad.pt is not a bench's progress"):
        BenchProgress.open(tmp_path / "bad.pt", "bench-x", Config(), resume=True)
    with pytest.raises(TypeError, match="a key of type bool"):
        plain({True: 1}, "piece")
    assert type(next(iter(plain({torch.__version__: 1}, "piece")))) is str  # (a str subclass as a key, too)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "p.pt").read_bytes()[:100])
    with pytest.raises(InputError, match=r"cannot read .*cut.pt as a bench's progress .*start over with --overwrite"):
        BenchProgress.open(tmp_path / "cut.pt", "bench-x", Config(), resume=True)


def test_overwrite_removes_the_interrupted_run_s_progress_and_resume_with_overwrite_keeps_it(folder, monkeypatch,
                                                                                                 capsys):
    """--overwrite starts over: an earlier interrupted run's progress is gone even when the new run is interrupted
    before its first piece (kept, a later --resume read the run given up); --resume --overwrite (a finished run's
    results are there to replace) reads the pieces, not a removed file."""
    small = ["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "sf", "--splits", "1", "--epochs", "2",
             "--hidden", "8", "--link-layers", "0", "--quiet", "--out", "g"]
    calls = interrupting(monkeypatch, ForwardGNN, 3)  # (the warm-up and BP's fit; sf's interrupted)
    assert main(small) == 130
    calls.update(n=0, at=0)
    assert main([*small, "--resume", "--overwrite"]) == 0, capsys.readouterr().err
    assert calls["n"] == 2  # the warm-up and sf's fit: BP's was read
    assert "1 of the 2 pieces was finished" in " ".join(Path("g.md").read_text().split())
    calls.update(n=0, at=3)
    assert main([*small, "--overwrite"]) == 130 and Path("g-progress.pt").is_file()
    calls.update(n=0, at=1)  # (interrupted in the warm-up: before its first piece)
    assert main([*small, "--overwrite"]) == 130
    assert not Path("g-progress.pt").exists()


def test_a_progress_path_taken_by_another_output_or_a_folder_is_refused_at_the_start(folder, capsys):
    """<out>-progress.pt given as --json, or a folder there, is refused before any piece runs, by name (the folder
    with --resume too: it is there, as no progress)."""
    small = ["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "sf", "--splits", "1", "--epochs", "2",
             "--hidden", "8", "--link-layers", "0", "--quiet", "--out", "g"]
    assert main([*small, "--json", "g-progress.pt"]) == 2
    assert "--json g-progress.pt is where this bench keeps its progress; give --json another path" in (
        capsys.readouterr().err)
    Path("g-progress.pt").mkdir()
    for resume in ([], ["--resume"]):
        assert main([*small, *resume]) == 2
        assert ("g-progress.pt, where this bench keeps its progress, is a folder; move it, or give the bench another "
                "--out") in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir() if p.name != "corpus.txt") == ["g-progress.pt"]


def test_each_part_s_rules_are_keyed_apart_in_the_progress():
    """bench dfa's transformer and recurrent parts may name one rule alike: each piece's key names its part."""
    from types import SimpleNamespace

    from fwdlearn.sequences import bench_dfa

    keys = []

    def piece(key, compute):
        keys.append(key)
        raise StopIteration

    for experiment in ("transformer", "recurrent"):
        with pytest.raises(StopIteration):
            bench_dfa._quality_part(experiment, "", SimpleNamespace(), None, None, ["dfa"], "bp", 1, [], {}, piece)
    assert keys == ["transformer/dfa", "recurrent/dfa"]


def test_the_trained_pieces_keep_how_many_seed_nodes_r_was_measured_on():
    """--samples above a graph's size measures R on every node: the piece keeps that count, not --samples."""
    from types import SimpleNamespace

    from fwdlearn.graphs import load_graph
    from fwdlearn.graphs.influence.bench import _trained_ranges

    config = SimpleNamespace(layers=2, seed=0, hidden=4, epochs=1, samples=500, forward_method="")
    graph = load_graph("karate")
    assert _trained_ranges(config, graph, [], True, torch.device("cpu"), lambda key, compute: compute()) == (
        graph.num_nodes)


def test_a_bench_run_by_name_names_name_in_its_refusals(folder, monkeypatch, capsys):
    """A bench run with --name (no --out) keeps runs/<name>-progress.pt: a re-run without --resume is told to give
    another --name, the flag it used."""
    small = ["bench", "graph", "--data", "karate", "--depths", "1", "--methods", "sf", "--splits", "1", "--epochs", "2",
             "--hidden", "8", "--link-layers", "0", "--quiet", "--name", "g"]
    interrupting(monkeypatch, ForwardGNN, 3)
    assert main(small) == 130 and Path("runs/g-progress.pt").is_file()
    capsys.readouterr()
    assert main(small) == 2
    assert "--overwrite to start over, or give another --name" in capsys.readouterr().err


def test_a_setting_given_as_a_path_or_a_numpy_number_resumes(tmp_path):
    """The config takes a path for a string and a NumPy float for a number (a sweep over np.logspace): kept as given,
    the progress was saved, then every --resume was refused as "cannot read ... as a bench's progress (it holds a
    Python object of type pathlib.PosixPath) ... it may have been cut short"."""

    @dataclass
    class Config:
        data: object = "corpus.txt"
        lr: object = 1e-3
        depths: object = (1, 2)

    given = Config(data=Path("corpus.txt"), lr=np.float64(1e-3), depths=(np.int64(1), 2))
    BenchProgress.open(tmp_path / "p.pt", "bench-x", given, resume=False).piece("a", lambda: 1)
    for config in (given, Config()):
        again = BenchProgress.open(tmp_path / "p.pt", "bench-x", config, resume=True)
        assert again.piece("a", lambda: pytest.fail("a finished piece ran again")) == 1
    with pytest.raises(UsageError, match=r"other settings \(--lr 0.001 there, 0.01 here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(lr=np.float64(1e-2)), resume=True)


def test_resume_of_another_bench_s_progress_names_the_command_and_the_flag_the_run_was_named_by(folder, capsys):
    """bench graph --name x --resume over bench seq's interrupted runs/x-progress.pt was refused as "the progress of a
    'bench-seq' run, which 'bench-graph' cannot continue; give this bench another --out": the job's internal name, and
    --out for a run named by --name (its refusal without --resume said --name and the command continuing that run)."""

    @dataclass
    class Config:
        steps: int = 1

    Path("runs").mkdir()
    BenchProgress.open("runs/x-progress.pt", "bench-seq", Config(), resume=False).piece("a", lambda: 1)
    assert main(["bench", "graph", "--data", "karate", "--quiet", "--name", "x", "--resume"]) == 2
    assert ("--resume: runs/x-progress.pt holds the progress of an interrupted 'bench seq' run, not of this 'bench "
            "graph': give this bench another --name ('fwdlearn bench seq ... --resume' continues that run)"
            ) in capsys.readouterr().err
    assert sorted(p.name for p in Path("runs").iterdir()) == ["x-progress.pt"]
    with pytest.raises(UsageError, match=r"progress of a 'bench seq' run, which 'bench graph' cannot continue"):
        BenchProgress.open("runs/x-progress.pt", "bench-graph", Config(), resume=True)


def test_a_set_of_parts_given_in_another_order_and_cuda_as_cuda_n_are_the_same_run(tmp_path, monkeypatch):
    """--skip names a set of parts (``"unordered"`` in its metadata): ``--skip recall cost`` resumes ``--skip cost
    recall`` (it was refused, "--skip cost recall there, recall cost here"); an ordered list (--depths) stays refused
    in another order, as its rows would be. --device cuda is recorded as the current device's cuda:N, so that cuda:0
    resumes it."""
    from dataclasses import field

    from fwdlearn.bench import _device_setting
    from fwdlearn.sequences.cli.bench import SeqBenchConfig
    from fwdlearn.sequences.cli.bench_dfa import DfaBenchConfig

    @dataclass
    class Config:
        skip: list = field(default_factory=lambda: ["cost", "recall"], metadata={"unordered": True})
        depths: list = field(default_factory=lambda: [1, 2])

    BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(), resume=False).piece("a", lambda: 1)
    again = BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(skip=["recall", "cost"]), resume=True)
    assert again.piece("a", lambda: pytest.fail("a finished piece ran again")) == 1
    with pytest.raises(UsageError, match=r"other settings \(--depths 1 2 there, 2 1 here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(depths=[2, 1]), resume=True)
    with pytest.raises(UsageError, match=r"other settings \(--skip cost recall there, alignment cost recall here\)"):
        BenchProgress.open(tmp_path / "p.pt", "bench-x", Config(skip=["recall", "alignment", "cost"]), resume=True)
    for cls in (SeqBenchConfig, DfaBenchConfig):
        assert {f.name for f in fields(cls) if f.metadata.get("unordered")} == {"skip"}

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert _device_setting(torch.device("cuda")) == _device_setting(torch.device("cuda:1")) == "cuda:1"
    assert _device_setting(torch.device("cuda:0")) == "cuda:0" and _device_setting(torch.device("cpu")) == "cpu"
