"""fwdlearn off Linux: what macOS and Windows lack (``resource``, ``/proc``, ``fcntl``, ``os.kill(pid, 0)`` as a probe,
hard links, symbolic links, a UTF-8 locale), simulated here by taking it away."""

import errno
import io
import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from fwdlearn.errors import UsageError
from fwdlearn.runs import release_runs


def _fake_psutil(monkeypatch, **attributes) -> None:
    monkeypatch.setitem(sys.modules, "psutil", types.SimpleNamespace(**attributes))


def test_a_step_is_measured_without_resource_or_proc_as_on_windows(monkeypatch):
    """Windows has neither ``resource`` nor ``/proc``: every graph fit (each measures its first step) failed with
    ModuleNotFoundError: No module named 'resource'. The peak is now the peak working set (psutil), else 0."""
    from fwdlearn.diagnostics import cost

    monkeypatch.setitem(sys.modules, "resource", None)  # (import resource: ImportError)
    monkeypatch.setattr(cost, "_rss_bytes", lambda: None)  # (no /proc/self/statm)
    memory = types.SimpleNamespace(peak_wset=123_456_789)
    _fake_psutil(monkeypatch, Process=lambda: types.SimpleNamespace(memory_info=lambda: memory))
    measured = cost.measure_cost(lambda: torch.ones(10).sum())
    assert measured.peak_rss_bytes == 123_456_789 and measured.rss_increase_bytes is None
    assert cost.CostReport.from_costs([measured]).peak_memory_bytes == 123_456_789

    monkeypatch.setitem(sys.modules, "psutil", None)  # neither: not measured, no failure
    assert cost.measure_cost(lambda: torch.ones(10).sum()).peak_rss_bytes == 0


def _windows_processes(monkeypatch, running: set[int] | None) -> None:
    """Probe processes as on Windows: ``os.kill(pid, 0)`` fails there (WinError 87) for a process that is gone and for
    most that are not; ``running``: the processes psutil finds (``None``: no psutil)."""
    import fwdlearn.files as files

    def kill(pid, signal):
        raise OSError(errno.EINVAL, "The parameter is incorrect")

    monkeypatch.setattr(files, "WINDOWS", True, raising=False)
    monkeypatch.setattr(files.os, "kill", kill)
    if running is None:
        monkeypatch.setitem(sys.modules, "psutil", None)
    else:
        _fake_psutil(monkeypatch, pid_exists=lambda pid: pid in running)


def test_a_killed_runs_lock_is_taken_over_on_windows(tmp_path, monkeypatch):
    """A lock a killed run left (its console closed: no exit handler ran) stopped every later run of its name on
    Windows with "[Errno 22] The parameter is incorrect" (os.kill(pid, 0) is no probe there), naming no lock; so did
    the list of renames of a set it was killed while renaming into place."""
    from fwdlearn.runs import lock_run

    lock = tmp_path / "r.json.lock"
    lock.write_text("424242")  # a process that is gone
    _windows_processes(monkeypatch, running=set())
    try:
        lock_run(tmp_path / "r.json")
        assert lock.read_text() == str(os.getpid())
    finally:
        release_runs()

    lock.write_text("424242")  # a process that runs: refused by name
    _windows_processes(monkeypatch, running={424242})
    with pytest.raises(UsageError, match=r"another fwdlearn run \(process 424242\) is writing .*r.json"):
        lock_run(tmp_path / "r.json")
    _windows_processes(monkeypatch, running=None)  # without psutil: the same, naming the lock to remove
    with pytest.raises(UsageError, match=r"remove .*r\.json\.lock if no such run exists"):
        lock_run(tmp_path / "r.json")
    assert lock.read_text() == "424242" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json.lock"]

    from fwdlearn.files import finish_renames, tmp_path as staged_path  # a set a killed bench was renaming into place
    table = tmp_path / "bench.md"
    staged_path(table).write_text("the new table")
    renames = {"pid": 424242, "renames": [[str(staged_path(table)), str(table)]]}
    Path(f"{table}.renaming").write_text(json.dumps(renames))
    _windows_processes(monkeypatch, running=set())
    assert finish_renames(table) == [Path(f"{table}.renaming")] and table.read_text() == "the new table"


@pytest.mark.parametrize("refusal", [PermissionError(errno.EPERM, "Operation not permitted"),  # Linux: vfat, vboxsf
                                     OSError(errno.EOPNOTSUPP, "Operation not supported"),  # macOS: exFAT, SMB
                                     AttributeError("module 'os' has no attribute 'link'")])
def test_runs_lock_where_the_file_system_has_no_hard_links(tmp_path, monkeypatch, refusal):
    """A run's lock was linked into place, and a folder without hard links (a FAT or exFAT drive, a virtual machine's
    shared folder) refused every named run, blamed on permissions: "the operation is not permitted; check the
    permissions of it and its folder"."""
    import fwdlearn.runs as runs

    def no_links(source, target):
        raise refusal

    monkeypatch.setattr(runs.os, "link", no_links)
    try:
        runs.lock_run(tmp_path / "r.json")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json.lock"]  # (and no '.lock.<pid>' left)
        assert (tmp_path / "r.json.lock").read_text() == str(os.getpid())
        with pytest.raises(UsageError, match=rf"process {os.getppid()}\) is writing"):  # a live owner still refuses
            (tmp_path / "r2.json.lock").write_text(str(os.getppid()))
            runs.lock_run(tmp_path / "r2.json")
    finally:
        release_runs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r2.json.lock"]


def test_text_outputs_are_utf8_whatever_the_locale(tmp_path, monkeypatch):
    """Windows writes text in its locale's code page (cp1252 in the US and western Europe), which has no '−': a graph
    bench's table (its 'acc. − BP' header) failed to write after the whole bench, and the files of its set with it."""
    from fwdlearn.graphs.cli.bench import COLUMNS, HEADERS
    from fwdlearn.records import RunRecord
    from fwdlearn.reporting import write_results

    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "cp1252")
    json_path, md_path = write_results(tmp_path / "bench", [dict.fromkeys(COLUMNS, 1)], COLUMNS, headers=HEADERS)
    assert "acc. − BP" in md_path.read_bytes().decode("utf-8") and json_path.is_file()
    record = RunRecord("bench", config={}, seed=0)
    record.save_with(tmp_path / "record.json", {"table": (tmp_path / "table.md", "Веселин ± 2 − 1")})
    assert (tmp_path / "table.md").read_bytes().decode("utf-8") == "Веселин ± 2 − 1"


def test_the_planetoid_links_are_read_back_as_windows_gives_them(tmp_path, monkeypatch):
    r"""Windows' os.readlink gives an absolute link's target as '\\?\C:\...': read as another folder than the data
    folder's, every load of Cora there removed the links and PyG's processed copy, and built it again."""
    from fwdlearn.graphs.data import datasets

    source = os.environ.get("FWDLEARN_DATA_DIR")
    if not source or not (Path(source) / "Planetoid" / "Cora" / "raw").is_dir():
        pytest.skip("needs FWDLEARN_DATA_DIR with Planetoid/Cora/raw (../shared/data)")
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    assert datasets._link_planetoid_raw("cora") is not None
    processed = tmp_path / "cache" / "Planetoid" / "Cora" / "processed"
    processed.mkdir()
    (processed / "data.pt").write_text("PyG's processed copy")
    readlink = os.readlink
    monkeypatch.setattr(datasets.os, "readlink", lambda path: "\\\\?\\" + readlink(path))
    assert datasets._link_planetoid_raw("cora") is not None
    assert (processed / "data.pt").read_text() == "PyG's processed copy"  # kept: the links are the data folder's


def test_a_run_name_windows_cannot_hold_is_refused_there(tmp_path, monkeypatch, capsys):
    """On Windows, --name dfa:gaussian (a method's name) wrote the record and checkpoint into hidden streams of a file
    'dfa' (lost when the folder is copied or zipped), and --name c:x wrote x.json outside runs/."""
    import fwdlearn.files as files
    import fwdlearn.runs as runs
    from fwdlearn.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(files, "WINDOWS", True, raising=False)
    assert main(["graph", "train", "--data", "karate", "--epochs", "1", "--name", "dfa:gaussian"]) == 2
    assert ("--name 'dfa:gaussian': Windows allows no ':' in a file name; choose a name without (e.g. "
            "'dfa-gaussian')") in capsys.readouterr().err
    with pytest.raises(UsageError, match=r"no '\?' in a file name; choose a name without \(e\.g\. 'sweep/a-b'\)"):
        runs.check_run_name("sweep/a?b")
    assert not any(tmp_path.iterdir())
    runs.check_run_name("sweep/lr-0.01")  # (and off Windows, any name that stays under runs/)
    monkeypatch.setattr(files, "WINDOWS", False)
    runs.check_run_name("dfa:gaussian")
