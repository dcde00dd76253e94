"""``fwdlearn influence graph`` and ``fwdlearn bench influence``.

::

    fwdlearn influence graph --data city:roads/westminster --layers 8 --models gcn mlp --plot out.png
    OMP_NUM_THREADS=1 fwdlearn bench influence --out runs/bench-influence

The models are the package's own: ``ForwardGNN(conv=<model>, method="bp")`` (``mlp`` ignores the edges),
trained by BP for ``--epochs`` (untrained when 0). Their output width is the graph's number of classes; untrained
(``--epochs 0``), nothing reads a label or a split, so a saved graph (``file:<path>``) needs ``x`` and
``edge_index`` only: one without labels of 2 classes or more (no ``y``, no labelled node, float targets) gives its
models ``--hidden`` outputs (2 at least; :func:`~fwdlearn.graphs.influence.bench.untrained_outputs`), and
training one (``--epochs N``) is refused, naming ``--epochs 0``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

from fwdlearn.bench_progress import RESUME_HELP
from fwdlearn.cli import Command
from fwdlearn.config import add_dataclass_arguments, dataclass_from_args
from fwdlearn.records import RunRecord
from fwdlearn.runs import RunOptions

from fwdlearn.graphs.registries import CONV_KINDS

__all__ = ["influence", "bench", "InfluenceGraphConfig", "BenchInfluenceConfig"]


@dataclass
class InfluenceGraphConfig(RunOptions):
    data: str = field(default="synthetic-city:2500",
                      metadata={"help": "city:<path>, synthetic-city[:N], citynetwork:<name>, or any graph name of "
                                        "'fwdlearn graph train' (cora, karate, file:<path> of a saved PyG Data, ...)"})
    models: list[str] = field(default_factory=lambda: ["gcn"], metadata={"help": "GNNs (ForwardGNN backbones) to "
                                                                          "compare; mlp ignores the edges",
                                                                          "choices": CONV_KINDS.names})
    layers: int = field(default=8, metadata={"help": "layers of each model", "min": 1})
    hidden: int = field(default=64, metadata={"help": "width of every layer", "min": 1})
    epochs: int = field(default=0, metadata={"help": "BP training epochs before measuring (0 = untrained: reads no "
                                                     "label, so a saved graph without labels is measured, its models "
                                                     "given --hidden outputs where a labelled graph's have one per "
                                                     "class)", "min": 0})
    # (1e-2 left most 8-layer MLPs, the default depth, near-constant after training, their R flagged as untrustworthy
    # (most seeds dead): 5 of 6 synthetic-city:900 seeds, 3 of 3 on Westminster; 3e-3 none of 15 runs, and a higher
    # mean test accuracy than 1e-2 and 1e-3 on synthetic-city:2500: MLP-8 0.26 (0.21, 0.23), GCN-8 0.48 (0.43, 0.45))
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate of the BP training", "gt": 0})
    patience: int = field(default=50, metadata={"help": "early-stopping patience of the BP training (0 = none)",
                                                "min": 0})
    max_hops: int = field(default=0, metadata={"help": "largest hop binned (0 = as many as layers)", "min": 0})
    samples: int = field(default=500, metadata={"help": "random seed nodes (every node of a smaller graph; the table "
                                                        "and record give the number measured)", "min": 1})
    variant: str = field(default="subgraph", metadata={"help": "induced subgraph (as PyG) or full graph",
                                                       "choices": ["subgraph", "full"]})
    jacobian: str = field(default="auto", metadata={"help": "subgraph variant: layered (receptive field only, every "
                                                            "channel in one backward pass; gcn, sage and mlp) or "
                                                            "autograd (one backward pass per channel); auto: layered "
                                                            "where the model offers it, else autograd",
                                                    "choices": ["auto", "layered", "autograd"]})
    hops: int = field(default=16, metadata={"help": "hop radius of the eccentricity labels (city: and synthetic-city "
                                                    "data; citynetwork: has PyG's own)", "min": 1})
    download: bool = field(default=False, metadata={"help": "let PyG download data sets that are not local"})
    plot: str = field(default="", metadata={"help": "write the normalised curves (log scale) to this image "
                                                    "(.png, .pdf, .svg, ...)"})


def _run_influence(args: argparse.Namespace) -> int:
    from fwdlearn.diagnostics.plots import plot_influence_curves
    from fwdlearn.distributed import init_from_env, process_device, rank, take_rank_0s, world_size
    from fwdlearn.errors import UsageError, alike_on_every_process
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs.data.datasets import graph_files, labels_by_hops, load_graph
    from fwdlearn.graphs.influence.bench import refusing_unlabelled, untrained_outputs
    from fwdlearn.graphs.influence.hop_influence import hop_influence
    from fwdlearn.graphs.nn.forward_gnn import ForwardGNN
    from fwdlearn.reporting import markdown_table
    from fwdlearn.runs import run_outputs, start_run

    config = dataclass_from_args(InfluenceGraphConfig, args)
    defaults = InfluenceGraphConfig()
    unused = [flag for flag, name in (("--lr", "lr"), ("--patience", "patience"))
              if config.epochs == 0 and getattr(config, name) != getattr(defaults, name)]
    if unused:  # (the record would name a training that never ran)
        raise UsageError(f"{', '.join(unused)} set the BP training, which --epochs 0 skips (the models are measured "
                         "untrained): add --epochs N, or leave them out")
    if config.hops != defaults.hops and not labels_by_hops(config.data):  # (it was recorded, and never used)
        raise UsageError(f"--hops sets the eccentricity labels of city: and synthetic-city data; --data "
                         f"{config.data.strip()} has labels of its own: leave it out")
    from fwdlearn.graphs.cli.train import check_conv_widths

    check_conv_widths(config.models, config.hidden)  # (gat's was refused after the models before it had run)
    if config.jacobian == "layered":  # refused before any training, not after it
        from fwdlearn.graphs.influence.layered_jacobian import layered_convs

        unsupported = [kind for kind in config.models if kind not in layered_convs()]
        if config.variant != "subgraph" or unsupported:
            raise UsageError(f"--jacobian layered needs --variant subgraph and --models among "
                             f"{', '.join(layered_convs())}; got --variant {config.variant} --models "
                             f"{' '.join(config.models)} (use --jacobian auto)")
    paths = run_outputs("influence-graph", config, plot=config.plot, scales_out=True,
                        inputs=[("--data", f) for f in graph_files(config.data)])
    device = start_run(config, paths)
    init_from_env(device=device)  # under torchrun the seeds are shared out; rank 0 reports
    device = process_device(device)
    lead = rank() == 0
    quiet = config.quiet or not lead
    record = RunRecord("influence-graph", config, seed=config.seed)
    seed_everything(config.seed)
    with alike_on_every_process():  # (every process reads the same graph: rank 0 says what is wrong with it)
        # (untrained, no label nor split is read: a saved graph without labels was refused, naming y)
        with refusing_unlabelled(config.data, f"--epochs {config.epochs} trains the models on node labels",
                                 "measure the models untrained with --epochs 0, which reads no label (their outputs "
                                 "then --hidden wide)"):
            data = load_graph(config.data, split="auto", seed=config.seed, hops=config.hops, quiet=quiet,
                              download=config.download, labels=config.epochs > 0).to(device)
    outputs = data.num_classes if config.epochs > 0 else untrained_outputs(data, config.hidden)
    max_hops = config.max_hops or config.layers
    curves, rows = {}, []
    for kind in config.models:
        seed_everything(config.seed)
        model = ForwardGNN(data.num_features, outputs, conv=kind, hidden=config.hidden, layers=config.layers,
                           method="bp", seed=config.seed).to(device)
        row = {"model": kind, "layers": config.layers}
        if config.epochs > 0:
            fit = model.fit(data, epochs=config.epochs, lr=config.lr, patience=config.patience or None, quiet=quiet)
            row.update(val_accuracy=fit.val_accuracy, test_accuracy=fit.test_accuracy, epochs_run=fit.epochs_run)
            take_rank_0s(model)  # (under torchrun: one model measured, rank 0's, whose scores the table gives)
        start = time.perf_counter()
        try:
            curve, R, per_seed = hop_influence(model, data, max_hops, samples=config.samples, seed=config.seed,
                                               variant=config.variant, quiet=quiet, jacobian=config.jacobian)
        except ZeroDivisionError:  # (every process holds the gathered rows: all refuse alike)
            with alike_on_every_process():
                raise UsageError(f"--models {kind}: the influence at hop 0 is zero at every seed node measured "
                                 "(their outputs do not depend on their own features, e.g. every ReLU on the way is "
                                 "off, as in a narrow or deep untrained model), so its curve cannot be normalised; "
                                 "measure more seeds (--samples) or another --seed, or a wider or shallower model "
                                 "(--hidden, --layers)") from None
        # (seeds: --samples past the graph's nodes measures every node, which the record's config did not say)
        row.update(seeds=per_seed.shape[0], R=R, seconds=time.perf_counter() - start)
        record.log(**row, curve=curve.tolist())
        curves[f"{kind}-{config.layers}"] = curve.tolist()
        rows.append(row)
    if not lead:
        return 0
    # (R's unit said, as quickstart's report does; the record keeps the key "R")
    print(markdown_table(rows, ["model", "layers", "seeds", "R", "test_accuracy", "seconds"],
                         headers={"R": "R (hops)"}), end="")
    record.summary["curves"] = curves
    record.summary["device"] = str(device)
    record.summary["processes"] = world_size()
    if world_size() > 1:
        record.summary["notes"] = (f"seeds shared out over {world_size()} processes: seconds are rank 0's wall "
                                   "time of each sharded call, the gather of the rows included")
    saved = paths.save_record(record, config.overwrite,
                              draw=lambda path: plot_influence_curves(curves, path, xlabel="hops", title=config.data))
    if paths.plot is not None:
        print(f"plot: {paths.plot}")
    print(f"record: {saved}")
    return 0


influence = Command(help="hop-wise Jacobian influence and range R of GNNs on a graph",
                    configure=lambda parser: add_dataclass_arguments(parser, InfluenceGraphConfig), run=_run_influence)


DEFAULT_SPEED_GRAPHS = ["city:roads/california", "city:roads/minnesota", "city:roads/westminster",
                        "synthetic-city:20000", "synthetic-city:100000"]


@dataclass
class BenchInfluenceConfig(RunOptions):
    out: str = field(default="", metadata={"help": "results prefix: writes <out>.json, <out>.md, <out>.png and "
                                                   "<out>-record.json (default: runs/<name>, or a fresh name under "
                                                   "runs/; pass docs/benchmarks/influence-results to update the docs)"})
    graphs: list[str] = field(default_factory=lambda: list(DEFAULT_SPEED_GRAPHS),
                              metadata={"help": "graphs of the speed curve (any 'influence graph --data' name)"})
    depths: list[int] = field(default_factory=lambda: [8, 16],
                              metadata={"help": "GCN depths of the speed curve (max_hops = depth)", "min": 1})
    samples: int = field(default=500, metadata={"help": "seed nodes for fwdlearn's hop_influence: the speed curve's "
                                                        "and those the trained models' R is measured on", "min": 1})
    pyg_samples: int = field(default=100, metadata={"help": "seed nodes timed for PyG (the first of the same seeds; "
                                                            "extrapolated linearly when fewer)", "min": 1})
    repeats: int = field(default=3, metadata={"help": "interleaved timings of each side; medians are compared",
                                              "min": 1})
    data: str = field(default="city:roads/california", metadata={"help": "graph for the trained models' ranges"})
    layers: int = field(default=8, metadata={"help": "depth of the trained deep GCN", "min": 1})
    hidden: int = field(default=64, metadata={"help": "width of every layer", "min": 1})
    epochs: int = field(default=200, metadata={"help": "training epochs for the accuracy/R table (0 = skip)", "min": 0})
    forward_method: str = field(default="sf", metadata={"help": "ForwardGNN method compared with BP ('' = skip)"})
    device: str = field(default="cpu", metadata={"help": "cpu (the measurements of docs/benchmarks.md), cuda, cuda:N "
                                                         "or auto", "group": "run options"})
    resume: bool = field(default=False, metadata={"help": RESUME_HELP, "group": "run options"})


def _run_bench(args: argparse.Namespace) -> int:
    from fwdlearn.graphs.influence.bench import run_bench

    return run_bench(dataclass_from_args(BenchInfluenceConfig, args))  # (its flags are checked before any work)


bench = Command(help="influence speed-up over PyG total_influence against hop-ball size; accuracy and R of "
                     "shallow/deep models",
                configure=lambda parser: add_dataclass_arguments(parser, BenchInfluenceConfig), run=_run_bench)
