"""Where data lives.

Real data sets are read from the folder named by the environment variable
``FWDLEARN_DATA_DIR`` (nothing is downloaded at run time); processed copies and
caches go to ``FWDLEARN_CACHE_DIR`` (default ``~/.cache/fwdlearn``), never next to
the source, which may be read-only.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

from fwdlearn.errors import UsageError

__all__ = ["DataNotFoundError", "data_dir", "cache_root", "cache_dir", "data_path", "require_data_dir", "loader_log",
           "weights_only_loads"]

DATA_ENV = "FWDLEARN_DATA_DIR"
CACHE_ENV = "FWDLEARN_CACHE_DIR"


class DataNotFoundError(FileNotFoundError):
    """A data set is not where fwdlearn looked for it; the message says where and how to get it."""


def data_dir() -> Path | None:
    """The folder named by ``FWDLEARN_DATA_DIR`` (``~`` expanded; a relative path read from the current folder and
    made absolute, so that links to its files hold from anywhere), or ``None`` when the variable is unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser().absolute() if value else None


def cache_root() -> Path:
    """The folder ``FWDLEARN_CACHE_DIR`` names (default ``~/.cache/fwdlearn``; ``~`` expanded), not created."""
    return Path(os.environ.get(CACHE_ENV, "").strip() or "~/.cache/fwdlearn").expanduser()


def cache_dir(*parts: str) -> Path:
    """A folder under ``FWDLEARN_CACHE_DIR`` (default ``~/.cache/fwdlearn``), created if needed."""
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the cache folder {path} ({error.strerror or error}); point {CACHE_ENV} at a "
                         "writable folder") from error
    if not os.access(path, os.W_OK):
        raise UsageError(f"the cache folder {path} is not writable; point {CACHE_ENV} at a writable folder")
    return path


def require_data_dir(reason: str = "real data") -> Path:
    """The data folder; raises :class:`DataNotFoundError` when ``FWDLEARN_DATA_DIR`` is unset or missing."""
    root = data_dir()
    if root is None:
        raise DataNotFoundError(
            f"{reason} needs a local data folder, but {DATA_ENV} is not set. "
            f"Set {DATA_ENV}=/path/to/data (the folder that holds e.g. Planetoid/, tinyshakespeare/, roads/)."
        )
    if not root.is_dir():
        raise DataNotFoundError(f"{DATA_ENV} points to {root}, which is not a folder. Fix the variable.")
    return root


def data_path(*parts: str, what: str, how: str = "") -> Path:
    """The path ``<FWDLEARN_DATA_DIR>/<parts...>``, checked to exist.

    Args:
        parts: path components below the data folder.
        what: a human name for the data set, used in the error message.
        how: how to obtain the file, appended to the error message.

    Raises:
        DataNotFoundError: naming the expected path and how to get it.
    """
    root = require_data_dir(what)
    path = root.joinpath(*parts)
    if not path.exists():
        hint = f" {how}" if how else ""
        raise DataNotFoundError(f"{what}: expected {path}, which does not exist.{hint}")
    return path


@contextlib.contextmanager
def loader_log(quiet: bool) -> Iterator[None]:
    """Inside the block, with ``quiet``, what a third-party loader prints on stderr (PyG's ``Processing...`` /
    ``Done!`` when it builds a processed copy) is dropped; wrap the loader's call alone (a warning it raises is
    dropped too). Without ``quiet`` the block changes nothing."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


#: torch's switches that make every ``torch.load`` read tensors and plain values only (``weights_only=False`` or
#: not), or that make a load given no ``weights_only`` unpickle anything
FORCE_WEIGHTS_ONLY_ENV = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
FORCE_NO_WEIGHTS_ONLY_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Inside the block every ``torch.load`` reads with ``weights_only=True`` (tensors, plain values and the classes
    allowed as safe globals: PyG's own data classes), whatever its caller asked, so a planted file runs no code; wrap a
    third-party loader's call in it. PyG reads a processed copy's ``pre_transform.pt`` and ``pre_filter.pt`` with
    ``weights_only=False``, and reads ``data.pt`` again with ``weights_only=False`` when the safe read refuses an
    object in it: a ``processed/`` folder planted in a cache or a ``root=`` ran the code its files carried. A file
    refused is an ``UnpicklingError`` (``load_graph`` rebuilds a Planetoid copy from its raw files, as a damaged one,
    and names the folder of another data set's copy to remove). Sets torch's
    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` for the block (read by ``torch.load`` at each call, torch >= 2.4), with
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` unset (both set is torch's error), and restores both after."""
    before = {name: os.environ.pop(name, None) for name in (FORCE_WEIGHTS_ONLY_ENV, FORCE_NO_WEIGHTS_ONLY_ENV)}
    os.environ[FORCE_WEIGHTS_ONLY_ENV] = "1"
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
