"""Edges of the run files' durability and locks that a hand mutation of fwdlearn.files, fwdlearn.runs,
fwdlearn.records and fwdlearn.fit's checkpoints left passing: an interrupt (not an Exception) during a write, a
folder that cannot be opened for its sync, file descriptors left open, a lock path that cannot be made, another
user's process, size and length limits at their exact bound, a record without "job" or "cwd", --resume with
--overwrite, a checkpoint removed during a run, infinities in JSON, a fingerprint lacking one entry and differing on
another, a failed copy of a previous save."""

import errno
import json
import os
from pathlib import Path

import pytest

import fwdlearn.files as files
from fwdlearn import records, runs
from fwdlearn.errors import UsageError


def _interrupted(tmp):
    Path(tmp).write_text("half")
    raise KeyboardInterrupt


def test_an_interrupt_during_a_write_leaves_no_tmp_and_no_new_file(tmp_path):
    """Ctrl-C is a BaseException, not an Exception: the '.tmp' of the write it stopped and the new files of the run
    (removed_on_failure) go all the same."""
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(tmp_path / "out.json", _interrupted)
    assert not list(tmp_path.iterdir())
    old, new = tmp_path / "old.png", tmp_path / "new.png"
    old.write_text("kept")
    with pytest.raises(KeyboardInterrupt):
        with files.removed_on_failure(old, new, None):
            new.write_text("drawn")
            raise KeyboardInterrupt
    assert old.read_text() == "kept" and not new.exists()


def test_a_folder_that_cannot_be_opened_for_its_sync_is_passed_over(tmp_path, monkeypatch):
    """A folder this process may write but not read cannot be opened for its fsync (EACCES): the write stands."""
    real_open = os.open

    def no_folders(path, flags, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", no_folders)
    files.atomic_write(tmp_path / "out.json", lambda tmp: tmp.write_text("{}"))
    assert (tmp_path / "out.json").read_text() == "{}"

    def io_error(path, flags, *args, **kwargs):  # (an error of the disk's is not passed over)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(files.os, "open", io_error)
    with pytest.raises(OSError) as raised:
        files.atomic_write(tmp_path / "again.json", lambda tmp: tmp.write_text("{}"))
    assert raised.value.errno == errno.EIO and not (tmp_path / "again.json.tmp").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_writes_leave_no_file_open(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        files.atomic_write(tmp_path / f"{i}.json", lambda tmp: tmp.write_text("{}"))
        files.atomic_write_all({tmp_path / f"{i}.md": lambda tmp: tmp.write_text("x"),
                                tmp_path / f"{i}-r.json": lambda tmp: tmp.write_text("{}")})
    assert len(os.listdir("/proc/self/fd")) < before + 10  # (a leak per write: 140 more; room for a stray one)


def test_taking_turns_where_no_lock_can_be_made_runs_the_block_unguarded(tmp_path):
    """A lock that cannot be made (its folder is a file; a read-only folder) does not stop the block."""
    (tmp_path / "file").write_text("")
    ran = []
    with files.taking_turns(tmp_path / "file" / ".lock"):
        ran.append(True)
    assert ran == [True]


def test_another_users_process_counts_as_alive(monkeypatch):
    def not_permitted(pid, sig):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(files.os, "kill", not_permitted)
    assert files.alive(12345)


def test_a_name_as_long_as_the_file_system_allows_beside_the_suffixes_is_written(tmp_path):
    longest = os.pathconf(tmp_path, "PC_NAME_MAX") - len(".rank1024.prev.tmp")
    files.check_writable(tmp_path / ("a" * (longest - 5) + ".json"))
    with pytest.raises(UsageError, match="too long"):
        files.check_writable(tmp_path / ("a" * (longest - 4) + ".json"))


@pytest.fixture
def released():
    yield
    runs.release_runs()


def test_a_dead_processs_lock_of_exactly_lock_bytes_is_taken_over(tmp_path, released):
    lock = tmp_path / "a.json.lock"
    dead = 2 ** 22 + 12345  # (above Linux's pid_max default: no such process)
    lock.write_text(str(dead).ljust(runs.LOCK_BYTES))
    assert len(lock.read_bytes()) == runs.LOCK_BYTES
    runs.lock_run(tmp_path / "a.json")
    assert lock.read_text() == str(os.getpid())


def test_a_lock_holding_process_id_0_is_no_lock_fwdlearn_left(tmp_path, released):
    """Process 0 is no process (``os.kill(0, 0)`` signals this process's group, so it read as a live run)."""
    (tmp_path / "a.json.lock").write_text("0")
    with pytest.raises(UsageError, match="not a lock fwdlearn left"):
        runs.lock_run(tmp_path / "a.json")


def test_a_record_of_exactly_the_largest_size_is_read_and_one_byte_more_is_not(tmp_path):
    """(A file over the cap that does not end as a JSON object does: one that does, a long run's record, is read.)"""
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"job": "seq-train", "files": {}}) + "\x00")
    size = path.stat().st_size
    with pytest.raises(records.NoRunRecord, match="not valid JSON"):  # (read: within the cap)
        records.read_record(path, largest=size)
    with pytest.raises(records.NoRunRecord, match="larger than"):
        records.read_record(path, largest=size - 1)
    path.write_text(json.dumps({"job": "seq-train", "files": {}}))
    assert records.read_record(path, largest=path.stat().st_size).job == "seq-train"


def test_a_record_nested_too_deep_is_refused_without_a_traceback(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(records.NoRunRecord, match="not valid JSON"):
        records.read_record(path)


def test_a_record_without_job_or_cwd_is_read_as_empty(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"files": {"checkpoint": "a.pt"}, "cwd": ""}))
    found = records.read_record(path)
    assert (found.job, found.files, found.cwd) == ("", {"checkpoint": "a.pt"}, None)


def _listed(folder: Path, pid: int, renames) -> None:
    (folder / "a.json.renaming").write_text(json.dumps({"pid": pid, "renames": renames}))


def test_a_list_of_renames_renames_only_a_tmp_over_its_own_target(tmp_path):
    """Only '<target>.tmp' is renamed over 'target': a list naming another source (a user's notes) moves nothing."""
    (tmp_path / "notes.md").write_text("my notes")
    (tmp_path / "a.json").write_text("old")
    _listed(tmp_path, 2 ** 22 + 12345, [["notes.md", "a.json"]])
    files.finish_renames(tmp_path / "a.json")
    assert (tmp_path / "notes.md").read_text() == "my notes" and (tmp_path / "a.json").read_text() == "old"
    assert not (tmp_path / "a.json.renaming").exists()


def test_the_run_holding_the_lock_finishes_a_list_whatever_process_it_names(tmp_path):
    """remove_stale_tmp is called by the run holding the lock: a list naming a live process (a reused id) is a
    killed run's, finished, not left, and its new set is not removed as stale '.tmp' files."""
    (tmp_path / "a.json").write_text("old")
    (tmp_path / "a.json.tmp").write_text("new")
    _listed(tmp_path, os.getppid(), [["a.json.tmp", "a.json"]])
    files.remove_stale_tmp(tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text() == "new" and not (tmp_path / "a.json.renaming").exists()


def test_a_list_of_renames_killed_while_it_was_written_is_removed(tmp_path):
    (tmp_path / "a.json.renaming.tmp").write_text('{"pid": 1, "ren')
    files.remove_stale_tmp(tmp_path / "a.json")
    assert not list(tmp_path.iterdir())


def test_a_lock_left_with_this_processs_own_id_is_taken_over(tmp_path, released):
    """A lock holding this process's id that it does not hold (a killed run's, its id reused) is no live run."""
    lock = tmp_path / "a.json.lock"
    lock.write_text(str(os.getpid()))
    runs.lock_run(tmp_path / "a.json")
    assert lock.read_text() == str(os.getpid())


def test_a_run_given_only_a_checkpoint_path_is_locked(tmp_path, monkeypatch):
    """--checkpoint names a file another run may name too: the run takes its lock (as for --name or --json)."""
    monkeypatch.chdir(tmp_path)
    assert runs.run_outputs("seq-train", runs.RunOptions(), checkpoint="c.pt").named


def test_a_resumed_run_given_overwrite_keeps_its_record(tmp_path, monkeypatch, released):
    """--resume --overwrite continues the run: its record, which names the checkpoint, is not removed at the start
    (only a run starting over replaces it; removed, a run killed before its first save left the checkpoint bare)."""
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    Path("runs/a.pt").write_bytes(b"saved")
    Path("runs/a.json").write_text(json.dumps({"job": "seq-train", "files": {"checkpoint": "runs/a.pt"}}))
    options = runs.RunOptions(name="a", overwrite=True, device="cpu")
    paths = runs.run_outputs("seq-train", options, checkpoint="", resume=True)
    runs.start_run(options, paths)
    assert Path("runs/a.json").is_file() and Path("runs/a.pt").read_bytes() == b"saved"
    assert Path("runs/a.json") in runs.run_outputs("seq-train", options, checkpoint="").stale  # (a start over: it goes)


def test_json_naming_no_job_is_replaced_as_a_run_of_this_command(tmp_path, monkeypatch):
    """A record without a "job" (``""``) is not another command's run: --overwrite replaces it (it was refused as "the
    record of a '' run"), and without --overwrite it is refused as an existing file."""
    monkeypatch.chdir(tmp_path)
    Path("other.pt").write_bytes(b"saved")
    Path("r.json").write_text(json.dumps({"files": {"checkpoint": "other.pt"}}))
    runs.run_outputs("seq-train", runs.RunOptions(json="r.json", overwrite=True))
    with pytest.raises(FileExistsError, match="already exists"):
        runs.run_outputs("seq-train", runs.RunOptions(json="r.json"))


def test_a_checkpoint_removed_during_a_run_is_no_save_of_its_own(tmp_path, released):
    """resumable_checkpoint names a checkpoint to --resume only when this run saved one: a split's checkpoint gone
    since the start (removed by the user) leaves the first one as an earlier run's, not this run's to resume."""
    first, split = tmp_path / "a.pt", tmp_path / "a-split1.pt"
    first.write_bytes(b"earlier")
    split.write_bytes(b"earlier")
    paths = runs.RunPaths(record=tmp_path / "a.json", checkpoint=first, split_checkpoints=(split,))
    runs.start_run(runs.RunOptions(device="cpu"), paths)
    assert runs.resumable_checkpoint() is None
    split.unlink()
    assert runs.resumable_checkpoint() is None
    os.utime(first, ns=(0, 10 ** 9))  # (a save of the run's own: then it is named)
    assert runs.resumable_checkpoint() == first


def test_a_lock_whose_write_fails_leaves_no_file(tmp_path, monkeypatch, released):
    """A full disk (or Ctrl-C) while this process's id is written for its lock leaves no '<record>.lock.<pid>'."""
    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs, "synced", full)
    with pytest.raises(OSError, match="No space left"):
        runs.lock_run(tmp_path / "a.json")
    assert not list(tmp_path.iterdir())


def test_infinite_numbers_are_written_as_null_and_listed():
    """Infinities are no JSON either (json.dumps(allow_nan=False) refused the record: 'Out of range float values')."""
    content = records.plain_json({"loss": float("inf"), "scores": [1.0, float("-inf")], "nan": float("nan")})
    assert content["loss"] is None and content["scores"] == [1.0, None] and content["nan"] is None
    assert content["non_finite"] == ["loss: inf", "scores[1]: -inf", "nan: nan"]
    assert json.loads(records.json_text({"x": float("inf")}))["x"] is None
    assert records.plain_json({"loss": 1.0}) == {"loss": 1.0}  # (no empty list where every number is finite)


def test_a_real_difference_beside_an_unrecorded_entry_is_named_as_a_mismatch():
    """A checkpoint lacking an entry (an older fwdlearn) that also differs on one it holds was made by another run:
    the refusal names that difference and the settings as the fix, not only the older version."""
    from fwdlearn.fit import CheckpointMismatch, check_fingerprint

    saved = {"fingerprint": {"model": {"kind": "recurrent", "layers": 2}, "seed": 1}}
    now = {"model": {"kind": "recurrent", "layers": 2, "dropout": 0.1}, "seed": 0}
    with pytest.raises(CheckpointMismatch, match=r"seed 1 \(checkpoint\) vs 0 \(now\)") as refused:
        check_fingerprint("c.pt", saved, now)
    assert "older fwdlearn than this one" not in str(refused.value)


def _trainer_run(checkpoint: Path, **given):
    from torch import nn

    from fwdlearn.fit import Stateful, Trainer

    Trainer(steps=1, quiet=True, checkpoint=checkpoint, **given).run(lambda i: {"loss": 1.0}, None,
                                                                    Stateful({"model": nn.Linear(1, 1)}))


def test_a_run_started_over_removes_the_earlier_runs_previous_save_and_a_resumed_one_keeps_it(tmp_path):
    """'<checkpoint>.prev' (a torchrun process's save before its last) of an earlier run is not this run's: a run
    starting over removes it (else a later resume could agree on its step); a resumed run keeps its own."""
    checkpoint, previous = tmp_path / "c.pt", tmp_path / "c.pt.prev"
    _trainer_run(checkpoint)
    previous.write_bytes(b"an earlier run's")
    _trainer_run(checkpoint, overwrite=True)
    assert checkpoint.is_file() and not previous.exists()
    previous.write_bytes(b"this run's")
    _trainer_run(checkpoint, resume=True)
    assert previous.read_bytes() == b"this run's"


def test_a_previous_save_whose_copy_fails_leaves_no_half_copy(tmp_path, monkeypatch):
    """fit._keep_previous copies the checkpoint where there are no hard links: a full disk during the copy leaves
    no '<checkpoint>.prev.tmp' behind."""
    import shutil

    from fwdlearn import fit

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    def half_copy(source, target, *args, **kwargs):
        Path(target).write_bytes(b"sav")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", no_links)
    monkeypatch.setattr(shutil, "copy2", half_copy)
    (tmp_path / "c.pt").write_bytes(b"saved")
    with pytest.raises(OSError, match="No space left"):
        fit._keep_previous(tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
