"""``fwdlearn quickstart``: BP beside ForwardGNN (SF) on built-in data, with influence ranges.

For each graph (a generated City-Networks-style city, KarateClub, and Cora when
``FWDLEARN_DATA_DIR`` has it) a GCN of ``layers`` layers is trained by end-to-end BP and by
ForwardGNN's single-forward method; the table shows test accuracy, fit seconds, bytes saved
for backward per step and the influence range R (:func:`~fwdlearn.graphs.hop_influence`).
No internet and no data folder are needed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord, refuse_overwrite
from fwdlearn.reporting import markdown_table

__all__ = ["QuickstartConfig", "run_quickstart", "quickstart", "COLUMNS"]


@dataclass
class QuickstartConfig:
    data: list[str] = field(default_factory=lambda: ["synthetic-city:2000", "karate"],
                            metadata={"help": "graphs (Cora is added when FWDLEARN_DATA_DIR has it, unless --no-cora)"})
    cora: bool = field(default=True, metadata={"help": "add Cora when it is available locally"})
    layers: int = field(default=4, metadata={"help": "layers of both GCNs", "min": 1})
    hidden: int = field(default=64, metadata={"help": "width of every layer", "min": 1})
    epochs: int = field(default=100, metadata={"help": "epochs per layer (SF) / in total (BP)", "min": 1})
    patience: int = field(default=30, metadata={"help": "early-stopping patience in epochs (0 = none)", "min": 0})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate of both methods", "gt": 0})
    samples: int = field(default=200, metadata={"help": "seed nodes for hop_influence's R", "min": 1})
    seed: int = field(default=0, metadata={"help": "random seed of weights and splits"})
    json: str = field(default="", metadata={"help": "run record path (default: a fresh file under runs/)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing record instead of refusing"})
    quiet: bool = field(default=False, metadata={"help": "no progress bars or per-run lines"})


COLUMNS = ["data", "method", "layers", "test_accuracy", "fit_seconds", "saved_bytes_per_step", "R"]


def run_quickstart(config: QuickstartConfig) -> int:
    from fwdlearn.data import data_dir
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs.data.datasets import load_graph
    from fwdlearn.graphs.influence.hop_influence import hop_influence
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

    path = Path(config.json) if config.json else RunRecord.default_path("quickstart")
    refuse_overwrite(path, overwrite=config.overwrite)
    record = RunRecord("quickstart", config, seed=config.seed)
    names = list(config.data)
    root = data_dir()
    if config.cora and root is not None and (root / "Planetoid" / "Cora" / "raw").is_dir() and "cora" not in names:
        names.append("cora")
    rows = []
    for name in names:
        split = "random" if name in ("karate", "cora") else "public"
        data = load_graph(name, split=split, seed=config.seed, quiet=config.quiet)
        samples = min(config.samples, data.num_nodes)
        for method in ("bp", "sf"):
            seed_everything(config.seed)
            model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", hidden=config.hidden,
                               layers=config.layers, method=method, seed=config.seed)
            report = model.fit(data, epochs=config.epochs, lr=config.lr, patience=config.patience or None,
                               quiet=config.quiet)
            _, R, _ = hop_influence(model, data, config.layers, samples=samples, seed=config.seed, quiet=config.quiet)
            row = {"data": name, "method": method, "layers": config.layers, "test_accuracy": report.test_accuracy,
                   "fit_seconds": report.fit_seconds, "saved_bytes_per_step": report.saved_bytes_per_step, "R": R}
            rows.append(row)
            record.log(**row, val_accuracy=report.val_accuracy, peak_memory_bytes=report.peak_memory_bytes)
            if not config.quiet:
                print(f"{name} {method}: test accuracy {report.test_accuracy:.3f}, {report.fit_seconds:.1f} s, R {R:.2f}")
    print(markdown_table(rows, COLUMNS), end="")
    record.summary["rows"] = rows
    print(f"record: {record.save(path, overwrite=config.overwrite)}")
    return 0


quickstart = Command(help="the main job on built-in data: a 4-layer GCN trained by BP and by ForwardGNN (sf), "
                          "accuracy, time, saved bytes and influence range R side by side",
                     configure=lambda parser: add_dataclass_arguments(parser, QuickstartConfig),
                     run=lambda args: run_quickstart(dataclass_from_args(QuickstartConfig, args)))
