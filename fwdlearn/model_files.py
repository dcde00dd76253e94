"""Model files: a trained model written as ``{"kind", "config", "model", ...}`` and read back.

A domain's model class says what its ``config`` is (what builds it again) and which ``kind`` names it; this module
writes the file atomically, refusing to overwrite one unless asked, and reads it with torch's ``weights_only``
loader (:func:`fwdlearn.fit.load_torch`), rebuilding the model on the CPU in the saved dtypes (each parameter and
buffer its own) and moving it to the device asked for. Every failure names the file: not a model file, a kind or
config this process cannot build, weights that do not fit the config.

Example::

    save_model(model, "runs/m.pt", kind="forward-gnn", config=model.config_dict())
    model, bundle = load_model("runs/m.pt", "a ForwardGNN model", lambda b: ForwardGNN(**b["config"]))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from fwdlearn.errors import InputError, reading
from fwdlearn.files import atomic_write, refuse_overwrite
from fwdlearn.fit import load_device, load_torch

__all__ = ["save_model", "load_model", "ModelFile"]


def save_model(model: Any, path: str | Path, kind: str, config: dict[str, Any], overwrite: bool = False,
               **extra: Any) -> Path:
    """Write ``{"kind": kind, "config": config, "model": model.state_dict(), **extra}`` to ``path`` atomically;
    refused when ``path`` exists unless ``overwrite``."""
    import torch

    if str(path).endswith(("/", os.sep)) or Path(path).expanduser().is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the model file's path (e.g. {Path(path) / 'model.pt'})")
    path = Path(path).expanduser()
    refuse_overwrite(path, overwrite=overwrite, flag="overwrite=True")
    bundle = {"kind": kind, "config": config, "model": model.state_dict(), **extra}
    return atomic_write(path, lambda tmp: torch.save(bundle, tmp))


def load_model(path: str | Path, what: str, build: Callable[[dict[str, Any]], Any],
               bundle_of: Callable[[Path, Any], dict[str, Any]] | None = None,
               map_location: Any = "cpu", kind: str | None = None, hint: str = "") -> tuple[Any, dict[str, Any]]:
    """``(model, bundle)`` from the file at ``path``: ``bundle_of(path, loaded)`` finds the bundle in what was read
    (default: the file itself, which must hold ``"config"`` and ``"model"`` and, given a ``kind``, name it; ``hint``
    follows the refusal of another file), ``build(bundle)`` makes the model on
    the CPU (a ``ValueError`` / ``TypeError`` there is the file's: a kind or config this process cannot build); the
    weights are loaded in the saved dtype and the model moved to ``map_location``'s device.

    Raises:
        InputError: naming ``path``: not such a file, cut short, a config that cannot be built, weights that do
            not fit. ``FileNotFoundError`` / ``IsADirectoryError`` for a missing file or a folder, ``ValueError`` for
            a ``map_location`` that is not a device here.
    """
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
            raise InputError(f"{path} is not {what} file" + (f" ({hint})" if hint else ""))
        try:
            model = build(bundle)
        except (ValueError, TypeError) as error:  # a kind not registered in this process, a config it cannot take
            raise InputError(f"{path}: {error}; it was written by a kind (registered in other code) or a fwdlearn "
                             "version this one cannot build") from None
        _take_saved_dtypes(model, bundle["model"])
        try:
            model.load_state_dict(bundle["model"])
        except RuntimeError as error:  # (its first line alone names no key)
            detail = " ".join(str(error).split())[:400]
            named = f"{bundle['kind']} " if isinstance(bundle.get("kind"), str) else ""
            raise InputError(f"the weights in {path} do not fit the {named}model its config describes ({detail}); it "
                             "was edited, or written by another fwdlearn version") from None
    return model.to(device), bundle


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
