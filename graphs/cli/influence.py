"""``fwdlearn influence graph`` and ``fwdlearn bench influence``.

::

    fwdlearn influence graph --data city:roads/westminster --layers 8 --models gcn mlp --plot out.png
    OMP_NUM_THREADS=1 fwdlearn bench influence --out runs/bench-influence

The models are the package's own: ``ForwardGNN(conv=<model>, method="bp")`` (``mlp`` ignores the edges),
trained by BP for ``--epochs`` (untrained when 0).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord, refuse_overwrite

__all__ = ["influence", "bench", "InfluenceGraphConfig", "BenchInfluenceConfig", "MODELS"]

MODELS = ("gcn", "sage", "gat", "mlp")


@dataclass
class InfluenceGraphConfig:
    data: str = field(default="synthetic-city:2500",
                      metadata={"help": "city:<path>, synthetic-city[:N], citynetwork:<name>, or any graph name of "
                                        "'fwdlearn graph train' (cora, karate, ...)"})
    models: list[str] = field(default_factory=lambda: ["gcn"], metadata={"help": "GNNs (ForwardGNN backbones) to compare; mlp ignores the edges", "choices": list(MODELS)})
    layers: int = field(default=8, metadata={"help": "layers of each model"})
    hidden: int = 64
    epochs: int = field(default=0, metadata={"help": "BP training epochs before measuring (0 = untrained)"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate of the BP training"})
    patience: int = field(default=50, metadata={"help": "early-stopping patience of the BP training"})
    max_hops: int = field(default=0, metadata={"help": "largest hop binned (0 = as many as layers)"})
    samples: int = field(default=500, metadata={"help": "random seed nodes"})
    variant: str = field(default="subgraph", metadata={"help": "induced subgraph (as PyG) or full graph", "choices": ["subgraph", "full"]})
    hops: int = field(default=16, metadata={"help": "hop radius of the eccentricity labels (city data)"})
    seed: int = 0
    plot: str = field(default="", metadata={"help": "write the normalised curves (log scale) to this image"})
    json: str = field(default="", metadata={"help": "run record path (default runs/influence-graph-<time>.json)"})
    overwrite: bool = False
    quiet: bool = False


def _run_influence(args: argparse.Namespace) -> int:
    from fwdlearn.diagnostics.plots import plot_influence_curves
    from fwdlearn.distributed import init_from_env, rank
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs.data.datasets import load_graph
    from fwdlearn.graphs.influence.hop_influence import hop_influence
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

    config = dataclass_from_args(InfluenceGraphConfig, args)
    init_from_env()  # under torchrun the seeds are shared out; rank 0 reports
    lead = rank() == 0
    quiet = config.quiet or not lead
    record = RunRecord("influence-graph", config, seed=config.seed)
    path = config.json or RunRecord.default_path("influence-graph")
    refuse_overwrite(path, config.plot, overwrite=config.overwrite)
    seed_everything(config.seed)
    data = load_graph(config.data, split="auto", seed=config.seed, hops=config.hops, quiet=quiet)
    max_hops = config.max_hops or config.layers
    curves = {}
    for kind in config.models:
        seed_everything(config.seed)
        model = ForwardGNN(data.num_features, data.num_classes, conv=kind, hidden=config.hidden, layers=config.layers,
                           method="bp", seed=config.seed)
        row = {"model": kind, "layers": config.layers}
        if config.epochs > 0:
            fit = model.fit(data, epochs=config.epochs, lr=config.lr, patience=config.patience or None, quiet=quiet)
            row.update(val_accuracy=fit.val_accuracy, test_accuracy=fit.test_accuracy, epochs_run=fit.epochs_run)
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
                    configure=lambda parser: add_dataclass_arguments(parser, InfluenceGraphConfig), run=_run_influence)


DEFAULT_SPEED_GRAPHS = ["city:roads/california", "city:roads/minnesota", "city:roads/westminster",
                        "synthetic-city:20000", "synthetic-city:100000"]


@dataclass
class BenchInfluenceConfig:
    out: str = field(default="runs/bench-influence", metadata={"help": "results prefix (.json, .md, .png)"})
    graphs: list[str] = field(default_factory=lambda: list(DEFAULT_SPEED_GRAPHS),
                              metadata={"help": "graphs of the speed curve (any 'influence graph --data' name)"})
    depths: list[int] = field(default_factory=lambda: [8, 16],
                              metadata={"help": "GCN depths of the speed curve (max_hops = depth)"})
    samples: int = field(default=500, metadata={"help": "seed nodes for fwdlearn's hop_influence"})
    pyg_samples: int = field(default=100, metadata={"help": "seed nodes timed for PyG (the first of the same seeds; "
                                                            "extrapolated linearly when fewer)"})
    repeats: int = field(default=3, metadata={"help": "interleaved timings of each side; medians are compared"})
    data: str = field(default="city:roads/california", metadata={"help": "graph for the trained models' ranges"})
    layers: int = field(default=8, metadata={"help": "depth of the trained deep GCN"})
    hidden: int = 64
    epochs: int = field(default=200, metadata={"help": "training epochs for the accuracy/R table (0 = skip)"})
    forward_method: str = field(default="sf", metadata={"help": "ForwardGNN method compared with BP ('' = skip)"})
    seed: int = 0
    overwrite: bool = False
    quiet: bool = False


def _run_bench(args: argparse.Namespace) -> int:
    from fwdlearn.graphs.influence.bench import run_bench

    return run_bench(dataclass_from_args(BenchInfluenceConfig, args))


bench = Command(help="influence speed-up over PyG total_influence against hop-ball size; accuracy and R of "
                     "shallow/deep models",
                configure=lambda parser: add_dataclass_arguments(parser, BenchInfluenceConfig), run=_run_bench)
