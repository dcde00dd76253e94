"""The ``fwdlearn bench influence`` run: agreement and speed vs PyG, cost at scale, ranges of trained models.

Every figure sits next to its baseline measured in the same run:

Models are the package's own (:class:`~fwdlearn.graphs.ForwardGNN` with ``method="bp"``; ``mlp`` ignores
the edges).

1. California (or ``--data``), GCN of ``--layers`` layers, ``--samples`` seeds:
   :func:`~fwdlearn.graphs.hop_influence` vs PyG's per-seed reference
   (``torch_geometric.utils.influence.jacobian_l1_agg_per_hop``, the function
   ``total_influence`` loops over) on the same seeds: max relative difference of
   the per-seed rows, of the curve and of R, and the speed-up. When
   ``--pyg-samples`` is below ``--samples`` PyG is timed on that many seeds and its time
   extrapolated linearly (its cost is one independent Jacobian per seed).
2. A generated city of ``--big-nodes`` nodes: labelling time, and seconds per 1,000
   seeds at ``--big-layers`` layers.
3. MLP, 2-layer and ``--layers``-layer GCN trained by BP on the City-Networks labels:
   test accuracy and R; the deep GCN trained by ForwardGNN ``--forward-method``.
"""

from __future__ import annotations

import time

import torch

from fwdlearn.fit import seed_everything
from fwdlearn.records import RunRecord
from fwdlearn.reporting import markdown_table, write_results
from fwdlearn.runs import run_outputs, start_run

from fwdlearn.graphs.data.datasets import load_graph
from fwdlearn.graphs.influence.hop_influence import hop_influence, select_seeds
from fwdlearn.graphs.nn.forward_gnn import ForwardGNN

__all__ = ["run_bench"]

COLUMNS = ["experiment", "model", "metric", "value", "baseline", "ratio"]
BP_LR, BP_PATIENCE = 1e-2, 50  # Adam learning rate and early-stopping patience of the BP models trained here


def make_model(conv: str, features: int, classes: int, layers: int, hidden: int) -> ForwardGNN:
    """The package's GNN of ``layers`` ``conv`` blocks and a linear classifier, to be trained by BP."""
    return ForwardGNN(features, classes, conv=conv, hidden=hidden, layers=layers, method="bp")


def _agreement_and_speed(config, data, rows: list[dict], quiet: bool) -> None:
    from torch_geometric.utils.influence import jacobian_l1_agg_per_hop, influence_weighted_receptive_field


    seed_everything(config.seed)
    model = make_model("gcn", data.num_features, data.num_classes, config.layers, config.hidden).eval()
    nodes = select_seeds(data.num_nodes, config.samples, None, config.seed)
    start = time.perf_counter()
    curve, R, ours = hop_influence(model, data, config.layers, nodes=nodes, quiet=quiet)
    ours_seconds = time.perf_counter() - start
    reference_nodes = nodes[: config.pyg_samples].tolist()
    start = time.perf_counter()
    device = str(data.x.device)
    reference = torch.stack([jacobian_l1_agg_per_hop(model, data, config.layers, n, device)
                             for n in reference_nodes]).cpu()
    pyg_seconds = (time.perf_counter() - start) * len(nodes) / len(reference_nodes)
    mine = ours[: len(reference_nodes)]
    # relative to each row's largest entry; a seed whose ReLUs are (nearly) all dead has numerically no influence
    # (its entries are float32 rounding noise, ~1e-7), so rows below 1e-3 of the largest row are measured against that
    scale = reference.abs().max(dim=1).values.clamp_min(1e-3 * float(reference.abs().max()))
    row_diff = float(((mine - reference).abs().max(dim=1).values / scale).max())
    pyg_R = influence_weighted_receptive_field(reference)
    mine_R = float(((mine * torch.arange(mine.shape[1])).sum(1) / mine.sum(1)).mean())
    curve_diff = float(((mine.mean(0) / mine.mean(0)[0]) - (reference.mean(0) / reference.mean(0)[0])).abs().max())
    extrapolated = " (extrapolated from %d seeds)" % len(reference_nodes) if len(reference_nodes) < len(nodes) else ""
    name = f"gcn-{config.layers}"
    rows += [
        {"experiment": f"agreement, {len(reference_nodes)} seeds", "model": name, "metric": "max rel. diff per seed row",
         "value": row_diff, "baseline": "PyG", "ratio": None},
        {"experiment": f"agreement, {len(reference_nodes)} seeds", "model": name, "metric": "max abs. diff of normalised curve",
         "value": curve_diff, "baseline": "PyG", "ratio": None},
        {"experiment": f"agreement, {len(reference_nodes)} seeds", "model": name, "metric": "R (fwdlearn vs PyG)",
         "value": mine_R, "baseline": pyg_R, "ratio": mine_R / pyg_R},
        {"experiment": f"speed, {len(nodes)} seeds", "model": name, "metric": "seconds" + extrapolated,
         "value": ours_seconds, "baseline": pyg_seconds, "ratio": pyg_seconds / ours_seconds},
    ]


def _scale(config, rows: list[dict], quiet: bool, device) -> None:
    from fwdlearn.graphs.data.citynet import city_data, synthetic_road_graph

    road = synthetic_road_graph(config.big_nodes, config.seed)
    start = time.perf_counter()
    data = city_data(road, hops=16, seed=config.seed, quiet=quiet).to(device)
    label_seconds = time.perf_counter() - start
    rows.append({"experiment": f"generated city, {data.num_nodes} nodes", "model": "-",
                 "metric": "seconds to label (16-hop eccentricity) + features", "value": label_seconds,
                 "baseline": None, "ratio": None})
    seed_everything(config.seed)
    model = make_model("gcn", data.num_features, 10, config.big_layers, config.hidden).eval()
    start = time.perf_counter()
    hop_influence(model, data, config.big_layers, samples=config.big_samples, seed=config.seed, quiet=quiet)
    seconds = time.perf_counter() - start
    baseline = None
    if config.big_pyg_samples:
        from torch_geometric.utils.influence import jacobian_l1_agg_per_hop

        nodes = select_seeds(data.num_nodes, config.big_pyg_samples, None, config.seed + 1).tolist()
        start = time.perf_counter()
        for n in nodes:
            jacobian_l1_agg_per_hop(model, data, config.big_layers, n, str(data.x.device))
        baseline = (time.perf_counter() - start) * 1000 / len(nodes)
    ours = seconds * 1000 / config.big_samples
    rows.append({"experiment": f"generated city, {data.num_nodes} nodes", "model": f"gcn-{config.big_layers}",
                 "metric": f"seconds per 1,000 seeds (PyG extrapolated from {config.big_pyg_samples} seeds)",
                 "value": ours, "baseline": baseline, "ratio": None if baseline is None else baseline / ours})


def _trained_ranges(config, data, rows: list[dict], quiet: bool) -> None:
    max_hops = config.layers
    classes = int(data.y.max()) + 1
    results = {}
    for kind, layers in (("mlp", 2), ("gcn", 2), ("gcn", config.layers)):
        seed_everything(config.seed)
        model = make_model(kind, data.num_features, classes, layers, config.hidden)
        fit = model.fit(data, epochs=config.epochs, lr=BP_LR, patience=BP_PATIENCE, quiet=quiet)
        _, R, _ = hop_influence(model, data, max_hops, samples=config.samples, seed=config.seed, quiet=quiet)
        results[(kind, layers)] = (fit.test_accuracy, R)
        rows.append({"experiment": f"trained by BP, {config.epochs} epochs", "model": f"{kind}-{layers}",
                     "metric": f"test accuracy / R (max_hops={max_hops})", "value": fit.test_accuracy,
                     "baseline": R, "ratio": None})
    if not config.forward_method:
        return
    seed_everything(config.seed)
    forward = ForwardGNN(data.num_features, classes, conv="gcn", hidden=config.hidden, layers=config.layers,
                         method=config.forward_method)
    report = forward.fit(data, epochs=config.epochs, quiet=quiet)
    _, R, _ = hop_influence(forward, data, max_hops, samples=config.samples, seed=config.seed, quiet=quiet)
    bp_acc, bp_R = results[("gcn", config.layers)]
    rows.append({"experiment": "BP vs forward (value = forward, baseline = BP)", "model": f"gcn-{config.layers}",
                 "metric": f"test accuracy ({config.forward_method})", "value": report.test_accuracy,
                 "baseline": bp_acc, "ratio": None})
    rows.append({"experiment": "BP vs forward (value = forward, baseline = BP)", "model": f"gcn-{config.layers}",
                 "metric": f"R ({config.forward_method})", "value": R, "baseline": bp_R, "ratio": R / bp_R})


def run_bench(config) -> int:
    """Run the benchmark described in the module docstring; writes ``<out>.json``/``.md`` and a run record."""
    paths = run_outputs("bench-influence", config, out=config.out)
    device = start_run(config)
    record = RunRecord("bench-influence", config, seed=config.seed)
    quiet = config.quiet
    data = load_graph(config.data, split="auto", seed=config.seed, quiet=quiet).to(device)
    rows: list[dict] = []
    _agreement_and_speed(config, data, rows, quiet)
    if config.big_nodes:
        _scale(config, rows, quiet, device)
    if config.epochs:
        _trained_ranges(config, data, rows, quiet)
    for row in rows:
        record.log(**row)
    print(markdown_table(rows, COLUMNS), end="")
    notes = (f"Graph: {config.data} ({data.num_nodes:,} nodes, {data.num_edges:,} directed edges); BP models trained "
             f"with Adam lr {BP_LR}, patience {BP_PATIENCE}; ForwardGNN with its fit defaults; {config.epochs} epochs "
             "(per layer for ForwardGNN). "
             "PyG reference: torch_geometric.utils.influence.jacobian_l1_agg_per_hop on the same seeds (the per-seed "
             "function total_influence loops over). Untrained GCN (the package's blocks: L2-normalise, GCNConv, ReLU; "
             "a linear classifier) for agreement/speed. "
             f"Host: {torch.get_num_threads()} torch threads, "
             f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}.")
    json_path, md_path = write_results(paths.results[0], rows, COLUMNS, title="Influence: agreement, speed, ranges",
                                       notes=notes)
    record.add_file("results", json_path)
    record.add_file("table", md_path)
    record.save(paths.record, overwrite=config.overwrite)
    print(f"wrote {md_path} and the record {paths.record}")
    return 0
