"""Writes that survive a power loss: every file fwdlearn renames into place (a checkpoint, a run record, a bench's
table, a plot, a list of renames) is flushed to the disk (os.fsync) before its rename, and its folder after it.
Renamed unsynced, a power loss could leave an empty or truncated file under the real name on XFS or ext4 without
auto_da_alloc: a checkpoint that resumes nothing. The order of the calls is recorded here; the disk is not cut."""

import errno
import json
import os
from pathlib import Path

import pytest

import fwdlearn.files as files
from fwdlearn.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


@pytest.fixture
def calls(monkeypatch):
    """The ``os.fsync`` and ``os.replace`` calls made, in order: ``("fsync", file)`` and ``("replace", file, target)``,
    a file as its (device, inode), so a file renamed after its sync is still the one synced."""
    made: list[tuple] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd):
        fsync(fd)
        made.append(("fsync", _key(os.fstat(fd))))

    def recorded_replace(src, dst, *args, **kwargs):
        moved = _key(os.stat(src, follow_symlinks=False))
        replace(src, dst, *args, **kwargs)
        made.append(("replace", moved, os.path.abspath(dst)))

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    return made


def _check_synced(made: list[tuple]) -> list[str]:
    """Every replaced file was synced before its rename and its folder after it; the names renamed into place."""
    renamed = []
    for i, call in enumerate(made):
        if call[0] != "replace":
            continue
        _, moved, target = call
        renamed.append(os.path.basename(target))
        assert ("fsync", moved) in made[:i], f"{target} was renamed into place before its content was synced"
        folder = _key(os.stat(os.path.dirname(target)))
        assert ("fsync", folder) in made[i + 1:], f"the folder of {target} was not synced after the rename"
    return renamed


def test_an_atomic_write_syncs_the_file_before_its_rename_and_the_folder_after(tmp_path, calls):
    files.atomic_write(tmp_path / "sub" / "out.json", lambda tmp: tmp.write_text("{}"))
    assert _check_synced(calls) == ["out.json"]
    assert (tmp_path / "sub" / "out.json").read_text() == "{}"


def test_a_set_of_files_is_synced_before_its_list_of_renames_and_the_list_before_the_renames(tmp_path, calls,
                                                                                              monkeypatch):
    """atomic_write_all: each '.tmp' synced, then the '.renaming' list (synced and in place before the first rename),
    then the renames, the folders synced before the list is removed (a power loss leaves a list to finish)."""
    removed = []
    unlink = Path.unlink

    def recorded_unlink(self, *args, **kwargs):
        removed.append((len(calls), self.name))
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", recorded_unlink)
    files.atomic_write_all({tmp_path / "r.json": lambda tmp: tmp.write_text("{}"),
                            tmp_path / "other" / "r.md": lambda tmp: tmp.write_text("# r\n")})
    assert _check_synced(calls) == ["r.md.renaming", "r.json", "r.md"]
    assert removed[-1] == (len(calls), "r.md.renaming")  # (after the last folder's sync)


def test_renames_a_killed_run_left_are_synced_when_finished(tmp_path, calls):
    """finish_renames: the listed '.tmp' files (synced before the list was written) renamed, their folders synced."""
    for name in ("a.json", "a.md"):
        (tmp_path / f"{name}.tmp").write_text(name)
    (tmp_path / "a.md.renaming").write_text(json.dumps({"pid": os.getpid(), "renames": [
        [str(tmp_path / f"{name}.tmp"), str(tmp_path / name)] for name in ("a.json", "a.md")]}))
    files.finish_renames(tmp_path / "a.json", tmp_path / "a.md", held=True)
    assert (tmp_path / "a.md").read_text() == "a.md" and not (tmp_path / "a.md.renaming").exists()
    made = [call for call in calls if call[0] == "replace"]
    assert [os.path.basename(call[2]) for call in made] == ["a.json", "a.md"]
    assert calls[-1] == ("fsync", _key(os.stat(tmp_path)))


def test_a_previous_checkpoint_copied_is_synced_before_its_rename(tmp_path, calls, monkeypatch):
    """fit._keep_previous copies the checkpoint where the file system has no hard links: the copy is synced."""
    from fwdlearn import fit

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "c.pt").write_bytes(b"saved")
    fit._keep_previous(tmp_path / "c.pt")
    assert _check_synced(calls) == ["c.pt.prev"]
    assert (tmp_path / "c.pt.prev").read_bytes() == b"saved"


def test_every_file_a_training_run_writes_is_synced(tmp_path, calls, monkeypatch, capsys):
    """seq train's checkpoint (saved at each evaluation) and its record: every rename into place (a plot is written
    through atomic_write, above)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("a stitch in time saves nine, and a rolling stone gathers no moss.\n" * 20)
    assert main(["seq", "train", "--data", "corpus.txt", "--layers", "1", "--hidden", "8", "--context", "8",
                 "--batch-size", "2", "--steps", "2", "--eval-every", "1", "--sample", "0", "--quiet",
                 "--name", "s"]) == 0, capsys.readouterr().err
    assert sorted(set(_check_synced(calls))) == ["s.json", "s.pt"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-hard-links"])
def test_a_runs_lock_holds_its_process_id_on_the_disk_before_it_is_placed(tmp_path, calls, monkeypatch, links):
    """A run's lock (its process id, linked into place whole) was placed unsynced: after a power loss it could be
    empty, and every later run of that name was refused ("it is not a lock fwdlearn left ...; move or remove it").
    Synced first, it names a process that is gone, and the next run takes it over."""
    from fwdlearn import runs

    link = os.link

    def recorded_link(src, dst, *args, **kwargs):
        if not links:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        link(src, dst, *args, **kwargs)
        calls.append(("link", _key(os.stat(dst))))

    monkeypatch.setattr(os, "link", recorded_link)
    try:
        runs.lock_run(tmp_path / "r.json")
        lock = tmp_path / "r.json.lock"
        assert lock.read_text() == str(os.getpid())
        assert ("fsync", _key(os.stat(lock))) in calls
        if links:
            assert calls.index(("fsync", _key(os.stat(lock)))) < calls.index(("link", _key(os.stat(lock))))
    finally:
        runs.release_runs()


@pytest.mark.parametrize("cause", [errno.EINVAL, errno.ENOSYS])
def test_a_file_system_without_fsync_still_writes(tmp_path, monkeypatch, cause):
    """A FUSE or network file system without fsync (EINVAL, ENOSYS): the write stands, unsynced, with no error."""
    def unsupported(fd):
        raise OSError(cause, os.strerror(cause))

    monkeypatch.setattr(os, "fsync", unsupported)
    files.atomic_write_all({tmp_path / "a.json": lambda tmp: tmp.write_text("{}")})
    assert (tmp_path / "a.json").read_text() == "{}"


def test_a_failed_fsync_is_said_as_the_write_of_the_file(tmp_path, monkeypatch):
    """An I/O error of the disk found by the sync names the file written (not its '.tmp'), which keeps its old
    content, and leaves no '.tmp'."""
    (tmp_path / "out.json").write_text("old")

    def io_error(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", io_error)
    with pytest.raises(OSError) as raised:
        files.atomic_write(tmp_path / "out.json", lambda tmp: tmp.write_text("new"))
    assert files.describe_os_error(raised.value).startswith(f"cannot write {tmp_path / 'out.json'}: the disk reported")
    assert (tmp_path / "out.json").read_text() == "old" and not (tmp_path / "out.json.tmp").exists()


def test_on_windows_no_folder_is_opened_for_a_sync(tmp_path, monkeypatch, calls):
    """Windows cannot open a folder (os.open of one is a PermissionError): the file is synced, the folder is not."""
    monkeypatch.setattr(files, "WINDOWS", True)
    opened = []
    open_ = os.open

    def recorded_open(path, flags, *args, **kwargs):
        opened.append(Path(path))
        return open_(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recorded_open)
    files.atomic_write(tmp_path / "out.json", lambda tmp: tmp.write_text("{}"))
    assert opened == [tmp_path / "out.json.tmp"]
    assert [call[0] for call in calls] == ["fsync", "replace"]


def test_on_macos_the_drives_cache_is_flushed_too(tmp_path, monkeypatch, calls):
    """macOS's fsync hands the data to the drive, whose cache a power loss still empties: F_FULLFSYNC asks for it on
    the disk (a file system without it, ENOTSUP, gets fsync)."""
    fcntl = pytest.importorskip("fcntl")
    asked = []

    def full_fsync(handle, command, *args):
        asked.append(_key(os.fstat(handle)))
        if len(asked) > 1:  # (the folder's file system has none)
            raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))
        return 0

    monkeypatch.setattr(fcntl, "F_FULLFSYNC", 51, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", full_fsync)
    files.atomic_write(tmp_path / "out.json", lambda tmp: tmp.write_text("{}"))
    assert asked == [_key(os.stat(tmp_path / "out.json")), _key(os.stat(tmp_path))]
    assert [call[0] for call in calls] == ["replace", "fsync"]  # (the folder's, by fsync)
