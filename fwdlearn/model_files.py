"""Model files: a trained model written as ``{"kind", "config", "model", ...}`` and read back.

A domain's model class says what its ``config`` is (what builds it again) and which ``kind`` names it; this module
writes the file atomically, refusing to overwrite one unless asked, and reads it with torch's ``weights_only``
loader (:func:`fwdlearn.fit.load_torch`), rebuilding the model on the CPU in the saved dtypes (each parameter and
buffer its own) and moving it to the device asked for. Every failure names the file: not a model file (saying what it
is when it is another of fwdlearn's files, :func:`what_file`), a kind or config this process cannot build, weights
that do not fit the config or hold no values.

Example::

    save_model(model, "runs/m.pt", kind="forward-gnn", config=model.config_dict())
    model, bundle = load_model("runs/m.pt", "a ForwardGNN model", lambda b: ForwardGNN(**b["config"]))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from fwdlearn.errors import InputError, check_not_meta, on_meta, reading
from fwdlearn.files import atomic_write, check_writable, refuse_overwrite, save_torch
from fwdlearn.fit import is_checkpoint, load_device, load_torch

__all__ = ["save_model", "load_model", "ModelFile", "FILE_KINDS", "what_file"]

_LANGUAGE_MODEL_READERS = "fwdlearn.sequences.load_language_model and fwdlearn influence seq --checkpoints"

#: the kinds of model file fwdlearn's own classes write -> ``(what the file holds, what reads it)``: a loader given
#: a file of another kind says which it is (a ForwardGNN file given to ``influence seq`` was "an unknown language
#: model kind"); a language model's kinds are those of :data:`fwdlearn.sequences.registries.LM_KINDS`
FILE_KINDS: dict[str, tuple[str, str]] = {
    "forward-gnn": ("a ForwardGNN graph model", "fwdlearn.graphs.ForwardGNN.load"),
    "forward-link-predictor": ("a ForwardLinkPredictor graph model", "fwdlearn.graphs.ForwardLinkPredictor.load"),
    "recurrent": ("a recurrent language model", _LANGUAGE_MODEL_READERS),
    "conv": ("a conv language model", _LANGUAGE_MODEL_READERS),
    "transformer": ("a transformer language model", _LANGUAGE_MODEL_READERS),
}


def what_file(loaded: Any) -> str:
    """What the file ``loaded`` was read from is, for a loader's refusal of it (``"it is ..., read by ..."``;
    ``""`` when it cannot tell): a model file of :data:`FILE_KINDS`, a training checkpoint of a ``graph train`` or
    ``seq train`` run, a bare ``state_dict``."""
    import torch

    if not isinstance(loaded, dict):
        return ""
    kind = loaded.get("kind")
    if isinstance(kind, str) and kind in FILE_KINDS and "config" in loaded and "model" in loaded:
        holds, reader = FILE_KINDS[kind]
        return f"it is {holds} file, read by {reader}"
    if is_checkpoint(loaded):
        fingerprint = loaded.get("fingerprint")
        model = fingerprint.get("model") if isinstance(fingerprint, dict) else None
        if isinstance(model, dict) and "method" in model:
            return ("it is a graph train checkpoint, a run's training state (fwdlearn graph train --resume continues "
                    "it), not a model file (ForwardGNN.save writes one)")
        state = loaded.get("best_state") or loaded.get("state")
        if isinstance(state, dict) and state.get("kind") in FILE_KINDS and "config" in state:
            return f"it is a seq train checkpoint, whose best state is read by {_LANGUAGE_MODEL_READERS}"
        return "it is a training checkpoint (a fitting run's state), not a model file"
    if loaded and all(torch.is_tensor(value) for value in loaded.values()):
        return ("it is a bare state_dict (torch.save(model.state_dict())), which names no model to build: build the "
                "model and call model.load_state_dict(torch.load(path)), or write the file with model.save(path)")
    return ""


def save_model(model: Any, path: str | Path, kind: str, config: dict[str, Any], overwrite: bool = False,
               **extra: Any) -> Path:
    """Write ``{"kind": kind, "config": config, "model": model.state_dict(), **extra}`` to ``path`` atomically;
    refused when ``path`` exists unless ``overwrite``, when it cannot be written (an empty path, a folder, a parent
    that is a file: before anything is written), when the model's weights are on the meta device (no values) and when
    a weight holds a NaN or an infinity, or a buffer a NaN (a diverged model; a buffer may hold an infinity on purpose,
    as an attention mask's ``-inf``)."""
    if not str(path).strip():  # (Path("") is the working folder: " is a folder")
        raise ValueError("the model file's path is empty; give one (e.g. runs/model.pt)")
    if str(path).endswith(("/", os.sep)) or Path(path).expanduser().is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the model file's path (e.g. {Path(path) / 'model.pt'})")
    path = Path(path).expanduser()
    refuse_overwrite(path, overwrite=overwrite, flag="overwrite=True")
    check_writable(path)  # (a parent that is a file was "[Errno 17] File exists: '<parent>'")
    state = model.state_dict()
    for name, value in state.items():  # (the file held shapes without values; loading it said the weights did not fit)
        check_not_meta(f"the model's {name}", value, "the file would hold no weights", "save a model whose weights "
                       "are on the CPU or a GPU (one loaded with map_location='meta' or built on the meta device has "
                       "none)")
    broken = _diverged_entry(model, state)
    if broken is not None:  # (it was written, and loaded back as a model whose every output was NaN)
        raise ValueError(f"the model's {broken} holds NaN or inf values (training diverged): the file would hold a "
                         "model that gives NaN. Train it again with a lower learning rate, or save a state from before "
                         "the divergence (a fit's checkpoint keeps the last finite one)")
    bundle = {"kind": kind, "config": config, "model": state, **extra}
    return atomic_write(path, lambda tmp: save_torch(bundle, tmp))  # (a full disk: an OSError naming the file)


def _diverged_entry(model: Any, state: dict[str, Any]) -> str | None:
    """The first entry of ``state`` (``model.state_dict()``) that shows a diverged model: a weight holding a NaN or an
    infinity, or a buffer holding a NaN; ``None`` when there is none. A buffer's infinity is not one (a causal mask of
    ``-inf`` above the diagonal, registered as a buffer, was refused as 'training diverged')."""
    import torch

    named = getattr(model, "named_parameters", None)
    weights = {name for name, _ in named(remove_duplicate=False)} if callable(named) else set(state)
    for name, value in state.items():
        if torch.is_tensor(value) and (value.is_floating_point() or value.is_complex()):
            finite = torch.isfinite(value) if name in weights else ~torch.isnan(value)
            if not bool(finite.all()):
                return name
    return None


#: what a loader's refusal of a file it cannot build says to do: a piece registered by a user's own module (a cell, a
#: conv, a graph method, a rule or alias, a model kind) is known only in a process that imported that module
_UNBUILT_FIX = ("it was written by a kind registered in other code or by a fwdlearn version this one cannot build: if "
                "it names a cell, conv, graph method, rule, alias or model kind your own code registers, import the "
                "module that registers it before loading the file (for the fwdlearn command: run it from a script "
                "that imports that module and then calls fwdlearn.cli.main([...]))")


def load_model(path: str | Path, what: str, build: Callable[[dict[str, Any]], Any],
               bundle_of: Callable[[Path, Any], dict[str, Any]] | None = None,
               map_location: Any = "cpu", kind: str | None = None, hint: str = "") -> tuple[Any, dict[str, Any]]:
    """``(model, bundle)`` from the file at ``path``: ``bundle_of(path, loaded)`` finds the bundle in what was read
    (default: the file itself, which must hold ``"config"`` and ``"model"`` and, given a ``kind``, name it; ``hint``
    follows the refusal of another file), ``build(bundle)`` makes the model on
    the CPU (a ``ValueError`` / ``TypeError`` there is the file's: a kind or config this process cannot build); the
    weights are loaded in the saved dtype and the model moved to ``map_location``'s device, in ``eval()`` mode (as
    Hugging Face's ``from_pretrained``: ``.train()`` before a training loop of one's own; a fit sets its own modes).

    Raises:
        InputError: naming ``path``: not such a file (saying what it is, :func:`what_file`), cut short, a config that
            cannot be built, weights that do not fit or hold no values (saved on the meta device).
            ``FileNotFoundError`` / ``IsADirectoryError`` for a missing file or a folder, ``ValueError`` for a
            ``map_location`` that is not a device here.
    """
    import torch

    path = Path(path).expanduser()
    device = load_device(map_location)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the model file's path (e.g. {path / 'model.pt'})")
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    with reading(path, what, "it may have been cut short or is another kind of file"):
        loaded = load_torch(path, map_location="cpu")  # (built on the CPU, then moved)
        if bundle_of is not None:
            bundle = bundle_of(path, loaded)
        elif isinstance(loaded, dict) and isinstance(loaded.get("config"), dict) and "model" in loaded \
                and (kind is None or loaded.get("kind") == kind):
            bundle = loaded
        else:
            found = what_file(loaded)
            raise InputError(f"{path} is not {what} file" + (f" ({hint})" if hint else "")
                             + (f": {found}" if found else ""))
        try:
            model = build(bundle)
        except (ValueError, TypeError) as error:  # a kind not registered in this process, a config it cannot take
            raise InputError(f"{path}: {error}; {_UNBUILT_FIX}") from None
        meta = next((name for name, t in bundle["model"].items() if torch.is_tensor(t) and t.is_meta), None)
        if meta is not None:  # (load_state_dict: "the weights do not fit ... Cannot copy out of meta tensor")
            raise InputError(f"{path} holds no weights: " + on_meta(
                f"its {meta}", bundle["model"][meta], "it was saved from a model on the meta device",
                "save the model again from the CPU or a GPU"))
        _take_saved_dtypes(model, bundle["model"])
        try:
            model.load_state_dict(bundle["model"])
        except RuntimeError as error:  # (its first line alone names no key)
            detail = " ".join(str(error).split())[:400]
            named = f"{bundle['kind']} " if isinstance(bundle.get("kind"), str) else ""
            raise InputError(f"the weights in {path} do not fit the {named}model its config describes ({detail}); it "
                             "was edited, or written by another fwdlearn version") from None
    return model.to(device).eval(), bundle  # (in eval mode, as Hugging Face's from_pretrained gives it)


def _take_saved_dtypes(model: Any, state: dict[str, Any]) -> None:
    """Give every floating parameter and buffer of ``model`` the dtype its saved tensor has (a float64 or bfloat16
    model, or one with a bfloat16 block, comes back as it was saved, not as the float32 a fresh build is)."""
    import torch

    saved = {t.dtype for t in state.values() if torch.is_tensor(t) and t.is_floating_point()}
    if len(saved) == 1:  # (the whole model, buffers included, in one dtype: a plain .to)
        model.to(saved.pop())
        return
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        stored = state.get(name)
        if torch.is_tensor(stored) and stored.is_floating_point() and tensor.is_floating_point() \
                and stored.dtype != tensor.dtype:
            tensor.data = tensor.data.to(stored.dtype)


class ModelFile:
    """What a model class needs to be saved and read back: ``save(path)`` and ``load(path)`` from its
    :attr:`FILE_KIND` and ``config_dict()``, which must build it again as ``cls(**config_dict())``."""

    #: the ``kind`` a saved file names
    FILE_KIND: ClassVar[str]
    #: what the refusal of another file adds (how this kind of file is made)
    FILE_HINT: ClassVar[str] = ""

    def config_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``{"kind", "config", "model"}`` atomically (:func:`save_model`: refuses to overwrite unless
        ``overwrite``); :meth:`load` reads it back: the weights, the buffers and the dtype."""
        return save_model(self, path, self.FILE_KIND, self.config_dict(), overwrite)

    @classmethod
    def load(cls, path: str | Path, map_location: Any = "cpu") -> Any:
        """The model :meth:`save` wrote, on the device ``map_location`` names; another file is refused, naming it."""
        return load_model(path, f"a {cls.__name__} model", lambda bundle: cls(**bundle["config"]),
                          map_location=map_location, kind=cls.FILE_KIND, hint=cls.FILE_HINT)[0]
