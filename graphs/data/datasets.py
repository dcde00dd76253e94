r"""``load_graph``: node-classification graphs as :class:`torch_geometric.data.Data`.

Every graph comes back with boolean ``train_mask`` / ``val_mask`` / ``test_mask`` and an
integer ``num_classes`` attribute.

Sources:

- ``cora``, ``citeseer``, ``pubmed``: :class:`torch_geometric.datasets.Planetoid`. The raw
  ``ind.<name>.*`` files are read from ``<FWDLEARN_DATA_DIR>/Planetoid/<Name>/raw`` (that folder
  is read-only, so the files are linked into ``<cache>/Planetoid/<Name>/raw`` and PyG writes its
  ``processed/`` folder there; links made from a folder ``FWDLEARN_DATA_DIR`` no longer names are
  dropped, so the variable as it is decides). Without local files, PyG downloads them only when
  ``download=True``. The raw files are Python pickles, which PyG unpickles whole: before it does, each
  is read by an unpickler that builds only what the Planetoid release holds (NumPy arrays, SciPy CSR
  matrices, lists, a ``defaultdict``; NumPy dtypes as NumPy writes them), and a file naming anything else is
  refused (it could run code it carries), as is one it cannot read. PyG's processed copies
  (``processed/*.pt``) of every data set are read tensors-only (:func:`fwdlearn.data.weights_only_loads`).
- ``karate``: PyG's built-in :class:`~torch_geometric.datasets.KarateClub` (no files at all).
- ``citationfull:<name>``, ``amazon:<name>``, ``coauthor:<name>``: passed to the PyG data set of
  that name (downloads, so ``download=True`` and internet are needed).
- ``city:<path>``, ``synthetic-city[:N]``, ``citynetwork:<name>``: :func:`fwdlearn.graphs.data.citynet.load_city`.
- ``file:<path>``: a graph of your own, a :class:`~torch_geometric.data.Data` saved with ``torch.save(data, path)``
  (:func:`load_saved_graph`; a relative path is looked up in the working directory, then under ``FWDLEARN_DATA_DIR``).
  It is read tensors-only (``weights_only=True``, PyG's data classes allowed by name), so reading it runs no code it
  may carry.

Splits:

- ``"public"``: the data set's own split (Planetoid's 20 per class / 500 / 1000; for KarateClub
  its 4 labelled nodes for training and the other nodes halved, with ``seed``, into val/test);
- ``"random"``: ForwardGNN's protocol, a random permutation of all nodes cut into
  :math:`64\% / 16\% / 20\%` train / val / test, drawn from ``seed`` (one split per seed).
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data, Dataset, HeteroData

from fwdlearn.data import DataNotFoundError, cache_dir, data_dir, loader_log, weights_only_loads
from fwdlearn.files import NO_ROOM, taking_turns, writing
from fwdlearn.errors import InputError, UsageError, check_bool, check_finite_tensor, check_not_meta, check_seed, warn
from fwdlearn.registry import did_you_mean

__all__ = ["load_graph", "has_public_split", "is_city", "labels_by_hops", "random_split", "check_fractions",
           "check_masks", "check_mask", "check_labels", "check_node_data", "check_edge_index", "check_features",
           "check_graph_inputs", "check_num_nodes", "check_one_graph", "check_graph_name", "warn_unweighted", "check_city_network", "graph_files", "PLANETOID", "GRAPH_NAMES",
           "CITY_NETWORKS", "DOWNLOADABLE_NAMES", "stored_only", "refused_processed_copy", "load_saved_graph",
           "is_saved_graph", "graph_identity", "label_classes", "lacks_labels"]

PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_PLANETOID_FILES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
_SOURCE_STAMP = ".fwdlearn-source"  # in the cache's raw folder: the files linked into it, their sizes and times
_DOWNLOADABLE = {"citationfull": "CitationFull", "amazon": "Amazon", "coauthor": "Coauthor"}
#: the data sets each of those PyG classes holds (its constructor asserts the name, with a bare AssertionError)
DOWNLOADABLE_NAMES = {"citationfull": ("cora", "cora_ml", "citeseer", "dblp", "pubmed"),
                      "amazon": ("computers", "photo"), "coauthor": ("cs", "physics")}
_CITY_PREFIXES = ("city:", "synthetic-city", "citynetwork:")
CITY_NETWORKS = ("paris", "shanghai", "la", "london")  # the cities of torch_geometric.datasets.CityNetwork
GRAPH_NAMES = [*PLANETOID, "karate", "sbm[:N]", "citationfull:<name>", "amazon:<name>", "coauthor:<name>",
               "city:<path>", "synthetic-city[:N]", "citynetwork:<name>", "file:<path>"]
_FILE_PREFIX = "file:"  # a PyG Data saved with torch.save: load_saved_graph
SBM_SIGNAL = 0.15  # features alone: an MLP reaches about 0.5 (chance 0.2); a 3-layer GCN about 0.97-0.99


def check_fractions(fractions, name: str = "fractions") -> None:
    """Raise ``ValueError`` unless ``fractions`` are three non-negative numbers (train, val, test) summing to 1."""
    if len(fractions) != 3 or not all(f >= 0 for f in fractions) or not abs(sum(fractions) - 1.0) <= 1e-6:
        raise ValueError(f"{name} must be three non-negative fractions (train, val, test) summing to 1; got "
                         f"{tuple(fractions)}")


def random_split(num_nodes: int, seed: int = 0, fractions: tuple[float, float, float] = (0.64, 0.16, 0.20)
                 ) -> tuple[Tensor, Tensor, Tensor]:
    r"""Boolean train/val/test masks from a random permutation of the nodes.

    The first :math:`\lfloor f_0 N \rceil` nodes of the permutation train, the next
    :math:`\lfloor f_1 N \rceil` validate, the rest test, so the masks partition the nodes. The one split
    helper of the package for graphs without a public split (random node splits, City-Networks splits). Like PyG's
    ``RandomNodeSplit(split="train_rest")``, but drawn from its own seeded generator, so a split neither
    depends on nor disturbs the global random state.
    """
    check_fractions(fractions)
    perm = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed), device="cpu")  # (its generator's)
    n_train = round(fractions[0] * num_nodes)
    n_val = round(fractions[1] * num_nodes)
    masks = []
    for part in (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]):
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[part] = True
        masks.append(mask)
    return masks[0], masks[1], masks[2]


def check_edge_index(edge_index: Tensor, num_nodes: int, name: str = "data.edge_index",
                     features: str = "data.x") -> Tensor:
    """Check that ``edge_index`` (or node pairs) is a ``[2, E]`` integer tensor of node ids in
    ``[0, num_nodes - 1]``, ``num_nodes`` the rows of ``features`` (not on the meta device: its ids have no values).

    Raises:
        ValueError / TypeError: naming the shape, dtype or the range of the ids found.
    """
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        found = f"got shape {tuple(edge_index.shape)}" if isinstance(edge_index, Tensor) else \
            f"got {type(edge_index).__name__}"
        hint = ": transpose it (.t())" if isinstance(edge_index, Tensor) and edge_index.dim() == 2 and \
            edge_index.shape[1] == 2 else ""
        raise ValueError(f"{name} must be a [2, num_edges] tensor of node ids; {found}{hint}")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer node ids; got {edge_index.dtype}")
    _check_not_meta(edge_index, name)
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"{name} values must lie in [0, {num_nodes - 1}] ({features} has {num_nodes} rows); "
                         f"got values in [{int(edge_index.min())}, {int(edge_index.max())}]")
    return edge_index


def _check_not_meta(tensor: Tensor, name: str) -> None:
    """Refuse a tensor of a graph on the meta device (:func:`~fwdlearn.errors.check_not_meta`)."""
    check_not_meta(name, tensor, "the models read the values", "build or load the graph on the CPU or a GPU instead "
                   "(a meta tensor has no values to move)")


def check_features(x: Tensor, dtype: torch.dtype | None = None, name: str = "data.x") -> Tensor:
    """Check that ``x`` is a floating-point ``[num_nodes, num_features]`` tensor (of the model's parameters'
    ``dtype``, when given), not on the meta device.

    Raises:
        ValueError / TypeError: naming the tensor, what was found and the fix.
    """
    if x is None:  # (a graph of edges alone: the message named no way to give it features)
        raise ValueError(f"{name} must be a [num_nodes, num_features] tensor of node features; the graph has none: "
                         f"give it some, e.g. {name} = torch.ones(num_nodes, 1), one-hot degrees "
                         "(torch_geometric.transforms.OneHotDegree) or one feature per node, torch.eye(num_nodes)")
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"{name} must be a [num_nodes, num_features] tensor of node features")
    _check_not_meta(x, name)
    if x.layout != torch.strided:  # (the blocks and the finite check would fail with torch's raw error)
        raise TypeError(f"{name} is a sparse tensor ({x.layout}); the models read dense features: "
                        f"{name} = {name}.to_dense()")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must hold floating-point features; got {x.dtype}. Convert with {name}.float()")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} is {x.dtype} but the model's parameters are {dtype}: convert one of them "
                        f"(model.to({x.dtype}) or {name} = {name}.to({dtype}))")
    return x


def check_graph_inputs(data, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Check what every model reads from a graph and return it: ``data.x`` (:func:`check_features`), one row per node
    (``data.num_nodes``, when the graph says it) and ``data.edge_index`` (:func:`check_edge_index`).

    Raises:
        ValueError / TypeError: naming the attribute, what was found and the fix.
    """
    x, edge_index = getattr(data, "x", None), getattr(data, "edge_index", None)
    check_features(x, dtype)
    check_num_nodes(data, x.shape[0])
    check_edge_index(edge_index, x.shape[0])
    return x, edge_index


def check_num_nodes(data, rows: int) -> None:
    """Refuse a ``data.num_nodes`` (when the graph says it) other than ``rows``, the rows of ``data.x``: the masks,
    labels, edge split and negatives read ``num_nodes`` (masks of x's length were blamed for it, a mask of
    ``num_nodes``' failed with torch's raw IndexError, link prediction with a raw addmm error)."""
    num_nodes = getattr(data, "num_nodes", None)
    if num_nodes is not None and num_nodes != rows:
        raise ValueError(f"data.num_nodes is {num_nodes} but data.x has {rows} rows, one per node: set "
                         "data.num_nodes = data.x.shape[0] (or give every node a row of features)")


def warn_unweighted(data, model: str, how: str = "") -> None:
    """Warn that ``data.edge_weight`` / ``data.edge_attr``, when ``data`` has them, are not read: ``model`` treats the
    edges as unweighted (its blocks are called as ``conv(x, edge_index)``), or what ``how`` says instead (``{passed}``
    in it becomes ``edge_weight=data.edge_weight, ...`` of the attributes present)."""
    present = [key for key in ("edge_weight", "edge_attr") if getattr(data, key, None) is not None]
    if present:  # (at the user's line: Python's default filter says it once per line of theirs)
        ignored = [f"data.{key}" for key in present]
        how = how.format(passed=", ".join(f"{key}=data.{key}" for key in present)) if how else \
            f"{model} treats the edges as unweighted (its blocks are called as conv(x, edge_index))"
        warn(f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored: {how}; to silence this, drop "
             f"the attribute ({'; '.join(f'del {name}' for name in ignored)})")


def check_labels(y: Tensor | None, num_nodes: int, name: str = "data.y") -> Tensor:
    """Check that ``y`` is an int64 vector of one class id per node (``num_nodes`` of them).

    Raises:
        ValueError / TypeError: naming what was found and the fix.
    """
    if not isinstance(y, Tensor):
        raise ValueError(f"{name} must be a tensor of one int64 class id per node; got "
                         f"{type(y).__name__}" + (" (the graph has no labels)" if y is None else ""))
    if y.dtype != torch.long:
        raise TypeError(f"{name} must hold int64 class ids; got {y.dtype} ({name} = {name}.long())")
    if y.shape != (num_nodes,):
        raise ValueError(f"{name} must be a vector of one class id per node, [{num_nodes}]; got "
                         f"{list(y.shape)}" + (f" ({name} = {name}.view(-1))" if y.numel() == num_nodes else ""))
    return y


def check_mask(mask: Tensor, name: str, num_nodes: int) -> Tensor:
    """Check that ``mask`` (``name``, e.g. ``"data.train_mask"``) is a boolean vector over ``num_nodes`` nodes.

    The error names the fix for the masks met in practice: an index tensor of node ids, a 0/1 vector, and the
    ``[num_nodes, num_splits]`` masks of data sets that ship several splits (WikiCS, the heterophily sets).

    Raises:
        ValueError: naming the dtype and shape found and the fix.
    """
    if isinstance(mask, Tensor) and mask.dtype == torch.bool and mask.shape == (num_nodes,):
        return mask
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name} must be a boolean vector of length num_nodes={num_nodes}; got {type(mask).__name__}")
    attr = "data." + name.rsplit(".", 1)[-1]  # the fix is spelled on the Data object
    fix = ""
    if mask.dim() == 2 and mask.shape[0] == num_nodes:
        fix = (f"; it holds {mask.shape[1]} splits as columns: pick one split, "
               f"{attr} = {attr}[:, 0]" + ("" if mask.dtype == torch.bool else ".bool()"))
    elif mask.dim() == 1 and mask.numel() == num_nodes and not (mask.dtype.is_complex or mask.dtype == torch.bool) \
            and bool(((mask == 0) | (mask == 1)).all()):  # (a float one too: torch.zeros(n) and then mask[ids] = 1)
        fix = f"; it looks like a 0/1 vector: {attr} = {attr}.bool()"
    elif mask.dim() == 1 and not (mask.dtype.is_floating_point or mask.dtype.is_complex or mask.dtype == torch.bool):
        fix = (f"; it looks like an index tensor of node ids: {attr} = torch.zeros({num_nodes}, dtype=torch.bool)"
               f".index_fill_(0, {attr}.long(), True) (or torch_geometric.utils.index_to_mask)")
    raise ValueError(f"{name} must be a boolean vector of length num_nodes={num_nodes}; got dtype {mask.dtype} and "
                     f"shape {tuple(mask.shape)}{fix}")


def check_masks(data: Data, name: str = "graph", splits: tuple[str, ...] = ("train", "val", "test")) -> Data:
    """Check that ``data`` has disjoint, non-empty boolean train/val/test masks over its nodes (``splits``: the masks
    read, default all three; one split alone is checked for what scoring it reads, with no other mask asked for).

    Raises:
        ValueError: naming the missing, mis-shaped or overlapping mask and how to fix it.
    """
    keys = [f"{split}_mask" for split in splits]
    for key in keys:
        mask = getattr(data, key, None)
        if mask is None and len(keys) == 1:
            raise ValueError(f"{name} has no {key}, the nodes whose accuracy is measured; set {name}.{key} (a boolean "
                             "vector over the nodes)")
        if mask is None:
            raise ValueError(f"{name} has no {key}; node classification needs train_mask, val_mask and test_mask. "
                             f"Load it with load_graph(..., split='random'), or, for a graph of your own, draw a "
                             f"64/16/20 split: {name}.train_mask, {name}.val_mask, {name}.test_mask = "
                             f"random_split({name}.num_nodes, seed=0) (from fwdlearn.graphs.data.datasets import "
                             "random_split), or set the three boolean masks yourself")
        check_mask(mask, f"{name}.{key}", data.num_nodes)
    roles = {"train_mask": "labelled training", "val_mask": "validation", "test_mask": "test"}
    for key in keys:
        if not bool(getattr(data, key).any()):
            raise ValueError(f"{name}.{key} selects no node; at least one {roles[key]} node is needed (an accuracy "
                             "over no node is undefined)")
        labels = data.y[getattr(data, key)]
        if bool((labels < 0).any()):
            raise ValueError(f"{name}.{key} holds {int((labels < 0).sum())} nodes with a negative label (e.g. -1 "
                             "for unlabelled); leave unlabelled nodes out of the train/val/test masks")
    overlap = sum(getattr(data, key).long() for key in keys) > 1
    if bool(overlap.any()):
        raise ValueError(f"{name}: train/val/test masks overlap on {int(overlap.sum())} nodes; the masks must "
                         f"partition the nodes (each node in at most one split)")
    return data


def check_one_graph(data, what: str) -> None:
    """Refuse a PyG dataset where ``what`` reads one graph: ``Planetoid(root, "Cora")`` given for its graph
    ``Planetoid(root, "Cora")[0]`` failed with PyG's raw "'Planetoid' object has no attribute 'num_nodes'"; and an
    object that is no graph at all (neither ``x`` nor ``edge_index``; a :class:`Data` is left to the checks that
    name what it lacks). A :class:`~torch_geometric.data.HeteroData` is named as one (its features and edges are per
    node and edge type: it was told to load a graph with load_graph, or, without this check, that it has no features
    and to give it ``torch.ones``)."""
    if isinstance(data, HeteroData):
        types = ", ".join(map(repr, data.node_types)) or "none"
        raise TypeError(f"{what} reads one homogeneous graph (data.x, data.edge_index); got a HeteroData (node types "
                        f"{types}): convert it with data.to_homogeneous() (node features of one width across the "
                        "types), or make a Data of one node type and its edges")
    if isinstance(data, Dataset):
        raise TypeError(f"{what} reads one graph (a torch_geometric.data.Data); got the {type(data).__name__} dataset "
                        f"of {len(data)} graph(s): pass its graph, dataset[0]")
    if not isinstance(data, Data) and getattr(data, "x", None) is None and getattr(data, "edge_index", None) is None:
        hint = (": a text corpus trains a language model (fwdlearn.sequences)" if hasattr(data, "vocab") else
                ": load one with fwdlearn.graphs.load_graph")  # (a Corpus was told the graph has no features)
        raise TypeError(f"{what} reads one graph (a torch_geometric.data.Data with x and edge_index); got "
                        f"{type(data).__name__}{hint}")


def check_node_data(data: Data, dtype: torch.dtype | None = None) -> Data:
    """Check everything training a node classifier reads from ``data``: ``x`` (of ``dtype``, when given) and
    ``edge_index`` (:func:`check_graph_inputs`), ``y`` (:func:`check_labels`), the masks (:func:`check_masks`) and
    finite features. The one check of :meth:`ForwardGNN.fit <fwdlearn.graphs.nn.forward_gnn.ForwardGNN.fit>` and
    :func:`~fwdlearn.graphs.methods.bp.train_node_classifier`.

    Raises:
        ValueError / TypeError: naming the attribute, what was found and the fix.
    """
    check_one_graph(data, "training a node classifier")
    x, _ = check_graph_inputs(data, dtype)
    check_labels(getattr(data, "y", None), x.shape[0])
    check_masks(data, "data")
    check_finite_tensor("data.x", x)
    return data


def _link_planetoid_raw(name: str) -> Path | None:
    """Link ``<FWDLEARN_DATA_DIR>/Planetoid/<Name>/raw/*`` into ``<cache>/Planetoid/<Name>/raw``; the folder linked
    from, or ``None`` when there is none. Links (or copies) made before from another folder, or from this one when
    it has gone, are removed first with the processed copy made from them, so ``FWDLEARN_DATA_DIR`` as it is now
    decides where the data come from (files PyG downloaded into the cache stay)."""
    title = PLANETOID[name]
    root = data_dir()
    source = root / "Planetoid" / title / "raw" if root is not None else None
    if source is not None and not source.is_dir():
        source = None
    target_root = cache_dir("Planetoid")
    _unlink_other_source(target_root / title / "raw", source)
    if source is None:
        return None
    files = [source / f"ind.{name}.{part}" for part in _PLANETOID_FILES]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise DataNotFoundError(f"{name}: {source} lacks {', '.join(missing)}; it needs the 8 files "
                                f"ind.{name}.{{{','.join(_PLANETOID_FILES)}}} of the Planetoid release")
    raw = target_root / title / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    changed = False
    for f in files:
        link = raw / f.name
        if link.is_symlink() and _link_target(link) == f:
            continue
        if not link.is_symlink() and link.exists() and link.read_bytes() == f.read_bytes():
            continue  # a copy (file systems without symlinks) of the same file
        link.unlink(missing_ok=True)  # a link into a data folder that moved, or another folder's copy
        changed = True
        try:
            os.symlink(f, link)
        except OSError:  # file systems without symlinks
            with writing(link):  # (a full disk named no file)
                link.write_bytes(f.read_bytes())
    stamp = raw / _SOURCE_STAMP  # the raw files' sizes and times: a file rewritten in place is seen too
    source_state = "\n".join(f"{f} {f.stat().st_size} {f.stat().st_mtime_ns}" for f in files)
    # (UTF-8, whatever the locale: a stamp written in Windows' code page differs, and the processed copy is rebuilt)
    if not stamp.exists() or stamp.read_text(encoding="utf-8", errors="replace") != source_state:
        changed = True
    if changed:  # PyG's processed copy was made from other raw files
        shutil.rmtree(target_root / title / "processed", ignore_errors=True)
        with writing(stamp):  # (a full disk said "[Errno 28] No space left on device", naming no file)
            stamp.write_text(source_state, encoding="utf-8")
    return source


def _link_target(link: Path) -> Path:
    r"""The path the symbolic link ``link`` holds. Windows' ``os.readlink`` gives an absolute one with the prefix
    ``\\?\`` (``\\?\UNC\`` for a share), dropped here: with it, a link into the data folder named another folder, so
    every load there linked the raw files again and rebuilt PyG's processed copy."""
    target = os.readlink(link)
    if target.startswith("\\\\?\\UNC\\"):
        target = "\\\\" + target[len("\\\\?\\UNC\\"):]
    elif target.startswith("\\\\?\\"):
        target = target[len("\\\\?\\"):]
    return Path(target)


def _unlink_other_source(raw: Path, source: Path | None) -> None:
    """Remove the files of the cache's ``raw`` folder that were linked or copied from a folder other than ``source``
    (``None``: from any folder), and then the processed copy made from them."""
    made = {}  # file name -> the file it was linked or copied from
    stamp = raw / _SOURCE_STAMP
    if stamp.exists():
        for line in stamp.read_text(encoding="utf-8", errors="replace").splitlines():
            linked = Path(line.rsplit(" ", 2)[0])
            made[linked.name] = linked
    for link in raw.glob("ind.*"):
        if link.is_symlink():
            made[link.name] = _link_target(link)
    if not made or (source is not None and all(f.parent == source for f in made.values())):
        return
    for file_name in made:
        (raw / file_name).unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    shutil.rmtree(raw.parent / "processed", ignore_errors=True)


def _planetoid(name: str, root: str | Path | None, download: bool, quiet: bool = True) -> Data:
    """Planetoid ``name`` from ``root``, or from ``FWDLEARN_DATA_DIR``'s raw files through the cache; processes
    loading it at once (``torchrun`` ranks on first use) take turns, as PyG builds its processed copy in place."""
    title = PLANETOID[name]
    if root is not None and not download and not _has_raw(Path(root) / title / "raw", name):
        raise _raw_not_found(name, title, Path(root) / title / "raw", root)  # (before the lock makes a folder there)
    with taking_turns((Path(root) if root is not None else cache_dir("Planetoid")) / f".{title}.lock"):
        return _load_planetoid(name, title, root, download, quiet)


def _has_raw(raw: Path, name: str) -> bool:
    return all((raw / f"ind.{name}.{p}").exists() for p in _PLANETOID_FILES)


def _raw_not_found(name: str, title: str, raw: Path, root: str | Path | None) -> DataNotFoundError:
    """The error for Planetoid ``name`` without its raw files in ``raw``: given a ``root``, that folder is named;
    else ``FWDLEARN_DATA_DIR``."""
    if root is not None:
        return DataNotFoundError(f"{name}: the Planetoid raw files were not found in root={root} (looked in {raw}); "
                                 f"give a root holding {title}/raw/ind.{name}.* (the 8 files of kimiyoung/planetoid's "
                                 "data/ folder), or let PyG download them there: download=True (needs internet)")
    where = data_dir()
    hint = (f"FWDLEARN_DATA_DIR={where} has no Planetoid/{title}/raw" if where is not None
            else "FWDLEARN_DATA_DIR is not set")
    return DataNotFoundError(f"{name}: the Planetoid raw files were not found ({hint}; looked in {raw}). "
                             f"Set FWDLEARN_DATA_DIR to a folder holding Planetoid/{title}/raw/ind.{name}.* (the 8 "
                             f"files of kimiyoung/planetoid's data/ folder), or let PyG download them: --download "
                             f"(download=True in Python; needs internet).")


#: the ``(module, name)`` pairs the Planetoid release's raw pickles name: NumPy arrays, SciPy CSR matrices, lists and
#: the graph's ``defaultdict`` (written by Python 2, ``__builtin__``; also as NumPy 2 and newer SciPy name them, and
#: as Python 3 writes them again: its protocol 2 writes bytes through ``_codecs.encode``, and protocol 5, Python
#: 3.14's default, writes an array through ``_frombuffer``; both files were refused as naming an unknown object)
_PLANETOID_GLOBALS = frozenset({
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct",
                                                                                                   "scalar")),
    *((module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")),
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((module, "csr_matrix") for module in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse")),
    *((module, name) for module in ("__builtin__", "builtins") for name in ("list", "object")),
    ("collections", "defaultdict"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
})


class _Unexpected(pickle.UnpicklingError):
    """A Planetoid raw pickle names an object outside :data:`_PLANETOID_GLOBALS`, or builds a NumPy dtype NumPy does
    not write (the message: what it holds, in words)."""


class _PlanetoidUnpickler(pickle._Unpickler):
    """An unpickler that builds what :data:`_PLANETOID_GLOBALS` names and refuses anything else, and refuses a NumPy
    dtype whose state (``BUILD``) makes it other than NumPy writes it: ``dtype('O')`` given the flags of a type that
    holds no object built an "object array" from the file's bytes, their values taken for object pointers (a crafted
    ``ind.cora.graph`` passed and crashed the process as PyG read it). Python's own unpickler, as only it lets a
    ``BUILD`` be checked; whatever it cannot read is not given to PyG either (:func:`_check_planetoid_pickles`)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        if (module, name) not in _PLANETOID_GLOBALS:
            import _compat_pickle

            # (Python 3's names)
            raise _Unexpected(f"a Python object of type {_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}")
        return super().find_class(module, name)

    def _load_build(self) -> None:
        import numpy as np

        from fwdlearn.fit import plain_numpy_dtype

        built = self.stack[-2]  # (the object the state on top of the stack is given to)
        pickle._Unpickler.load_build(self)
        if isinstance(built, np.dtype) and not plain_numpy_dtype(built):
            raise _Unexpected(f"a NumPy dtype with a state NumPy does not write ({built.str}, flags {built.flags})")

    dispatch[pickle.BUILD[0]] = _load_build


def _check_planetoid_pickles(paths) -> None:
    """Refuse a Planetoid raw file (``ind.<name>.*``, a pickle) that names a Python object the release's files do not
    hold (:data:`_PLANETOID_GLOBALS`): PyG unpickles them whole (``pickle.load``), and an object's unpickling can run
    code the file carries. Each is read here first by :class:`_PlanetoidUnpickler` (all but ``ind.<name>.test.index``,
    which PyG reads as text); a file it cannot read (cut short, not a pickle) is refused as a damaged raw file, naming
    it: given to PyG's unpickler, a file this one fails on part way was read on, past what was checked.

    Raises:
        InputError: naming the file and the object (or what stopped its reading), and the fix.
    """
    import warnings

    for path in map(Path, paths):
        if path.name.endswith(".test.index"):  # (text, never unpickled)
            continue
        try:
            with open(path, "rb") as handle, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (SciPy's word on its old module names, an error where warnings are)
                _PlanetoidUnpickler(handle, encoding="latin1").load()
        except _Unexpected as error:  # (named as the data folder's file, where the cache's raw/ links to it)
            raise InputError(f"{path.resolve()} names {error}, which no Planetoid raw file holds (they hold NumPy "
                             "arrays, SciPy CSR matrices, lists and a defaultdict); fwdlearn does not let PyG unpickle "
                             "it (that could run code the file carries): copy the 8 ind.<name>.* files of "
                             "kimiyoung/planetoid's data/ folder again") from None
        except OSError:  # (the disk's or the permissions' problem, not the file's: reported as such by the caller)
            raise
        except Exception as error:  # noqa: BLE001 - cut short, not a pickle: refused here, naming the file (Python's
            # unpickler's "error: unpack requires a buffer of 4 bytes", of a file cut short, named none of the 8)
            said = " ".join(str(error).split())[:200]
            said = ("struct.error" if isinstance(error, struct.error) else type(error).__name__) + (f": {said}" if
                                                                                                   said else "")
            raise InputError(f"the Planetoid raw files in {path.resolve().parent} could not be read ({path.name}: "
                             f"{said}); it is truncated or damaged: copy the 8 ind.<name>.* files of "
                             "kimiyoung/planetoid's data/ folder again") from None


def _checked_planetoid() -> type:
    """PyG's ``Planetoid`` whose processing first checks the raw pickles (:func:`_check_planetoid_pickles`), also
    those it has just downloaded."""
    from torch_geometric.datasets import Planetoid

    def process(self) -> None:
        _check_planetoid_pickles(self.raw_paths)
        Planetoid.process(self)

    return type("Planetoid", (Planetoid,), {"process": process, "__module__": Planetoid.__module__,
                                            "__doc__": Planetoid.__doc__})


def _load_planetoid(name: str, title: str, root: str | Path | None, download: bool, quiet: bool) -> Data:
    Planetoid = _checked_planetoid()

    source = None  # the data folder the cache's raw files link to
    if root is not None:
        folder = Path(root)
    else:
        source = _link_planetoid_raw(name)
        folder = cache_dir("Planetoid")
    raw = folder / title / "raw"
    have_raw = _has_raw(raw, name)
    if not have_raw and not download:
        raise _raw_not_found(name, title, raw, root)
    processed = folder / title / "processed"
    try:
        with loader_log(quiet), weights_only_loads():  # (PyG's "Processing..." / "Done!" the first time)
            return Planetoid(str(folder), name=title)[0]
    except InputError:  # (a raw file refused: _check_planetoid_pickles names it)
        raise
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:  # a damaged processed copy: rebuild it
        if not any(processed.glob("data*.pt")):  # none was written: the raw files failed to read
            raise _unreadable(name, source or raw, error, have_raw, processed) from None
        if not _writable(processed):
            raise _unwritable(name, processed, error) from None
        warn(f"PyG's processed copy {processed} could not be read ({type(error).__name__}); rebuilding it")
        shutil.rmtree(processed)
    except Exception as error:  # raised while fetching or reading the raw files
        raise _unreadable(name, source or raw, error, have_raw, processed) from None
    try:
        with loader_log(quiet), weights_only_loads():  # (PyG's "Processing..." / "Done!" the first time)
            return Planetoid(str(folder), name=title)[0]
    except InputError:
        raise
    except Exception as error:  # the processed copy was rebuilt from the raw files: they are what is damaged
        raise _unreadable(name, source or raw, error, have_raw, processed) from None


def _writable(folder: Path) -> bool:
    """Whether a file can be written into ``folder`` (created if missing): tried, as permissions, a read-only file
    system or an immutable folder may say no even to root."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _unwritable(name: str, processed: Path, error: BaseException) -> UsageError:
    detail = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
    return UsageError(f"{name}: PyG cannot write its processed copy into {processed}: the folder is not writable "
                      f"({detail}); omit root= to use fwdlearn's cache (raw files from FWDLEARN_DATA_DIR), or give a "
                      "writable root= folder")


def _no_room(error: BaseException, folder: Path) -> OSError | None:
    """``error`` when it is a full disk's (or a used-up quota's) ``OSError``, named ``folder`` if it names no file and
    marked as a write's: a loader writing its processed copy met it, and said it of the data or the download."""
    if not isinstance(error, OSError) or error.errno not in NO_ROOM:
        return None
    if error.filename is None:
        error.filename = str(folder)
    error.fwdlearn_writing = True  # type: ignore[attr-defined]
    return error


def _unreadable(name: str, raw: Path, error: BaseException, had_raw: bool, processed: Path) -> Exception:
    """The error of a Planetoid load that failed: a processed folder PyG cannot write, damaged raw files when they
    were there (named in ``raw``: the data folder the cache links to, where they can be repaired), else the
    download. A disk with no room for the processed copy is that disk's problem, not the raw files': the
    ``OSError`` itself, naming the folder (it was "the raw files could not be read (OSError: [Errno 28] No space left
    on device); one of them is truncated or damaged: copy the 8 ind.<name>.* files ... again")."""
    if _no_room(error, processed) is not None:
        return error
    if had_raw and not _writable(processed):
        return _unwritable(name, processed, error)
    detail = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    if not had_raw:
        return InputError(f"PyG could not download the Planetoid raw files into {raw} ({detail}); check the internet "
                          "connection, or copy the 8 ind.<name>.* files of kimiyoung/planetoid's data/ folder there")
    return InputError(f"the Planetoid raw files in {raw} could not be read ({detail}); one of them is truncated or "
                      "damaged: copy the 8 ind.<name>.* files of kimiyoung/planetoid's data/ folder again")


def _downloadable(kind: str, arg: str, root: str | Path | None, download: bool, quiet: bool = True) -> Data:
    import torch_geometric.datasets as pyg_datasets

    cls = getattr(pyg_datasets, _DOWNLOADABLE[kind])
    folder = Path(root) if root is not None else cache_dir(_DOWNLOADABLE[kind])
    processed = folder / _pyg_folder(kind, arg) / "processed"
    if not download and not any(processed.glob("data*.pt")):
        raise DataNotFoundError(f"{kind}:{arg} is not in {folder}; PyG's {cls.__name__} downloads it: pass "
                                f"download=True (--download) on a machine with internet")
    try:
        with (taking_turns(folder / f".{_pyg_folder(kind, arg)}.lock"), loader_log(quiet),  # (ranks loading at once)
              weights_only_loads()):
            return stored_only(cls, processed, download)(str(folder), name=arg)[0]
    except DataNotFoundError:  # (another variant's processed copy only: named as such)
        raise
    except pickle.UnpicklingError:  # (torch's safe reader refused a file: not the name's or the connection's problem)
        raise refused_processed_copy(f"{kind}:{arg}", processed) from None
    except Exception as error:
        if _no_room(error, processed) is not None:  # (not the name's or the connection's problem)
            raise
        raise InputError(f"{kind}:{arg} could not be loaded by torch_geometric.datasets.{cls.__name__} "
                           f"({type(error).__name__}: {error}); check the name and the internet connection") from error


def refused_processed_copy(name: str, processed: Path) -> InputError:
    """The error of a load whose processed copy in ``processed`` torch read tensors-only and refused
    (:func:`~fwdlearn.data.weights_only_loads`): PyG's own message ran to a dozen lines on how to load it unsafely, and
    the load was blamed on the name and the internet connection."""
    return InputError(f"{name}: PyG's processed copy in {processed} holds a Python object fwdlearn does not unpickle "
                      "(that could run code the file carries), or is damaged; remove that folder and load the data "
                      "set again with download=True (--download)")


def stored_only(cls: type, processed: Path, download: bool = False) -> type:
    """``cls``, a PyG data set class, that downloads nothing where its processed copy (``processed/data*.pt``) is
    there, the one file PyG then reads: PyG downloads whenever a raw file is missing, though it reads no raw file
    once the processed copy is made (a kept processed copy alone needed the internet, even without ``download=True``;
    ``CityNetwork`` names a raw file, ``<city>.json``, that its download does not write, so it downloaded its city
    again on every load).

    Where the folder holds another variant's copy only (CitationFull's ``data_directed.pt``, kept by PyG's
    ``to_undirected=False``, or another PyG version's file) and not the one this load reads, it downloads when
    ``download`` and else raises :class:`~fwdlearn.data.DataNotFoundError` naming the file (PyG's missing raw file
    was blamed on the name and the internet connection)."""
    if not any(Path(processed).glob("data*.pt")):
        return cls

    def fetch(self) -> None:
        missing = [Path(path).name for path in self.processed_paths if not Path(path).exists()]
        if not missing:  # the processed copy PyG reads is there: nothing to download
            return
        if download:
            return cls.download(self)
        kept = ", ".join(sorted(path.name for path in Path(self.processed_dir).glob("data*.pt")))
        raise DataNotFoundError(
            f"{cls.__name__} {getattr(self, 'name', '')!r}: this variant is not stored: {self.processed_dir} holds "
            f"{kept} (another variant's processed copy, e.g. PyG's to_undirected=False or another PyG version's), "
            f"not {', '.join(missing)}, the one this load reads, and the raw files to build it are not in "
            f"{self.raw_dir}; pass download=True (--download) on a machine with internet, or give a root= holding "
            "it")

    return type(cls.__name__, (cls,), {"download": fetch, "__module__": cls.__module__, "__doc__": cls.__doc__})


def _pyg_folder(kind: str, name: str) -> str:
    """The folder PyG's dataset class keeps ``name`` in (Amazon: ``Photo``; Coauthor: ``CS`` / ``Physics``)."""
    lower = name.lower()
    if kind == "amazon":
        return lower.capitalize()
    if kind == "coauthor":
        return "CS" if lower == "cs" else lower.capitalize()
    return lower


def graph_files(name: str) -> list[Path]:
    """The local files :func:`load_graph` reads for ``name`` that a user gave: a ``city:<path>``'s road file(s), a
    ``file:<path>``'s file; none for a named data set (its files live in the data folder and the cache) or a path
    that is not there."""
    from fwdlearn.graphs.data.citynet import road_path

    if is_saved_graph(name):
        path = road_path(name.strip()[len(_FILE_PREFIX):].strip())
        return [path] if path.is_file() else []
    if not name.strip().lower().startswith("city:"):
        return []
    from fwdlearn.graphs.data.road_readers import road_files

    try:
        return road_files(road_path(name.strip()[len("city:"):]))
    except (OSError, ValueError):  # (not there: load_graph says so)
        return []


def graph_identity(name: str) -> str | tuple:
    """What the checked graph ``name`` (:func:`check_graph_name`) stands for: its kind and the files it is read
    from, where they are (one file under two paths, ``file:g.pt`` and ``file:./g.pt`` or a link to it, is one
    graph), or the name for a graph of no local file."""
    files = graph_files(name)
    return (name.partition(":")[0], *(file.resolve() for file in files)) if files else name


def is_saved_graph(name: str) -> bool:
    """Whether ``name`` is a graph saved in a file, ``file:<path>`` (:func:`load_saved_graph`)."""
    return isinstance(name, str) and name.strip().lower().startswith(_FILE_PREFIX)


def is_city(name: str) -> bool:
    """Whether ``name`` is a City-Networks source (``city:``, ``synthetic-city``, ``citynetwork:``)."""
    return name.strip().lower().startswith(_CITY_PREFIXES)


def labels_by_hops(name: str) -> bool:
    """Whether ``load_graph(name, hops=...)`` labels the nodes by eccentricity within ``hops`` (``city:``,
    ``synthetic-city``; a ``citynetwork:`` graph has PyG's own labels, and every other graph its own)."""
    return is_city(name) and not name.strip().lower().startswith("citynetwork:")


def has_public_split(name: str) -> bool:
    """Whether ``load_graph(name, split="public")`` has a split to give (Planetoid, KarateClub, cities), known from
    the name alone (a ``file:<path>`` graph has one when its file holds the masks: ``split="auto"`` looks)."""
    lower = name.strip().lower()
    return lower in PLANETOID or lower == "karate" or is_city(lower)


def check_city_network(name: str) -> str:
    """``name`` of ``citynetwork:<name>``, lower-cased, when it is one of :data:`CITY_NETWORKS`.

    Raises:
        ValueError: another name (it was taken for data not downloaded yet: "pass download=True", then PyG's bare
            ``AssertionError`` blamed on the internet connection).
    """
    if name.strip().lower() not in CITY_NETWORKS:
        raise ValueError(f"citynetwork:{name} is not a City-Networks city; torch_geometric.datasets.CityNetwork has "
                         f"{', '.join(CITY_NETWORKS)} (e.g. citynetwork:paris). Build the same kind of data from "
                         "another road network with city:<path> (an OSMnx GraphML of the city)")
    return name.strip().lower()


def check_graph_name(name: str) -> str:
    """Refuse a name :func:`load_graph` does not know, without loading anything (a bench checks its graphs
    before its first timing); returns the name as one spelling of each graph: stripped, the kind in lower case and
    a size as a plain number (``" Karate"`` -> ``karate``, ``synthetic-city:050`` -> ``synthetic-city:50``; a path
    kept as given)."""
    if not isinstance(name, str):  # (None or a Path failed with "'PosixPath' object has no attribute 'strip'")
        fix = f": a road network file is named f'city:{{path}}', here 'city:{name}'" if isinstance(name, os.PathLike) \
            else ""
        raise TypeError(f"the graph name must be a str, one of {', '.join(GRAPH_NAMES)}; got {type(name).__name__}"
                        f"{fix}")
    lower = name.strip().lower()
    kind, _, arg = lower.partition(":")
    if not (is_city(lower) or lower in PLANETOID or lower == "karate" or kind == "sbm"
            or (kind in _DOWNLOADABLE and arg) or kind == "file"):
        # (a path given alone, my_graph.pt, is named as file:<path>: a road file as city:<path>)
        hint = f"; a graph saved with torch.save(data, path) is named file:<path>, here 'file:{name.strip()}'" if \
            lower.endswith((".pt", ".pth")) or os.path.isfile(name.strip()) else ""
        close = "" if hint else did_you_mean(lower, [graph.split("[")[0].split(":<")[0] for graph in GRAPH_NAMES])
        raise ValueError(f"unknown graph {name!r}; choose one of {', '.join(GRAPH_NAMES)}{close}{hint}")
    given = name.strip().partition(":")[2].strip()
    if kind == "file":
        if not given:
            raise ValueError("file: needs a path: the file a torch_geometric.data.Data was saved to, "
                             "torch.save(data, 'my_graph.pt'), named file:my_graph.pt")
        return f"file:{given}"  # (the path kept as given)
    if kind == "citynetwork":
        check_city_network(given)
    if kind in _DOWNLOADABLE and arg.strip() not in DOWNLOADABLE_NAMES[kind]:  # (it was taken for data not downloaded
        names = DOWNLOADABLE_NAMES[kind]  # yet: "pass download=True", then PyG's bare AssertionError blamed on the net)
        raise ValueError(f"{kind}:{given} is not a data set of torch_geometric.datasets.{_DOWNLOADABLE[kind]}, which "
                         f"has {', '.join(names)} (e.g. {kind}:{names[0]})")
    if not given:
        return kind
    return f"{kind}:{int(given)}" if given.isdigit() else f"{kind}:{given}"


def load_graph(name: str, root: str | Path | None = None, split: str = "public", seed: int = 0,
               download: bool = False, quiet: bool = True, hops: int = 16, graph_seed: int | None = None,
               labels: bool = True) -> Data:
    """Load a node-classification graph with masks and ``num_classes`` (``labels=False``: a graph for link
    prediction, whose saved file needs no labels).

    Args:
        name: one of ``cora``, ``citeseer``, ``pubmed``, ``karate``, ``citationfull:<name>``,
            ``amazon:<name>``, ``coauthor:<name>``, ``city:<path>``, ``synthetic-city[:N]``,
            ``citynetwork:<name>``, ``sbm[:N]`` (case-insensitive for the fixed names), ``file:<path>`` (a
            :class:`~torch_geometric.data.Data` saved with ``torch.save``: :func:`load_saved_graph`; ``root``,
            ``download``, ``hops`` and ``graph_seed`` do not apply to it).
        root: where PyG keeps the data set (default: the fwdlearn cache, with Planetoid raw files
            linked from ``FWDLEARN_DATA_DIR``).
        split: ``"public"`` (the data set's own split; a saved graph's masks), ``"random"`` (64/16/20 drawn from
            ``seed``) or ``"auto"`` (the public split when the data set has one, else random).
        seed: seed of the random split (and of generated graphs, unless ``graph_seed``).
        download: let PyG download a data set that is not available locally (needs internet).
        quiet: no progress bars while building city networks.
        hops: the hop radius of the eccentricity labels (where :func:`labels_by_hops`).
        graph_seed: seed of a generated graph (``sbm``, ``synthetic-city``), so that several splits (``seed``) of one
            graph can be drawn; ``None``: ``seed``. A generated city's own split is then drawn from ``seed``.
        labels: ``False``: the caller reads no node label nor node split, as link prediction (which splits the edges):
            a saved graph (``file:<path>``) then needs ``x`` and ``edge_index`` only, and comes back with them checked
            and its other attributes as saved (``y``, masks, ``num_classes``, if any, neither read nor checked; no
            split drawn, ``split`` and ``seed`` unused). The other sources have their labels and come back as with
            ``True``.

    Raises:
        ValueError: unknown name or split; masks that overlap.
        DataNotFoundError: the files are not there (the message says where it looked and what to do).
        UsageError: a Planetoid ``root`` that PyG cannot write its ``processed/`` copy into.
    """
    seed = check_seed(seed)  # (1.5 failed in manual_seed, after Cora had loaded)
    labels = check_bool("labels", labels)  # (labels="False" would read them)
    if graph_seed is not None:
        graph_seed = check_seed(graph_seed, "graph_seed")
    if split not in ("public", "random", "auto"):
        raise ValueError(f"unknown split {split!r}; use 'public' (the data set's own), 'random' (64/16/20 with a seed) "
                         "or 'auto' (public when there is one)")
    check_graph_name(name)
    if is_saved_graph(name):
        return load_saved_graph(name.strip()[len(_FILE_PREFIX):].strip(), split=split, seed=seed,
                                labels=labels)
    if split == "auto":
        split = "public" if has_public_split(name) else "random"
    key = name.strip()
    lower = key.lower()
    drawn = graph_seed if graph_seed is not None else seed  # (numpy said "expected non-negative integer")
    if lower.partition(":")[0] in ("synthetic-city", "sbm") and drawn < 0:
        raise ValueError(f"{key} is drawn by numpy's generator, which takes no negative seed: give "
                         f"{'graph_seed' if graph_seed is not None else 'seed'} >= 0, got {drawn}")
    root = Path(root).expanduser() if root is not None else None  # (PyG expands ~ itself; the checks here did not)
    if is_city(lower):
        from fwdlearn.graphs.data.citynet import CITY_SPLIT, load_city

        generated = graph_seed is not None and lower.startswith("synthetic-city")
        data = load_city(key, root=root, seed=graph_seed if generated else seed, hops=hops, quiet=quiet,
                         download=download)
        if generated and graph_seed != seed:  # the city's own split, drawn from the split seed
            data.train_mask, data.val_mask, data.test_mask = random_split(data.num_nodes, seed, CITY_SPLIT)
    elif lower in PLANETOID:
        data = _planetoid(lower, root, download, quiet)
    elif lower == "karate":
        from torch_geometric.datasets import KarateClub

        data = KarateClub()[0]
        rest = (~data.train_mask).nonzero().flatten()
        rest = rest[torch.randperm(rest.numel(), generator=torch.Generator().manual_seed(seed), device="cpu")]
        data.val_mask = torch.zeros(data.num_nodes, dtype=torch.bool, device=rest.device)  # (the graph's device)
        data.test_mask = torch.zeros(data.num_nodes, dtype=torch.bool, device=rest.device)
        data.val_mask[rest[: rest.numel() // 2]] = True
        data.test_mask[rest[rest.numel() // 2:]] = True
    elif lower.partition(":")[0] == "sbm":
        from fwdlearn.graphs.data.synthetic import contextual_sbm

        size = lower.partition(":")[2]
        try:
            n = int(size) if size else 2000
        except ValueError:
            raise ValueError(f"sbm:N needs an integer number of nodes N, got {size!r}") from None
        data = contextual_sbm(n, signal=SBM_SIGNAL, seed=seed if graph_seed is None else graph_seed)
    else:  # citationfull:<name>, amazon:<name>, coauthor:<name> (check_graph_name let nothing else through)
        kind, _, arg = key.partition(":")
        data = _downloadable(kind.lower(), arg.strip(), root, download, quiet)
    if split == "random":
        data.train_mask, data.val_mask, data.test_mask = random_split(data.num_nodes, seed)
    elif getattr(data, "train_mask", None) is not None and data.train_mask.dim() > 1:
        data.train_mask, data.val_mask, data.test_mask = (data.train_mask[:, 0], data.val_mask[:, 0],
                                                          data.test_mask[:, 0])
    elif getattr(data, "train_mask", None) is None:
        raise ValueError(f"{name} has no public split; use split='random' (64/16/20 drawn from seed)")
    data.y = data.y.long().view(-1)
    data.num_classes = int(data.y.max()) + 1
    data.x = data.x.float()
    return check_masks(data, name)


def _pyg_data_globals() -> list:
    """PyG's classes a saved ``Data`` (or ``HeteroData``, then refused by name) holds besides tensors and plain values:
    its storages and the attribute classes it names, allowed by name for the read; those PyG allows itself on import
    (``Data``, ``HeteroData``) are left out, as leaving the block would disallow them again."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import BaseStorage, EdgeStorage, GlobalStorage, NodeStorage

    allowed = torch.serialization.get_safe_globals()
    return [cls for cls in (Data, HeteroData, DataEdgeAttr, DataTensorAttr, GlobalStorage, NodeStorage, EdgeStorage,
                            BaseStorage) if cls not in allowed]


def _one_way_edges(edge_index: Tensor, num_nodes: int) -> int:
    """How many edges ``(u, v)`` of ``edge_index`` have no reverse edge ``(v, u)``."""
    if edge_index.numel() == 0:
        return 0
    keys = edge_index[0] * num_nodes + edge_index[1]
    return int((~torch.isin(edge_index[1] * num_nodes + edge_index[0], keys)).sum())


def _saved_as_data(data, file: Path) -> Data:
    """``data``, what ``file`` holds, when it is one homogeneous :class:`Data`; else an :class:`InputError` naming
    what it holds and how to save a graph."""
    if isinstance(data, HeteroData):
        types = ", ".join(map(repr, data.node_types)) or "none"
        raise InputError(f"{file} holds a HeteroData (node types {types}); file:<path> reads one homogeneous graph: "
                         "save data.to_homogeneous() (node features of one width across the types), or a Data of one "
                         "node type and its edges")
    if isinstance(data, Data):
        return data
    if isinstance(data, tuple) and len(data) in (2, 3) and isinstance(data[0], (dict, Data)) \
            and (data[1] is None or isinstance(data[1], dict)):  # ((data, slices), or PyG 2.4+'s (dict, slices, cls))
        offsets = next((value for value in (data[1] or {}).values() if isinstance(value, Tensor)), None)
        graphs = 1 if data[1] is None else offsets.numel() - 1 if offsets is not None else None
        count = "its graphs" if graphs is None else f"{graphs} graph{'' if graphs == 1 else 's'}"
        raise InputError(f"{file} holds a PyG data set's processed file (the (data, slices) an InMemoryDataset writes "
                         f"to processed/data.pt, of {count}); file:<path> reads "
                         "one Data saved with torch.save: load the data set with its class and save a graph of it, "
                         "torch.save(dataset[0], path)")
    if isinstance(data, (list, tuple)) and data and all(isinstance(item, Data) for item in data):
        raise InputError(f"{file} holds a {type(data).__name__} of {len(data)} graphs; file:<path> reads one graph: "
                         "save one of them, torch.save(graphs[0], path)")
    if isinstance(data, dict) and ("x" in data or "edge_index" in data):
        raise InputError(f"{file} holds a dict (keys {', '.join(map(str, data))}), not a torch_geometric.data.Data: "
                         "save it as one, torch.save(Data(**d), path) (from torch_geometric.data import Data)")
    raise InputError(f"{file} holds a {type(data).__name__}, not a torch_geometric.data.Data; file:<path> reads a "
                     "graph saved with torch.save(data, path), data a Data with x, edge_index and y")


#: the way out of a node task's refusal of a graph without labels (it named only "set data.y")
_LINKS_NEED_NO_LABELS = ("link prediction reads none: graph train --task link, "
                         "load_graph('file:<path>', labels=False) in Python")


def _saved_labels(y, num_nodes: int) -> Tensor:
    """The class ids ``data.y`` of a saved graph as an int64 vector (integer ids of any width, a ``[num_nodes, 1]``
    column); float or multi-column labels refused, naming the fix."""
    if y is None:
        raise ValueError("data.y, one class id per node, is missing: file:<path> trains node classification, so the "
                         f"graph needs labels ({_LINKS_NEED_NO_LABELS}): set data.y (int64 class ids 0..C-1, -1 for an "
                         "unlabelled node)")
    if isinstance(y, Tensor) and y.dim() == 2 and y.shape[0] == num_nodes and y.shape[1] > 1:
        one_hot = not (y.dtype.is_complex) and bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())
        raise ValueError(f"data.y must hold one class id per node; got shape {list(y.shape)}"
                         + (" of one-hot rows: data.y = data.y.argmax(dim=1)" if one_hot else
                            " (several targets per node: fwdlearn's graph models classify each node into one class)"))
    if isinstance(y, Tensor) and (y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool):
        whole = y.dtype != torch.bool and not y.dtype.is_complex and bool((y == y.round()).all())
        raise ValueError(f"data.y must hold integer class ids; got {y.dtype}"
                         + ("; its values are whole numbers: data.y = data.y.long()" if whole or y.dtype == torch.bool
                            else " values that are not whole numbers (regression targets? fwdlearn's graph models "
                                 "classify nodes): give int64 class ids 0..C-1"))
    if isinstance(y, Tensor) and y.dim() == 2 and y.shape[1] == 1:
        y = y.view(-1)
    if isinstance(y, Tensor) and not y.dtype.is_floating_point:
        y = y.long()
    y = check_labels(y, num_nodes)
    if not bool((y >= 0).any()):
        raise ValueError("data.y labels no node (every class id is negative, i.e. unlabelled; "
                         f"{_LINKS_NEED_NO_LABELS}): give the labelled nodes their class ids 0..C-1")
    return y


def load_saved_graph(path: str | Path, split: str = "auto", seed: int = 0, labels: bool = True) -> Data:
    """Load a node-classification graph of your own, a :class:`~torch_geometric.data.Data` saved with
    ``torch.save(data, path)``: what ``load_graph("file:<path>")`` and the commands' ``--data file:<path>`` read
    (``labels=False``: a graph for link prediction, which needs no labels: ``graph train --task link``).

    A relative ``path`` is looked up in the working directory, then under ``FWDLEARN_DATA_DIR`` (as ``city:<path>``).
    The file is read tensors-only (``torch.load(weights_only=True)`` with PyG's data classes allowed by name), so
    reading it runs no code it may carry: an attribute of another Python type is refused, naming the type.

    The graph needs float features ``x`` (of any float dtype, or integer: read as float32, the models' dtype),
    ``edge_index`` and integer class ids ``y`` of 2 classes at least (-1, or any negative id, for an unlabelled
    node, which no split holds); with ``labels=False`` (link prediction)
    ``x`` and ``edge_index`` only. It is used as saved: a directed edge list
    (an edge without its reverse) is warned about, naming ``torch_geometric.utils.to_undirected``, as the GNNs
    pass messages along each edge from source to target only (PyG's Planetoid graphs, and ForwardGNN's results,
    list both directions of every edge); link prediction reads every edge as undirected in any case. Each call warns
    as Python shows a warning (under its default filter once per line of your code that loads the file); a command
    that loads the file for each split (``graph train --splits N``) shows it once.

    Args:
        path: the file.
        split: ``"public"`` (the file's ``train_mask`` / ``val_mask`` / ``test_mask``), ``"random"`` (64/16/20 of the
            labelled nodes, drawn from ``seed``; masks in the file are replaced, with a warning) or ``"auto"`` (the
            file's masks when it holds all three, else random: a ``train_mask`` alone, as PyG's ``KarateClub`` has,
            is replaced with a warning).
        seed: seed of the random split.
        labels: ``False``: the caller reads no node label nor node split, as link prediction (which splits the
            edges; the masks warning's fix, ``--split public``, is refused there): ``y``, the masks and
            ``num_classes`` are neither required nor checked (kept as saved, when the file holds them), no split is
            drawn (``split`` and ``seed`` unused) and no masks warning is given; a graph without labels, or with
            no labelled node, loads.

    Returns:
        the graph, with float32 ``x``, boolean masks, int64 ``y`` and an integer ``num_classes`` (the file's
        ``num_classes`` when it holds one that covers ``y``, else ``max(y) + 1``); with ``labels=False``, with float32
        ``x`` and int64 ``edge_index``, its other attributes as saved (:func:`label_classes` counts the classes of its
        ``y``, if it has usable labels).

    Raises:
        FileNotFoundError: no such file.
        InputError: the file is not a saved ``Data``, holds another Python object (a numpy array, a ``Batch``, the
            attribute cache a PyG transform left: each named with its fix), or its graph lacks or mis-shapes what
            node classification reads (the message names the attribute and the fix).
    """
    from fwdlearn.errors import reading
    from fwdlearn.fit import load_torch
    from fwdlearn.graphs.data.citynet import road_path

    seed = check_seed(seed)
    labels = check_bool("labels", labels)
    if split not in ("public", "random", "auto"):
        raise ValueError(f"unknown split {split!r}; use 'public' (the file's masks), 'random' (64/16/20 with a seed) "
                         "or 'auto' (the file's masks when it holds all three)")
    given = str(path).strip()
    if not given:
        raise ValueError("file: needs a path: the file a torch_geometric.data.Data was saved to, "
                         "torch.save(data, 'my_graph.pt'), named file:my_graph.pt")
    file = road_path(given)
    if not file.exists():
        looked = [str(Path(given).expanduser().resolve())]
        if data_dir() is not None and not file.is_absolute():
            looked.append(str(data_dir() / given))
        raise FileNotFoundError(f"graph file {given!r} not found (looked for {' and '.join(looked)}); file:<path> "
                                "names a torch_geometric.data.Data saved with torch.save(data, path)")
    if file.is_dir():
        raise InputError(f"{file} is a folder; file:<path> names one file, a torch_geometric.data.Data saved with "
                         "torch.save(data, path)")
    hint = ("file:<path> reads a torch_geometric.data.Data saved with torch.save(data, path), its attributes tensors "
            "and plain values (numbers, strings, lists): make any other attribute a tensor or drop it, and save it "
            "again")
    with reading(file, "a saved graph", hint), torch.serialization.safe_globals(_pyg_data_globals()):
        try:  # (a NumPy attribute: load_torch's refusal, with the fix in a saved graph's words)
            data = load_torch(file, map_location="cpu", numpy_fix=_NUMPY_ATTRIBUTE_FIX)
        except pickle.UnpicklingError as error:
            raise _refused_pyg_object(file, error) or error
    data = _saved_as_data(data, file)
    try:
        data, replaced = _checked_saved_graph(data, split, seed, file, labels)
    except InputError:
        raise
    except (ValueError, TypeError) as error:  # (a check's message, in data.<name> words: the file's graph to fix)
        raise InputError(f"{file}: {error}; then save it again, torch.save(data, path)") from None
    one_way = _one_way_edges(data.edge_index, data.num_nodes)
    if one_way:
        edges = data.edge_index.shape[1]
        warn(f"{file}: data.edge_index is directed ({one_way} of its {edges} edges have no "
             "reverse edge); the GNNs pass messages along each edge from source to target only, "
             "while PyG's Planetoid graphs (and ForwardGNN's results) list both directions of every edge. If "
             "each edge is meant both ways, save the graph undirected: data.edge_index = torch_geometric.utils."
             "to_undirected(data.edge_index, num_nodes=data.num_nodes); if the directions are meant, this "
             "warning can be ignored (link prediction reads every edge as undirected in any case)")
    if len(replaced) == 3:
        warn(f"{file} holds its own train/val/test masks; the random split (--split random, "
             "graph train's default, and the only split of bench graph and quickstart; split='random') replaces them "
             "with 64/16/20 of the labelled nodes drawn from the seed: pass --split public to graph train "
             "(split='public') to use the file's")
    elif replaced:  # (PyG's KarateClub has a train_mask alone: its own split needs all three)
        missing = [key for key in ("train_mask", "val_mask", "test_mask") if key not in replaced]
        warn(f"{file} holds {' and '.join(replaced)} but no {' and no '.join(missing)}, so it "
             "has no split of its own: a random split replaces it with 64/16/20 of the labelled nodes drawn "
             "from the seed; to train on the file's split, save the graph with the three boolean masks")
    return data


#: what a saved graph's NumPy attribute, refused by :func:`~fwdlearn.fit.load_torch`, is to become
_NUMPY_ATTRIBUTE_FIX = ("make each NumPy attribute a tensor, data.<name> = torch.as_tensor(data.<name>), or drop it, "
                        "and save it again")


def _refused_pyg_object(file: Path, error: pickle.UnpicklingError) -> InputError | None:
    """The refusal of a saved graph the tensors-only reader refused (``error``, :func:`~fwdlearn.fit.load_torch`'s)
    for an object PyG or NumPy put in it, naming the file and the fix, or None for any other."""
    # (PyG's classes were "a Python object ... fwdlearn's own models and checkpoints hold none"; a NumPy array is
    # named by load_torch, with the fix it was given)
    refused = getattr(error, "refused", None) or ""
    if refused == "torch_geometric.data.storage.AttrType":  # (a defaultdict of AttrType: weights_only builds none)
        return InputError(f"cannot read {file} as a saved graph: its Data carries PyG's cache of which attributes are "
                          "node or edge attributes (left by a transform such as ToUndirected or ToSparseTensor, or by "
                          "data.subgraph), which the tensors-only reader cannot rebuild; save a copy without it, "
                          "torch.save(data.clone(), path)")
    if refused == "torch_geometric.data.batch.DynamicInheritanceGetter":  # (how a Batch pickles its class)
        return InputError(f"{file} holds a torch_geometric.data.Batch (graphs collated by a DataLoader or "
                          "Batch.from_data_list), which the tensors-only reader cannot rebuild; file:<path> reads one "
                          "graph: save one of them, torch.save(batch.get_example(0), path)")
    if refused.partition(".")[0] == "numpy":
        return InputError(f"cannot read {file} as a saved graph: {error}")
    return None


def _checked_saved_graph(data: Data, split: str, seed: int, file: Path,
                         labels: bool = True) -> tuple[Data, list[str]]:
    """The saved ``data`` checked and completed as :func:`load_graph` gives a graph (float32 ``x``, int64 ``y`` and
    ``edge_index``, the masks of ``split``, ``num_classes``; ``labels=False``: float32 ``x`` and int64 ``edge_index``
    alone, the rest as saved), and the masks of the file a random split replaced.
    Raises ``ValueError`` / ``TypeError`` naming the attribute, in ``data.<name>`` words."""
    x = getattr(data, "x", None)
    if isinstance(x, Tensor) and not x.dtype.is_complex and x.dtype != torch.float32:
        x = x.float()  # (counts, 0/1 features, float64 ones: read as float32, as load_graph reads every data set's and
        # the models' parameters are; float64 failed in every command with "data.x is torch.float64 but the model's
        # parameters are torch.float32", a traceback)
    check_features(x)
    rows = x.shape[0]
    check_num_nodes(data, rows)
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        sparse = (" (the graph holds data.adj_t: PyG's ToSparseTensor made it; save the graph without that transform, "
                  "or its edges read back, data.edge_index = torch_geometric.utils.to_edge_index(data.adj_t)[0]"
                  ".flip(0))") if getattr(data, "adj_t", None) is not None else ""
        raise ValueError("data.edge_index, the [2, num_edges] tensor of the graph's edges, is missing" + sparse)
    edge_index = check_edge_index(edge_index, rows).long()
    if not labels:  # (link prediction: y, the masks and num_classes are not read; a graph without labels was refused)
        data.x, data.edge_index = x, edge_index
        return data, []
    y = _saved_labels(getattr(data, "y", None), rows)
    keys = ("train_mask", "val_mask", "test_mask")
    present = [key for key in keys if getattr(data, key, None) is not None]
    masked = len(present) == len(keys)
    auto = split == "auto"
    if auto:  # (a train_mask alone, as PyG's KarateClub has, is no split: that was refused as public)
        split = "public" if masked else "random"
    if split == "public" and not masked:
        missing = [key for key in keys if key not in present]
        raise InputError(f"{file} holds no {' and no '.join(missing)}: its own split (split='public', --split "
                         "public) needs train_mask, val_mask and test_mask; use split='random' (--split random: "
                         "64/16/20 of the labelled nodes drawn from the seed), or save the graph with the three "
                         "boolean masks")
    data.x, data.edge_index, data.y = x, edge_index, y
    if split == "random":  # (the labelled nodes only: an unlabelled node, y < 0, is in no split)
        labelled = (y >= 0).nonzero().flatten()
        parts = random_split(labelled.numel(), seed)
        if not all(bool(part.any()) for part in parts):  # (was "data.val_mask selects no node ... save it again", of
            # a mask the file does not hold)
            # (split='auto', as influence graph and bench influence load, takes the masks of a file that holds all
            # three; --split public is graph train's alone: bench graph and quickstart draw random splits only)
            use = (" (used when the file holds all three)" if auto else
                   " and use split='public' (--split public to graph train; bench graph and quickstart draw random "
                   "splits only)")
            raise InputError(f"{file} labels only {labelled.numel()} node(s) (data.y >= 0), too few for a random "
                             "64/16/20 split with a validation and a test node (5 at least): label more nodes, or save "
                             f"the graph with its own train_mask, val_mask and test_mask{use}")
        for key, part in zip(keys, parts):
            mask = torch.zeros(rows, dtype=torch.bool)
            mask[labelled[part]] = True
            setattr(data, key, mask)
    check_masks(data, "data")
    classes = int(y.max()) + 1
    saved = _saved_num_classes(data)
    if saved is not None and not (isinstance(saved, int) and not isinstance(saved, bool) and saved >= classes):
        raise ValueError(f"data.num_classes is {saved!r} but data.y holds class ids up to {classes - 1}: set "
                         f"data.num_classes = {classes} (or more, for classes no node has), or drop it")
    data.num_classes = saved if saved is not None else classes
    if data.num_classes < 2:  # (was ForwardGNN's "num_classes must be an int >= 2, got 1", naming neither y nor a fix)
        raise ValueError(f"data.y holds one class (every labelled node's id is {classes - 1}): a node classifier "
                         "needs 2 classes at least; give the nodes their class ids 0..C-1, or set data.num_classes "
                         "= C for classes no node has")
    return data, present if split == "random" else []


def _saved_num_classes(data):
    """``data.num_classes`` as saved, a tensor of one integer read as that int (``torch.tensor(7)``, or
    ``tensor([7])`` where a Batch collated it: was "is tensor([7]) but"); None when the graph has none."""
    saved = getattr(data, "num_classes", None)
    if isinstance(saved, Tensor) and saved.numel() == 1 and not (saved.dtype.is_floating_point or saved.dtype.is_complex
                                                                  or saved.dtype == torch.bool):
        saved = int(saved)
    return saved


def label_classes(data) -> int | None:
    """How many classes the node labels of ``data`` (a graph of :func:`load_graph`, ``labels=False`` too) have, as
    :func:`load_graph` counts them (the graph's ``num_classes`` when it is an int that covers ``y``, else
    ``max(y) + 1``), or None when it has none a node classifier could train on: no ``y``, no labelled node (every
    id negative), or targets that are not one class id per node (float, several columns). What the influence
    commands give their untrained models on a saved graph loaded without labels."""
    try:
        y = _saved_labels(getattr(data, "y", None), int(data.num_nodes))
    except (ValueError, TypeError):
        return None
    classes = int(y.max()) + 1
    saved = _saved_num_classes(data)
    return saved if isinstance(saved, int) and not isinstance(saved, bool) and saved >= classes else classes


def lacks_labels(name: str) -> bool:
    """Whether ``name`` is a saved graph (``file:<path>``) without labels a node classifier could train on
    (:func:`label_classes`); every other source has its labels. For a command's refusal of a training it cannot do
    on such a graph, naming what it can (the graph is read again, its warnings not shown twice)."""
    import warnings

    if not is_saved_graph(name):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return label_classes(load_graph(name, labels=False)) is None
