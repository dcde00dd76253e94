"""What an interrupted ``fwdlearn bench`` run finished, kept so that ``--resume`` goes on from there.

A bench is made of pieces: one fit (a mode, a rule, a method at one depth on one split) or one group of interleaved
timings (every mode at one context, so that each ratio's baseline is timed beside its figure). As each piece ends,
its result is saved in ``<out>-progress.pt`` (the file rewritten whole, atomically, so a kill leaves the pieces
before it or those with it, never half a file). A run given ``--resume`` with the same ``--out`` (or ``--name``) and
the same settings (and the same content of the files it reads, the same fwdlearn and torch) reads each piece found
there instead of running it again; the finished run removes the file once its results and record are written.

A piece depends on nothing the pieces before it left behind (each seeds its randomness), so a resumed piece's
result is the one the run would have computed. Its *seconds* were timed by the earlier process, though: the notes
of a resumed run name the pieces read and say so.

Example::

    progress = BenchProgress.open(path, "bench-seq", config, resume=True)
    result = progress.piece("quality/dsf", lambda: train("dsf"))   # read when the earlier run finished it
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError, UsageError
from .files import atomic_write, save_torch

__all__ = ["BenchProgress", "PROGRESS_SUFFIX", "NOT_SETTINGS", "RESUME_HELP", "bench_settings", "digests", "plain",
           "saved_job"]

T = TypeVar("T")

#: the file of a bench's progress: ``<out>-progress.pt``
PROGRESS_SUFFIX = "-progress.pt"
#: the config fields that shape no number of a bench (where its files go, what it prints): a resumed run may change
#: them; any other field differing from the interrupted run's is refused
NOT_SETTINGS = frozenset({"name", "json", "out", "overwrite", "quiet", "debug", "resume"})

#: the ``--resume`` help of every bench
RESUME_HELP = ("continue the interrupted run of this bench with the same --out (or --name) and settings: the pieces it "
               "finished (each fit, each group of interleaved timings), kept in <out>-progress.pt, are read instead of "
               "run again")


def bench_settings(config: Any) -> dict[str, Any]:
    """The fields of ``config`` (a bench's dataclass) that shape its numbers, by name, as values torch's safe reader
    reads back (lists as lists, a path as its string, a NumPy number as Python's: the config takes them, and a
    progress holding them could be saved but never resumed). A list field whose metadata says ``"unordered": True``
    (``--skip``: a set of parts) is kept sorted, so ``--skip recall cost`` resumes ``--skip cost recall``."""
    settings = {}
    for f in fields(config):
        if f.name not in NOT_SETTINGS:
            value = _plain_setting(getattr(config, f.name))
            settings[f.name] = sorted(value, key=str) if f.metadata.get("unordered") and isinstance(value, list) \
                else value
    return settings


def saved_job(path: str | Path) -> str | None:
    """The bench (``"bench-seq"``) whose progress the file ``path`` holds, or ``None`` when it cannot be read as a
    bench's progress (damaged, cut short, another kind of file)."""
    from .fit import load_torch

    try:
        saved = load_torch(path)
    except Exception:  # noqa: BLE001 - a file that cannot be read is no bench's progress to name
        return None
    if isinstance(saved, dict) and isinstance(saved.get("pieces"), dict) and isinstance(saved.get("job"), str):
        return saved["job"]
    return None


def _plain_setting(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain_setting(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        return plain(value, "setting")
    except TypeError:  # (a type of a bench's own: compared by its text, which the safe reader reads back)
        return str(value)


def _versions() -> dict[str, str]:
    """The versions a bench's numbers depend on beyond its settings: fwdlearn's and torch's."""
    import torch

    from . import __version__

    return {"fwdlearn": str(__version__), "torch": str(torch.__version__)}


def digests(inputs: Sequence[tuple[str, str | Path]]) -> dict[str, str]:
    """``"<flag> <path>"`` -> the SHA-256 of the file, for each ``(flag, path)`` a bench reads that is a file: a
    resumed run whose data changed since the interrupt would mix pieces measured on two data sets."""
    import hashlib

    out = {}
    for flag, path in inputs:
        if Path(path).is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[f"{flag} {path}"] = digest.hexdigest()
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def plain(value: Any, where: str) -> Any:
    """``value`` (a piece's result) as torch's safe reader reads it back: dicts (string or integer keys), lists,
    tuples, strings, numbers, booleans and ``None`` as Python's own types (a NumPy float or torch's version string,
    subclasses or look-alikes of them, would be pickled as their classes, which the safe reader refuses), tensors
    detached on the CPU. Anything else is refused (``TypeError``, naming ``where``)."""
    import numbers

    import torch

    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, str):
        return str(value)
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # (a NumPy scalar: np.float32, np.bool_)
        return plain(value.item(), where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"{where}: a key of type {type(key).__name__} ({key!r}) cannot be kept in a bench's "
                                "progress; key by strings")
            out[plain(key, where)] = plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(f"{where}: a {type(value).__name__} cannot be kept in a bench's progress (torch's safe reader "
                    "reads tensors and plain values only); keep its figures as numbers")


@dataclass
class BenchProgress:
    """The pieces of one bench run: those read from an interrupted run (``resumed``) and those this run finished.

    Args:
        path: ``<out>-progress.pt``.
        job: the bench's command (``"bench-seq"``); another bench's file is refused.
        settings: :func:`bench_settings` of the run's config.
        inputs: :func:`digests` of the files the bench reads.
    """

    path: Path
    job: str
    settings: dict[str, Any]
    #: ``"<flag> <path>"`` -> SHA-256 of each file the bench reads (:func:`digests`)
    inputs: dict[str, str] = field(default_factory=dict)
    pieces: dict[str, Any] = field(default_factory=dict)
    #: the pieces read from the interrupted run, in the order this run asked for them
    resumed: list[str] = field(default_factory=list)
    _asked: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def open(cls, path: str | Path, job: str, config: Any, resume: bool,
             inputs: Sequence[tuple[str, str | Path]] = ()) -> "BenchProgress":
        """This run's progress at ``path``: empty, or with ``resume`` the interrupted run's pieces, refused when that
        run was another bench's, had other settings (naming each flag that differs), read files whose content has
        changed since (``inputs``: the ``(flag, path)`` of the files the bench reads) or ran other versions of
        fwdlearn or torch."""
        progress = cls(Path(path), job, bench_settings(config), digests(inputs))
        if resume:
            saved = progress._read()
            progress._check_same_run(saved)
            progress.pieces = dict(saved["pieces"])
        return progress

    def _read(self) -> dict[str, Any]:
        from .errors import reading
        from .fit import load_torch

        with reading(self.path, "a bench's progress",
                     "it may have been cut short; start over with --overwrite in place of --resume"):
            saved = load_torch(self.path)
        if not (isinstance(saved, dict) and {"job", "settings", "inputs", "versions", "pieces"} <= set(saved)
                and isinstance(saved["pieces"], dict)):
            raise InputError(f"{self.path} is not a bench's progress (a torch file of another kind); give the bench "
                             "another --out, or remove the file if it is not wanted")
        return saved

    def _check_same_run(self, saved: dict[str, Any]) -> None:
        if saved["job"] != self.job:
            raise UsageError(f"--resume: {self.path} is the progress of a '{saved['job'].replace('-', ' ')}' run, "
                             f"which '{self.job.replace('-', ' ')}' cannot continue; give this bench another --out")
        differ = [f"{_flag(name)} {_shown(saved['settings'].get(name))} there, {_shown(value)} here"
                  for name, value in self.settings.items() if saved["settings"].get(name) != value]
        differ += [f"{name} {saved['versions'].get(name)} there, {version} here"
                   for name, version in _versions().items() if saved["versions"].get(name) != version]
        changed = [given for given in dict.fromkeys([*saved["inputs"], *self.inputs])
                   if self.inputs.get(given) != saved["inputs"].get(given)]
        if changed and not differ:
            raise UsageError(f"--resume: {', '.join(changed)}: the file{'s' * (len(changed) > 1)} changed (or went) "
                             f"since the interrupted run that saved {self.path} measured its pieces on "
                             f"{'them' if len(changed) > 1 else 'it'}: put back what it read, or start over with "
                             "--overwrite in place of --resume")
        if differ:
            raise UsageError(f"--resume: the interrupted run that saved {self.path} had other settings ("
                             f"{'; '.join(differ)}); its pieces measured those: resume with the settings it was "
                             "started with, or start over with --overwrite in place of --resume")

    def piece(self, key: str, compute: Callable[[], T]) -> T:
        """The result of the piece ``key``: the interrupted run's when it finished the piece, else ``compute()``,
        saved before it is returned (as plain values and tensors, :func:`plain`: the value a resumed run reads back).
        Each key is asked once per run (a second ask is a bench's bug: two pieces under one name)."""
        if key in self._asked:
            raise ValueError(f"the bench asked for its piece {key!r} twice; each piece needs its own key")
        self._asked.add(key)
        if key in self.pieces:
            self.resumed.append(key)
            return self.pieces[key]
        value = plain(compute(), key)
        self.pieces[key] = value
        self._save()
        return value

    def _save(self) -> None:
        state = {"job": self.job, "settings": self.settings, "inputs": self.inputs, "versions": _versions(),
                 "pieces": self.pieces}
        atomic_write(self.path, lambda tmp: save_torch(state, tmp))

    def note(self) -> str:
        """What the notes of a resumed run say ("" when no piece was read)."""
        if not self.resumed:
            return ""
        ran = len(self._asked) - len(self.resumed)
        return (f"Resumed (--resume): {len(self.resumed)} of the {len(self._asked)} pieces "
                f"{'was' if len(self.resumed) == 1 else 'were'} finished by an earlier, interrupted run and read from "
                f"{self.path.name} ({', '.join(self.resumed)}); {ran} ran in this one. A read piece's seconds were "
                "timed by the earlier process, so a ratio between one of them and a figure timed here spans two "
                "processes.")
