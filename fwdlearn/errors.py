"""The errors fwdlearn anticipates, and the checks that raise them.

Every anticipated error carries a message that names the problem and the fix (and the path, when a
file is involved). The ``fwdlearn`` command prints such an error as one line and exits with a status
(:data:`EXIT_STATUS`); any other exception is a bug and keeps its traceback.

- :class:`UsageError` (a :class:`ValueError`): a flag or argument has a bad value, flags contradict
  each other, or a checkpoint does not fit the run that would resume it.
- :class:`InputError` (a :class:`ValueError`): an input file is unreadable or malformed.
- :class:`DivergenceError` (a :class:`FloatingPointError`): training diverged; the message names the
  step, the rule that tripped and the value. :class:`NonFiniteLossError` is the NaN/inf case.
- :class:`TrainingInterrupted` (a :class:`KeyboardInterrupt`): Ctrl-C during training, with the last
  checkpoint written.

``ValueError`` raised by the library's own argument checks and file-system errors
(``FileNotFoundError``, ``FileExistsError``, ``PermissionError``, ...) count as anticipated too.
Under ``torchrun``, :func:`alike_on_every_process` marks the errors of checks every process makes alike (the
flags, the data they all read), so that one process reports them, not each.

Example::

    check_range("--lr", lr, gt=0)            # UsageError: --lr must be > 0, got -1.0
    with reading(path, "checkpoint"):        # a truncated file -> InputError naming the path
        torch.load(path)
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "InputError", "DivergenceError", "NonFiniteLossError", "TrainingInterrupted",
           "ANTICIPATED", "EXIT_STATUS", "exit_status", "is_integer", "check_range", "check_finite_tensor", "check_int",
           "reading", "alike_on_every_process", "found_by_every_process", "warn", "FwdlearnWarning", "check_bool",
           "check_seed", "check_representable", "check_not_meta", "on_meta", "check_model_values", "OncePerCause"]


class FwdlearnWarning(UserWarning):
    """A warning of fwdlearn's own (:func:`warn`): the ``fwdlearn`` command prints it as one line,
    ``fwdlearn: warning: ...`` (rank 0 alone under ``torchrun``)."""


class UsageError(ValueError):
    """A bad value, contradicting flags, or a checkpoint that does not fit this run; the message says the fix."""


class InputError(ValueError):
    """An input file that cannot be read as what it should be; the message names the path."""


class DivergenceError(FloatingPointError):
    """Training diverged: the message names the step, the rule that tripped and the value."""


class NonFiniteLossError(DivergenceError):
    """A loss (or a state to be saved) became NaN or infinite; the message names which and suggests a fix."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training.

    Attributes:
        step: the step that was running.
        checkpoint: the checkpoint file, or ``None`` when the run keeps none.
        saved_step: the step the checkpoint holds (``None``: nothing saved yet).
        resume_with: the checkpoint a command's ``--checkpoint`` names to resume the run (``None``: ``checkpoint``;
            a run of several splits: split 0's, from which the later splits' are derived).
    """

    def __init__(self, step: int, checkpoint: Path | None, saved_step: int | None, where: str = "",
                 saved: str = "", resume_with: Path | None = None) -> None:
        super().__init__(step, checkpoint, saved_step)
        self.step, self.checkpoint, self.saved_step = step, checkpoint, saved_step
        self.where, self.saved = where, saved  # a schedule's words: "block 2 of 3", "block 1, finished"
        self.resume_with = resume_with

    @property
    def at(self) -> str:
        """Where it stopped, in words: ``step 12``, ``step 12 of block 2 of 3``."""
        return f"step {self.step}" + (f" of {self.where}" if self.where else "")

    def __str__(self) -> str:
        at = self.at
        if self.checkpoint is not None and self.saved_step is not None:
            held = self.saved or f"step {self.saved_step}"
            return (f"interrupted at {at}; the last checkpoint is {self.checkpoint} ({held}): run the same command "
                    f"with --resume to continue (and --checkpoint {self.resume_with or self.checkpoint} if it had no "
                    "--name; in Python resume=True)")
        if self.checkpoint is not None:
            return f"interrupted at {at}, before the first checkpoint ({self.checkpoint}) was written"
        return f"interrupted at {at}; this run keeps no checkpoint"


#: exceptions the CLI reports as one line (anything else is a bug and keeps its traceback)
ANTICIPATED: tuple[type[BaseException], ...] = (UsageError, InputError, DivergenceError, ValueError, OSError)

#: exit status of the ``fwdlearn`` command for each kind of outcome
EXIT_STATUS = {"ok": 0, "error": 2, "diverged": 3, "interrupted": 130, "broken_pipe": 141, "terminated": 143}


def exit_status(error: BaseException) -> int | None:
    """The CLI's exit status for ``error``, or ``None`` when it is not anticipated (a bug)."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_STATUS["interrupted"]
    if isinstance(error, DivergenceError):
        return EXIT_STATUS["diverged"]
    if isinstance(error, ANTICIPATED):
        return EXIT_STATUS["error"]
    return None


def check_int(name: str, value: Any, low: int | None, what: str = "") -> int:
    """``value`` as an ``int`` if it is an integer (:func:`is_integer`) ``>= low`` (``None``: any); else
    ``ValueError`` naming ``name`` (``what``: an explanation after it, e.g. ``" (the number of GNN layers)"``)."""
    if not is_integer(value) or low is not None and value < low:
        bound = f" >= {low}" if low is not None else ""
        raise ValueError(f"{name} must be an int{bound}{what}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool when it is one (Python's or NumPy's); else :class:`UsageError` naming ``name`` (the string
    ``"False"`` is true, so a switch given as text would quietly turn on)."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise UsageError(f"{name} must be True or False, got {value!r}")


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` as an ``int`` a seed can be: an integer (:func:`is_integer`) that torch's generators take
    (``-2**63 <= seed < 2**64``); else ``ValueError`` naming ``name``."""
    if not is_integer(value) or not -2**63 <= int(value) < 2**64:  # (int(): a 0-d tensor compared overflowed)
        raise ValueError(f"{name} must be an int in [-2**63, 2**64) (torch's generators take no other), got {value!r}")
    return int(value)


def check_representable(name: str, value: Any, dtype: Any = None, small: bool = True) -> None:
    """Refuse a (finite) hyperparameter that the parameters' floating-point ``dtype`` (default float32) cannot
    hold: larger in size than its largest number (every product with it is infinite), or, with ``small``, nonzero
    and smaller than its smallest normal number (a learning rate rounds to 0: nothing trains; a temperature
    overflows what it divides). ``None`` and ``0`` pass (checked elsewhere)."""
    import torch

    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real) or value == 0:
        return
    dtype = torch.float32 if dtype is None else dtype
    if not dtype.is_floating_point:
        return
    info, kind = torch.finfo(dtype), str(dtype).removeprefix("torch.")
    if abs(value) > info.max:
        raise UsageError(f"{name} {value:g} is larger than any {kind} number (at most {info.max:.3g}): every "
                         f"product with it would be infinite; choose a value of a sensible size")
    if small and abs(value) < info.tiny:
        raise UsageError(f"{name} {value:g} is smaller than the smallest normal {kind} number ({info.tiny:.3g}): "
                         f"in {kind} it rounds to 0 or overflows what it divides; choose a value of a sensible size")


def is_integer(value: Any) -> bool:
    """An integer and not a bool: an ``int``, a numpy integer or a 0-d integer tensor (what ``operator.index``
    takes)."""
    if isinstance(value, bool):
        return False
    if type(value).__module__.startswith("torch"):
        import torch

        if isinstance(value, torch.Tensor) and (value.dim() != 0 or value.dtype == torch.bool):
            return False  # (torch's __index__ also takes [3], [[3]] and a bool tensor)
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_range(name: str, value: Any, *, min: float | None = None, gt: float | None = None,
                max: float | None = None, optional: bool = False) -> None:
    """Raise :class:`UsageError` unless ``value`` is a finite number within the bounds.

    Args:
        name: how the user spells it (``"--lr"``, ``"lr"``).
        value: the value given.
        min, max: inclusive bounds; gt: an exclusive lower bound.
        optional: ``None`` is accepted (the option is off).
    """
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # (Python and NumPy numbers)
        raise UsageError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value}")
    if gt is not None and not value > gt:
        raise UsageError(f"{name} must be > {gt}, got {value}")
    if min is not None and value < min:
        raise UsageError(f"{name} must be >= {min}, got {value}")
    if max is not None and value > max:
        raise UsageError(f"{name} must be <= {max}, got {value}")


def check_finite_tensor(name: str, tensor: Any, fix: str = "clean or impute them first") -> None:
    """Raise :class:`UsageError` when ``tensor`` (floating point) holds NaN or infinite entries, saying how many."""
    import torch

    if not tensor.is_floating_point():
        return
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        raise UsageError(f"{name} holds {bad:,} NaN or infinite entries (of {tensor.numel():,}); {fix}")


#: what a refusal of a tensor on the meta device says to do by default
META_FIX = "make it on the CPU or a GPU instead (a meta tensor has no values to move)"


def on_meta(name: str, tensor: Any, needs: str, fix: str = META_FIX) -> str:
    """The one wording of a refusal of ``tensor`` (the argument ``name``) on the meta device: ``"<name> is on the meta
    device (shape [..]): a shape without values, and <needs>; <fix>"``."""
    return (f"{name} is on the meta device (shape {list(tensor.shape)}): a shape without values, and {needs}; "
            f"{fix}")


def check_not_meta(name: str, tensor: Any, needs: str = "its values are read", fix: str = META_FIX) -> None:
    """Raise ``ValueError`` (:func:`on_meta`) when ``tensor`` is a tensor on the meta device: every read of its values
    failed with torch's 'Tensor.item() cannot be called on meta tensors' or 'Cannot copy out of meta tensor', naming
    neither the argument nor the fix."""
    if getattr(tensor, "is_meta", False) is True:
        raise ValueError(on_meta(name, tensor, needs, fix))


#: what a refusal of a model whose weights are on the meta device says to do
MODEL_META_FIX = ("build the model outside the torch.device('meta') block (or load it with a map_location other than "
                  "'meta'), or give it values first: model.to_empty(device='cpu'), then model.load_state_dict(weights) "
                  "(to_empty leaves them uninitialised)")


def check_model_values(model: Any, needs: str, what: str = "the model", fix: str = MODEL_META_FIX) -> None:
    """Raise ``ValueError`` (:func:`on_meta`, naming ``what``'s first such tensor) when ``model`` is an ``nn.Module``
    with a parameter or buffer on the meta device (built in a ``torch.device("meta")`` block): its inputs, moved to its
    device, were refused as the caller's own ("tokens is on the meta device" of ids made on the CPU), or torch's
    "Cannot copy out of meta tensor" / "META device type not an accelerator" named neither the model nor the fix.
    Anything else (a plain callable, a module without tensors) passes."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return
    for named in (model.named_parameters(), model.named_buffers()):
        for name, tensor in named:
            if tensor.is_meta:
                raise ValueError(on_meta(f"{what}'s {name}", tensor, needs, fix))


def _cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``error`` or the first exception of type ``kind`` among its causes."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))  # (a context the raise suppressed, `from None`, is not a cause: the reader's own message
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)  # names the file)
    return None


@contextmanager
def reading(path: str | Path, what: str, hint: str = "") -> Iterator[None]:
    """Turn a failure to read ``path`` as ``what`` into an :class:`InputError` naming the path.

    Errors that already speak for themselves (a ``ValueError`` of the reader's own checks, a missing or
    unreadable file, a full disk where a reader writes its cache) pass through unchanged; anything else raised
    inside the block (a truncated zip, random bytes given to an unpickler, text that is not UTF-8, ...) is reported
    with ``path`` and ``hint``.
    """
    from .files import NO_ROOM

    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise
    except Exception as error:  # noqa: BLE001 - any reader's failure is the file's problem
        if isinstance(error, OSError) and error.errno in NO_ROOM:  # (but a full disk is the disk's: "cannot read
            raise  # tinyshakespeare as a text corpus (OSError: Not enough disk space ...); a corpus must be UTF-8")
        unicode = _cause(error, UnicodeError)
        if unicode is not None:
            raise InputError(f"cannot read {path} as {what}: it is not UTF-8 text ({unicode})"
                             + (f"; {hint}" if hint else "")) from error
        if isinstance(error, ValueError):
            raise  # the reader's own check, which names the problem
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        detail = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        raise InputError(f"cannot read {path} as {what} ({detail})" + (f"; {hint}" if hint else "")) from error


@contextmanager
def alike_on_every_process() -> Iterator[None]:
    """Inside the block, an anticipated error is one every process of a ``torchrun`` job meets alike (a check of
    the flags, or of data they all read): it is marked so that the ``fwdlearn`` command lets rank 0 alone report it,
    as it does for an error found before the processes connect. Errors of one process's own (its part of a
    checkpoint) are raised outside such a block and name their rank."""
    try:
        yield
    except ANTICIPATED as error:
        error.alike_on_every_process = True  # type: ignore[attr-defined]
        raise


def found_by_every_process(error: BaseException) -> bool:
    """Whether ``error`` was raised inside :func:`alike_on_every_process`."""
    return bool(getattr(error, "alike_on_every_process", False))


def warn(message: str, category: type[Warning] = FwdlearnWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside fwdlearn and torch (the user's line, however deep in
    the library the condition was found, also from a hook torch calls), so that Python's filters show it once per
    line of the user's code."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2  # (stacklevel 2: the caller of this function)
    # (torch's frames too: a hook it calls, e.g. a module's _load_from_state_dict under load_state_dict)
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in ("fwdlearn", "torch"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class OncePerCause:
    """Shows each of fwdlearn's warnings (:class:`FwdlearnWarning`) once over the parts of a run (the splits of ``graph
    train``): a warning that repeats one shown in an earlier part, up to its numbers, is the same cause met again (a
    DFA fit that learned nothing, in every split); it is not shown again, and :meth:`summary` then says in one line
    which parts met it (a long warning printed once per split buried the results). Within the part that first showed
    it, a warning of the same cause is another situation of that part (a second layer's, with its own numbers), shown
    as Python shows it (an exact repeat once per line): hidden, it was lost, and with one part alone the summary said
    "split 0 met the warning above again". Other warnings pass unchanged. A part that reads what every part reads
    alike (``alike=True``: the graph loaded for each split, whose warnings are the file's, not the split's) shows a
    cause once as well, and a later one's repeat is the same thing read again: hidden, and left out of the summary.

    Example::

        once = OncePerCause()
        for seed in seeds:
            with once.part(f"the graph of split {seed}", alike=True):
                data = load_graph(...)
            with once.part(f"split {seed}"):
                fit(...)
        once.summary()
    """

    def __init__(self) -> None:
        # cause -> (the text shown first, the part that showed it, the later parts that met it again)
        self._causes: dict[str, tuple[str, str, list[str]]] = {}

    @staticmethod
    def _cause(text: str) -> str:
        import re

        return re.sub(r"\d+(?:[.,]\d+)*(?:e[-+]?\d+)?", "#", text)

    @contextmanager
    def part(self, name: str, alike: bool = False) -> Iterator[None]:
        """Inside the block, the part ``name`` runs; ``alike``: it reads what every part reads alike (a later part's
        repeat of a cause it shows is not named by :meth:`summary`)."""
        import warnings

        with warnings.catch_warnings():  # (a block of its own: Python's once-per-line registry starts over, so a
            shown = warnings.showwarning  # repeat of the very same text reaches the count below)

            def show(message, category, filename, lineno, file=None, line=None) -> None:
                if issubclass(category, FwdlearnWarning):
                    cause = self._cause(str(message))
                    if cause not in self._causes:
                        self._causes[cause] = (str(message), name, [])
                    elif self._causes[cause][1] != name:  # (met again in a later part)
                        if not alike:
                            self._causes[cause][2].append(name)
                        return
                shown(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            yield

    def summary(self) -> None:
        """One warning per cause met in more than one part, naming the parts that met it again."""
        for text, _, again in self._causes.values():
            if again:
                words = text.split()
                head = " ".join(words[:8]) + (" ..." if len(words) > 8 else "")
                warn(f"{', '.join(dict.fromkeys(again))} met the warning above again (\"{head}\"), each with its own "
                     "numbers; it is shown once")
