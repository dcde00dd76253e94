r"""The ``fwdlearn bench influence`` run: speed-up over PyG against hop-ball size, ranges of trained models.

Every figure sits next to its baseline measured in the same run. Models are the package's own
(:class:`~fwdlearn.graphs.ForwardGNN` with ``method="bp"``; ``mlp`` ignores the edges).

1. Speed curve: for every graph of ``--graphs`` and depth of ``--depths``, an untrained GCN of that
   depth (``--hidden`` wide) and ``--samples`` random seeds: :func:`~fwdlearn.graphs.hop_influence`
   (``max_hops`` = depth) both ways it takes the Jacobian -- ``layered`` (the default for the package's
   models: each seed's receptive field only, every output channel in one backward pass) and ``autograd``
   (what it does for any ``model(x, edge_index)``: one backward pass per output channel over the union of
   balls) -- against PyG's per-seed reference
   (``torch_geometric.utils.influence.jacobian_l1_agg_per_hop``, the function ``total_influence``
   loops over) on the first ``--pyg-samples`` of the same seeds, its time extrapolated linearly to all
   seeds (its cost is one independent Jacobian per seed). The three are interleaved ``--repeats`` times
   and the medians compared. Each row gives the mean hop-ball size :math:`|\mathcal{B}_k(v)|` over the
   seeds, because the speed-up depends on it: PyG and the autograd path run one forward and one backward
   per output channel over every seed's whole ball, PyG with a fixed cost per seed on top (autograd set-up,
   and a scan of the whole edge list per hop to find the ball) that fwdlearn shares across seeds; the
   layered path's work per layer shrinks to the nodes still within reach of the seed. Agreement:
   the largest per-row difference :math:`\max_h |T^{ours}_h(v) - T^{PyG}_h(v)| / \max_h T^{PyG}_h(v)`
   over live rows (the worse of the two paths). A row whose largest entry is below ``DEAD_ROW`` times the
   largest row's is a seed whose ReLUs are (nearly) all dead: its entries are float32 rounding noise, so it
   is counted ("dead rows") and its difference measured against ``DEAD_ROW`` times the largest row instead.
   Writes ``<out>.png``: speed-up against mean ball size, one marker colour per depth and path, each point
   labelled with its graph. Nothing here reads a label: a saved graph (``file:<path>``) needs ``x`` and
   ``edge_index`` only, and one without labels gives its GCN ``--hidden`` outputs (as ``influence graph
   --epochs 0``). PyG's reference reads the node count from ``edge_index``, so it is given the graph with the
   nodes of no edge (isolated nodes) numbered first (a seed numbered past every edge failed in it with an
   IndexError); a graph without edges is refused.
2. On ``--data``: MLP, 2-layer and ``--layers``-layer GCN trained by BP on the City-Networks labels
   (test accuracy and R), and the deep GCN trained by ForwardGNN ``--forward-method``; plus the
   seconds each graph took to load (labels and features; ``city:`` graphs come from the disk cache
   after their first load).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from fwdlearn.bench import BenchRun, distinct_names
from fwdlearn.errors import UsageError
from fwdlearn.fit import seed_everything
from fwdlearn.reporting import markdown_table, ratio

from fwdlearn.graphs.data.datasets import check_graph_name, graph_files, graph_identity, load_graph
from fwdlearn.graphs.data.hop_balls import hop_balls, in_neighbour_matrix
from fwdlearn.graphs.influence.hop_influence import hop_influence, select_seeds
from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

__all__ = ["run_bench", "row_agreement", "make_model", "untrained_outputs", "refusing_unlabelled"]

SPEED_COLUMNS = ["graph", "nodes", "layers", "mean ball", "seeds", "PyG seeds", "fwdlearn s", "PyG s", "speed-up",
                 "autograd s", "autograd speed-up", "max rel. diff", "dead rows"]
#: both ways :func:`~fwdlearn.graphs.hop_influence` takes the Jacobian: the package's models by default, any model
JACOBIANS = ("layered", "autograd")
COLUMNS = ["experiment", "model", "metric", "value", "baseline", "ratio"]
BP_LR, BP_PATIENCE = 1e-2, 50  # Adam learning rate and early-stopping patience of the BP models trained here
DEAD_ROW = 1e-3  # rows below this fraction of the largest row are measured against that floor (all ReLUs dead)


def untrained_outputs(data, hidden: int) -> int:
    """The output width of an untrained model measured on ``data`` (a graph of ``load_graph``, ``labels=False``
    too): the graph's number of classes (:func:`~fwdlearn.graphs.data.datasets.label_classes`) when it has labels of
    2 classes or more, else ``hidden`` (2 at least, a classifier's least), the width of every layer before it."""
    from fwdlearn.graphs.data.datasets import label_classes

    classes = label_classes(data)
    return classes if classes is not None and classes >= 2 else max(hidden, 2)


@contextmanager
def refusing_unlabelled(name: str, training: str, instead: str):
    """Loading graph ``name`` within it, a saved graph's refusal for having no labels (``InputError``, whose fix
    named link prediction) becomes a :class:`~fwdlearn.errors.UsageError` saying that ``training`` needs them and
    ``instead``, what the command can do without them."""
    from fwdlearn.errors import InputError, UsageError
    from fwdlearn.graphs.data.datasets import lacks_labels

    try:
        yield
    except InputError:
        if not lacks_labels(name):
            raise
        raise UsageError(f"{training}, and {name.strip()} has none a node classifier can train on (no data.y, no node "
                         f"labelled >= 0, or targets that are not one class id per node): {instead}; or save the "
                         "graph with data.y, int64 class ids 0..C-1 (-1 for an unlabelled node)") from None


def make_model(conv: str, features: int, classes: int, layers: int, hidden: int) -> ForwardGNN:
    """The package's GNN of ``layers`` ``conv`` blocks and a linear classifier, to be trained by BP."""
    return ForwardGNN(features, classes, conv=conv, hidden=hidden, layers=layers, method="bp")


def row_agreement(mine: torch.Tensor, reference: torch.Tensor) -> tuple[float, int]:
    r"""``(max relative difference per row, number of dead rows)`` of per-seed totals ``[S, k+1]``.

    A row's difference is :math:`\max_h |m_h - r_h|` over its scale :math:`\max_h |r_h|`; rows whose
    scale is below ``DEAD_ROW`` times the largest row's are dead (numerically zero influence) and
    measured against that floor instead. Where every reference row is zero (a model whose every seed is dead), all
    rows are dead and no relative difference can be measured: ``inf`` unless both are equal (0).
    """
    scale = reference.abs().max(dim=1).values
    if float(scale.max()) == 0:  # (every row dead: there is no scale to measure against; the floor of 0 gave a
        # difference of 1e29 for float32 noise, and counted no dead row)
        return (0.0 if torch.equal(mine, reference) else float("inf")), len(scale)
    floor = DEAD_ROW * float(scale.max())
    diff = (mine - reference).abs().max(dim=1).values / scale.clamp_min(max(floor, torch.finfo(scale.dtype).tiny))
    return float(diff.max()), int((scale < floor).sum())


def _mean_ball(data, seeds: torch.Tensor, max_hops: int) -> float:
    matrix = in_neighbour_matrix(data.edge_index.cpu().numpy(), data.num_nodes)
    return hop_balls(matrix, seeds.numpy(), max_hops).num_pairs / len(seeds)


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU timing ends when the work does)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _speed_row(config, name: str, data, layers: int, quiet: bool, device: torch.device) -> dict:
    from torch_geometric.utils.influence import jacobian_l1_agg_per_hop

    seed_everything(config.seed)
    model = make_model("gcn", data.num_features, untrained_outputs(data, config.hidden), layers,
                       config.hidden).to(device).eval()
    data = data.to(device)
    nodes = select_seeds(data.num_nodes, config.samples, None, config.seed)
    pyg_data, pyg_ids = _edges_first(data)
    reference_nodes = pyg_ids[nodes[: config.pyg_samples]].tolist()
    for jacobian in JACOBIANS:  # warm-up: first calls build code paths on all sides
        hop_influence(model, data, layers, nodes=nodes[:1], jacobian=jacobian, normalize=False)  # (a dead first
        # seed cannot be normalised: the timed calls do not normalise either)
    jacobian_l1_agg_per_hop(model, pyg_data, layers, reference_nodes[0], str(device))
    seconds: dict[str, list[float]] = {jacobian: [] for jacobian in (*JACOBIANS, "pyg")}
    ours: dict[str, torch.Tensor] = {}
    for _ in range(config.repeats):  # interleaved, so that load from other processes hits all alike
        for jacobian in JACOBIANS:
            _sync(device)
            start = time.perf_counter()
            _, _, ours[jacobian] = hop_influence(model, data, layers, nodes=nodes, quiet=quiet, jacobian=jacobian,
                                                 normalize=False)
            _sync(device)
            seconds[jacobian].append(time.perf_counter() - start)
        _sync(device)
        start = time.perf_counter()
        reference = torch.stack([jacobian_l1_agg_per_hop(model, pyg_data, layers, n, str(device))
                                 for n in reference_nodes])
        _sync(device)
        seconds["pyg"].append((time.perf_counter() - start) * len(nodes) / len(reference_nodes))
        reference = reference.cpu()
    agreement = {jacobian: row_agreement(ours[jacobian][: len(reference_nodes)], reference) for jacobian in JACOBIANS}
    median = {side: statistics.median(values) for side, values in seconds.items()}
    return {"graph": name, "nodes": data.num_nodes, "edges": data.num_edges, "layers": layers,
            "mean ball": _mean_ball(data, nodes, layers), "seeds": len(nodes), "PyG seeds": len(reference_nodes),
            "fwdlearn s": median["layered"], "PyG s": median["pyg"], "speed-up": median["pyg"] / median["layered"],
            "autograd s": median["autograd"], "autograd speed-up": median["pyg"] / median["autograd"],
            "max rel. diff": max(diff for diff, _ in agreement.values()), "dead rows": agreement["layered"][1],
            "seconds, all": seconds}


def _edges_first(data):
    """``(graph, ids)``: ``data`` as PyG's reference can read it, and the id there of each node. PyG's
    ``k_hop_subgraph`` takes the node count from ``edge_index`` (its largest id + 1), so a seed numbered past every
    edge (an isolated node last) failed with "IndexError: index 44 is out of bounds for dimension 0 with size 40":
    the nodes of no edge are numbered first (the same graph, renumbered; a GCN's per-hop totals do not depend on the
    numbering). ``data`` itself when no node is past the largest id of an edge."""
    ids = torch.arange(data.num_nodes, device=data.edge_index.device)
    if data.num_edges and int(data.edge_index.max()) + 1 == data.num_nodes:
        return data, ids.cpu()
    linked = torch.zeros(data.num_nodes, dtype=torch.bool, device=ids.device)
    linked[data.edge_index.flatten()] = True
    order = torch.cat([ids[~linked], ids[linked]])
    ids[order] = torch.arange(data.num_nodes, device=ids.device)
    from torch_geometric.data import Data

    return Data(x=data.x[order], edge_index=ids[data.edge_index]), ids.cpu()


def _load_graphs(config, other: list[dict], quiet: bool) -> dict:
    """Every ``--graphs`` entry, loaded before the first timing (a missing road file or a bad size failed when its
    turn came, after the timings of the graphs before it); the seconds each took go to ``other``."""
    loaded = {}
    for name in config.graphs:
        start = time.perf_counter()
        # (the speed curve's models are untrained: no label is read, and a saved graph without labels was refused)
        loaded[name] = data = load_graph(name, split="auto", seed=config.seed, quiet=quiet, labels=False)
        if not data.num_edges:  # (PyG's reference failed on it with an IndexError)
            raise UsageError(f"--graphs {name.strip()} has no edges: the speed curve times the influence of each "
                             "seed's hop ball, and PyG's reference reads the node count from the edges; give "
                             "graphs with edges")
        other.append({"experiment": f"{name} ({data.num_nodes:,} nodes)", "model": "-",
                      "metric": "seconds to load (labels + features)",
                      "value": time.perf_counter() - start, "baseline": None, "ratio": None})
    return loaded


def _speed_curve(config, graphs: dict, rows: list[dict], quiet: bool, device: torch.device, piece: Callable) -> None:
    for name, data in graphs.items():
        for layers in config.depths:  # (a piece each: both sides timed interleaved within it)
            rows.append(piece(f"speed/{name}/layers={layers}",
                              partial(_speed_row, config, name, data, layers, quiet, device)))
            if not quiet:
                print({k: v for k, v in rows[-1].items() if k in SPEED_COLUMNS})


def _plot_curve(rows: list[dict], path: Path) -> None:
    from fwdlearn.diagnostics.plots import plot_speedups

    series: dict[str, list[tuple[float, float, str]]] = {}
    for row in rows:
        label = row["graph"].split("/")[-1].replace("synthetic-city:", "city ")
        series.setdefault(f"GCN, {row['layers']} layers", []).append((row["mean ball"], row["speed-up"], label))
        series.setdefault(f"GCN, {row['layers']} layers, autograd (any model)", []).append(
            (row["mean ball"], row["autograd speed-up"], label))
    threads = torch.get_num_threads()
    plot_speedups(series, path, xlabel="mean hop-ball size (nodes within max_hops = layers)",
                  baseline="PyG total_influence",
                  title=f"hop_influence vs PyG, {threads} torch thread" + "s" * (threads > 1))


def _trained_ranges(config, data, rows: list[dict], quiet: bool, device: torch.device, piece: Callable) -> int:
    """Train the models on ``data`` and measure their test accuracy and R into ``rows`` (a piece per model); returns
    the number of seed nodes R was measured on (``--samples``, or every node of a smaller graph)."""
    data = data.to(device)
    max_hops = config.layers
    classes = data.num_classes  # (the saved graph's num_classes, as influence graph reads it, not max(y) + 1)
    results = {}

    def measure(kind: str, layers: int) -> dict[str, float]:
        seed_everything(config.seed)
        model = make_model(kind, data.num_features, classes, layers, config.hidden).to(device)
        fit = model.fit(data, epochs=config.epochs, lr=BP_LR, patience=BP_PATIENCE, quiet=quiet)
        _, R, per_seed = hop_influence(model, data, max_hops, samples=config.samples, seed=config.seed, quiet=quiet,
                                       normalize=False)
        return {"accuracy": fit.test_accuracy, "R": R, "seeds": per_seed.shape[0]}

    for kind, layers in dict.fromkeys((("mlp", 2), ("gcn", 2), ("gcn", config.layers))):  # (--layers 2: gcn-2 once)
        done = piece(f"trained/{kind}-{layers}", partial(measure, kind, layers))
        results[(kind, layers)] = (done["accuracy"], done["R"])
        for metric, value in (("test accuracy", done["accuracy"]), (f"R (max_hops={max_hops})", done["R"])):
            rows.append({"experiment": f"trained by BP, {config.epochs} epochs", "model": f"{kind}-{layers}",
                         "metric": metric, "value": value, "baseline": None, "ratio": None})  # (no baseline: R sat
            # in the baseline column)
    if not config.forward_method:
        return done["seeds"]

    def measure_forward() -> dict[str, float]:
        seed_everything(config.seed)
        forward = ForwardGNN(data.num_features, classes, conv="gcn", hidden=config.hidden, layers=config.layers,
                             method=config.forward_method, seed=config.seed).to(device)
        report = forward.fit(data, epochs=config.epochs, quiet=quiet)
        _, R, _ = hop_influence(forward, data, max_hops, samples=config.samples, seed=config.seed, quiet=quiet,
                                normalize=False)
        return {"accuracy": report.test_accuracy, "R": R}

    forward = piece(f"trained/{config.forward_method}-{config.layers}", measure_forward)
    bp_acc, bp_R = results[("gcn", config.layers)]
    rows.append({"experiment": "BP vs forward (value = forward, baseline = BP)", "model": f"gcn-{config.layers}",
                 "metric": f"test accuracy ({config.forward_method})", "value": forward["accuracy"],
                 "baseline": bp_acc, "ratio": ratio(forward["accuracy"], bp_acc)})
    rows.append({"experiment": "BP vs forward (value = forward, baseline = BP)", "model": f"gcn-{config.layers}",
                 "metric": f"R ({config.forward_method})", "value": forward["R"], "baseline": bp_R,
                 "ratio": ratio(forward["R"], bp_R)})
    return done["seeds"]


def _seeds_note(seeds: int | None) -> str:
    """How many seed nodes the trained models' R was measured on: ``--samples`` sets them and the speed curve's alike
    (a run of the trained part with a small --samples, to time little, gave R over 10 seeds where the full run's was
    over 500, and said neither)."""
    if seeds is None:
        return ""
    return (f" R: over {seeds} random seed node{'s' * (seeds != 1)} (--samples, as for the speed curve; every node "
            "of a smaller graph).")


def _trained_note(config) -> str:
    """What the trained-model rows are (the models trained on ``--data``, their optimizers and budget), or that the
    run trained none (``--epochs 0``, where the note named ``--data``'s models and "0 epochs" as if it had)."""
    if not config.epochs:
        return "No models trained (--epochs 0): the rows above are the graphs' load times only."
    text = f"Trained models: {config.data}; BP models trained with Adam lr {BP_LR}, patience {BP_PATIENCE}"
    if not config.forward_method:
        return text + f"; {config.epochs} epochs."
    from fwdlearn.graphs.methods import trains_layer_by_layer

    per_layer = trains_layer_by_layer(config.forward_method)  # (DFA, top-down: in total)
    return (text + f"; ForwardGNN {config.forward_method} with its fit defaults; {config.epochs} epochs"
            + (f" (per layer for {config.forward_method})." if per_layer else "."))


def run_bench(config) -> int:
    """Run the benchmark described in the module docstring; writes ``<out>.json``/``.md``/``.png`` and a run record."""
    if not config.graphs or not config.depths:
        raise ValueError("--graphs needs at least one graph and --depths at least one depth")
    # (before the first timing, not when a graph's turn comes; one spelling each: karate and Karate ran twice)
    graphs = distinct_names("--graphs", config.graphs, check_graph_name, "graph", same_as=graph_identity)
    trained_on = distinct_names("--data", [config.data], check_graph_name, "graph")[0]
    config = dataclasses.replace(config, graphs=graphs, data=trained_on)
    defaults = type(config)()
    trained = (("--data", "data"), ("--layers", "layers"), ("--forward-method", "forward_method"))
    unused = [flag for flag, name in trained if not config.epochs and getattr(config, name) != getattr(defaults, name)]
    if unused:  # (the record named a training that never ran)
        one = len(unused) == 1
        raise UsageError(f"{', '.join(unused)} {'sets' if one else 'set'} the trained models, which --epochs 0 skips "
                         "(the speed curve's models are untrained, --depths deep): add --epochs N, or leave "
                         f"{'it' if one else 'them'} out")
    if config.forward_method:
        from fwdlearn.graphs.methods import method_class

        try:
            method_class(config.forward_method)
        except ValueError as error:
            raise UsageError(f"--forward-method: {error}") from None
    read = [(flag, f) for flag, names in (("--data", [config.data]), ("--graphs", config.graphs)) for name in names
            for f in graph_files(name)]
    bench = BenchRun.start("bench-influence", config, more=[".png"], inputs=read)
    _, md_path, plot_path = bench.results
    device, record = bench.device, bench.record
    quiet = config.quiet
    speed: list[dict] = []
    other: list[dict] = []
    # --data is read before the timings (a missing file fails in seconds), the plot drawn last (a failure leaves none)
    data = None
    if config.epochs:
        with refusing_unlabelled(config.data, f"--epochs {config.epochs} trains the accuracy/R models on the node "
                                 "labels of --data",
                                 "give a labelled graph as --data, or time the speed curve alone with --epochs 0 "
                                 "(its untrained models read no label; --graphs takes graphs without labels)"):
            data = load_graph(config.data, split="auto", seed=config.seed, quiet=quiet)
    _speed_curve(config, _load_graphs(config, other, quiet), speed, quiet, device, bench.piece)
    seeds = _trained_ranges(config, data, other, quiet, device, bench.piece) if data is not None else None
    for row in speed + other:
        record.log(**row)
    for row in other:
        if not quiet:
            print(row)
    notes = (f"Speed-up = PyG seconds / fwdlearn seconds, medians of {config.repeats} interleaved repeats; fwdlearn "
             "measures every seed, PyG the first 'PyG seeds' of them (torch_geometric.utils.influence."
             "jacobian_l1_agg_per_hop, the per-seed function total_influence loops over), extrapolated linearly. "
             "fwdlearn s: hop_influence's default for the package's models, the layered Jacobian (receptive field "
             "only, every output channel in one backward pass); autograd s: its path for any model(x, edge_index) "
             "(one backward pass per channel over the whole union of balls), on the same model. "
             f"Untrained GCN (the package's blocks: L2-normalise, GCNConv, ReLU; a linear classifier), hidden "
             f"{config.hidden}, max_hops = layers. Mean ball: mean number of nodes within max_hops of a seed (its "
             "induced subgraph is what both sides differentiate). Max rel. diff (worse of the two paths, over the PyG "
             "seeds, the only ones PyG measures): largest per-row difference over the row's largest entry; dead rows "
             f"(largest entry below {DEAD_ROW:g} of the largest row's: all ReLUs dead, entries are rounding noise) "
             f"are measured against that floor. Plot: {plot_path.name}. "
             f"Host: {torch.get_num_threads()} torch threads, {device} (both sides).\n\n"
             "### Other measurements\n\n" + markdown_table(other, COLUMNS) + "\n" + _trained_note(config)
             + _seeds_note(seeds))
    print(markdown_table(speed, SPEED_COLUMNS), end="")
    with bench.drawing():  # (a plot drawn, then results that fail to be written or Ctrl-C: the plot goes too)
        _plot_curve(speed, plot_path)
        bench.finish(speed, SPEED_COLUMNS, title="Influence: speed-up over PyG against hop-ball size", notes=notes,
                     extra={"other": other, "plot": str(plot_path)}, files={"plot": plot_path})
    print(f"wrote {md_path}, {plot_path} and the record {bench.paths.record}")
    return 0
