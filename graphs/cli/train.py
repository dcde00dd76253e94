"""``fwdlearn graph train``: a GNN trained by a forward method or by BP, on one or several splits.

::

    fwdlearn graph train --data cora --method sf --conv gcn --layers 4 --splits 5
    fwdlearn graph train --data cora --task link --method ce --layers 4
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord, refuse_overwrite
from fwdlearn.reporting import markdown_table, mean_std

__all__ = ["GraphTrainConfig", "train_runs", "train", "CONVS", "NODE_METHODS", "LINK_METHODS"]

#: the words of this command (checked against the library's registries by the tests)
CONVS = ("gcn", "sage", "gat")
NODE_METHODS = ("sf", "sf-top2input", "sf-top2loss", "ff-la", "ff-vn", "ff-symba", "bp", "dfa", "dfa:gaussian",
                "dfa:orthogonal")
LINK_METHODS = ("ce", "ff", "bp")


@dataclass
class GraphTrainConfig:
    data: str = field(default="cora", metadata={"help": "cora, citeseer, pubmed, karate, synthetic-city[:N], city:<path>, ..."})
    task: str = field(default="node", metadata={"help": "node classification or link prediction", "choices": ["node", "link"]})
    method: str = field(default="sf", metadata={"help": f"node: {', '.join(NODE_METHODS)} (or any rule of "
                                                        f"fwdlearn.rules a graph method is registered for); "
                                                        f"link: {', '.join(LINK_METHODS)}"})
    conv: str = field(default="gcn", metadata={"help": "GNN layer", "choices": list(CONVS)})
    layers: int = field(default=4, metadata={"help": "number of GNN layers"})
    hidden: int = 128
    epochs: int = field(default=300, metadata={"help": "epochs per layer (layer-by-layer methods) or in total (BP, top-down)"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (the goodness methods ff-* and dfa learn "
                                                      "best at about 1e-2)"})
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

    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs.data.datasets import load_graph
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN
    from fwdlearn.graphs.nn.linkpred import ForwardLinkPredictor

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


def _check_method(config: GraphTrainConfig) -> None:
    """Refuse a method of the other task before any work (the registries are consulted lazily)."""
    if config.task == "link":
        if config.method not in LINK_METHODS:
            raise SystemExit(f"--method {config.method!r} is not a link method; choose one of {', '.join(LINK_METHODS)}")
        return
    from fwdlearn.graphs.methods import method_class

    try:
        method_class(config.method)
    except ValueError as error:
        raise SystemExit(f"--method {config.method!r} is not a node method: {error}") from None


def _run(args: argparse.Namespace) -> int:
    config = dataclass_from_args(GraphTrainConfig, args)
    _check_method(config)
    path = Path(config.json) if config.json else RunRecord.default_path("graph-train")
    refuse_overwrite(path, overwrite=config.overwrite)
    record = RunRecord("graph-train", config, seed=config.seed)
    rows = train_runs(config, record)
    metric = "test_auc" if config.task == "link" else "test_accuracy"
    columns = ["split", "method", "conv", "layers", metric, "fit_seconds", "saved_bytes_per_step", "peak_memory_bytes"]
    table = list(rows)
    if len(rows) > 1:
        m, s = mean_std([r[metric] for r in rows])
        table.append({"split": "mean ± std", "method": rows[0]["method"], metric: f"{m:.4f} ± {s:.4f}",
                      "fit_seconds": mean_std([r["fit_seconds"] for r in rows])[0]})
        record.summary.update({f"{metric}_mean": m, f"{metric}_std": s})
    else:
        record.summary[metric] = rows[0][metric]
    print(markdown_table(table, columns), end="")
    print(f"record: {record.save(path, overwrite=config.overwrite)}")
    return 0


train = Command(help="train a GNN without backprop (ForwardGNN) or by BP; node classification or link prediction",
                configure=lambda parser: add_dataclass_arguments(parser, GraphTrainConfig), run=_run)
