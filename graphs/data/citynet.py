r"""City-Networks-style node classification data from any road graph (Liang et al. 2025).

Processing of a :class:`~fwdlearn.graphs.data.road_readers.RoadGraph`:

1. undirected simple graph (self-loops dropped, one edge per node pair whose attributes
   are the mean over every road between the pair -- both directions of a two-way street,
   parallel roads -- as the City-Networks generator's ``to_undirected(reduce="mean")``;
   so no file order decides them), largest connected component;
2. road length :math:`w_{uv}`: the given length (that mean, over the pair's roads that have one),
   else the Euclidean distance of the coordinates, else 1; when only some roads lack a length,
   only the pairs none of whose roads has one take the Euclidean distance (with a warning that
   counts them: its units may not be the lengths');
3. label: the eccentricity of :math:`v` inside the induced subgraph of its
   ``hops``-hop ball :math:`\mathcal{B}(v)`, with lengths as weights,

   .. math::
       \varepsilon(v) = \max_{u \in \mathcal{B}(v)} d_{G[\mathcal{B}(v)], w}(v, u),

   cut into ``classes`` equal-frequency classes (ranks, ties by node index, so the
   class sizes differ by at most 1). All balls of a batch of sources are put side by side
   as one disjoint graph and a single multi-source Dijkstra (``min_only``) labels them
   all: each component holds exactly one source, so the nearest-source distance is
   the distance from its own seed; cost linear in the sum of ball sizes;
4. features (``data.feature_names`` lists them): continuous ``x``, ``y``,
   ``street_count`` (the degree when absent), ``length`` and ``speed`` (means over
   incident edges; speed only when ``maxspeed`` is present), z-scored; then one-hot
   categories averaged over incident edges for ``oneway`` (top 2 + other),
   ``lanes`` (top 4 + other), ``reversed`` (top 2 + other), ``highway`` (top 6 +
   other), and node ``landuse`` (top 6 + other), each only when present. An OSMnx
   GraphML with all of these edge attributes and no land use (Westminster, and
   :func:`synthetic_city`) gives **23** features; a coordinate + edge-list pair
   (California) gives 4 (``x, y, street_count, length``).
5. random ``train/val/test`` masks with fractions ``split``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, dijkstra
from torch_geometric.data import Data

from fwdlearn.data import DataNotFoundError, cache_dir, data_dir, loader_log, weights_only_loads
from fwdlearn.errors import InputError, check_int, warn
from fwdlearn.files import remove_quietly, save_torch, writing
from fwdlearn.fit import load_torch, progress

from fwdlearn.graphs.data.datasets import (check_city_network, check_fractions, random_split,
                                           refused_processed_copy, stored_only)
from fwdlearn.graphs.data.hop_balls import hop_balls, in_neighbour_matrix, induced_union, is_symmetric
from fwdlearn.graphs.data.road_readers import RoadGraph, read_road_graph, road_files

__all__ = ["build_city_network", "synthetic_city", "load_city", "city_data", "local_eccentricity"]

#: a city's own (public) split: train, validation, test fractions, as in City-Networks
CITY_SPLIT = (0.1, 0.1, 0.8)

CACHE_VERSION = "citynet-7"  # 7: one file for every split of a city (the masks are drawn after), CRC-checked; 6:
# files with a byte-order mark, Matrix Market values as lengths, GraphML without x/y; 5: stored as a dict of tensors
# (read without unpickling objects); 4: roads without a length alone fall back on the coordinates; size lines, float ids
#: the most junctions synthetic_city builds (17 times London's 568,795)
MAX_SYNTHETIC_JUNCTIONS = 10_000_000
#: synthetic_city: the median spacing of its streets (metres), the spread of the log of each row's and column's spacing,
#: and the scale (in streets) over which the spacing varies: blocks of about 40 to 270 m, in districts
SYNTHETIC_SPACING, SYNTHETIC_DENSITY_SPREAD, SYNTHETIC_DISTRICT = 100.0, 0.5, 6.0
#: what a cached city holds (a file without them is rebuilt)
CACHED_KEYS = frozenset({"x", "edge_index", "y", "edge_length", "eccentricity", "feature_names", "num_classes"})
TOP_K = {"oneway": 2, "lanes": 4, "reversed": 2, "highway": 6}
NODE_TOP_K = {"landuse": 6}


def _simple_lcc(road: RoadGraph) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """``(nodes kept [N'], edges [E', 2] in new ids (u < v), members [E', E])``: ``members`` averages the attributes
    of every road edge between a kept pair (both directions, parallel roads), so no file order decides them."""
    u, v = road.edges[:, 0], road.edges[:, 1]
    keep = np.flatnonzero(u != v)
    a, b = np.minimum(u, v)[keep], np.maximum(u, v)[keep]
    pairs, group = np.unique(a * road.num_nodes + b, return_inverse=True)
    a, b = pairs // road.num_nodes, pairs % road.num_nodes
    adjacency = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(road.num_nodes,) * 2)
    _, component = connected_components(adjacency, directed=False)
    largest = np.bincount(component).argmax()
    nodes = np.flatnonzero(component == largest)
    new_id = np.full(road.num_nodes, -1, dtype=np.int64)
    new_id[nodes] = np.arange(len(nodes))
    inside = new_id[a] >= 0
    row = np.cumsum(inside) - 1  # kept pair -> row of members
    counts = np.bincount(group, minlength=len(pairs))
    member = inside[group]
    members = sp.csr_matrix((1.0 / counts[group[member]], (row[group[member]], keep[member])),
                            shape=(int(inside.sum()), road.edges.shape[0]))
    return nodes, np.stack([new_id[a[inside]], new_id[b[inside]]], axis=1), members


def local_eccentricity(edge_index: np.ndarray, length: np.ndarray, num_nodes: int, hops: int,
                       batch_pairs: int = 2_000_000, quiet: bool = True) -> np.ndarray:
    r""":math:`\varepsilon(v)` for every node: weighted eccentricity within its induced ``hops``-hop ball.

    Args:
        edge_index: ``[2, E]`` the edges of an undirected graph, both directions of each; parallel edges count by
            their shortest length.
        length: ``[E]`` positive edge lengths.
        num_nodes: nodes of the graph (isolated ones included).
        hops: the radius of the ball, in hops.
        batch_pairs: about how many (source, node) pairs are processed at once (memory bound).
        quiet: no progress bar.

    Raises:
        ValueError: an edge without its reverse.
    """
    edge_index, length = np.asarray(edge_index, dtype=np.int64), np.asarray(length, dtype=np.float64)
    key = edge_index[0] * num_nodes + edge_index[1]
    order = np.lexsort((length, key))  # by pair, shortest first: keep the first of each pair
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]] if len(order) else order
    edge_index, length = edge_index[:, first], length[first]
    matrix = in_neighbour_matrix(edge_index, num_nodes, weight=np.maximum(length, 1e-12))
    if not is_symmetric(matrix):
        raise ValueError("local_eccentricity needs an undirected graph: give both directions of every edge")
    # pairs a source holds: measured on 64 sources spread over the ids (the first 64 of a grid lie on its edge, with
    # half the ball of a junction inside: every batch held twice batch_pairs), then the most a batch has held
    spread = np.unique(np.linspace(0, num_nodes - 1, min(num_nodes, 64)).astype(np.int64))
    per_source = max(1.0, hop_balls(matrix, spread, hops, symmetric=True).num_pairs / len(spread))
    result = np.empty(num_nodes)
    bar = progress(total=num_nodes, desc="labels", quiet=quiet, unit="node")
    start = 0
    while start < num_nodes:
        sources = np.arange(start, min(num_nodes, start + max(1, int(batch_pairs // per_source))))
        balls = hop_balls(matrix, sources, hops, symmetric=True)
        per_source = max(per_source, balls.num_pairs / len(sources))
        # (in any order within a ball: the shortest distances do not depend on it)
        union, entry = induced_union(matrix, balls, ordered=False)
        # csgraph reads row -> column as an edge; union edges are (source pair, target pair)
        graph = sp.csr_matrix((matrix.data[entry], (union[0], union[1])), shape=(balls.num_pairs,) * 2)
        distance = dijkstra(graph, directed=True, indices=balls.root, min_only=True)
        result[sources] = np.maximum.reduceat(distance, balls.offsets[:-1])
        start += len(sources)
        bar.update(len(sources))
    bar.close()
    return result


def _equal_frequency(values: np.ndarray, classes: int) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    labels = np.empty(len(values), dtype=np.int64)
    labels[order] = np.arange(len(values)) * classes // len(values)
    return labels


def _one_hot_mean(values: list[str | None], top_k: int, name: str, incident: sp.csr_matrix | None,
                  counted: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """One-hot of the ``top_k`` most frequent values (among the ``counted`` items, default all) + 'other' (None
    counts as other), averaged by ``incident`` (``[nodes, items]``)."""
    clean = np.array(["<none>" if v is None else str(v) for v in values], dtype=object)
    pool = clean if counted is None else clean[counted]
    kinds, counts = np.unique(pool[pool != "<none>"], return_counts=True)
    top = list(kinds[np.argsort(-counts, kind="stable")][:top_k])
    names = [f"{name}={t}" for t in top] + [f"{name}=<unused{i}>" for i in range(top_k - len(top))] + [f"{name}=other"]
    column = np.full(len(clean), top_k, dtype=np.int64)
    for i, t in enumerate(top):
        column[clean == t] = i
    one_hot = np.zeros((len(clean), top_k + 1))
    one_hot[np.arange(len(clean)), column] = 1.0
    return (one_hot if incident is None else incident @ one_hot), names


def _speed(values: list[str | None]) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v:
            digits = "".join(ch if (ch.isdigit() or ch == ".") else " " for ch in v).split()
            if digits:
                out[i] = float(digits[0])
    return out


def _informative(block: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop (with a warning) continuous features that are constant, or constant but for a handful of nodes
    (z-scoring those turns the few into outliers of hundreds of standard deviations)."""
    n = block.shape[0]
    allowed = max(1, n // 1000)  # nodes that may differ from the most common value before a feature is dropped
    keep = []
    for j in range(block.shape[1]):
        _, counts = np.unique(block[:, j], return_counts=True)
        keep.append(n - counts.max() > allowed)
    dropped = [name for name, k in zip(names, keep) if not k]
    if dropped:
        warn(f"dropped feature(s) {', '.join(dropped)}: constant on all but at most {allowed} of {n:,} "
             "junctions")
    return block[:, keep], [name for name, k in zip(names, keep) if k]


def _check_lengths(road: RoadGraph, edge_ids: np.ndarray, has_coords: bool) -> None:
    """Refuse road lengths that are negative or infinite, and missing (NaN) ones when there are no coordinates to fall
    back on, naming the first such road."""
    length = np.asarray(road.length, dtype=np.float64)[edge_ids]
    for bad, what in ((np.isinf(length) | (length < 0), "a negative or infinite length"),
                      (np.isnan(length) if not has_coords else np.zeros(len(length), bool), "no length (NaN)")):
        if bad.any():
            first = int(edge_ids[np.flatnonzero(bad)[0]])
            u, v = (int(i) for i in road.edges[first])
            raise ValueError(f"{int(bad.sum())} of {len(length):,} roads have {what}, e.g. the road {u}-{v} "
                             f"(length {road.length[first]}); give every road a length >= 0"
                             + ("" if has_coords else " (or give the junctions coordinates)"))


def _label_settings(hops: int, classes: int) -> tuple[int, int]:
    """``(hops, classes)`` as ints, checked before any road is read: ``hops >= 1``, ``classes >= 2`` (``hops=1.5``
    was refused as ``max_hops``, by the hop balls, after the roads were read; ``"4"`` failed in a comparison)."""
    return (check_int("hops", hops, 1, " (the hop radius of the eccentricity labels)"),
            check_int("classes", classes, 2, " (the eccentricity label classes)"))


def city_data(road: RoadGraph, hops: int = 16, classes: int = 10, split: tuple[float, float, float] = CITY_SPLIT,
              seed: int = 0, quiet: bool = True) -> Data:
    """Process a :class:`RoadGraph` into a labelled ``Data`` (see the module docstring)."""
    hops, classes = _label_settings(hops, classes)
    check_fractions(split, "split")
    if road.edges.shape[0] == 0:
        raise ValueError("the road graph has no edges")
    nodes, edges, members = _simple_lcc(road)
    edge_ids = np.unique(members.indices)  # the road edges that make up the kept pairs
    n = len(nodes)
    if n < road.num_nodes:
        warn(f"the road graph is not connected: kept its largest component ({n:,} of {road.num_nodes:,} "
             f"junctions; {road.num_nodes - n:,} dropped)")
    if n < classes:
        raise ValueError(f"the largest connected component has {n} nodes, fewer than classes={classes}")
    coords = road.coords[nodes] if road.coords is not None else None
    if road.length is not None:
        _check_lengths(road, edge_ids, coords is not None)
    if road.length is not None:
        given = road.length.astype(np.float64)
        known = ~np.isnan(given)
        length = members @ np.where(known, given, 0.0)  # the mean over the pair's roads
        if not known[edge_ids].all():  # (only with coordinates: _check_lengths) the mean over those with a length
            share = members @ known.astype(np.float64)
            bare = share == 0  # pairs none of whose roads has a length: the Euclidean distance
            length = np.where(bare, np.linalg.norm(coords[edges[:, 0]] - coords[edges[:, 1]], axis=1),
                              length / np.where(bare, 1.0, share))
            missing = f"{int((~known[edge_ids]).sum()):,} of {len(edge_ids):,} roads have no length"
            fallback = (f"the {int(bare.sum()):,} junction pairs without any take the straight-line distance between "
                        "their coordinates (in the coordinates' units, e.g. degrees, not metres)" if bare.any() else
                        "the other roads between the same junctions give theirs")
            where = f"{road.source}: " if road.source is not None else ""
            warn(f"{where}{missing}; {fallback}: give every road a length")
    elif coords is not None:
        length = np.linalg.norm(coords[edges[:, 0]] - coords[edges[:, 1]], axis=1)
    else:
        warn("the road graph has no edge lengths and no coordinates: every road counts as length 1, so the "
             "labels are hop eccentricities")
        length = np.ones(len(edges))
    both = np.concatenate([edges, edges[:, ::-1]]).T
    both_length = np.concatenate([length, length])
    ecc = local_eccentricity(both, both_length, n, hops, quiet=quiet)
    distinct = len(np.unique(ecc))
    if distinct < classes:
        raise ValueError(f"degenerate labels: the {hops}-hop eccentricity takes only {distinct} distinct value(s) over "
                         f"{n:,} junctions, fewer than classes={classes}, so the classes would only split ties by node "
                         "index. Give the roads lengths or coordinates, or use fewer classes / more hops")
    labels = _equal_frequency(ecc, classes)

    degree = np.bincount(both[0], minlength=n).astype(np.float64)
    incident = sp.csr_matrix((np.ones(2 * len(edges)), (both[0], np.tile(np.arange(len(edges)), 2))),
                             shape=(n, len(edges)))
    incident = sp.diags(1.0 / np.maximum(degree, 1)) @ incident
    continuous, names = [], []
    if coords is not None:
        continuous += [coords[:, 0], coords[:, 1]]
        names += ["x", "y"]
    street = road.node_attrs.get("street_count")
    continuous.append(np.array([float(street[i]) if street[i] is not None else degree[k] for k, i in enumerate(nodes)])
                      if street else degree)
    names.append("street_count")
    continuous.append(incident @ length)
    names.append("length")
    if "maxspeed" in road.edge_attrs:
        speed = _speed(road.edge_attrs["maxspeed"])
        known = speed[edge_ids]
        speed = np.where(np.isnan(speed), np.nanmean(known) if not np.isnan(known).all() else 0.0, speed)
        continuous.append(incident @ (members @ speed))
        names.append("speed")
    block, names = _informative(np.stack(continuous, axis=1), names)
    block = (block - block.mean(0)) / block.std(0)
    blocks = [block]
    for key, k in TOP_K.items():
        if key in road.edge_attrs:
            values, cols = _one_hot_mean(road.edge_attrs[key], k, key, incident @ members, edge_ids)
            blocks.append(values)
            names += cols
    for key, k in NODE_TOP_K.items():
        if key in road.node_attrs:
            values, cols = _one_hot_mean([road.node_attrs[key][i] for i in nodes], k, key, None)
            blocks.append(values)
            names += cols
    x = torch.tensor(np.concatenate(blocks, axis=1), dtype=torch.float32)

    masks = _city_masks(n, seed, split)
    data = Data(x=x, edge_index=torch.from_numpy(np.ascontiguousarray(both)), y=torch.from_numpy(labels),
                train_mask=masks[0], val_mask=masks[1], test_mask=masks[2],
                edge_length=torch.tensor(both_length, dtype=torch.float32),
                eccentricity=torch.tensor(ecc, dtype=torch.float32))
    data.feature_names = names
    data.num_classes = classes
    return data


def _city_masks(n: int, seed: int, split: tuple[float, float, float]) -> tuple[torch.Tensor, ...]:
    """The train/val/test masks of a city of ``n`` junctions, drawn from ``seed``; none may be empty."""
    masks = random_split(n, seed, split)
    empty = [name for name, mask in zip(("train", "val", "test"), masks) if not bool(mask.any())]
    if empty:  # (a tiny graph: 4 junctions gave 0/0/4 nodes, and training failed later or measured nothing)
        need = next((m for m in range(n + 1, n + 10_000)
                     if all(bool(mask.any()) for mask in random_split(m, seed, split))), None)
        size = (f"this split needs a largest connected component of at least {need} junctions: use a larger graph"
                if need is not None else "use larger fractions or a larger graph")
        raise ValueError(f"split={tuple(split)} of the {n} junctions of the largest connected component leaves the "
                         f"{' and '.join(empty)} mask{'s' if len(empty) > 1 else ''} empty; {size}")
    return masks


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _cached(key_parts: dict, stem: str, make, keys: frozenset[str] = frozenset()) -> Data:
    """``make()``, kept under ``cache_dir("citynet")`` by the hash of ``key_parts``; a kept copy that cannot be read,
    is damaged (its CRC) or lacks one of ``keys`` is rebuilt, with a warning."""
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir("citynet") / f"{stem[:64]}-{key}.pt"  # (the key names it; a long file name's stem overflowed)
    if path.exists():
        try:  # (tensors and plain values only: a file planted in the cache folder runs no code; load_torch checks
            stored = load_torch(path)  # the records' CRC-32: torch.load read a damaged byte as another feature)
            if not isinstance(stored, dict):
                raise ValueError(f"it holds a {type(stored).__name__}, not a dict of tensors")
            missing = keys - set(stored)
            if missing:
                raise ValueError(f"it lacks {', '.join(sorted(missing))}")
            return Data.from_dict(stored)
        except Exception as error:  # noqa: BLE001 - our own cache: a damaged copy is rebuilt
            warn(f"the cached {path} could not be read ({type(error).__name__}: {error}); rebuilding it")
            path.unlink(missing_ok=True)
    data = make()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # several processes (torchrun) may build it at once
    try:  # (a full disk was torch's "unexpected pos" RuntimeError, a traceback, and left the .tmp behind)
        with writing(path):
            save_torch(data.to_dict(), tmp)
            tmp.replace(path)
    except BaseException:
        remove_quietly(tmp)
        raise
    return data


def build_city_network(source: str | Path, hops: int = 16, classes: int = 10,
                       split: tuple[float, float, float] = CITY_SPLIT, seed: int = 0,
                       cache: bool = True, quiet: bool = True) -> Data:
    """City-Networks-style ``Data`` from a road file or folder (GraphML, .cnode/.cedge, .mtx, .edges, .mat).

    The graph, its features and labels are cached under ``fwdlearn.data.cache_dir("citynet")`` keyed by the
    files' sha256, ``hops`` and ``classes`` (never next to the source); the masks are drawn from ``seed`` and
    ``split`` on every call, so the splits of one city share one build.
    """
    hops, classes = _label_settings(hops, classes)
    files = road_files(source)
    build = lambda: city_data(read_road_graph(source), hops, classes, tuple(split), seed, quiet)  # noqa: E731
    if not cache:
        return build()
    check_fractions(split, "split")
    parts = {"v": CACHE_VERSION, "sha": _hash_files(files), "hops": hops, "classes": classes}
    # (when the key held the seed and split too, every split of `graph train --splits N` labelled the city again)
    data = _cached(parts, files[0].stem, build, CACHED_KEYS)
    data.train_mask, data.val_mask, data.test_mask = _city_masks(data.num_nodes, seed, tuple(split))
    return data


def synthetic_road_graph(n: int = 2500, seed: int = 0) -> RoadGraph:
    """A jittered grid of about ``n`` junctions with ~15% streets removed and ~5% diagonal shortcuts.

    Every 5th row / column is a 'primary' avenue (faster, two lanes, two-way), other
    streets are 'residential' and some are one-way. The spacing of the streets varies across the city as a real
    city's does (dense districts, sparse ones): each column and each row of streets is
    :data:`SYNTHETIC_SPACING` metres apart times a log-normal factor (:data:`SYNTHETIC_DENSITY_SPREAD`) smoothed over
    about :data:`SYNTHETIC_DISTRICT` streets, so the eccentricity labels of :func:`synthetic_city` follow the density of
    the streets around a junction. (With one spacing everywhere every 16-hop eccentricity was about 16 blocks, 1594 to
    1879 m on 2,500 junctions: the classes split the jitter and the missing streets, and no model learnt them: GCNs of
    2 to 8 layers about 0.14 test accuracy, MLPs 0.10 to 0.12, for chance 0.10.) The streets (the graph) do not depend
    on the spacing: a seed gives the junctions and roads it gave with one spacing.
    """
    if n < 4:
        raise ValueError(f"synthetic_city needs n >= 4 junctions, got {n}")
    if n > MAX_SYNTHETIC_JUNCTIONS:  # (10**12 ended in numpy's MemoryError traceback; 10**8 would label for a day)
        raise ValueError(f"synthetic_city builds at most {MAX_SYNTHETIC_JUNCTIONS:,} junctions, got {n:,}: its "
                         "labels take about 1 ms a junction (100,000 took 98 s) and its arrays grow with it; "
                         f"London, the largest City-Networks city, has 568,795. Ask for fewer")
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    rows, cols = np.divmod(np.arange(side * side), side)
    jitter = rng.normal(0, 0.15, size=(side * side, 2))  # (of the local spacing)
    ids = np.arange(side * side).reshape(side, side)
    horizontal = np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], axis=1)
    vertical = np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], axis=1)
    diagonal = np.stack([ids[:-1, :-1].ravel(), ids[1:, 1:].ravel()], axis=1)
    diagonal = diagonal[rng.random(len(diagonal)) < 0.05]
    grid = np.concatenate([horizontal, vertical])
    grid_rows = np.concatenate([rows[horizontal[:, 0]], cols[vertical[:, 0]]])
    avenue = grid_rows % 5 == 0
    keep = avenue | (rng.random(len(grid)) > 0.15)
    edges = np.concatenate([grid[keep], diagonal])
    avenue = np.concatenate([avenue[keep], np.zeros(len(diagonal), bool)])
    oneway = ~avenue & (rng.random(len(edges)) < 0.2)
    attrs = {
        "highway": ["primary" if a else "residential" for a in avenue],
        "lanes": ["2" if a else "1" for a in avenue],
        "maxspeed": ["50" if a else "30" for a in avenue],
        "oneway": [str(bool(o)) for o in oneway],
        "reversed": ["False"] * len(edges),
    }
    # drawn after the streets, so a seed's streets stay those it gave before the spacing varied
    spacing = SYNTHETIC_SPACING * np.exp(SYNTHETIC_DENSITY_SPREAD * _smooth_noise(rng, (2, side), SYNTHETIC_DISTRICT))
    position = np.concatenate([np.zeros((2, 1)), np.cumsum(spacing[:, :-1], axis=1)], axis=1)
    coords = np.stack([position[0][cols] + jitter[:, 0] * spacing[0][cols],
                       position[1][rows] + jitter[:, 1] * spacing[1][rows]], axis=1)
    return RoadGraph(side * side, edges.astype(np.int64), coords, None, {}, attrs)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Rows of white noise smoothed by a Gaussian of ``scale`` entries, each standardised (mean 0, std 1)."""
    from scipy.ndimage import gaussian_filter1d

    noise = gaussian_filter1d(rng.normal(size=shape), scale, axis=1, mode="reflect")
    noise -= noise.mean(axis=1, keepdims=True)
    return noise / np.maximum(noise.std(axis=1, keepdims=True), 1e-12)


def synthetic_city(n: int = 2500, seed: int = 0, hops: int = 16, classes: int = 10,
                   split: tuple[float, float, float] = CITY_SPLIT, quiet: bool = True) -> Data:
    """An offline, generated road-like city (:func:`synthetic_road_graph`) with City-Networks features and labels.

    The last city built is kept in the process (its labels take about 1 ms a junction): the splits of ``graph train
    --splits N`` on one generated city, drawn once, are each a new draw of the masks only."""
    check_fractions(split, "split")
    hops, classes = _label_settings(hops, classes)
    key = (n, seed, hops, classes)
    if key not in _last_synthetic:
        built = city_data(synthetic_road_graph(n, seed), hops, classes, split, seed, quiet)
        _last_synthetic.clear()  # (one city kept: a 100,000-junction one holds about 10 MB)
        _last_synthetic[key] = built
    data = _last_synthetic[key].clone()
    data.train_mask, data.val_mask, data.test_mask = _city_masks(data.num_nodes, seed, tuple(split))
    return data


#: the last :func:`synthetic_city` built, by ``(n, seed, hops, classes)``
_last_synthetic: dict[tuple[int, int, int, int], Data] = {}


def road_path(arg: str) -> Path:
    """Where ``city:<arg>`` points: ``arg`` (``~`` expanded) or, when that does not exist and is relative, the same
    path under ``FWDLEARN_DATA_DIR``."""
    path = Path(arg).expanduser()
    if not path.exists() and not path.is_absolute() and data_dir() is not None and (data_dir() / path).exists():
        path = data_dir() / path
    return path


def load_city(name: str, root: str | Path | None = None, seed: int = 0, hops: int = 16, quiet: bool = True,
              download: bool = False) -> Data:
    """Load ``"city:<path>"``, ``"synthetic-city[:N]"`` or ``"citynetwork:<name>"``.

    A relative ``city:`` path is looked up in the working directory, then under
    ``FWDLEARN_DATA_DIR`` (e.g. ``city:roads/westminster``). ``citynetwork:<name>``
    (paris, shanghai, la, london) goes to ``torch_geometric.datasets.CityNetwork``, which
    downloads the data (into ``root`` or the cache folder, only with ``download=True``) and needs internet.
    """
    kind, _, arg = name.strip().partition(":")
    kind = kind.lower()  # as is_city and check_graph_name read it; the path keeps its case
    if kind == "city":
        if not arg:
            raise ValueError("city: needs a path, e.g. city:roads/westminster or city:/data/graph.graphml")
        path = road_path(arg)
        if not path.exists():
            looked = [str(Path(arg).expanduser().resolve())]
            if data_dir() is not None and not path.is_absolute():
                looked.append(str(data_dir() / arg))
            hint = ("" if data_dir() is not None else
                    "; relative paths are also looked up under FWDLEARN_DATA_DIR, which is unset")
            raise FileNotFoundError(
                f"road network {arg!r} not found (looked for {' and '.join(looked)}{hint}). Give a road file or a "
                "folder holding one: an OSMnx GraphML (osmnx.save_graphml(osmnx.graph_from_place('Westminster, "
                "London', network_type='drive'), 'graph.graphml')), a .cnode/.cedge pair (California: 'Real Datasets "
                "for Spatial Databases', Li et al.), an edge list or a .mat with 'A' and 'xy' (pygsp's minnesota.mat); "
                "or use the generated synthetic-city[:N]")
        return build_city_network(path, hops=hops, seed=seed, quiet=quiet)
    if kind == "synthetic-city":
        try:
            n = int(arg) if arg else 2500
        except ValueError:
            raise ValueError(f"synthetic-city:N needs an integer N, got {arg!r}") from None
        return synthetic_city(n, seed=seed, hops=hops, quiet=quiet)
    if kind == "citynetwork":
        from torch_geometric.datasets import CityNetwork

        arg = check_city_network(arg)
        folder = Path(root).expanduser() if root is not None else cache_dir("CityNetwork")
        processed = folder / arg / "processed"  # (PyG's folder: the name in lower case)
        stored = any(processed.glob("data*.pt"))  # (an empty folder, a build cut short, is no copy)
        if not download and not stored:
            raise DataNotFoundError(f"citynetwork:{arg} is not in {folder}; torch_geometric.datasets.CityNetwork "
                                    "downloads it: pass download=True (--download) on a machine with internet, or "
                                    "build the same kind of data from a local road file with city:<path>")
        try:
            with loader_log(quiet), weights_only_loads():  # (a planted processed copy runs no code)
                return stored_only(CityNetwork, processed, download)(str(folder), name=arg)[0]
        except DataNotFoundError:  # (another variant's processed copy only: named as such)
            raise
        except pickle.UnpicklingError:  # (a file torch's safe reader refused: not the connection's problem)
            raise refused_processed_copy(f"citynetwork:{arg}", processed) from None
        except Exception as error:
            raise InputError(f"citynetwork:{arg} could not be loaded through torch_geometric.datasets.CityNetwork "
                               f"({type(error).__name__}: {error}). It downloads the data and needs internet; offline, "
                               f"build the same kind of data from a local road file with city:<path>") from error
    raise ValueError(f"unknown city source {name!r}; use city:<path>, synthetic-city[:N] or citynetwork:<name>")
