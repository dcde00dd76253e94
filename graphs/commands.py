"""``fwdlearn graph train``, ``fwdlearn bench graph`` and ``fwdlearn quickstart``.

::

    fwdlearn graph train --data cora --method sf --conv gcn --layers 4 --splits 5
    fwdlearn graph train --data cora --task link --method ce --layers 4
    fwdlearn bench graph --splits 5 --depths 1 2 4 8 --quiet
    fwdlearn quickstart
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.fit import seed_everything
from fwdlearn.records import RunRecord, refuse_overwrite
from fwdlearn.reporting import markdown_table, mean_std

from .backbones import CONVS
from .forward_gnn import METHODS
from .linkpred import LINK_METHODS

__all__ = ["train", "bench", "quickstart", "GraphTrainConfig", "BenchGraphConfig", "QuickstartConfig", "train_runs"]


@dataclass
class GraphTrainConfig:
    data: str = field(default="cora", metadata={"help": "cora, citeseer, pubmed, karate, synthetic-city[:N], city:<path>, ..."})
    task: str = field(default="node", metadata={"help": "node classification or link prediction", "choices": ["node", "link"]})
    method: str = field(default="sf", metadata={"help": f"node: {', '.join(METHODS)}; link: {', '.join(LINK_METHODS)}"})
    conv: str = field(default="gcn", metadata={"help": "GNN layer", "choices": list(CONVS)})
    layers: int = field(default=4, metadata={"help": "number of GNN layers"})
    hidden: int = 128
    epochs: int = field(default=300, metadata={"help": "epochs per layer (layer-by-layer methods) or in total (BP, top-down)"})
    lr: float = 1e-3
    weight_decay: float = 5e-4
    patience: int = field(default=100, metadata={"help": "early-stopping patience in evaluations (0 = none)"})
    eval_every: int = 1
    split: str = field(default="random", metadata={"help": "node split", "choices": ["public", "random"]})
    splits: int = field(default=1, metadata={"help": "random splits (seeds seed..seed+splits-1); mean ± std"})
    seed: int = 0
    download: bool = field(default=False, metadata={"help": "let PyG download data sets that are not local"})
    json: str = field(default="", metadata={"help": "run record path (default runs/graph-train-<time>.json)"})
    overwrite: bool = False
    quiet: bool = False


def train_runs(config: GraphTrainConfig, record: RunRecord | None = None) -> list[dict]:
    """Train ``config.splits`` models (one per split seed); the rows of metrics."""
    import torch

    from .datasets import load_graph
    from .forward_gnn import ForwardGNN
    from .linkpred import ForwardLinkPredictor

    rows = []
    patience = config.patience or None
    for i in range(config.splits):
        seed = config.seed + i
        data = load_graph(config.data, split=config.split, seed=seed, download=config.download, quiet=config.quiet)
        if torch.cuda.is_available():
            data = data.to("cuda")
        seed_everything(seed)
        if config.task == "link":
            model = ForwardLinkPredictor(data.num_features, conv=config.conv, hidden=config.hidden, layers=config.layers,
                                         method=config.method)
            report = model.fit(data, epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay,
                               patience=patience, eval_every=config.eval_every, quiet=config.quiet, seed=seed)
        else:
            model = ForwardGNN(data.num_features, data.num_classes, conv=config.conv, hidden=config.hidden,
                               layers=config.layers, method=config.method, seed=seed)
            report = model.fit(data, epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay,
                               patience=patience, eval_every=config.eval_every, quiet=config.quiet)
        row = {"split": seed, **{k: v for k, v in report.as_dict().items() if k != "per_layer"}}
        if record is not None:
            record.log(**report.as_dict(), split=seed)
        rows.append(row)
    return rows


def _configure_train(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, GraphTrainConfig)


def _run_train(args: argparse.Namespace) -> int:
    config = dataclass_from_args(GraphTrainConfig, args)
    allowed = LINK_METHODS if config.task == "link" else METHODS
    if config.method not in allowed:
        raise SystemExit(f"--method {config.method!r} is not a {config.task} method; choose one of {', '.join(allowed)}")
    path = Path(config.json) if config.json else RunRecord.default_path("graph-train")
    refuse_overwrite(path, overwrite=config.overwrite)
    record = RunRecord("graph-train", config, seed=config.seed)
    rows = train_runs(config, record)
    metric = "test_auc" if config.task == "link" else "test_accuracy"
    columns = ["split", "method", "conv", "layers", metric, "fit_seconds", "saved_bytes_per_step", "peak_memory_bytes"]
    table = list(rows)
    if len(rows) > 1:
        m, s = mean_std([r[metric] for r in rows])
        table.append({"split": "mean ± std", "method": config.method, metric: f"{m:.4f} ± {s:.4f}",
                      "fit_seconds": mean_std([r["fit_seconds"] for r in rows])[0]})
        record.summary.update({f"{metric}_mean": m, f"{metric}_std": s})
    else:
        record.summary[metric] = rows[0][metric]
    print(markdown_table(table, columns), end="")
    print(f"record: {record.save(path, overwrite=config.overwrite)}")
    return 0


train = Command(help="train a GNN without backprop (ForwardGNN) or by BP; node classification or link prediction",
                configure=_configure_train, run=_run_train)


@dataclass
class BenchGraphConfig:
    out: str = field(default="docs/benchmarks/graph-results", metadata={"help": "results prefix (.json, .md)"})
    data: str = "cora"
    conv: str = field(default="gcn", metadata={"choices": list(CONVS)})
    depths: list[int] = field(default_factory=lambda: [1, 2, 4, 8], metadata={"help": "numbers of layers"})
    methods: list[str] = field(default_factory=lambda: ["bp", "sf", "sf-top2input", "ff-la"],
                               metadata={"help": "methods (bp is the baseline and is always run)", "choices": list(METHODS)})
    splits: int = field(default=5, metadata={"help": "random 64/16/20 splits (seeds seed..)"})
    epochs: int = field(default=200, metadata={"help": "epoch budget per layer (forward) / in total (BP, top-down)"})
    patience: int = field(default=50, metadata={"help": "early-stopping patience (0 = none)"})
    eval_every: int = 1
    hidden: int = 128
    lr: float = 1e-3
    bp_lr: float = field(default=1e-3, metadata={"help": "BP baseline's Adam learning rate"})
    ff_lr: float = field(default=1e-2, metadata={"help": "Adam learning rate of the goodness methods (ff-la, ff-vn, "
                                                         "ff-symba), which learn slowly at 1e-3"})
    link_layers: int = field(default=4, metadata={"help": "layers of the link-prediction row (0 = skip)"})
    link_methods: list[str] = field(default_factory=lambda: ["ce", "bp"], metadata={"choices": list(LINK_METHODS)})
    link_epochs: int = 100
    link_lr: float = field(default=1e-2, metadata={"help": "Adam learning rate of the forward link methods (BP link uses --bp-lr)"})
    threads: int = field(default=0, metadata={"help": "torch intra-op threads (0 = torch's default)"})
    seed: int = 0
    overwrite: bool = False
    quiet: bool = False


def _configure_bench(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, BenchGraphConfig)


def _run_bench(args: argparse.Namespace) -> int:
    from .graph_bench import run_bench

    return run_bench(dataclass_from_args(BenchGraphConfig, args))


bench = Command(help="ForwardGNN vs BP on Cora by depth: accuracy (mean ± std), fit time, saved bytes, peak memory",
                configure=_configure_bench, run=_run_bench)


@dataclass
class QuickstartConfig:
    data: list[str] = field(default_factory=lambda: ["synthetic-city:2000", "karate"],
                            metadata={"help": "graphs (Cora is added when FWDLEARN_DATA_DIR has it, unless --no-cora)"})
    cora: bool = field(default=True, metadata={"help": "add Cora when it is available locally"})
    layers: int = 4
    hidden: int = 64
    epochs: int = field(default=100, metadata={"help": "epochs per layer (SF) / in total (BP)"})
    patience: int = 30
    lr: float = 1e-2
    samples: int = field(default=200, metadata={"help": "seed nodes for hop_influence's R"})
    seed: int = 0
    json: str = field(default="", metadata={"help": "run record path (default runs/quickstart-<time>.json)"})
    overwrite: bool = False
    quiet: bool = False


def _configure_quickstart(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, QuickstartConfig)


def _run_quickstart(args: argparse.Namespace) -> int:
    from .quickstart import run_quickstart

    return run_quickstart(dataclass_from_args(QuickstartConfig, args))


quickstart = Command(help="the main job on built-in data: a 4-layer GCN trained by BP and by ForwardGNN (sf), "
                          "accuracy, time, saved bytes and influence range R side by side",
                     configure=_configure_quickstart, run=_run_quickstart)
