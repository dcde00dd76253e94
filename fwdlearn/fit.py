r"""The training loop every domain shares, and small helpers around it.

:class:`Trainer` owns what every loop needs: a step budget with a tqdm bar, evaluation every
few steps, early stopping on a validation metric with the best state restored, checkpoints and
resume, and the cost of the first step (:func:`fwdlearn.diagnostics.cost.measure_cost`). What a
step *does* -- which losses, which parameters -- is a rule's business (:mod:`fwdlearn.schedules`).
A "step" is whatever the caller's ``step`` function does once: one optimizer step of a language
model, or one full-batch epoch of a GNN.

**Divergence.** Every loss a step or an evaluation reports is checked: a NaN or infinite loss, or one
that grows past ``diverge_factor`` times its first value (at least 1; default 100), stops the run with a
:class:`~fwdlearn.errors.DivergenceError` naming the step, the rule that tripped and the value. A state
holding NaN/inf is never marked best and never saved, so the checkpoint keeps the last good state.

**Checkpoints** hold the last state (for a language model: weights, optimizer moments, stream position)
and, only when the best evaluation is not the last one, the best weights once more
(``state.best_state_dict()`` when the state has it, e.g. weights without the optimizer). They are written
atomically (``<path>.tmp``, then renamed). Ctrl-C raises :class:`~fwdlearn.errors.TrainingInterrupted`
naming the last checkpoint.

Also here: :func:`seed_everything`, :func:`progress`, :func:`evaluating` (a model in ``eval()`` mode
for a block of code), :func:`check_finite` and :func:`non_finite_entry`.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import pickle
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fwdlearn.distributed import is_distributed, launched_processes, min_max, raise_together, rank, world_size
from fwdlearn.errors import (ANTICIPATED, DivergenceError, InputError, NonFiniteLossError, TrainingInterrupted,
                             UsageError, check_bool, check_model_values, check_range, check_seed, is_integer, reading)
from fwdlearn.files import atomic_write, check_writable, remove_quietly, save_torch, sync_folder, synced, writing

__all__ = [
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "generator_device",
    "on_device",
    "progress",
    "check_resume",
    "check_unshared_checkpoint",
    "evaluating",
    "training_mode",
    "keeps_mode",
    "frozen",
    "check_finite",
    "check_trainable_dtype",
    "Stateful",
    "EarlyStopping",
    "FitResult",
    "Trainer",
    "weights_changed",
    "NonFiniteLossError",
    "DivergenceError",
    "TrainingInterrupted",
    "non_finite_entry",
    "DIVERGE_FACTOR",
    "Checkpointing",
    "read_checkpoint",
    "is_checkpoint",
    "load_torch",
    "NUMPY_FIX",
    "load_device",
    "tensor_fingerprint",
    "check_fingerprint",
    "CheckpointMismatch",
    "AnotherKindOfRun",
    "load_optimizer_state",
    "Carried",
    "compact_repr",
]

#: default divergence limit: a loss above this many times max(|its first value|, 1) stops training
DIVERGE_FACTOR = 100.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (when installed) and torch (CPU and CUDA); ``seed``: an int torch's generators take
    (:func:`~fwdlearn.errors.check_seed`)."""
    seed = check_seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def generator_device(generator: torch.Generator | None) -> torch.device | None:
    """Where a draw from ``generator`` is made: on the generator's own device (a seeded ``torch.Generator()`` draws on
    the CPU also where the default device is a GPU, ``with torch.device("cuda"):``, whose draws from a CPU generator
    CUDA refuses: "Expected a 'cuda' device type for generator"); ``None`` (the default device) for the global one."""
    return generator.device if generator is not None else None


def on_device(value: Any, device: torch.device | str | None) -> Any:
    """``value`` moved to ``device`` where it is a tensor with values (a model's inputs read on the model's device, as
    ``fit`` and ``evaluate`` read them); anything else, ``device=None``, or a tensor on the meta device (refused by name
    where it is read: copying it raised torch's "Cannot copy out of meta tensor" first) as it is."""
    if device is None or not isinstance(value, Tensor) or value.is_meta:
        return value
    return value.to(device)


def progress(iterable: Iterable | None = None, desc: str = "", quiet: bool = False, total: int | None = None,
             **kwargs: Any):
    """A tqdm progress bar over ``iterable`` (a disabled one when ``quiet``), cleared when it closes in a terminal.
    Written to a file rather than a terminal (a job's log), it redraws at most every 30 s (ten redraws a second would
    add megabytes to an hour's log) and ends with its last state on a line of its own (how far it went, at what
    rate): a cleared bar left the log at its first redraw, 0 %, and its blanks joined to the next line. In a Jupyter
    notebook it redraws as in a terminal and keeps its last state, both as ``tqdm.auto``'s widget (where ipywidgets
    is installed) and as the text bar tqdm draws there without ipywidgets (a kernel's stderr, which the notebook
    redraws in place): a notebook's stderr is no terminal either, and its bar stood still for 30 s at a time."""
    import sys

    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        # (tqdm.auto imports tqdm.notebook in a notebook only: importing it here would import IPython in every run)
        notebook = sys.modules.get("tqdm.notebook")
        widget = notebook is not None and issubclass(tqdm, notebook.tqdm)  # (a widget redraws in place: no log grows)
        # (without ipywidgets tqdm.auto draws text, to the kernel's stderr, whose '\r' the notebook redraws in place)
        kernel = type(sys.stderr).__module__.startswith("ipykernel.")
        if not (widget or kernel):
            kwargs.setdefault("mininterval", 30.0)
        kwargs.setdefault("leave", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, disable=quiet, dynamic_ncols=True, **kwargs)


def check_trainable_dtype(module: nn.Module, what: str) -> None:
    """Refuse float16 parameters, which Adam / AdamW cannot train (their ``eps`` of 1e-8 is 0 in float16: the first
    step divides 0 by 0 wherever a gradient is zero), and parameters or buffers on the meta device, which hold no values
    to train (:func:`~fwdlearn.errors.check_model_values`).

    Raises:
        ValueError: naming ``what`` and the ways out.
    """
    check_model_values(module, "training reads and updates its values", what)
    if any(p.dtype == torch.float16 for p in module.parameters() if p.requires_grad):
        raise ValueError(f"{what} has float16 parameters, which Adam cannot train (its eps 1e-8 rounds to 0 in "
                         "float16, so the first step gives NaN): train in bfloat16 (model.to(torch.bfloat16)) or in "
                         "float32 under torch.autocast")


def check_finite(name: str, value: Tensor | float) -> float:
    """``value`` as a float; :class:`NonFiniteLossError` naming ``name`` when it is NaN or infinite."""
    v = float(value.detach()) if isinstance(value, Tensor) else float(value)
    if not math.isfinite(v):
        raise NonFiniteLossError(
            f"{name} is {v}: training diverged. Lower the learning rate, check the inputs for NaN/inf, "
            "or normalise the features."
        )
    return v


def non_finite_entry(state: Any, where: str = "") -> str | None:
    """The first place (``"model.rnn.weight"``) where ``state`` -- nested dicts / lists of tensors and
    numbers -- holds a NaN or an infinity; ``None`` when everything is finite."""
    if isinstance(state, Tensor):
        if state.is_floating_point() or state.is_complex():
            return None if bool(torch.isfinite(state).all()) else (where or "tensor")
        return None
    if isinstance(state, float):
        return None if math.isfinite(state) else (where or "value")
    if isinstance(state, Mapping):
        items: Iterable = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = non_finite_entry(value, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


@contextmanager
def training_mode(mode: bool, *modules: nn.Module | None) -> Iterator[None]:
    """Put ``modules`` in ``train(mode)`` for the block, then give every submodule back its own mode (a submodule
    left in ``eval()`` inside a training model stays so). ``None`` is skipped."""
    saved = [(sub, sub.training) for m in modules if m is not None for sub in m.modules()]
    for m in modules:
        if m is not None:
            m.train(mode)
    try:
        yield
    finally:
        for sub, was in saved:
            sub.training = was


def keeps_mode(fit: Callable) -> Callable:
    """Decorate a fit (a method, or a function whose first argument is the model) so that it gives the model back
    the train/eval mode it had, every submodule its own: a fit switches modes as it trains and evaluates, and left
    a graph model in ``eval()`` and a language model in ``train()`` (a plain call after it then applied dropout, and
    the rule's gradients to a user's own backward)."""
    import functools

    @functools.wraps(fit)
    def wrapper(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with training_mode(model.training, model):
            return fit(model, *args, **kwargs)

    return wrapper


def evaluating(*modules: nn.Module | None) -> AbstractContextManager[None]:
    """Put ``modules`` in ``eval()`` mode for the block and give every submodule back its own mode afterwards
    (``None`` is skipped)."""
    return training_mode(False, *modules)


@contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Stop the parameters of ``modules`` from requiring gradients for the block, then restore each flag.

    For Jacobians with respect to the inputs only: autograd then records no parameter branches
    (``hop_influence`` measured 7-14% faster on GCNs of 8 and 16 layers). ``None`` is skipped.
    """
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Carried:
    """A value one step hands to the next (recurrent states, a running total), as a :class:`Stateful` part.

    Args:
        value: a tensor, a list of tensors or ``None``.
        device: where loaded tensors go (checkpoints are read onto the CPU).
    """

    def __init__(self, value: Any = None, device: torch.device | str | None = None) -> None:
        self.value, self.device = value, device

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        value = state["value"]
        if self.device is not None:
            value = [v.to(self.device) for v in value] if isinstance(value, list) else (
                value.to(self.device) if isinstance(value, Tensor) else value)
        self.value = value


def load_optimizer_state(optimizer: Any, state: Mapping[str, Any]) -> None:
    """Load an optimizer's saved state (its moments, its step counts) but keep its current settings
    (learning rate, weight decay, ...): a resumed run trains with the settings it was started with.
    Works for a ``torch.optim.Optimizer`` and for anything holding several (``LocalOptimizers``)."""
    optimizers = getattr(optimizer, "optimizers", None)
    if optimizers is None:
        settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(state)
        for group, kept in zip(optimizer.param_groups, settings):
            group.update(kept)
        return
    for opt, part in zip(optimizers, state["optimizers"]):
        if opt is not None and part is not None:
            load_optimizer_state(opt, part)


class Stateful:
    """Bundles several objects with ``state_dict`` / ``load_state_dict`` (modules, optimizers) into one.

    Args:
        parts: name -> object. Optimizers (anything with ``param_groups`` or ``optimizers``) are loaded
            with :func:`load_optimizer_state`, keeping their current settings.
        best: the parts that make up the *best* state (``best_state_dict``), e.g. ``("model",)`` so that the
            best state kept during training and in checkpoints holds the weights without the optimizer.
    """

    def __init__(self, parts: Mapping[str, Any], best: Sequence[str] | None = None) -> None:
        self.parts = dict(parts)
        self.best = tuple(best) if best is not None else tuple(self.parts)
        unknown = set(self.best) - set(self.parts)
        if unknown:
            raise ValueError(f"best= names {sorted(unknown)}, which are not parts ({sorted(self.parts)})")

    def state_dict(self) -> dict[str, Any]:
        return {k: v.state_dict() for k, v in self.parts.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in self.parts:
            self._load_part(k, state[k])

    def best_state_dict(self) -> dict[str, Any]:
        return {k: self.parts[k].state_dict() for k in self.best}

    def load_best_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in self.best:
            self._load_part(k, state[k])

    def _load_part(self, key: str, state: Any) -> None:
        part = self.parts[key]
        if hasattr(part, "param_groups") or hasattr(part, "optimizers"):  # its moments, not its old settings
            load_optimizer_state(part, state)
        else:
            part.load_state_dict(state)


class EarlyStopping:
    """Stop when a monitored value has not improved for ``patience`` checks.

    Args:
        patience: number of checks without improvement before stopping (``None``: never stop).
        mode: ``"max"`` (accuracy) or ``"min"`` (loss).
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, patience: int | None = None, mode: str = "max", min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {patience}")
        self.patience, self.mode, self.min_delta = patience, mode, min_delta
        self.best: float | None = None
        self.bad_checks = 0

    def improved(self, value: float) -> bool:
        """Record ``value``; ``True`` if it is the best so far."""
        better = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
        if better:
            self.best, self.bad_checks = value, 0
        else:
            self.bad_checks += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_checks >= self.patience


def compact_repr(report: Any) -> str:
    """The ``repr`` of a dataclass report with its ``history`` (a row per step or epoch) given as its length,
    ``history=<1000 rows>``: the dataclass's own printed every row on one line (about 100,000 characters for a
    1000-step language model fit) and hid the figures beside it. The rows stay in ``report.history``."""
    parts = []
    for f in fields(report):
        if f.repr:
            value = getattr(report, f.name)
            shown = f"<{len(value)} rows>" if f.name == "history" and isinstance(value, list) else repr(value)
            parts.append(f"{f.name}={shown}")
    return f"{type(report).__name__}({', '.join(parts)})"


@dataclass
class FitResult:
    """What :meth:`Trainer.run` did.

    Attributes:
        history: one row per step (``{"step": i, "loss": ..., <metrics when evaluated>}``).
        best: the row of the best evaluation (the last row when there was no evaluation).
        best_step, steps_run: where the best state came from and how many steps ran in all.
        seconds: wall time of the whole run, resumed parts included: the steps (the measured first step too) and
            the evaluations.
        stopped_early: early stopping ended the run.
        first_step_cost: the measured cost of the run's first step (``measure_first_step``); a resumed run keeps
            the one its checkpoint holds (measured before the interruption).
        resumed: when the run continued a checkpoint, ``{"from_step": s, "changed": {setting: [then, now]}}``
            (the settings of ``Trainer(settings=...)`` that differ from the checkpoint's; the new ones apply).
        eval_seconds: of ``seconds``, the time spent in ``evaluate`` (``seconds - eval_seconds`` is the training's
            own, for a throughput), resumed parts included.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    best_step: int = 0
    steps_run: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    first_step_cost: Any = None
    resumed: dict[str, Any] | None = None
    eval_seconds: float = 0.0  # (a class default too: a FitResult pickled before it was recorded reads 0)

    __repr__ = compact_repr  # (history as its length: ``result.history`` holds the rows)


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's (when installed) and torch's generators (CPU; CUDA once initialised): what a
    checkpoint keeps and :func:`set_rng_state` puts back."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # (one state per GPU of the host that saved it: a host with
        for device, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):  # fewer restores its own)
            torch.cuda.set_rng_state(cuda_state, device)
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])


def tensor_fingerprint(*tensors: Tensor, extra: str = "") -> str:
    """A short sha256 of the tensors' shapes, dtypes and values (and ``extra``): equal data, equal fingerprint.
    Checkpoints store it so that a run is resumed on the data it was trained on."""
    import hashlib

    digest = hashlib.sha256(extra.encode())
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


@dataclass
class Checkpointing:
    """Where a fit keeps its checkpoint and how, handed down to the :class:`Trainer` (s) of a schedule.

    Attributes:
        path: the checkpoint file.
        resume: continue from it when it exists.
        overwrite: let this run replace an existing file (without ``resume``).
        fingerprint: what the checkpoint must match to be resumed (see :class:`Trainer`).
    """

    path: str | Path
    resume: bool = False
    overwrite: bool = False
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def trainer_options(self, **fingerprint: Any) -> dict[str, Any]:
        """The :class:`Trainer` keyword arguments, with ``fingerprint`` entries added."""
        return {"checkpoint": self.path, "resume": self.resume, "overwrite": self.overwrite,
                "fingerprint": {**self.fingerprint, **fingerprint}}


def _safe_globals() -> list[Any]:
    """The classes a fwdlearn file may hold besides tensors and plain values, allowed by name: fwdlearn's result
    records (a checkpoint's first-step cost and, layer by layer, its frozen blocks' results) and NumPy's RNG state."""
    import numpy as np

    from fwdlearn.diagnostics.cost import Cost

    multiarray = getattr(np, "_core", None) or np.core  # (NumPy 2 / 1)
    return [Cost, FitResult, multiarray.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def check_resume(resume: Any, checkpoint: Any) -> bool:
    """``resume`` as a bool (:func:`~fwdlearn.errors.check_bool`), refused without a ``checkpoint`` to continue: a fit
    given ``resume=True`` and no checkpoint trained from scratch, in silence (the commands refuse ``--resume`` without
    a run to continue)."""
    resume = check_bool("resume", resume)
    if resume and checkpoint is None:
        raise UsageError("resume=True continues a checkpoint, but no checkpoint= was given: pass the checkpoint file "
                         "of the run to continue (checkpoint='runs/run.pt'), or leave resume out to start a new run")
    return resume


def check_unshared_checkpoint(checkpoint: Any, what: str) -> None:
    """Refuse a ``checkpoint`` for ``what``, a fit that trains in one process, when several processes run: launched
    as several (``WORLD_SIZE`` > 1, as ``torchrun`` sets it), each process trains the whole model and would write the
    one file at once (two saves raced: "could not write the checkpoint ... (FileNotFoundError ...); free disk space"),
    and a resume needs a part per process. Inside a process group (``torch.distributed`` initialised, by
    :func:`~fwdlearn.distributed.init_from_env` or the user's own ``init_process_group``) it is refused too, also
    where one process alone passes a ``checkpoint`` (the others ``None``): no process can know that it is the only
    writer without the others taking part in the check, which a fit run on one process alone would wait for, and a
    resume inside a group waits for every process's part. A data-parallel fit (``fit_lm``) gives each process its own
    part instead."""
    if checkpoint is None:
        return
    if is_distributed():
        raise UsageError(f"{what} trains in one process, and inside a process group of {world_size()} processes (this "
                         f"is rank {rank()}) it cannot know that no other process writes the checkpoint {checkpoint} "
                         "too, so a checkpoint is refused there, also when one process alone passes one (a resume "
                         "would wait for the others' parts): fit without a checkpoint inside the group and save the "
                         "trained model on one process (model.save(path)), or run the checkpointed fit in a process "
                         "of its own, outside any process group and launcher (WORLD_SIZE unset or 1)")
    launched = launched_processes()
    if launched > 1:
        raise UsageError(f"{what} trains in one process, and run with several processes (WORLD_SIZE={launched}, as "
                         f"torchrun sets it) each of the {launched} would train the whole model and write the "
                         f"checkpoint {checkpoint} at once: fit without a checkpoint there (as influence graph "
                         "--epochs does under torchrun), or train in one process (WORLD_SIZE unset or 1), save the "
                         "model and load it")


def load_device(map_location: Any) -> Any:
    """The ``torch.device`` a loader's ``map_location`` names (a model file is read on the CPU, then the model moved
    there); ``ValueError`` when it is not a device or not on this machine."""
    import torch

    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"map_location={map_location!r} is not a device; give 'cpu', 'cuda', 'cuda:N' or a "
                         "torch.device") from None
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"map_location={map_location!r}: this machine has {torch.cuda.device_count()} CUDA "
                         "device(s); load it with map_location='cpu'")
    return device


#: what the refusal of a NumPy array or number in a torch file (:func:`load_torch`) says to do by default
NUMPY_FIX = "save it as a tensor instead (torch.as_tensor(value))"


def plain_numpy_dtype(dtype: Any) -> bool:
    """Whether the NumPy dtype ``dtype`` is one NumPy builds from its own name (``dtype.str``): no fields, no
    subarray, holding no object, and the flags, size and alignment NumPy gives that type. A pickle's ``BUILD`` can
    give a dtype any state: fields or a subarray of objects over a type that holds none (the array's bytes then taken
    for object addresses), or the flags of another type."""
    import numpy as np

    try:
        fresh = np.dtype(dtype.str)
    except (TypeError, ValueError):
        return False
    return (dtype.fields is None and dtype.subdtype is None and not dtype.hasobject and dtype == fresh
            and dtype.flags == fresh.flags and dtype.itemsize == fresh.itemsize and dtype.alignment == fresh.alignment)


def forged_numpy(loaded: Any) -> str | None:
    """What in ``loaded`` (what ``torch.load`` read: nested dicts, lists, tuples, sets and the objects of
    :func:`_safe_globals`, their attributes included) is a NumPy array or dtype whose dtype is not
    :func:`plain_numpy_dtype`, in words; ``None`` when nothing is. torch's safe reader builds ``numpy.dtype`` with any
    state once it is allowed (as :func:`_safe_globals` does, for NumPy's RNG state), so a crafted file passed it and
    crashed the process (SIGSEGV) where the array was shown: a resumed checkpoint's fingerprint that differed."""
    import numpy as np

    seen: set[int] = set()
    todo = [loaded]
    while todo:  # (iterative, and each object once: a file may nest deeply, or hold a list inside itself)
        item = todo.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, complex, type(None), Tensor)):
            continue
        seen.add(id(item))
        if isinstance(item, (np.ndarray, np.dtype)):
            dtype = item.dtype if isinstance(item, np.ndarray) else item
            if not plain_numpy_dtype(dtype):
                what = "a NumPy array" if isinstance(item, np.ndarray) else "a NumPy dtype"
                return f"{what} whose dtype has a state NumPy does not write ({dtype.str}, flags {dtype.flags})"
        elif isinstance(item, Mapping):
            todo += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo += list(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):  # (FitResult, Cost, PyG's Data: attributes)
            todo += list(vars(item).values())
    return None


def load_torch(path: str | Path, numpy_fix: str = NUMPY_FIX, **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True, **kwargs)`` for use inside :func:`~fwdlearn.errors.reading`: the file
    may hold tensors, plain values and the few classes fwdlearn writes (:func:`_safe_globals`), nothing else, since
    unpickling any other object could run code the file carries. A file that holds one is refused, naming it (a NumPy
    array or number with ``numpy_fix``, what to do about it in the reader's words: by default save it as a tensor),
    never as "not a torch file"; the ``ValueError`` the unpickler raises on a file that is not a torch file (random
    bytes: "could not convert string to int") is the file's problem, not a check of ours, as is an empty file or a
    damaged one (:func:`_zip_damage`), or a NumPy array or dtype of a forged state (:func:`forged_numpy`). All are
    raised as an ``UnpicklingError`` that
    :func:`~fwdlearn.errors.reading` reports with the path; its ``refused`` is the class refused, as the unpickler
    named it (``numpy.dtypes.Int64DType``), or ``None``."""
    import re
    import zipfile

    import torch

    if Path(path).is_file() and Path(path).stat().st_size == 0:  # (the unpickler's "EOFError: " named nothing)
        raise pickle.UnpicklingError("the file is empty (0 bytes)")
    _refuse_run_record(path)
    damage = _zip_damage(path, records=not kwargs.get("mmap"))  # (a mapped look at a file reads no records)
    if damage:
        raise pickle.UnpicklingError(damage)
    kind = None
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            loaded = torch.load(path, weights_only=True, **kwargs)
        forged = forged_numpy(loaded)
        if forged is None:
            return loaded
        message = (f"it holds {forged}, which fwdlearn does not read (an array of it can crash the process as it "
                   f"is read or shown; fwdlearn's own files hold NumPy's RNG state alone, uint32 arrays): {numpy_fix}")
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        why = re.search(r"WeightsUnpickler error:\s*(.+?)\n", str(error))
        if found is None and why is None:
            raise
        # (a class the unpickler would build: "Can only build Tensor, ... but got <class 'numpy.dtypes.Int64DType'>",
        # a NumPy array of another dtype than the uint32 of NumPy's RNG state, was called "not a torch file")
        built = re.search(r"but got <class '([^']+)'>", why.group(1)) if found is None else None
        kind = found.group(1) if found is not None else built.group(1) if built is not None else None
        if kind is not None and kind.startswith("numpy."):
            message = (f"it holds a NumPy array or number ({kind}), which fwdlearn does not unpickle (that could "
                       f"run code the file carries): {numpy_fix}")
        elif kind is not None:
            message = (f"it holds a Python object of type {kind}, which fwdlearn does not unpickle (that could run "
                       "code the file carries); fwdlearn's own models and checkpoints hold none")
        elif zipfile.is_zipfile(path):  # (a torch file: something in it torch's safe reader refuses)
            message = f"it holds what torch's safe reader (weights_only=True) refuses ({why.group(1).strip()})"
        else:
            message = f"not a torch file ({why.group(1).strip()})"
    except (ValueError, UnicodeError, KeyError, IndexError, EOFError) as error:  # (random bytes, text: the
        message = f"not a torch file ({type(error).__name__}: {error})"          # unpickler's own failures)
    refusal = pickle.UnpicklingError(message)
    refusal.refused = kind  # type: ignore[attr-defined]  # (a reader's own refusal of the class reads it, not words)
    raise refusal  # (outside the except: reading() looks for a UnicodeError among causes)


def _refuse_run_record(path: str | Path) -> None:
    """Refuse a run record (``runs/<name>.json``, which a command writes beside its checkpoint ``runs/<name>.pt``)
    given where a torch file is read, naming the checkpoint it names where that is now (it was "not a torch file
    (Unsupported operand 123); it may have been cut short or is another kind of file"). Other JSON, which no torch
    file is, is said to be JSON (an ``UnpicklingError``, which :func:`~fwdlearn.errors.reading` reports with the
    reader's hint): a run record cut short or damaged (said so, with what :func:`~fwdlearn.records.read_record` found:
    it was the same "Unsupported operand 123"), a bench's results, a JSON object of the user's."""
    import pickle

    from fwdlearn.records import NoRunRecord, read_record

    try:
        record = read_record(path)  # (up to RECORD_BYTES: a larger file is no record)
    except NoRunRecord as error:  # (not a record: torch's reader says what it is, unless it is JSON)
        if error.json:
            what = " (a run record that cannot be read)" if error.damaged else ""
            raise pickle.UnpicklingError(f"it is JSON{what}, not a torch file: {error.why}") from None
        return
    if record is None:  # (no file, a folder: torch's reader says)
        return
    if not record.job:  # (a JSON object that names no command: no torch file begins with '{')
        raise pickle.UnpicklingError("it is JSON (no run record: it names no command), not a torch file")
    if "checkpoint" not in record.files:
        fix = "that run wrote no checkpoint: give a .pt file a training run wrote (runs/<name>.pt) or a saved model"
    elif (found := record.located("checkpoint")) is not None:
        fix = f"the checkpoint that run wrote is {found}"
    else:  # (a record's relative paths start from the run's folder)
        given = record.files["checkpoint"]
        named = given if record.cwd is None or Path(given).is_absolute() else str(record.cwd / given)
        fix = (f"the checkpoint that run wrote, {named}, is not there now (moved or removed since): give the path it "
               "was moved to")
    raise InputError(f"{path} is a run record (JSON, job {record.job}), not a torch file; {fix}")


#: the most a deflated record's bytes inflate to, per byte: deflate's own limit (about 1032 to 1; a tensor of zeros
#: deflated by ``zipfile`` came to 1029), so a record that claims more is no deflated record of its size
DEFLATE_MOST = 1032


def _zip_damage(path: str | Path, records: bool = True) -> str:
    """What is wrong with the torch file (a zip archive) at ``path``, ``""`` when nothing is or it is no zip archive
    (torch's reader then says what it is): cut short (its directory at the end is missing: torch said "[Errno 22]
    Invalid argument"), or, with ``records``, a record whose bytes do not match the CRC-32 saved with them (torch
    reads no CRC, so a damaged byte among the weights loaded silently as another weight). Records saved without a CRC
    (CRC 0: ``torch.serialization.set_crc32_options(False)``) are not checked. A record saved compressed, which
    torch.save never writes but torch's reader inflates (a file rewritten by another program), is inflated to check
    it, never past the size its directory gives (a damaged one loaded silently as other weights), and refused when
    that size is more than :data:`DEFLATE_MOST` times its compressed bytes, which deflate cannot give (the directory is
    damaged or crafted); one compressed otherwise (bzip2, lzma), which torch's reader cannot read ("unsupported method
    ... internal miniz error"), is refused naming it. The check reads each byte of the file once at most (and
    inflates at most :data:`DEFLATE_MOST` bytes of each: a record of 1 GB of zeros deflated to 1 MB took 1.4 s). A
    directory whose records claim more bytes than the file holds (records named twice or more, overlapping, or
    running past its end) is refused, with ``records``, before any is read: a crafted file of 1 MB that named its
    record of 1 GB eleven times took 23 s to check (torch.load, which reads the records its pickle names, took 0.02
    s), and the work grew with each name added, to days."""
    import zipfile
    import zlib

    try:
        with open(path, "rb") as handle:
            zipped = handle.read(4) == b"PK\x03\x04"
        if not zipped:
            return ""
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist() if records else []
            claimed, size = sum(info.compress_size for info in infos), os.path.getsize(path)
            if claimed > size:
                return (f"its directory claims {claimed:,} bytes of records in a file of {size:,} bytes (records "
                        "named more than once, overlapping, or running past its end): the file is damaged or was "
                        "crafted; torch.save writes no such file")
            for info in infos:
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    method = zipfile.compressor_names.get(info.compress_type, f"method {info.compress_type}")
                    return (f"its record '{info.filename}' is compressed with {method}, which torch's reader cannot "
                            "read (torch.save stores its records uncompressed): the file was rewritten by another "
                            "program; save it again with torch.save from where it was made")
                if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > DEFLATE_MOST * info.compress_size:
                    return (f"its record '{info.filename}' claims {info.file_size:,} bytes deflated into "
                            f"{info.compress_size:,}, more than deflate can give (at most {DEFLATE_MOST} times): the "
                            "file is damaged or was crafted; torch.save writes no such file")
                if info.CRC == 0:
                    continue
                inflated = 0
                try:
                    with archive.open(info) as record:  # (zipfile checks the CRC at the record's end, and inflates
                        while chunk := record.read(1 << 24):  # no more than the record's size)
                            inflated += len(chunk)
                except (zlib.error, EOFError):  # (a deflated record's bytes damaged: "invalid code lengths set")
                    inflated = -1
                if inflated != info.file_size:
                    return (f"its record '{info.filename}' cannot be inflated to the {info.file_size:,} bytes its "
                            "directory gives: the file was damaged after it was written")
    except zipfile.BadZipFile as error:
        if "CRC" in str(error):
            return (f"its record {error.args[0].split()[-1]} does not match the checksum saved with it: the file was "
                    "damaged after it was written")
        if "not a zip file" in str(error):
            return "it is cut short: a torch file (a zip archive) without the directory that ends it"
        return ""
    except Exception:  # noqa: BLE001 - (a folder, an unreadable file, what zipfile cannot read: torch's reader says)
        return ""
    return ""


_CHECKPOINT_KEYS = {"step", "state", "best_state", "best_value", "bad_checks", "best", "best_step", "history"}


def is_checkpoint(loaded: Any) -> bool:
    """Whether ``loaded`` (what ``torch.load`` read) is a :class:`Trainer` checkpoint: a dict with every entry one
    holds."""
    return isinstance(loaded, dict) and _CHECKPOINT_KEYS <= set(loaded)


def previous_checkpoint(path: str | Path) -> Path:
    """``<path>.prev``: where a process of a ``torchrun`` run keeps its save before the last one."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def _keep_previous(path: Path) -> None:
    """Keep the checkpoint at ``path`` as :func:`previous_checkpoint` (a hard link where the file system has them, else
    a copy, synced to the disk; renamed into place, so a crash or a power loss never leaves half a file)."""
    import shutil

    staged = previous_checkpoint(path).with_name(previous_checkpoint(path).name + ".tmp")
    staged.unlink(missing_ok=True)
    try:
        try:
            os.link(path, staged)
        except OSError:
            shutil.copy2(path, staged)
            synced(staged)  # (renamed unsynced, a power loss could leave an empty .prev, the step to agree on lost)
        os.replace(staged, previous_checkpoint(path))
        sync_folder(path.parent)
    except BaseException:
        remove_quietly(staged)  # (a full disk left half a copy)
        raise


def _step_on_disk(path: str | Path, since: float) -> int | None:
    """The step the checkpoint at ``path`` holds, if written after ``since`` (``time.time()``); else, or when it
    cannot be read, ``None``."""
    try:
        if os.stat(path).st_mtime < since:
            return None
        return int(read_checkpoint(path, mmap=True)["step"])
    except Exception:  # noqa: BLE001 - a message's detail
        return None


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A :class:`Trainer` checkpoint as a dict; :class:`~fwdlearn.errors.InputError` naming ``path`` when the
    file is cut short, is not a torch file, or was not written by a Trainer. ``mmap=True`` maps the tensors from the
    file instead of reading them (``torch.load(mmap=True)``): for a look at the step, fingerprint or settings, which
    then costs the same for a large model as for a small one."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with reading(path, "a fwdlearn checkpoint",
                 "it may have been cut short or is another kind of file; pass the right --checkpoint"):
        # (a file in torch's legacy format, which cannot be mapped, is read)
        ckpt = load_torch(path, map_location="cpu", mmap=mmap and zipfile.is_zipfile(path))
    if not is_checkpoint(ckpt):
        from fwdlearn.model_files import what_file  # (it imports this module)

        found = what_file(ckpt)  # (a saved model given to --resume: which one, and what reads it)
        raise InputError(f"{path} is not a training checkpoint (a file saved by a fitting run)"
                         + (f": {found}" if found else "") + "; pass the --checkpoint a training run wrote")
    return ckpt


#: the model-config entries that say what kind of model a fingerprint is of (a language model's ``kind``, a graph
#: model's ``method``): a checkpoint whose model has one of them and a run whose model has not are of two kinds
KIND_KEYS = ("kind", "method")


class AnotherKindOfRun(UsageError):
    """:func:`check_fingerprint`'s refusal of a checkpoint of another kind of model (a graph run's given to a language
    model, a node classifier's to a link predictor), naming the model entries each has that the other lacks
    (``theirs``, ``ours``: comma-separated), which a caller that knows the kinds (``graph train``'s tasks) may say in
    its own words."""

    def __init__(self, path: str | Path, theirs: str, ours: str, fix: str = "Resume it with the command that made it",
                 this: str = "this one"):
        self.path, self.theirs, self.ours = Path(path), theirs, ours
        super().__init__(f"the checkpoint {path} was made by another kind of run: its model has {theirs}, {this} "
                         f"{ours}. {fix}, or start a new run (another --name or --checkpoint)")


class CheckpointMismatch(UsageError):
    """:func:`check_fingerprint`'s refusal of a checkpoint made by a different run, naming every difference.

    Attributes:
        path: the checkpoint.
        keys: the fingerprint's entries that differ (``"model"``, ``"graph"``, ...), for a caller that knows where
            an entry comes from (the file a graph was read from) to say so.
        differences: each difference in words, ``"graph '3bd2...' (checkpoint) vs '891d...' (now)"``.
        names: the entry each of ``differences`` is of, dotted (``"model.hidden"``, ``"batch_size"``).
        saved, fingerprint: the checkpoint's fingerprint and this run's.
    """

    def __init__(self, path: str | Path, keys: Sequence[str], differences: Sequence[str], names: Sequence[str] = (),
                 saved: Mapping[str, Any] | None = None, fingerprint: Mapping[str, Any] | None = None, *,
                 fix: str = "Resume with the settings and data it was made with") -> None:
        super().__init__(f"the checkpoint {path} was made by a different run: {'; '.join(differences)}. {fix}, or "
                         "start a new run (another --name or --checkpoint)")
        self.path, self.keys, self.differences = Path(path), tuple(keys), list(differences)
        self.names, self.saved, self.fingerprint = tuple(names), dict(saved or {}), dict(fingerprint or {})

    def in_flags(self, spell: Callable[[str, Any, Mapping[str, Any]], str | None], extra: Sequence[str] = (),
                 drop: Sequence[str] = (), without: Sequence[str] = (),
                 words: Mapping[str, str] | None = None) -> CheckpointMismatch:
        """This refusal in a command's words (the Python API says ``batch_size 2 (checkpoint) vs 3 (now)``, the
        command ``--batch-size 2 (checkpoint) vs 3 (now)``), with the flags that resume the checkpoint as the fix.

        Args:
            spell: ``spell(name, value, fingerprint)``: the flag, with its value, that gives the entry ``name``
                (dotted, as :attr:`names`) ``value``, what it holds in ``fingerprint`` (the checkpoint's or this
                run's, for an entry that follows from others): ``"--batch-size 2"``, ``"--no-norm"``; ``None`` for
                an entry no flag sets (a data hash, the number of processes), which keeps its words. Entries spelled
                alike (two entries of one flag) are said once.
            extra: more flags to resume with (a flag already in the fix is not repeated).
            drop: flags (``"--feedback"``) the fix leaves out, as the others set what they would.
            without: flags of this run's command that resuming needs left out (the fix says so).
            words: how the fix names an entry kept in words (default: its name), ``{"processes": "number of
                processes"}``.

        Returns:
            A :class:`CheckpointMismatch` saying so (of the same entries; any other attribute of this one kept, as
            :func:`fwdlearn.errors.alike_on_every_process`'s mark).
        """
        differences, names, flags, kept = [], [], [], []
        for name, text in zip(self.names, self.differences):
            before = None if _NOT_RECORDED in text else spell(name, _entry(self.saved, name), self.saved)
            now = spell(name, _entry(self.fingerprint, name), self.fingerprint) if before is not None else None
            if before is None or now is None:
                line = text
                kept.append((words or {}).get(name, name))
            else:
                flag = before.split(" ")[0]
                same = " " in before and now.startswith(flag + " ")  # (a flag with a value: said once)
                line = f"{before} (checkpoint) vs {now[len(flag) + 1:] if same else now} (now)"
                flags.append(before)
            if line not in differences:
                differences.append(line)
                names.append(name)
        given = {flag.split(" ")[0] for flag in flags}
        flags += [flag for flag in extra if flag.split(" ")[0] not in given]
        flags = [flag for flag in flags if flag.split(" ")[0] not in {*drop, *without}]
        fix = "Resume with the settings and data it was made with"
        if flags or without:
            fix = "Resume with " + " ".join(dict.fromkeys(flags))
            if without:
                fix += f"{' and' if flags else ''} without {' or '.join(dict.fromkeys(without))}"
            if kept:
                fix += f" and the {' and '.join(dict.fromkeys(kept))} it was made with"
        said = CheckpointMismatch(self.path, self.keys, differences, names, self.saved, self.fingerprint, fix=fix)
        said.__dict__.update({k: v for k, v in self.__dict__.items() if k not in said.__dict__})
        return said


def _entry(fingerprint: Mapping[str, Any], name: str) -> Any:
    """The entry ``name`` (dotted: ``"model.hidden"``) of ``fingerprint``."""
    for key in name.split("."):
        fingerprint = fingerprint[key]
    return fingerprint


def check_fingerprint(path: str | Path, ckpt: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> None:
    """Refuse to resume checkpoint ``ckpt`` (read from ``path``) when it was made with another ``fingerprint``
    (model config, data, ...), naming every difference (:class:`CheckpointMismatch`, a
    :class:`~fwdlearn.errors.UsageError`)."""
    saved = ckpt.get("fingerprint") or {}
    before, now = saved.get("model"), fingerprint.get("model")
    if isinstance(before, Mapping) and isinstance(now, Mapping) and (
            any((k in before) != (k in now) for k in KIND_KEYS)
            or (set(before) - set(now) and set(now) - set(before)
                and all(before.get(k) == now.get(k) for k in KIND_KEYS))):
        # another kind of model (a graph run's checkpoint given to seq train; a node model's given to a link model
        # of the same method, bp): a list of its settings as "not recorded" would blame an older fwdlearn, which
        # records fewer entries, never others (two graph methods, which record options of their own, both have a
        # "method" and get their differences listed, as two language-model kinds, of a "kind" each, do)
        theirs, ours = (", ".join(sorted(set(a) - set(b))) for a, b in ((before, now), (now, before)))
        raise AnotherKindOfRun(path, theirs, ours)
    named = _differing(saved, fingerprint)
    differ = [text for _, text in named]
    if differ and all(_NOT_RECORDED in entry for entry in differ):  # (an older format: "resume with the settings it
        from fwdlearn import __version__  # was made with" could not help, as no settings make it record more)

        raise UsageError(f"the checkpoint {path} was written by an older fwdlearn than this one ({__version__}), "
                         f"whose checkpoints record less: {'; '.join(differ)}. This version cannot tell that the run "
                         "matches on those entries, so it does not resume it: resume it with the fwdlearn version "
                         "that wrote it, or start a new run (another --name or --checkpoint, or --overwrite)")
    if differ:
        raise CheckpointMismatch(path, [key for key, value in fingerprint.items() if saved.get(key) != value], differ,
                                 [name for name, _ in named], saved, fingerprint)


_NOT_RECORDED = "not recorded (checkpoint: an older fwdlearn)"  # an entry of the fingerprint a checkpoint lacks


def _differences(saved: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``"key <saved> (checkpoint) vs <now> (now)"`` for every entry of ``now`` that ``saved`` holds differently
    (dicts compared key by key). An entry ``saved`` lacks is a difference too: the checkpoint was made by a version
    that did not record it, so it cannot show that it matches (a later version may train differently). Where an
    entry the checkpoint holds differs as well (another method, with options of its own), the lacking ones follow
    from it and are not listed."""
    return [text for _, text in _differing(saved, now, prefix)]


def _differing(saved: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """:func:`_differences`, each with the entry's dotted name (``("model.hidden", "model.hidden 8 (checkpoint) vs
    16 (now)")``)."""
    out, lacking = [], []
    for key, value in now.items():
        name = f"{prefix}{key}"
        if key not in saved:
            lacking.append((name, f"{name} {_NOT_RECORDED} vs {value!r} (now)"))
            continue
        if saved[key] == value:
            continue
        if isinstance(value, Mapping) and isinstance(saved[key], Mapping):
            out += _differing(saved[key], value, f"{name}.")
        else:
            out.append((name, f"{name} {saved[key]!r} (checkpoint) vs {value!r} (now)"))
    return out or lacking


def _best_part(state: Any) -> Any:
    """What restoring the best state needs: ``state.best_state_dict()`` when it has one (e.g. weights
    without the optimizer), else ``state.state_dict()``; a copy."""
    part = state.best_state_dict() if hasattr(state, "best_state_dict") else state.state_dict()
    return copy.deepcopy(part)


def weights_changed() -> None:
    """Say that weights were changed in place (a step, a restored or resumed state): inside ``torch.autocast``,
    autocast keeps its lower-precision copies of the weights until the outermost autocast block exits, so a fit run
    inside one would go on reading the old weights (every step the first step's: training stood still)."""
    torch.clear_autocast_cache()


def _plain(metrics: Mapping[str, Any], what: str = "step(i)", example: str = "{'loss': loss.item()}") -> dict[str, Any]:
    """``metrics`` (what a step or an evaluation returned) with every one-element tensor and NumPy scalar as a Python
    number (``.item()``) and any other tensor detached: a row then holds numbers the progress bar shows, no autograd
    graph of its step, and nothing a checkpoint cannot be resumed from (a NumPy scalar in the history is an object
    :func:`load_torch` refuses: the run wrote a checkpoint it then called unreadable). Anything but a mapping is a
    ``TypeError`` naming ``what`` returned it and ``example``, the fix (a bare loss failed with "'float' object has no
    attribute 'items'")."""
    if not isinstance(metrics, Mapping):
        shown = (f" {metrics!r}" if isinstance(metrics, (numbers.Number, str)) else
                 f" of shape {tuple(metrics.shape)}" if isinstance(metrics, Tensor) else "")
        raise TypeError(f"{what} must return a dict of its metrics by name, e.g. {example}; got "
                        f"{type(metrics).__name__}{shown}")
    out = {}
    for key, value in metrics.items():
        if isinstance(value, Tensor):
            value = value.item() if value.numel() == 1 else value.detach()
        elif type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:  # (np.float32, a 0-d array)
            value = value.item()
        out[key] = value
    return out


def _restore_best(state: Any, best: Any) -> None:
    (state.load_best_state_dict if hasattr(state, "load_best_state_dict") else state.load_state_dict)(best)
    weights_changed()


class Trainer:
    """Step loop with evaluation, early stopping, a progress bar, divergence checks, checkpoints and resume.

    Args:
        steps: the step budget (the total, also when resuming).
        monitor: key of ``evaluate()``'s dict to select the best state on.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        patience: early-stopping patience in evaluations (``None``: run every step).
        eval_every: evaluate every this many steps (and after the last).
        quiet: no progress bar.
        desc: the bar's label (and the first word of a divergence message).
        unit: what a step is, as the bar counts it and its rate reads (``"epoch"``: epochs/s).
        checkpoint: file to save ``{step, state, best_state, history, ...}`` to (``None``: no checkpoints).
            It also holds the random-number generators' states, so a resumed run continues exactly.
        checkpoint_every: steps between checkpoints (default: at every evaluation).
        resume: continue from ``checkpoint`` if it exists (refused without a ``checkpoint``: :func:`check_resume`).
        overwrite: without ``resume``, let this run's first save replace an existing ``checkpoint`` instead
            of refusing to start.
        fingerprint: what a checkpoint must match to be resumed (model config, data fingerprint, batch
            shape, ...); a checkpoint whose fingerprint differs is refused, naming every difference.
        settings: settings a resumed run may change (learning rate, clip, ...): saved, and the differences
            reported in ``FitResult.resumed`` (the caller applies the new values); ``eval_every``, ``patience``
            and ``diverge_factor`` are added.
        rescore: the ``settings`` that change what ``evaluate`` measures (how much validation data it reads): when a
            resume changes one, the kept best state is evaluated again before training goes on, so later
            evaluations are compared with the best's value on the same data (``FitResult.best`` then holds that
            value); else a best measured on other data could keep a worse state, or drop a better one.
        context: called at every save; what it returns is saved as the checkpoint's ``"context"`` (a schedule's
            own progress, e.g. which layer is training; see :func:`read_checkpoint`).
        last_part: this trainer runs the last part of a schedule (``False`` for a layer below the top: resuming it
            when it is finished is not "nothing left to train").
        measure_first_step: measure the first step with :func:`fwdlearn.diagnostics.cost.measure_cost`
            (``FitResult.first_step_cost``); ``device`` says where it runs.
        diverge_factor: stop when a loss exceeds this many times ``max(|its first value|, 1)``
            (``None``: only NaN/inf stop the run).
        raise_limit: how the caller's user raises that limit, named in the divergence message (``None``: the
            message names no way, for a caller that offers none).

    Example::

        trainer = Trainer(steps=300, patience=100)
        result = trainer.run(step=lambda i: {"loss": train_one_step()},
                             evaluate=lambda: {"val_accuracy": accuracy("val")},
                             state=model)
    """

    def __init__(
        self,
        steps: int,
        monitor: str = "val_accuracy",
        mode: str = "max",
        patience: int | None = None,
        eval_every: int = 1,
        quiet: bool = False,
        desc: str = "fit",
        checkpoint: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        measure_first_step: bool = False,
        device: torch.device | str | None = None,
        overwrite: bool = False,
        diverge_factor: float | None = DIVERGE_FACTOR,
        raise_limit: str | None = "Trainer(diverge_factor=...)",
        fingerprint: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        context: Callable[[], Any] | None = None,
        last_part: bool = True,
        rescore: Sequence[str] = (),
        unit: str = "step",
    ) -> None:
        if not is_integer(steps):  # (True was one step)
            raise UsageError(f"steps must be an integer, got {steps!r}")
        steps = int(steps)
        check_range("steps", steps, min=0)
        check_range("eval_every", eval_every, min=1)
        if not is_integer(eval_every) or (patience is not None and not is_integer(patience)):
            raise UsageError(f"eval_every and patience must be ints (patience may be None); got {eval_every!r}, "
                             f"{patience!r}")
        check_range("checkpoint_every", checkpoint_every, min=1, optional=True)
        resume = check_resume(resume, checkpoint)
        check_range("diverge_factor", diverge_factor, gt=1, optional=True)
        self.steps, self.monitor, self.mode, self.patience = steps, monitor, mode, patience
        self.eval_every, self.quiet, self.desc, self.unit = eval_every, quiet, desc, unit
        self.checkpoint = Path(checkpoint).expanduser() if checkpoint is not None else None
        self.checkpoint_every = checkpoint_every
        self.resume, self.overwrite, self.diverge_factor = resume, overwrite, diverge_factor
        self.raise_limit = raise_limit
        self.measure_first_step, self.device = measure_first_step, device
        self.fingerprint = dict(fingerprint or {})
        # the loop's own settings a resume may change are reported with the caller's (lr, weight decay, ...)
        self.settings = {"eval_every": eval_every, "patience": patience, "diverge_factor": diverge_factor,
                         **(settings or {})}
        self.context, self.last_part = context, last_part
        self.rescore = tuple(rescore)
        self._first_losses: dict[str, float] = {}

    # ------------------------------------------------------------------ checks
    def _non_finite(self, step: int, message: str) -> DivergenceError:
        return NonFiniteLossError(f"{self.desc}: step {step}: {message}")

    def _check_losses(self, row: Mapping[str, Any], step: int) -> None:
        """NaN/inf losses, and losses past ``diverge_factor`` x their first value, stop the run."""
        for key, value in row.items():
            if "loss" not in key or not isinstance(value, (numbers.Real, Tensor)) or isinstance(value, bool):
                continue  # (numbers.Real: Python and NumPy scalars alike)
            if isinstance(value, Tensor) and value.numel() != 1:  # (torch's "only one element tensors can be
                # converted to Python scalars" named no key)
                raise UsageError(f"{self.desc}: step {step}: {key} is a tensor of shape {tuple(value.shape)}, but a "
                                 "loss is one number: reduce it (.mean() or .sum()) before returning it")
            v = float(value.detach()) if isinstance(value, Tensor) else float(value)
            if not math.isfinite(v):
                raise self._non_finite(step, f"{key} is {v}: training diverged. Lower the learning rate, check the "
                                           "inputs for NaN/inf, or normalise the features.")
            first = self._first_losses.setdefault(key, v)
            limit = None if self.diverge_factor is None else self.diverge_factor * max(abs(first), 1.0)
            if limit is not None and v > limit:  # (a loss falling below zero, e.g. a log-likelihood, is no divergence)
                raise DivergenceError(
                    f"{self.desc}: step {step}: {key} = {v:.4g} is more than {self.diverge_factor:g} x its first "
                    f"value {first:.4g} (the divergence limit): training diverged. Lower the learning rate"
                    + (f", or raise the limit ({self.raise_limit}) if the loss is meant to grow."
                       if self.raise_limit else "."))

    def _monitored(self, metrics: Mapping[str, Any]) -> float:
        """The monitored value among ``evaluate()``'s ``metrics``, as a float; a missing key or a value that is not one
        number is an error naming it (a vector or ``None`` failed in ``float()``, naming neither)."""
        if self.monitor not in metrics:
            raise KeyError(f"evaluate() returned {sorted(metrics)} but the monitored key is {self.monitor!r}")
        value = metrics[self.monitor]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            found = (f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else
                     f"{type(value).__name__} {value!r}")
            raise TypeError(f"evaluate() returned {self.monitor}={found}; the monitored value must be one number "
                            "(a float, or a one-element tensor), by which the best state is chosen")
        return float(value)

    def _check_state(self, state: Any, step: int, what: str) -> None:
        where = non_finite_entry(state)
        if where is not None:
            raise self._non_finite(step, f"{where} is not finite, so the state is not {what}: training diverged. "
                                       "Lower the learning rate or clip the gradients.")

    # ------------------------------------------------------------------ checkpoints
    def _save(self, state: Any, step: int, stopper: EarlyStopping, result: FitResult, best_state: Any) -> None:
        assert self.checkpoint is not None
        content = state.state_dict() if state is not None else None
        self._check_state(content, step, "saved")
        best_is_state = result.best_step == step and best_state is not None
        payload = {
            "step": step,
            "state": content,
            "best_state": None if best_is_state else best_state,  # weights once when the best is the last
            "best_is_state": best_is_state,
            "best_value": stopper.best,
            "bad_checks": stopper.bad_checks,
            "best": result.best,
            "best_step": result.best_step,
            "history": result.history,
            "seconds": result.seconds,
            "eval_seconds": result.eval_seconds,
            "first_step_cost": result.first_step_cost,
            "stopped_early": result.stopped_early,
            "first_losses": dict(self._first_losses),
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "rng": rng_state(),
            "context": self.context() if self.context is not None else None,
        }
        keep = is_distributed() and self._file_is_this_runs and self.checkpoint.is_file()  # every process keeps its
        self._file_is_this_runs = True  # previous save too: an interrupt between two processes' saves leaves a step
        try:  # they all hold (not an overwritten run's file, nor a file left behind)
            if keep:
                with writing(self.checkpoint):  # (a full disk here is reported as the save's own failure)
                    _keep_previous(self.checkpoint)
            atomic_write(self.checkpoint, lambda tmp: save_torch(payload, tmp))  # a crash never leaves half a file
        except RuntimeError as error:  # (a full disk is an OSError naming the checkpoint, through save_torch: the
            detail = " ".join(str(error).split())[:200]  # command says its cause and fix as for any other file)
            raise UsageError(f"could not write the checkpoint {self.checkpoint} ({type(error).__name__}: {detail}); "
                             "free disk space or choose another checkpoint path (--checkpoint)") from None

    def _agreed(self, ckpt: dict[str, Any] | None) -> dict[str, Any] | None:
        """Under torchrun every process resumes from its own checkpoint file, and all from one step: a run stopped
        between two processes' saves leaves files one save apart, and a process ahead then resumes from its previous
        save (kept beside it, ``<checkpoint>.prev``) when that holds the step of the others; files of different
        steps otherwise are refused (they would pair different steps in one update). One process: ``ckpt``."""
        step = ckpt["step"] if ckpt is not None else 0
        low, high = min_max(step)
        if low == high:
            return ckpt
        previous = previous_checkpoint(self.checkpoint)
        from_previous = False
        if ckpt is not None and step > low and previous.is_file():
            try:
                older = read_checkpoint(previous)
            except (InputError, OSError):  # (unreadable: not a step to agree on; every process still meets below)
                older = None
            if older is not None and older["step"] == low and older.get("fingerprint") == ckpt.get("fingerprint"):
                ckpt, step, from_previous = older, low, True
        agreed_low, agreed_high = min_max(step)
        if agreed_low != agreed_high:
            raise UsageError(f"the processes' checkpoints hold different steps ({int(low)} to {int(high)}; this one, "
                             f"{self.checkpoint}, {step}), and no process ahead kept a save of the others' step: "
                             "start over with --overwrite, or restore the files of one step")
        if from_previous:  # the save ahead goes (kept, it would become the next save's previous one: a step the
            os.replace(previous, self.checkpoint)  # others never reach again)
        return ckpt

    def _load(self) -> dict[str, Any]:
        assert self.checkpoint is not None
        ckpt = read_checkpoint(self.checkpoint)
        check_fingerprint(self.checkpoint, ckpt, self.fingerprint)
        if ckpt["step"] > self.steps:
            raise UsageError(f"the checkpoint {self.checkpoint} is at step {ckpt['step']}, beyond the step budget "
                             f"{self.steps}; the budget is the total, so pass a budget of at least {ckpt['step']} "
                             "(--steps; --epochs for graph train) to resume it")
        return ckpt

    def _load_every_part(self) -> dict[str, Any] | None:
        """The checkpoint to resume (``None``: none written yet). Under torchrun every process reads and checks its own
        part, and all stop together when one cannot (:func:`fwdlearn.distributed.raise_together`): a refusal every
        part meets alike (another batch size, number of processes, a budget below its step) is said once, by rank 0,
        not by each process."""
        if not is_distributed():
            return self._load() if self.checkpoint.exists() else None
        error, ckpt = None, None
        try:
            ckpt = self._load() if self.checkpoint.exists() else None
        except ANTICIPATED as caught:
            error = caught
        raise_together(error, "could not resume")
        return ckpt

    def _resume(self, ckpt: Mapping[str, Any], state: Any, result: FitResult, stopper: EarlyStopping) -> Any:
        """Load ``ckpt`` into ``state``, ``result`` and ``stopper``; the best state."""
        if state is not None and ckpt["state"] is not None:
            try:
                state.load_state_dict(ckpt["state"])
                weights_changed()
            except (RuntimeError, KeyError, ValueError) as error:
                detail = " ".join(str(error).split())[:300]
                raise UsageError(f"the checkpoint {self.checkpoint} does not fit this model ({detail}); resume with "
                                 "the flags of the run that wrote it, or start a new run") from None
        best_state = _best_part(state) if ckpt.get("best_is_state") and state is not None else ckpt["best_state"]
        stopper.best, stopper.bad_checks = ckpt["best_value"], ckpt["bad_checks"]
        result.best, result.best_step, result.history = ckpt["best"], ckpt["best_step"], ckpt["history"]
        result.seconds, result.steps_run = ckpt["seconds"], ckpt["step"]
        result.eval_seconds = ckpt.get("eval_seconds", 0.0)  # (not recorded by an earlier fwdlearn)
        result.first_step_cost = ckpt.get("first_step_cost")  # the run's first step, measured before the resume
        result.stopped_early = bool(ckpt.get("stopped_early", False))
        self._first_losses = dict(ckpt.get("first_losses", {}))
        then = ckpt.get("settings") or {}
        result.resumed = {"from_step": ckpt["step"],
                          "changed": {k: [then[k], v] for k, v in self.settings.items() if k in then and then[k] != v}}
        if ckpt.get("rng") is not None:
            set_rng_state(ckpt["rng"])
        return best_state

    def _rescore(self, evaluate: Callable[[], Mapping[str, Any]], state: Any, best_state: Any, result: FitResult,
                 stopper: EarlyStopping) -> None:
        """Evaluate the kept best state again (a resume changed what ``evaluate`` measures, see ``rescore``), then
        go on from the resumed state; the random-number generators are left as the checkpoint set them."""
        if stopper.best is None or state is None or best_state is None:
            return  # (no evaluation yet, or no best state to evaluate: later evaluations are compared among themselves)
        rng, current = rng_state(), _best_part(state)
        _restore_best(state, best_state)
        try:
            metrics = _plain(evaluate(), "evaluate()", f"{{{self.monitor!r}: value}} (the monitored key)")
        finally:
            _restore_best(state, current)
            set_rng_state(rng)
        stopper.best = self._monitored(metrics)
        result.best = {**result.best, **metrics}

    def _one_step(self, step: Callable[[int], Mapping[str, Any] | None], i: int,
                  result: FitResult) -> Mapping[str, Any]:
        try:
            if not (self.measure_first_step and result.first_step_cost is None):
                metrics = step(i)
            else:
                from fwdlearn.diagnostics.cost import measure_cost

                box: dict[str, Any] = {}
                result.first_step_cost = measure_cost(lambda: box.update(metrics=step(i)), self.device)
                metrics = box["metrics"]
            # (None: a step without metrics; a bare loss of 0.0 was read as none, in silence, and one of 1.0 failed)
            return {} if metrics is None else metrics
        finally:
            weights_changed()  # (under autocast every later step and evaluation read the first step's weights)

    def run(
        self,
        step: Callable[[int], Mapping[str, Any] | None],
        evaluate: Callable[[], Mapping[str, Any]] | None = None,
        state: Any = None,
    ) -> FitResult:
        """Train for up to ``steps`` steps.

        Args:
            step: ``step(i)`` trains one step (``i`` counts from 1) and returns its metrics, a dict (``{"loss": ...}``)
                or ``None``; anything else (a bare loss) is a ``TypeError``. One-element tensors and NumPy scalars among
                them (and among ``evaluate``'s) are kept as Python numbers, other tensors detached; a loss (a key
                holding ``"loss"``) must be one number.
            evaluate: returns validation metrics, a dict including ``monitor`` (one number); without it there is no
                early stopping and the last state is kept.
            state: an object with ``state_dict()``/``load_state_dict()``; its best state is
                restored at the end and saved in checkpoints (``best_state_dict()`` /
                ``load_best_state_dict()``, when it has them, say what the best state needs).

        Training takes gradients whatever the caller's mode: inside ``torch.no_grad()`` the steps run with gradients
        on (a layer-by-layer fit there took no step and reported the untrained model as trained); inside
        ``torch.inference_mode()``, which no block can turn off for the tensors made in it, the run is refused.

        Raises:
            DivergenceError: a loss was NaN/inf or grew past the limit (the checkpoint keeps the last good state).
            TrainingInterrupted: Ctrl-C (the checkpoint keeps the last saved step; ``state`` is left as the interrupted
                step left it, perhaps part-way through its update, and the best state is not restored: resume
                from the checkpoint to finish the run).
            UsageError: called inside ``torch.inference_mode()``.
        """
        if torch.is_inference_mode_enabled():
            raise UsageError("fit cannot train inside torch.inference_mode() (no gradient is taken there): call it "
                             "outside that block")
        with torch.enable_grad():
            return self._run(step, evaluate, state)

    def _run(self, step: Callable[[int], Mapping[str, Any] | None], evaluate: Callable[[], Mapping[str, Any]] | None,
             state: Any) -> FitResult:
        weights_changed()  # (what an autocast block around this run cast before it is not these weights' copy)
        started = time.time()
        result = FitResult()
        stopper = EarlyStopping(self.patience, self.mode)
        best_state = None
        start_step = 1
        saved_step: int | None = None
        saving = False
        self._file_is_this_runs = False  # (set by a resume or the first save: only then is it kept as the previous)
        self._first_losses = {}
        if self.checkpoint is not None:  # before any work, not at the first save; first, so that a folder is
            check_writable(self.checkpoint, "checkpoint")  # named as one (not as a checkpoint to resume)
        if self.checkpoint is not None and self.checkpoint.exists() and not (self.resume or self.overwrite):
            raise FileExistsError(
                f"checkpoint {self.checkpoint} already exists; pass resume=True (--resume) to continue that run, "
                "overwrite=True (--overwrite) to start it over, or choose another checkpoint path"
            )
        if self.checkpoint is not None:
            if not self.resume:  # (an earlier run's previous save must not be taken for this run's)
                previous_checkpoint(self.checkpoint).unlink(missing_ok=True)
        if self.resume and self.checkpoint is not None:
            ckpt = self._agreed(self._load_every_part())  # (every process takes part)
            if ckpt is not None:
                self._file_is_this_runs = True
                best_state = self._resume(ckpt, state, result, stopper)
                if evaluate is not None and set(result.resumed["changed"]) & set(self.rescore):
                    self._rescore(evaluate, state, best_state, result, stopper)
                saved_step = ckpt["step"]
                start_step = ckpt["step"] + 1
                if start_step > self.steps and not result.stopped_early and rank() == 0 and self.last_part:
                    print(f"{self.checkpoint} already holds all {self.steps} steps of the run: nothing is left to "
                          "train (the budget is the total: raise the steps or epochs to train on)", file=sys.stderr)
                elif result.stopped_early and rank() == 0 and self.last_part:  # (a resume with a larger patience
                    # or budget trained nothing, silently, while graph train printed the new settings as applied)
                    print(f"{self.checkpoint} stopped early at step {ckpt['step']} ({self.monitor} had not improved "
                          f"for {stopper.bad_checks} evaluations), and an early-stopped run stays stopped: nothing is "
                          "left to train, and a new patience or budget does not apply; to train with them, start over "
                          "(--overwrite; overwrite=True in Python)", file=sys.stderr)
        t0 = time.perf_counter() - result.seconds
        shown: dict[str, str] = {}
        last = self.steps if not result.stopped_early else start_step - 1  # an early-stopped run stays stopped
        bar = progress(range(start_step, last + 1), desc=self.desc, quiet=self.quiet, total=self.steps,
                       initial=start_step - 1, unit=self.unit)  # a resumed run's bar goes on from where it stopped
        i = start_step
        try:
            for i in bar:
                row: dict[str, Any] = {"step": i}
                try:
                    row.update(_plain(self._one_step(step, i, result), "step(i)"))
                except NonFiniteLossError as error:  # raised inside the step: say which step
                    raise self._non_finite(i, str(error)) from None
                self._check_losses(row, i)
                evaluated = evaluate is not None and (i % self.eval_every == 0 or i == self.steps)
                if evaluated:
                    evaluating_since = time.perf_counter()
                    metrics = _plain(evaluate(), "evaluate()", f"{{{self.monitor!r}: value}} (the monitored key)")
                    result.eval_seconds += time.perf_counter() - evaluating_since
                    value = self._monitored(metrics)
                    if not math.isfinite(value):
                        raise self._non_finite(i, f"the validation {self.monitor} is {value}, so no best state can be "
                                                  "chosen: training diverged (or the validation set is empty). Lower "
                                                  "the learning rate, or check the validation data.")
                    self._check_losses(metrics, i)
                    row.update(metrics)
                    if stopper.improved(value):
                        result.best, result.best_step = dict(row), i
                        if state is not None:
                            best_state = _best_part(state)
                            self._check_state(best_state, i, "kept as the best")
                result.history.append(row)
                result.steps_run = i
                result.seconds = time.perf_counter() - t0
                shown.update({k: f"{v:.4g}" for k, v in row.items() if isinstance(v, float)})  # (the last evaluation's
                bar.set_postfix(shown, refresh=False)                                          # stays on the bar)
                result.stopped_early = evaluated and stopper.should_stop
                if self.checkpoint is not None:
                    every = self.checkpoint_every or self.eval_every
                    if i % every == 0 or i == self.steps or result.stopped_early:
                        saving = True  # (an interrupt may land after the file is replaced, before the next line)
                        self._save(state, i, stopper, result, best_state)
                        saved_step, saving = i, False
                if result.stopped_early:
                    break
        except KeyboardInterrupt:
            if saving and _step_on_disk(self.checkpoint, since=started) == i:  # the save replaced the file: it
                saved_step = i  # holds this step (a file of another step is an earlier run's, or the block below's)
            raise TrainingInterrupted(i, self.checkpoint, saved_step) from None
        finally:
            bar.close()
        if state is not None and best_state is not None:
            _restore_best(state, best_state)
        if not result.best and result.history:
            result.best, result.best_step = dict(result.history[-1]), result.history[-1]["step"]
        result.seconds = time.perf_counter() - t0
        return result
