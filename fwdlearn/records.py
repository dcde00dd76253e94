"""Run records: one JSON file per run with the config, metrics, timings, seed and versions."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["RunRecord", "library_versions", "to_jsonable", "refuse_overwrite"]


def refuse_overwrite(*paths: str | Path, overwrite: bool = False, flag: str = "--overwrite") -> None:
    """Fail before any work is done when an output file exists and ``overwrite`` is not set."""
    for path in paths:
        if path and Path(path).exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; choose another output path or pass {flag} to replace it")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result depends on (those that are installed)."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for name in ("fwdlearn", "torch", "torch-geometric", "datasets", "numpy", "scipy", "networkx"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def to_jsonable(value: Any) -> Any:
    """Turn dataclasses, paths, tensors and numpy scalars into plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch / numpy
        return value.tolist()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


class RunRecord:
    """What one run did: its config, a row of metrics per logged step, and a summary.

    Example::

        record = RunRecord("graph-train", config, seed=0)
        record.log(epoch=1, loss=0.7, val_accuracy=0.81)
        record.summary["test_accuracy"] = 0.84
        record.save("runs/cora-sf.json")
    """

    def __init__(self, job: str, config: Any = None, seed: int | None = None) -> None:
        self.job = job
        self.config = config
        self.seed = seed
        self.metrics: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.started = time.time()

    def log(self, **metrics: Any) -> None:
        """Append one row of metrics."""
        self.metrics.append(metrics)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "job": self.job,
                "config": self.config,
                "seed": self.seed,
                "summary": self.summary,
                "metrics": self.metrics,
                "seconds": time.time() - self.started,
                "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
                "versions": library_versions(),
                "host": {"platform": platform.platform(), "machine": platform.machine()},
            }
        )

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the record as JSON; refuses to replace an existing file unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another path or pass overwrite=True (--overwrite) to replace it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2))
        return path

    @staticmethod
    def default_path(job: str, folder: str | Path = "runs") -> Path:
        """A fresh file name ``<folder>/<job>-<UTC time>.json`` that does not exist yet."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = Path(folder) / f"{job}-{stamp}.json"
        n = 1
        while path.exists():
            path = Path(folder) / f"{job}-{stamp}-{n}.json"
            n += 1
        return path
