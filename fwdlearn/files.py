"""Writing output files safely: atomic writes, writability probes, no silent overwrite.

- :func:`atomic_write` writes ``<path>.tmp`` and renames it over ``path``: a crash or a kill never
  leaves half a file under the real name (a stale ``.tmp`` is removed by :func:`remove_stale_tmp`). The ``.tmp`` is
  flushed to the disk (``fsync``) before its rename and the folder after it (:func:`synced`, :func:`sync_folder`):
  renamed unsynced, a power loss could leave an empty or truncated file under the real name on file systems that
  may write the rename before the data (XFS; ext4 mounted without ``auto_da_alloc`` or with ``data=writeback``). The
  name ``<path>.tmp`` beside an output is fwdlearn's own: what is there when a write starts is taken for a killed
  write's leftover and replaced (a link there is removed, never written through into the file it points at).
  :func:`atomic_write_all` does it for files that belong together (a bench's results and their record): every
  ``.tmp`` is written before any is renamed, so a failure leaves the earlier set whole, never old and new mixed; the
  renames are listed first in ``<last path>.renaming``, so that a process killed between two of them (SIGKILL, the
  OOM killer) leaves the new set to be finished by :func:`finish_renames` (the next run of those names does it).
- :func:`check_writable` fails *before any work* when a file could not be written later: a parent that
  is a file, a folder without write permission, a read-only file system.
- :func:`refuse_overwrite` fails before any work when an output exists and replacing it was not asked for;
  :func:`removed_on_failure` removes the outputs a run wrote when it then fails (a plot before a record that could
  not be written), so a re-run is not refused for them.
- :func:`taking_turns` lets processes that prepare one shared folder (``torchrun`` ranks building a data set's
  cache on first use) do it one at a time.
- :func:`writing` makes an ``OSError`` raised while a file is written name that file (a write's error names none:
  ``[Errno 28] No space left on device``); :func:`save_torch` writes through Python, so a full disk is that
  ``OSError`` and not torch's ``unexpected pos ...`` ``RuntimeError``; :func:`describe_os_error` words such an error
  as one line (the path, the cause in words and the fix), the ``fwdlearn`` command's one place for it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

__all__ = ["atomic_write", "atomic_write_all", "tmp_path", "finish_renames", "remove_stale_tmp", "synced",
           "sync_folder", "check_writable", "refuse_overwrite", "removed_on_failure", "remove_quietly", "taking_turns",
           "writing", "save_torch", "describe_os_error", "read_at_most", "NO_ROOM"]

#: the ``errno`` values of a write the disk has no room for (full, or the user's quota used up)
NO_ROOM = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
#: whether this is Windows, whose processes and file names fwdlearn checks its way (tests set it to simulate Windows)
WINDOWS = sys.platform == "win32"


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Inside the block, an ``OSError`` that names no file (a failed write: ``[Errno 28] No space left on device``)
    is given ``path`` as its file name, and marked as a write's (:func:`describe_os_error` says "cannot write")."""
    try:
        yield
    except OSError as error:
        if error.errno is not None and error.filename is None:
            error.filename = str(path)
        error.fwdlearn_writing = True  # type: ignore[attr-defined]
        raise


def save_torch(obj: object, path: str | Path) -> None:
    """``torch.save(obj)`` into the file ``path`` through a Python file object: a full disk is then an ``OSError``
    (errno ``ENOSPC``; :func:`atomic_write` names the file), where torch writing the path itself raised
    ``RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534``, naming neither the file
    nor the cause."""
    import torch

    with open(path, "wb") as handle:
        torch.save(obj, handle)


#: the ``errno`` values of an ``fsync`` (or of opening a folder for one) that the file system does not offer: a
#: FUSE or network file system without it, a folder this process may write but not read; the write stands unsynced
_NO_SYNC = frozenset(getattr(errno, name) for name in ("EINVAL", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EBADF", "EACCES",
                                                       "EPERM", "EISDIR") if hasattr(errno, name))


def synced(path: str | Path) -> Path:
    """Flush the file ``path`` (a written ``.tmp``) to the disk (``os.fsync``) before it is renamed into place:
    renamed unsynced, a power loss can leave the new name with an empty or truncated file (a checkpoint that resumes
    nothing) on file systems that may write the rename before the data (XFS; ext4 with ``data=writeback`` or without
    ``auto_da_alloc``). A file system that offers no ``fsync`` is passed over; a failure of the disk's (``EIO``, a
    full NFS share's ``ENOSPC``) is raised. Returns ``path``.

    Its cost, with the folder's sync (measured on a 2-core VM's ext4 disk, the median of 9 to 15 saves over the same
    file, in 5 runs each): a checkpoint of ``fwdlearn seq train``'s defaults (GRU, 2 layers, hidden 128; 5.8 MB)
    took 0.026-0.047 s a save unsynced, 0.034-0.060 s synced, about 0.01 s more; one of 100 MB 0.32-0.47 s either way.
    A checkpoint is saved at an evaluation, not at every step."""
    # (Windows' fsync, FlushFileBuffers, needs a handle that may write)
    _fsync(path, os.O_RDWR if WINDOWS else os.O_RDONLY)
    return Path(path)


def sync_folder(folder: str | Path) -> None:
    """Flush the folder ``folder``'s entries (a rename into it) to the disk, so that a power loss after a write
    returned does not undo its rename. Not on Windows, where a folder cannot be opened for it (``os.open`` of one is
    refused); a folder that cannot be opened or synced (no read permission, a file system without it) is passed
    over."""
    if not WINDOWS:
        _fsync(folder, os.O_RDONLY)


def _fsync(path: str | Path, flags: int) -> None:
    """``os.fsync`` of ``path`` opened with ``flags`` (``F_FULLFSYNC`` on macOS: :func:`_full_fsync`); passed over
    where the file system offers none (:data:`_NO_SYNC`). An error of the disk's is raised naming no file, as a
    write's: :func:`writing` names the file being written."""
    try:
        handle = os.open(path, flags)
    except OSError as error:
        if error.errno in _NO_SYNC:
            return
        raise
    try:
        if not _full_fsync(handle):
            os.fsync(handle)
    except OSError as error:
        if error.errno not in _NO_SYNC:
            raise
    finally:
        os.close(handle)


def _full_fsync(handle: int) -> bool:
    """On macOS, ``fcntl(F_FULLFSYNC)`` of the open file ``handle``, and whether it was made: there ``fsync`` hands the
    data to the drive, whose own cache a power loss still empties (Apple's ``fsync(2)``); a file system without it
    (``ENOTSUP``: some network ones) gets ``os.fsync``. Elsewhere nothing (``False``)."""
    try:
        import fcntl
    except ImportError:
        return False
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is None:
        return False
    try:
        fcntl.fcntl(handle, full)
    except OSError:
        return False
    return True


def tmp_path(path: str | Path) -> Path:
    """Where :func:`atomic_write` stages ``path``: ``<path>.tmp``."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def _clear_tmp(tmp: Path) -> None:
    """Remove what is at the staging name ``tmp`` (a killed write's leftover, a link) before a write opens it: a
    symbolic or hard link there was written through, into the file it points at (``m.pt.tmp -> notes.md``: the model
    replaced the user's notes.md, and m.pt was left a link to it). A folder is left (the write names it)."""
    if os.path.islink(tmp) or (os.path.lexists(tmp) and not os.path.isdir(tmp)):
        os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` then rename ``tmp`` over ``path`` (parents created); a file or link already at ``tmp`` is removed
    first (:func:`_clear_tmp`), and the temporary file is removed if ``write`` fails or is interrupted. ``tmp`` is
    synced to the disk before the rename (:func:`synced`) and the folder after it (:func:`sync_folder`): a power
    loss leaves the old file or the new one, whole."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with writing(path):  # (a write's OSError named no file)
            path.parent.mkdir(parents=True, exist_ok=True)
            _clear_tmp(tmp)
            write(tmp)
            os.replace(synced(tmp), path)
            sync_folder(path.parent)
    except BaseException:
        remove_quietly(tmp)
        raise
    return path


#: the most bytes read of a file at a list of renames' path (:func:`finish_renames`): a list names the few files of a
#: set, a pair of paths each (a file of 256 MiB there took 1.5 s and 512 MB of memory to be found no list, one of 2 GB
#: about 12 s and 4 GB); :func:`atomic_write_all` writes none longer
RENAMES_BYTES = 1 << 20


def read_at_most(path: str | Path, most: int) -> bytes:
    """The bytes of the small file at ``path`` (a lock, a list of renames), reading no more than ``most`` + 1 of them;
    a ``ValueError`` when it holds more (a file of 2 GB put at such a path was read whole: 4 GB and seconds)."""
    with open(path, "rb") as handle:
        data = handle.read(most + 1)
    if len(data) > most:
        raise ValueError(f"{path} is longer than {most:,} bytes")
    return data


def _renames_path(path: str | Path) -> Path:
    """Where :func:`atomic_write_all` lists the renames of a set whose last file is ``path``: ``<path>.renaming``."""
    path = Path(path)
    return path.with_name(path.name + ".renaming")


def atomic_write_all(writes: Mapping[str | Path, Callable[[Path], object]]) -> list[Path]:
    """Write files that belong together as one set: ``write(tmp)`` of each ``path -> write`` to its ``<path>.tmp``
    (parents created), and only once every one is written, each renamed over its path. A failure or an interrupt
    while writing (a full disk, a value that is not JSON, Ctrl-C) removes the temporaries and leaves every path as it
    was: an earlier run's files stay a whole set, not some replaced and the others left. Before the first rename the
    renames are listed in ``<last path>.renaming`` (named relative to its folder, which may then be moved; removed once
    they are done): Ctrl-C between two renames finishes the others before it is raised, and a process killed between
    two (SIGKILL, the OOM killer, which no handler sees) leaves the list for :func:`finish_renames`, which the next
    run of those names calls first: the new set, whole. Every ``.tmp`` is synced to the disk before the list is
    written (itself synced before the first rename), and the folders after the renames, before the list is removed:
    a power loss leaves the old set or the list to finish the new one (:func:`synced`). Returns the paths."""
    staged: list[tuple[Path, Path]] = []
    listed: Path | None = None
    try:
        for path, write in writes.items():
            path = Path(path)
            with writing(path):  # (a write's OSError named no file)
                path.parent.mkdir(parents=True, exist_ok=True)
                _clear_tmp(tmp_path(path))
                staged.append((tmp_path(path), path))
                write(staged[-1][0])
                synced(staged[-1][0])
        if not staged:
            return []
        # (renamed one after another, a kill after the first left the new results beside the old table and record)
        where = _renames_path(staged[-1][1])
        text = json.dumps({"pid": os.getpid(), "renames": [[_listed_name(tmp, where), _listed_name(path, where)]
                                                           for tmp, path in staged]})
        if len(text) > RENAMES_BYTES:  # (finish_renames reads no more; json.dumps writes ASCII)
            raise ValueError(f"atomic_write_all: the list of renames of these {len(staged)} files would take "
                             f"{len(text):,} bytes, more than finish_renames reads of one (RENAMES_BYTES, "
                             f"{RENAMES_BYTES:,}); write them in smaller sets")
        listed = atomic_write(where, lambda tmp: tmp.write_text(text))
        for tmp, path in staged:
            with writing(path):
                os.replace(tmp, path)
        _sync_folders(path for _, path in staged)  # (the renames on the disk before the list that finishes them goes)
        listed.unlink()
    except BaseException as error:
        if listed is not None and not isinstance(error, OSError):  # interrupted between renames: the new set is
            try:                                                  # whole on disk, so it is finished
                _rename_staged(staged)
            except OSError:
                pass
        for tmp, _ in staged:
            remove_quietly(tmp)
        if listed is not None:
            remove_quietly(listed)
        raise
    return [path for _, path in staged]


def _listed_name(path: Path, listed: Path) -> str:
    """How a list of renames at ``listed`` names ``path``: relative to the list's folder, so that a folder moved or
    reached by another path after a kill is still finished (absolute names, of the folder as it was, renamed nothing
    there: the list was removed and the new set's last ``.tmp`` files with it, the new results left beside the old
    table); absolute where no relative path leads there (another drive, on Windows)."""
    try:
        return os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(listed)))
    except ValueError:
        return os.path.abspath(path)


def remove_quietly(path: Path) -> None:
    """Remove a write's temporary file after the write failed, without hiding that failure (call it inside the
    ``except``): a removal the file system refuses too (remounted read-only after an I/O error, a name too long)
    raised its own error in its place, naming the '.tmp' and not the write's cause."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


@contextmanager
def removed_on_failure(*paths: str | Path | None) -> Iterator[None]:
    """Inside the block, a run writes ``paths`` (``None``: none), those not there yet as new files of its own: an
    error or an interrupt inside it removes the new ones it wrote (a plot written before a record that then failed
    to write, on a full disk), so the failed run leaves none behind that a re-run would refuse without
    ``--overwrite``. A file there before the block (replaced by a run with ``--overwrite`` or ``--resume``, which a
    re-run with the same flag replaces again) is left."""
    new = [Path(path) for path in paths if path is not None and not os.path.lexists(path)]
    try:
        yield
    except BaseException:
        for path in new:
            remove_quietly(path)  # (a removal the file system refuses too does not hide the run's own error)
        raise


def _rename_staged(staged: list[tuple[Path, Path]]) -> None:
    """Rename every staged ``.tmp`` that is still there over its path (one that is gone was renamed already), then
    sync their folders (:func:`sync_folder`)."""
    for tmp, path in staged:
        try:
            os.replace(tmp, path)
        except FileNotFoundError:  # (renamed before the interrupt, or by another process finishing the same list)
            continue
    _sync_folders(path for _, path in staged)


def _sync_folders(paths: Iterable[Path]) -> None:
    """:func:`sync_folder` of each folder holding one of ``paths``, once."""
    for folder in dict.fromkeys(os.path.dirname(os.path.abspath(path)) for path in paths):
        sync_folder(folder)


def finish_renames(*paths: str | Path | None, held: bool = False) -> list[Path]:
    """Finish the renames of a set :func:`atomic_write_all` was killed between: for each of ``paths`` with a
    ``<path>.renaming`` beside it, rename the ``.tmp`` files it lists that are still there over their paths and remove
    the list; the lists finished. A list whose process is alive is a write under way, and left to it, unless
    ``held`` (the caller holds the run's lock, so no live run of those names writes them). Only a rename of
    ``<target>.tmp`` over a ``target`` in the list's own folder or among ``paths`` (the run's outputs) is made: a list
    found in a folder one was given named any file on the disk, and its ``.tmp`` beside it (a file of another program's)
    replaced that file, ``--overwrite`` or not. A file at a list's name that is no list (not JSON, or longer than
    :data:`RENAMES_BYTES`, of which no more is read) is removed: there is nothing to finish."""
    outputs = {os.path.abspath(path) for path in paths if path is not None}
    finished = []
    for path in paths:
        listed = _renames_path(path) if path is not None else None
        try:  # (a name too long for the suffix is refused by the checks of the outputs, which name the flag)
            if listed is None or not listed.is_file():
                continue
        except OSError:
            continue
        folder = os.path.dirname(os.path.abspath(listed))
        try:  # (names relative to the list's folder, or absolute)
            content = json.loads(read_at_most(listed, RENAMES_BYTES))
            pid, pairs = int(content["pid"]), [(Path(os.path.normpath(os.path.join(folder, tmp))),
                                                Path(os.path.normpath(os.path.join(folder, target))))
                                               for tmp, target in content["renames"]]
        except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError):  # (not a list of renames:
            remove_quietly(listed)  # nothing to finish; a pid of 1e999 or a nesting too deep ended in a traceback)
            continue
        if not held and pid != os.getpid() and alive(pid):
            continue
        # (only <path>.tmp, over the run's own files or files beside the list)
        ours = [(tmp, target) for tmp, target in pairs if tmp == tmp_path(target)
                and (os.path.abspath(target) in outputs or os.path.dirname(os.path.abspath(target)) == folder)]
        _rename_staged(ours)
        listed.unlink(missing_ok=True)
        finished.append(listed)
    for path in paths if held else ():  # (a list a process was killed while writing: no rename was made)
        if path is not None:
            remove_quietly(tmp_path(_renames_path(path)))
    return finished


def alive(pid: int) -> bool:
    """Whether the process ``pid`` is running (another user's counts): the writer of a lock or of a list of renames
    a killed run left behind is gone when it is not. On Windows ``os.kill(pid, 0)`` is no probe: signal 0 is
    ``CTRL_C_EVENT`` there, sent to the console process group ``pid``, which fails (``[WinError 87] The parameter is
    incorrect``) for a process that is gone, so a killed run's lock stopped every later run of its name with that
    error; there ``psutil.pid_exists`` asks (PyG requires psutil), and without psutil the process counts as alive (a
    lock's refusal names the lock to remove)."""
    if WINDOWS:
        try:
            import psutil
        except ImportError:
            return True
        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # (an id too large for one: a list's "pid" of 10**30 was a traceback)
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_tmp(*paths: str | Path | None) -> list[Path]:
    """Remove the ``<path>.tmp`` a killed run left behind, once the renames of a set it was killed between are
    finished (:func:`finish_renames`; the caller holds the run's lock); the removed files. The name is fwdlearn's (a
    file a user keeps there is taken for a killed run's leftover: :func:`atomic_write` would replace it anyway); a link
    there is removed, not the file it points at."""
    finish_renames(*paths, held=True)
    removed = []
    for path in paths:
        if path is not None and tmp_path(path).is_file():
            tmp_path(path).unlink()
            removed.append(tmp_path(path))
    return removed


def check_writable(path: str | Path, flag: str = "", fix: str = "choose another path") -> None:
    """Raise :class:`~fwdlearn.errors.UsageError` unless ``path`` can be written (its folders created).

    The nearest existing ancestor must be a folder in which a file can actually be created (a probe file
    is created and removed at once; nothing else is touched). ``fix`` ends the message of a folder that is a file
    or is not writable: what the caller's user can do about it (a command whose outputs always go under ``runs/``
    names another fix than another path).
    """
    path = Path(path)
    where = f"{path} ({flag})" if flag else str(path)
    if path.is_dir():  # (--name names no file: "give a file name" was no fix there)
        raise UsageError(f"cannot write {where}: it is a folder; "
                         + ("choose another --name, or move the folder" if flag == "--name" else "give a file name"))
    kind = _special_file(path)
    if kind:  # (a run record's check read /dev/zero without end, and --overwrite renamed a file over /dev/null)
        raise UsageError(f"cannot write {where}: it is {kind}, not a regular file (an output is written beside its "
                         f"path and renamed over it, which would replace the {kind.split()[-1]}); give a regular "
                         "file's path")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {where}: {parent} is a file, not a folder; {fix}")
    try:  # (the name with the suffixes fwdlearn adds beside it: '.tmp', '.lock.<pid>', '.rank<r>.prev.tmp')
        longest = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        longest = 255
    added = len(".rank1024.prev.tmp")  # (the longest suffix fwdlearn adds beside a file: a process's previous save)
    if len(os.fsencode(path.name)) + added > longest:
        raise UsageError(f"cannot write {where}: its name is {len(os.fsencode(path.name))} bytes long, too long for "
                         f"this file system beside the suffixes fwdlearn adds (at most {longest - added}); choose a "
                         "shorter name")
    try:
        handle, probe = tempfile.mkstemp(prefix=".fwdlearn-probe-", dir=parent)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UsageError(f"cannot write {where}: {parent} is not writable ({error.strerror}); {fix}") from None


def _special_file(path: Path) -> str:
    """What ``path`` is when it exists and is neither a regular file nor a folder (a device, a pipe, a socket), in
    words; ``""`` otherwise."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return ""
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return ""


#: ``errno`` -> (the cause in words, the fix; ``{elsewhere}``: how the command writes its outputs elsewhere)
_CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space on that disk, or {elsewhere}"),
    errno.EROFS: ("the file system is read-only", "{elsewhere}"),
    errno.EACCES: ("permission denied", "check the permissions of it and its folder, or {elsewhere}"),
    errno.EPERM: ("the operation is not permitted", "check the permissions of it and its folder, or {elsewhere}"),
    errno.ENAMETOOLONG: ("a name in the path is too long for the file system", "choose shorter names"),
    errno.ENOTDIR: ("a folder on its path is a file", "choose another path, or move that file"),
    errno.EISDIR: ("it is a folder", "give a file's path"),
    errno.EIO: ("the disk reported an input/output error", "check the disk, or {elsewhere}"),
}
if hasattr(errno, "EDQUOT"):
    _CAUSES[errno.EDQUOT] = ("the disk quota is used up", "free space within the quota, or {elsewhere}")


def describe_os_error(error: BaseException, elsewhere: str = "write the outputs elsewhere") -> str | None:
    """One line for an ``OSError`` of the file system (a full disk, a read-only one, a permission, a name too long):
    the path (of a write's failed rename, its target), the cause in words (with the system's) and the fix; ``None``
    for any other error, among them an ``OSError`` fwdlearn raised with a message of its own (no ``errno``).
    ``elsewhere`` says how the command writes its outputs elsewhere (a path under ``FWDLEARN_CACHE_DIR`` says to point
    that elsewhere instead)."""
    if not isinstance(error, OSError) or error.errno not in _CAUSES:
        return None
    cause, fix = _CAUSES[error.errno]
    wrote = getattr(error, "fwdlearn_writing", False)
    # (a rename's error names its source first: atomic_write's os.replace(tmp, path) named the '.tmp', a file the
    # user never gave, as the one that is a folder or may not be replaced; the file being written is its target)
    path = error.filename2 if wrote and getattr(error, "filename2", None) is not None else error.filename
    if path is not None:
        from .data import CACHE_ENV, cache_root

        try:
            in_cache = Path(os.path.abspath(path)).is_relative_to(os.path.abspath(cache_root()))
        except (OSError, ValueError):
            in_cache = False
        if in_cache:
            elsewhere = f"point {CACHE_ENV} at a folder elsewhere (fwdlearn's cache)"
    if not wrote and fix != "{elsewhere}":  # (a read's: writing elsewhere is no fix)
        fix = fix.removesuffix(", or {elsewhere}")
    told = f" ({error.strerror})" if error.strerror and error.strerror.lower() != cause else ""
    where = "" if path is None else f"cannot write {os.fsdecode(path)}: " if wrote else f"{os.fsdecode(path)}: "
    return f"{where}{cause}{told}; {fix.format(elsewhere=elsewhere)}"


def refuse_overwrite(*paths: str | Path | None, overwrite: bool = False, flag: str = "--overwrite") -> None:
    """Fail before any work is done when an output file exists and ``overwrite`` is not set."""
    for path in paths:
        if path and Path(path).exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; choose another output path or pass {flag} to replace it")


@contextmanager
def taking_turns(lock: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created, with its folder) while the block runs, so processes
    that prepare the same folder wait for each other. Not re-entrant: a block that takes the same lock again waits
    for itself. Where no lock can be had (no ``fcntl``, as on Windows; a read-only folder) the block runs
    unguarded."""
    handle = None
    try:
        import fcntl

        Path(lock).parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")
    except (ImportError, OSError):
        pass
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
