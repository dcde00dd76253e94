"""``fwdlearn influence graph`` and ``fwdlearn bench influence``.

::

    fwdlearn influence graph --data city:roads/westminster --layers 8 --models gcn mlp --plot out.png
    fwdlearn bench influence --out docs/benchmarks/influence-results
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.fit import seed_everything
from fwdlearn.diagnostics.plots import plot_influence_curves
from fwdlearn.distributed import init_from_env, rank
from fwdlearn.records import RunRecord, refuse_overwrite

from .influence import hop_influence
from .node_bp import train_node_classifier

__all__ = ["influence", "bench", "InfluenceGraphConfig", "BenchInfluenceConfig", "make_model", "load_influence_graph",
           "NodeMLP"]

MODELS = ["gcn", "sage", "mlp"]
BP_LR, BP_PATIENCE = 1e-2, 50  # Adam learning rate and early-stopping patience of the BP models measured here


class NodeMLP(torch.nn.Module):
    """An MLP on node features with the GNN signature ``(x, edge_index)`` (edges ignored)."""

    def __init__(self, features: int, hidden: int, out: int, layers: int) -> None:
        super().__init__()
        from torch_geometric.nn.models import MLP

        self.mlp = MLP(in_channels=features, hidden_channels=hidden, out_channels=out, num_layers=layers)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.mlp(x)


def make_model(kind: str, features: int, classes: int, layers: int, hidden: int = 64) -> torch.nn.Module:
    """A PyG ``GCN`` / ``GraphSAGE`` / MLP of ``layers`` layers, callable as ``model(x, edge_index)``."""
    from torch_geometric.nn.models import GCN, GraphSAGE

    if kind == "gcn":
        return GCN(features, hidden, layers, classes)
    if kind == "sage":
        return GraphSAGE(features, hidden, layers, classes)
    if kind == "mlp":
        return NodeMLP(features, hidden, classes, layers)
    raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")


def load_influence_graph(name: str, seed: int = 0, hops: int = 16, quiet: bool = True):
    """A city network (eccentricity labels of radius ``hops``) or any :func:`~fwdlearn.graphs.load_graph` name
    with its public split (random 64/16/20 from ``seed`` when the data set has none)."""
    from .citynet import load_city
    from .datasets import has_public_split, is_city, load_graph

    if is_city(name):
        return load_city(name, seed=seed, hops=hops, quiet=quiet)
    return load_graph(name, split="public" if has_public_split(name) else "random", seed=seed, quiet=quiet)


@dataclass
class InfluenceGraphConfig:
    data: str = field(default="synthetic-city:2500",
                      metadata={"help": "city:<path>, synthetic-city[:N], citynetwork:<name>, or any graph name of "
                                        "'fwdlearn graph train' (cora, karate, ...)"})
    models: list[str] = field(default_factory=lambda: ["gcn"], metadata={"help": "models to compare", "choices": MODELS})
    layers: int = field(default=8, metadata={"help": "layers of each model"})
    hidden: int = 64
    epochs: int = field(default=0, metadata={"help": "BP training epochs before measuring (0 = untrained)"})
    max_hops: int = field(default=0, metadata={"help": "largest hop binned (0 = as many as layers)"})
    samples: int = field(default=500, metadata={"help": "random seed nodes"})
    variant: str = field(default="subgraph", metadata={"help": "induced subgraph (as PyG) or full graph", "choices": ["subgraph", "full"]})
    hops: int = field(default=16, metadata={"help": "hop radius of the eccentricity labels (city data)"})
    seed: int = 0
    plot: str = field(default="", metadata={"help": "write the normalised curves (log scale) to this image"})
    json: str = field(default="", metadata={"help": "run record path (default runs/influence-graph-<time>.json)"})
    overwrite: bool = False
    quiet: bool = False


def _configure_influence(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, InfluenceGraphConfig)


def _run_influence(args: argparse.Namespace) -> int:
    config = dataclass_from_args(InfluenceGraphConfig, args)
    init_from_env()  # under torchrun the seeds are shared out; rank 0 reports
    lead = rank() == 0
    quiet = config.quiet or not lead
    record = RunRecord("influence-graph", config, seed=config.seed)
    path = config.json or RunRecord.default_path("influence-graph")
    refuse_overwrite(path, config.plot, overwrite=config.overwrite)
    seed_everything(config.seed)
    data = load_influence_graph(config.data, seed=config.seed, hops=config.hops, quiet=quiet)
    max_hops = config.max_hops or config.layers
    curves = {}
    for kind in config.models:
        seed_everything(config.seed)
        model = make_model(kind, data.num_features, int(data.y.max()) + 1, config.layers, config.hidden)
        row = {"model": kind, "layers": config.layers}
        if config.epochs > 0:
            fit = train_node_classifier(model, data, config.epochs, lr=BP_LR, patience=BP_PATIENCE, quiet=quiet, desc=kind)
            row.update({k: fit[k] for k in ("val_accuracy", "test_accuracy", "epochs_run")})
        start = time.perf_counter()
        curve, R, _ = hop_influence(model, data, max_hops, samples=config.samples, seed=config.seed,
                                    variant=config.variant, quiet=quiet)
        row.update(R=R, seconds=time.perf_counter() - start, curve=curve.tolist())
        record.log(**row)
        curves[f"{kind}-{config.layers}"] = curve.tolist()
        if lead:
            print(f"{kind:5s} layers={config.layers} R={R:.3f}" + (f" test_acc={row['test_accuracy']:.3f}" if "test_accuracy" in row else ""))
    if not lead:
        return 0
    if config.plot:
        plot_influence_curves(curves, config.plot, xlabel="hops", title=config.data)
        record.summary["plot"] = config.plot
    record.summary["curves"] = curves
    print(f"record: {record.save(path, overwrite=config.overwrite)}")
    return 0


influence = Command(help="hop-wise Jacobian influence and range R of GNNs on a graph",
                    configure=_configure_influence, run=_run_influence)


@dataclass
class BenchInfluenceConfig:
    out: str = field(default="docs/benchmarks/influence-results", metadata={"help": "results prefix (.json, .md)"})
    data: str = field(default="city:roads/california", metadata={"help": "graph for agreement, speed and ranges"})
    samples: int = field(default=500, metadata={"help": "seed nodes for fwdlearn's hop_influence"})
    pyg_samples: int = field(default=500, metadata={"help": "seed nodes timed for PyG (extrapolated linearly when fewer)"})
    layers: int = 8
    hidden: int = 64
    big_nodes: int = field(default=100_000, metadata={"help": "generated city for the seconds-per-1000-seeds figure (0 = skip)"})
    big_layers: int = 16
    big_samples: int = 1000
    big_pyg_samples: int = field(default=20, metadata={"help": "seeds PyG is timed on at scale (0 = skip)"})
    epochs: int = field(default=200, metadata={"help": "training epochs for the accuracy/R table (0 = skip)"})
    forward_method: str = field(default="sf", metadata={"help": "ForwardGNN method compared with BP ('' = skip)"})
    seed: int = 0
    overwrite: bool = False
    quiet: bool = False


def _configure_bench(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, BenchInfluenceConfig)


def _run_bench(args: argparse.Namespace) -> int:
    from .influence_bench import run_bench

    return run_bench(dataclass_from_args(BenchInfluenceConfig, args))


bench = Command(help="influence speed and agreement vs PyG total_influence; accuracy and R of shallow/deep models",
                configure=_configure_bench, run=_run_bench)


def config_dict(config) -> dict:
    return asdict(config)
