"""Bench output: the markdown table and JSON carry every row and the command."""

import json
from pathlib import Path

import pytest

from fwdlearn.reporting import markdown_table, mean_std, write_results


def test_write_results_markdown_and_json(tmp_path):
    rows = [{"method": "bp", "acc": 0.861, "bytes": 1234567}, {"method": "sf", "acc": 0.8449, "bytes": 1000}]
    j, m = write_results(tmp_path / "bench", rows, title="Demo", command="fwdlearn bench demo", notes="Reduced run.")
    md = m.read_text()
    assert "### Demo" in md and "Command: `fwdlearn bench demo`" in md and "Reduced run." in md
    assert "| bp | 0.861 | 1,234,567 |" in md and "| sf | 0.845 | 1,000 |" in md
    data = json.loads(j.read_text())
    assert data["rows"] == rows and data["command"] == "fwdlearn bench demo"


def test_markdown_table_columns_and_mean_std():
    table = markdown_table([{"a": 1, "b": 2.5}], columns=["b"], headers={"b": "B"})
    assert table.splitlines() == ["| B |", "|---|", "| 2.5 |"]
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


def test_result_paths_keep_dots_in_the_prefix(tmp_path):
    from fwdlearn.reporting import result_paths

    assert [p.name for p in result_paths(tmp_path / "recall-lr0.003")] == [
        "recall-lr0.003.json", "recall-lr0.003.md", "recall-lr0.003-record.json"]
    assert [p.name for p in result_paths(tmp_path / "graph.md")] == ["graph.json", "graph.md", "graph-record.json"]
    json_path, md_path = write_results(tmp_path / "sub" / "a.b", [{"x": 1}])
    assert (json_path.name, md_path.name) == ("a.b.json", "a.b.md") and md_path.exists()


def test_table_cells_keep_their_row_and_numbers_below_one_never_read_as_one(tmp_path):
    """A '|' or a line break in a value split the row; 0.99996 was shown as 1; NumPy and torch scalars as their
    reprs; a record did not say which command made it."""
    import numpy as np
    import torch

    from fwdlearn.records import RunRecord
    from fwdlearn.reporting import format_value, invoked_as

    assert markdown_table([{"method": "a|b", "note": "line1\nline2"}]).splitlines()[2] == "| a\\|b | line1 line2 |"
    assert [format_value(v) for v in (0.99996, 0.9999996, 0.5, np.int64(1234567), np.float32(0.25),
                                      torch.tensor(0.5))] == ["0.99996", "0.9999996", "0.5", "1,234,567", "0.25", "0.5"]
    record = RunRecord("job", {"a": 1}, seed=0)
    with invoked_as(["graph", "train", "--data", "my graph"]):
        saved = record.save(tmp_path / "r.json")
    assert json.loads(saved.read_text())["command"] == "fwdlearn graph train --data 'my graph'"


def test_plain_json_and_write_json_take_a_mapping(tmp_path):
    """A list of rows was written while its numbers were finite, and failed with "list indices must be integers or
    slices, not str" once one was NaN (its note had no key to go under): anything but a mapping is refused, always,
    naming the wrapping that fixes it."""
    from fwdlearn.records import plain_json, write_json

    for value in ([1.0, float("nan")], [1.0, 2.0], float("inf")):
        with pytest.raises(TypeError, match=r"plain_json / write_json write a mapping \(its non-finite numbers are "
                                            r"listed under its \"non_finite\" key\); got (list|float): wrap it, e\.g\. "
                                            r"\{\"rows\": value\}"):
            write_json(tmp_path / "rows.json", value)
    assert not (tmp_path / "rows.json").exists()
    assert plain_json({"rows": [1.0, float("nan")]}) == {"rows": [1.0, None], "non_finite": ["rows[1]: nan"]}


def test_markdown_table_shows_every_rows_keys_and_refuses_a_string_of_columns():
    """Without ``columns`` the first row's keys alone made the table: a key only a later row has was dropped, values
    and all, while the JSON kept it. ``columns="acc"`` made the columns a, c, c, every cell empty."""
    rows = [{"method": "bp", "acc": 0.5}, {"method": "sf", "acc": 0.25, "note": "late key"}]
    assert markdown_table(rows).splitlines() == ["| method | acc | note |", "|---|---|---|", "| bp | 0.5 |  |",
                                                 "| sf | 0.25 | late key |"]
    assert markdown_table(iter(rows), ["acc"]).splitlines()[2:] == ["| 0.5 |", "| 0.25 |"]
    with pytest.raises(TypeError, match=r"columns is a list of keys, got the string 'acc': pass \['acc'\]"):
        markdown_table(rows, "acc")


def test_write_results_takes_rows_once_and_writes_under_the_home_folder(tmp_path, monkeypatch):
    """A generator of rows went into the JSON and left the table nothing ("'generator' object is not subscriptable",
    the JSON written and the markdown not); ``~/bench`` made a folder named ``~`` in the working folder."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    j, m = write_results("~/out/bench", ({"method": k, "acc": 0.5} for k in ("bp", "sf")), command="fwdlearn x")
    assert (j, m) == (home / "out" / "bench.json", home / "out" / "bench.md") and not any(work.iterdir())
    assert [r["method"] for r in json.loads(j.read_text())["rows"]] == ["bp", "sf"]
    assert "| sf | 0.5 |" in m.read_text()


def test_ratio_and_mean_std_take_tensors_and_arrays():
    """ratio() gave None -- a missing figure -- for two 0-d tensors (which format_value shows as numbers); mean_std
    failed on a NumPy array or a tensor ("truth value ... is ambiguous"); ratio_row of fewer than three columns said
    "tuple index out of range" (or asked for -2 cells)."""
    import numpy as np
    import torch

    from fwdlearn.reporting import ratio, ratio_row

    assert ratio(torch.tensor(1.0), torch.tensor(4.0)) == 0.25 and ratio(np.array(3.0), 2) == 1.5
    assert ratio(torch.tensor(1.0), torch.tensor(0.0)) is None and ratio(True, 2.0) is None
    assert ratio_row(["metric", "value", "bp", "ratio"], "s", torch.tensor(2.0), torch.tensor(4.0))["ratio"] == 0.5
    assert mean_std(np.array([1.0, 3.0])) == pytest.approx((2.0, 1.0))
    assert mean_std(torch.tensor([1.0, 3.0])) == pytest.approx((2.0, 1.0))
    assert mean_std(v for v in (1.0, 3.0)) == pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError, match="at least one value"):
        mean_std(np.array([]))
    for columns in (["value", "ratio"], []):
        with pytest.raises(ValueError, match=r"ratio_row needs at least three columns \(\.\.\., value, baseline, "
                                             r"ratio\)"):
            ratio_row(columns, 1.0)



def _bench_run(accuracy, files=None):
    """A tiny bench run of prefix ``b`` with --overwrite, its table one row of ``accuracy``."""
    from dataclasses import dataclass, field

    from fwdlearn.bench import BenchRun
    from fwdlearn.runs import RunOptions, release_runs

    @dataclass
    class Config(RunOptions):
        out: str = field(default="")

    bench = BenchRun.start("bench-demo", Config(out="b", overwrite=True))
    try:
        return bench.finish([{"method": "bp", "acc": accuracy}], ["method", "acc"], title="Demo", notes="n",
                            files=files)
    finally:
        release_runs()


def test_a_bench_that_fails_as_it_writes_its_results_leaves_the_earlier_three_files_whole(tmp_path, monkeypatch):
    """BenchRun.finish wrote <out>.json, then <out>.md, then the record, each on its own: a failure after the first
    (a plot named that was not drawn, a full disk as the record was written, Ctrl-C) left, with --overwrite, the new
    results beside the earlier run's table and record (0.9 in the JSON, 0.5 in the table, the earlier record)."""
    monkeypatch.chdir(tmp_path)
    names = ("b.json", "b.md", "b-record.json")
    _bench_run(0.5)
    before = [Path(name).read_text() for name in names]
    with pytest.raises(FileNotFoundError, match="plot none.png"):
        _bench_run(0.9, files={"plot": "none.png"})
    assert [Path(name).read_text() for name in names] == before

    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name == "b-record.json.tmp":
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _bench_run(0.9)
    assert [Path(name).read_text() for name in names] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no .tmp left behind
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert _bench_run(0.9) == (Path("b.json"), Path("b.md"))  # nothing failing: the three replaced, together
    assert json.loads(Path("b.json").read_text())["rows"] == [{"method": "bp", "acc": 0.9}]
    assert "| bp | 0.9 |" in Path("b.md").read_text()
    assert json.loads(Path("b-record.json").read_text())["files"] == {"results": "b.json", "table": "b.md"}


def test_write_results_writes_its_two_files_together(tmp_path, monkeypatch):
    """<out>.json was replaced before <out>.md was written: a failure writing the table left a new JSON beside the
    earlier table."""
    write_results(tmp_path / "r", [{"acc": 0.5}], command="fwdlearn x")
    before = [(tmp_path / name).read_text() for name in ("r.json", "r.md")]
    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name == "r.md.tmp":
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_results(tmp_path / "r", [{"acc": 0.9}], command="fwdlearn x")
    assert [(tmp_path / name).read_text() for name in ("r.json", "r.md")] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]


def test_a_record_says_the_cpu_arithmetic_its_figures_depend_on(monkeypatch):
    """Two machines reporting the same platform gave accuracies a few tenths apart (their training losses differed
    in the last bits, by CPU and maths-library instruction set): the record's host said only the platform."""
    import torch

    from fwdlearn.records import RunRecord

    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    host = RunRecord("job", {"a": 1}, seed=0).as_dict()["host"]
    assert host["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert host["MKL_ENABLE_INSTRUCTIONS"] == "AVX2" and "cpu" in host and host["platform"]


def test_a_record_says_onednns_instruction_set_cap(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 moved bench seq --reference-block's BPTT from 2.3937 to 2.3968 bits/char (the MLPs'
    GELU runs in oneDNN) while the two records' hosts read the same."""
    from fwdlearn.records import RunRecord

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE")
    host = RunRecord("job", {"a": 1}, seed=0).as_dict()["host"]
    assert host["ONEDNN_MAX_CPU_ISA"] == "AVX2" and host["DNNL_MAX_CPU_ISA"] == "AVX512_CORE"


def test_a_record_names_the_commit_it_ran(tmp_path, monkeypatch):
    """A published record said fwdlearn 0.1.0 (every commit's version): its code had to be guessed from its start time,
    and uncommitted changes could not be told."""
    import shutil
    import subprocess

    from fwdlearn import records

    if shutil.which("git") is None:
        pytest.skip("no git")
    # a checkout of its own holding records.py, so that the test does not depend on the tree it runs from
    repo = tmp_path / "repo"
    (repo / "fwdlearn").mkdir(parents=True)
    source = Path(records.__file__).read_text()
    (repo / "fwdlearn" / "records.py").write_text(source)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "x")
    commit = git("rev-parse", "HEAD")
    monkeypatch.setattr(records, "__file__", str(repo / "fwdlearn" / "records.py"))
    assert records.RunRecord("job").as_dict()["code"] == {"commit": commit, "modified": False}
    (repo / "fwdlearn" / "records.py").write_text(source + "\n# an edit\n")
    assert records.RunRecord("job").as_dict()["code"] == {"commit": commit, "modified": True}
    # an installed copy inside another project's repository names no commit (not that project's)
    (repo / "site-packages" / "fwdlearn").mkdir(parents=True)
    monkeypatch.setattr(records, "__file__", str(repo / "site-packages" / "fwdlearn" / "records.py"))
    assert records.RunRecord("job").as_dict()["code"] is None
