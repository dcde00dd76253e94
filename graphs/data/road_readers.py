"""Readers that turn road-network files into one plain :class:`RoadGraph`.

Supported: OSMnx GraphML, a node-coordinate + edge-list pair (``.cnode`` / ``.cedge``, as the
California road network), plain edge lists (``u v [length]`` per line, integer ids in any
numbering, an optional header or size line), Matrix Market (the values of a ``real`` or ``integer``
matrix are the road lengths, as the third column of an edge list) and the PyGSP Minnesota ``.mat``
(sparse ``A``, coordinates ``xy``). A single file's format is recognised by its **content**
(:func:`sniff_format`), not its name: an OSMnx GraphML saved as ``.gxl`` reads as GraphML, and a
headerless 1-based edge list saved as ``.mtx`` (as the DIMACS10 road graphs are distributed) reads
as an edge list. Text files may start with a UTF-8 byte-order mark. Errors on lines that cannot be
parsed, on road lengths that are negative or infinite and on coordinates that are not finite name the
file and the line (GraphML: the junction or road, by its ids in the file).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fwdlearn.errors import InputError

__all__ = ["RoadGraph", "read_road_graph", "road_files", "sniff_format", "FORMATS"]

FORMATS = ("graphml", "matrix-market", "mat", "edge-list")


@dataclass
class RoadGraph:
    """A road graph before processing (edges may be directed, duplicated, disconnected).

    Attributes:
        num_nodes: number of junctions.
        edges: ``[E, 2]`` int64 node pairs.
        coords: ``[N, 2]`` float (x, y) or ``None``.
        length: ``[E]`` road lengths or ``None`` (then Euclidean from ``coords``, else 1).
        node_attrs: per-node string attributes (e.g. ``street_count``, ``landuse``).
        edge_attrs: per-edge string attributes (e.g. ``highway``, ``lanes``, ``oneway``, ``maxspeed``).
        source: the file it was read from (named in warnings), or ``None``.
    """

    num_nodes: int
    edges: np.ndarray
    coords: np.ndarray | None = None
    length: np.ndarray | None = None
    node_attrs: dict[str, list[str | None]] = field(default_factory=dict)
    edge_attrs: dict[str, list[str | None]] = field(default_factory=dict)
    source: Path | None = None


def _first(value: str | None) -> str | None:
    """OSMnx stores merged attributes as a list literal ``"['a', 'b']"``; keep the first item."""
    if value is None:
        return None
    value = str(value)
    if value.startswith("["):
        try:
            items = ast.literal_eval(value)
            return str(items[0]) if items else None
        except (ValueError, SyntaxError):
            return value
    return value


def _number(path: Path, what: str, key: str, value: str) -> float:
    """``value`` of the attribute ``key`` of ``what`` (a node or edge) as a float, else an error naming all three."""
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{path}: {what} has {key}={value!r}, which is not a number; give a number or leave the "
                         "attribute out") from None


def _check_coordinates(path: Path, what: str, x: float, y: float) -> None:
    """Refuse a junction coordinate that is NaN or infinite (it made every ``x`` / ``y`` feature NaN), naming
    ``what`` (a line, a junction)."""
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InputError(f"{path}{what} has the coordinates ({x}, {y}), which are not finite; give every junction "
                         "finite x and y")


def _check_length(path: Path, what: str, length: float, missing: bool = False) -> float:
    """``length``, unless it is negative or infinite (or NaN where a length cannot be ``missing``): then an error
    naming ``what`` (a line, a road) by its ids in the file."""
    if np.isinf(length) or length < 0 or (np.isnan(length) and not missing):
        raise InputError(f"{path}{what} has the length {length}; give every road a finite length >= 0")
    return length


def _read_graphml(path: Path) -> RoadGraph:
    import networkx as nx

    try:
        graph = nx.read_graphml(path)
    except Exception as error:  # ElementTree / networkx errors carry the line when known
        raise ValueError(f"{path}: cannot read as GraphML ({error}); expected an OSMnx GraphML export") from error
    ids = {node: i for i, node in enumerate(graph.nodes)}
    placed = [("x" in attrs and "y" in attrs) for _, attrs in graph.nodes(data=True)]
    coords = np.zeros((len(ids), 2)) if any(placed) else None  # (none: read like an edge list, without coordinates)
    node_attrs: dict[str, list[str | None]] = {"street_count": [], "landuse": []}
    for node, attrs in graph.nodes(data=True):
        if coords is not None:
            if not placed[ids[node]]:
                raise InputError(f"{path}: node {node!r} has no 'x'/'y' attributes, while {sum(placed):,} of the "
                                 f"{len(placed):,} junctions have them; give every junction its coordinates x and y, "
                                 "or none")
            x, y = (_number(path, f"node {node!r}", key, attrs[key]) for key in ("x", "y"))
            _check_coordinates(path, f": node {node!r}", x, y)
            coords[ids[node]] = x, y
        for key in node_attrs:
            node_attrs[key].append(_first(attrs.get(key)))
        if node_attrs["street_count"][-1] is not None:
            _number(path, f"node {node!r}", "street_count", node_attrs["street_count"][-1])
    edges, lengths = [], []
    edge_attrs: dict[str, list[str | None]] = {k: [] for k in ("highway", "lanes", "oneway", "reversed", "maxspeed")}
    for u, v, attrs in graph.edges(data=True):
        edges.append((ids[u], ids[v]))
        length = _first(attrs.get("length"))
        what = f"edge ({u!r}, {v!r})"
        lengths.append(_check_length(path, f": {what}", _number(path, what, "length", length), missing=True)
                       if length is not None else np.nan)
        for key in edge_attrs:
            edge_attrs[key].append(_first(attrs.get(key)))
    length_array = np.asarray(lengths, dtype=np.float64)
    node_attrs = {k: v for k, v in node_attrs.items() if any(x is not None for x in v)}
    edge_attrs = {k: v for k, v in edge_attrs.items() if any(x is not None for x in v)}
    return RoadGraph(len(ids), np.asarray(edges, dtype=np.int64).reshape(-1, 2), coords,
                     None if np.isnan(length_array).all() else length_array, node_attrs, edge_attrs)


def _integer(token: str) -> int | None:
    """A node id token as an ``int`` (``"7"``, or an integral float such as ``"7.0"`` or ``"7.000e+00"`` as
    ``numpy.savetxt`` writes), else ``None``."""
    try:
        return int(token)
    except ValueError:
        pass
    try:
        value = float(token)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _table(path: Path, columns: int, what: str, optional: int = 0, ids: tuple[int, ...] = ()
           ) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of the whitespace-separated rows with at least ``columns`` numeric fields (and the
    next ``optional`` fields numeric where a row has them), the fields at the positions ``ids`` integer node ids;
    skips comments, a UTF-8 byte-order mark and a header: a first row whose node ids are not numbers (a first row
    with numeric ids and another field that is not a number is a road or junction with a typo, refused by line)."""
    rows = []
    with open(path, encoding="utf-8-sig", errors="replace") as handle:  # (a BOM made the first row a 'header')
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0].startswith(("#", "%")):
                continue
            if len(fields) < columns:
                raise ValueError(f"{path}, line {number}: expected {what}, got {line.strip()!r}{_commas(line)}")
            rows.append((number, fields))
    out = []
    for index, (number, fields) in enumerate(rows):
        not_numbers = {i for i, f in enumerate(fields[:columns + optional]) if not _is_number(f)}
        if not_numbers and index == 0 and (not_numbers & set(ids) or not ids):  # a header line
            continue
        if not not_numbers <= set(ids):
            raise ValueError(f"{path}, line {number}: expected {what}, got {' '.join(fields)!r}{_commas(fields[0])}")
        bad_id = next((fields[i] for i in ids if _integer(fields[i]) is None), None)
        if bad_id is not None:  # a name, or a number with a fraction
            raise InputError(f"{path}, line {number}: expected {what} with integer node ids, got {bad_id!r} in "
                             f"{' '.join(fields)!r}{_commas(bad_id) or '; number the junctions (0..N-1 or 1..N)'}")
        out.append((number, fields))
    return out


def _commas(text: str) -> str:
    """The fix for a row of comma-separated fields (a CSV export: its one field failed as 'expected u v', or its
    first row was skipped as a header), else ``""``."""
    if "," not in text:
        return ""
    return ("; the fields are separated by commas, and a road file's by spaces or tabs: write it with spaces "
            "(e.g. tr ',' ' ' < edges.csv > edges.txt)")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _relabel(raw_ids: np.ndarray) -> tuple[dict[int, int], int]:
    unique = np.unique(raw_ids)
    return {int(v): i for i, v in enumerate(unique)}, len(unique)


def _read_node_edge_pair(node_file: Path, edge_file: Path) -> RoadGraph:
    nodes = _table(node_file, 3, "'NodeID x y'", ids=(0,))
    ids: dict[int, int] = {}
    lines: dict[int, int] = {}
    coords = np.empty((len(nodes), 2), dtype=np.float64)
    for i, (number, r) in enumerate(nodes):
        node = _integer(r[0])
        if node in ids:
            raise ValueError(f"{node_file}: node {node} is listed twice (lines {lines[node]} and {number}); each "
                             "NodeID must appear once")
        ids[node], lines[node] = i, number
        coords[i] = float(r[1]), float(r[2])
        _check_coordinates(node_file, f", line {number}: node {node}", *coords[i])
    rows = _table(edge_file, 4, "'EdgeID StartNodeID EndNodeID Length'", ids=(1, 2))
    edges, lengths = [], []
    for number, r in rows:
        u, v = _integer(r[1]), _integer(r[2])
        if u not in ids or v not in ids:
            raise ValueError(f"{edge_file}: edge {r[0]} joins node {u if u not in ids else v}, "
                             f"which is not in {node_file}")
        edges.append((ids[u], ids[v]))
        # (NaN: no length; the junctions' coordinates give one)
        lengths.append(_check_length(edge_file, f", line {number}: the road {u}-{v}", float(r[3]), missing=True))
    return RoadGraph(len(ids), np.asarray(edges, dtype=np.int64).reshape(-1, 2), coords, np.asarray(lengths))


def _read_matrix_market(path: Path) -> RoadGraph:
    """A Matrix Market file: entry ``(i, j)`` the road ``i -> j``; the entries' values, in a ``real`` or ``integer``
    matrix, its length (as the third column of an edge list: the same file without its banner reads alike)."""
    import scipy.io
    import scipy.sparse

    try:
        field = scipy.io.mminfo(path)[4]
        matrix = scipy.sparse.coo_matrix(scipy.io.mmread(path))  # (an 'array' file is a dense ndarray)
    except Exception as error:
        raise ValueError(f"{path}: cannot read as Matrix Market ({error})") from error
    if field == "complex":
        raise InputError(f"{path}: a complex Matrix Market matrix; road lengths are real numbers: write it as "
                         "'real' (or 'pattern', without lengths)")
    edges = np.stack([matrix.row, matrix.col], axis=1).astype(np.int64)
    length = None
    if field != "pattern":
        length = np.asarray(matrix.data, dtype=np.float64)
        for k in np.flatnonzero(~np.isfinite(length) | (length < 0))[:1]:  # (1-based, as in the file)
            _check_length(path, f": the entry ({matrix.row[k] + 1}, {matrix.col[k] + 1})", float(length[k]))
    return RoadGraph(max(matrix.shape), edges, None, length)


def _is_size_line(first: list[str], rest: list[list[str]]) -> bool:
    """Whether ``first``, a first row, counts the ``rest``: ``N M`` (2 fields) or ``n n m``
    (3 fields, a Matrix Market size line) whose edge count is the number of rows after it and whose node count is
    at least the number of distinct ids in them (it may count isolated junctions too)."""
    try:
        counts = [int(f) for f in first]
    except ValueError:
        return False
    if len(counts) == 2:
        nodes, edges = counts
    elif len(counts) == 3 and counts[0] == counts[1]:
        nodes, edges = counts[0], counts[2]
    else:
        return False
    return edges == len(rest) and nodes >= len({_integer(f) for r in rest for f in r[:2]})


def _read_edge_list(path: Path) -> RoadGraph:
    """``u v [length]`` per line, ``u`` and ``v`` integer junction ids (another token is refused, naming the line);
    ids are relabelled ``0..N-1`` (so 0- and 1-based files read alike). Every road gives a finite length >= 0, or
    none does (a road without one, or with NaN, is refused by line: an edge list has no coordinates to fall back on).

    A first line is a size line, skipped, when it counts the rows after it (:func:`_is_size_line`: ``N M`` above
    ``u v`` or ``u v length`` rows, ``n n m`` above ``u v`` rows (a headerless Matrix Market) or ``u v length``
    rows); otherwise it is a road like the others."""
    rows = _table(path, 2, "'u v [length]'", optional=1, ids=(0, 1))
    if len(rows) > 1 and _is_size_line(rows[0][1], [r for _, r in rows[1:]]):
        rows = rows[1:]
    with_length = [(number, r) for number, r in rows if len(r) >= 3]
    if with_length and len(with_length) < len(rows):
        number, r = next((number, r) for number, r in rows if len(r) < 3)
        given, g = with_length[0]
        first, rest = rows[0][1], len(rows) - 1
        if given == rows[0][0] and len(with_length) == 1 and len(first) == 3 and first[0] == first[1]:
            raise InputError(f"{path}, line {given}: {' '.join(first)!r} reads as a size line 'n n m', but {rest:,} "
                             f"roads follow it, not {first[2]} (a copy cut short? copy it again)")
        raise InputError(f"{path}, line {number}: the road {' '.join(r)!r} has no length, while line {given} gives "
                         f"one ({' '.join(g)!r}); give every road a length (u v length), or none")
    raw = np.array([[_integer(r[0]), _integer(r[1])] for _, r in rows], dtype=np.int64).reshape(-1, 2)
    ids, n = _relabel(raw.ravel())
    edges = np.vectorize(ids.__getitem__, otypes=[np.int64])(raw) if raw.size else raw
    length = None
    if with_length:
        length = np.array([_check_length(path, f", line {number}: the road {r[0]}-{r[1]}", float(r[2]))
                           for number, r in rows])
    return RoadGraph(n, edges.reshape(-1, 2), None, length)


def _read_mat(path: Path) -> RoadGraph:
    import scipy.io
    import scipy.sparse

    try:
        content = scipy.io.loadmat(path)
    except Exception as error:
        raise ValueError(f"{path}: cannot read as a MATLAB file ({error})") from error
    if "A" not in content:
        raise ValueError(f"{path}: expected a sparse adjacency matrix 'A' (and coordinates 'xy'); found "
                         f"{sorted(content)}")
    matrix = scipy.sparse.coo_matrix(content["A"])  # sparse or dense
    matrix.eliminate_zeros()  # (a zero stored in a sparse A is no road: it was read as one)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{path}: the adjacency matrix 'A' must be square; got {matrix.shape[0]} x {matrix.shape[1]}")
    n = matrix.shape[0]
    coords = None
    if "xy" in content:
        xy = content["xy"]
        xy = xy.toarray() if scipy.sparse.issparse(xy) else xy
        try:
            coords = np.asarray(xy, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{path}: 'xy' must be a numeric [N, 2] array of junction coordinates; got "
                             f"{type(xy).__name__} of dtype {getattr(xy, 'dtype', '?')}") from None
        if coords.shape == (2, n):  # one junction per column: the transpose
            coords = coords.T
        if coords.shape != (n, 2):
            raise InputError(f"{path}: 'xy' must be [N, 2] for the N={n} junctions of 'A'; got {coords.shape} "
                             "(one x, y row per junction, in the order of A's rows)")
        for i in np.flatnonzero(~np.isfinite(coords).all(axis=1))[:1]:
            _check_coordinates(path, f": 'xy' row {i + 1} (junction {i + 1} of 'A')", *coords[i])
    return RoadGraph(n, np.stack([matrix.row, matrix.col], axis=1).astype(np.int64), coords)


def road_files(source: str | Path) -> list[Path]:
    """The file(s) a source names: a file, or the road file inside a folder (the first kind found of GraphML,
    .cnode/.cedge, .mat, .mtx, .edges, .txt; two files of that kind are refused, naming them: which one is meant is
    not the folder's to say); both files of a ``.cnode`` / ``.cedge`` pair, checked to exist."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix in (".cnode", ".cedge"):
            pair = [path.with_suffix(".cnode"), path.with_suffix(".cedge")]
            for f in pair:
                if not f.exists():
                    raise FileNotFoundError(f"{f} is missing; a node/edge pair needs both .cnode and .cedge")
            return pair
        return [path]
    if path.is_dir():
        for pattern in ("*.graphml", "*.gxl", "*.xml", "*.cnode", "*.cedge", "*.mat", "*.mtx", "*.edges", "*.txt"):
            found = sorted(path.glob(pattern))
            if len(found) > 1:
                raise InputError(f"{path} holds {len(found)} road files of one kind ({', '.join(f.name for f in found)}"
                                 f"); name the one to read, e.g. {found[0]}")
            if found:
                return road_files(found[0])
        raise FileNotFoundError(f"{path} holds no road file (*.graphml, *.cnode + *.cedge, *.mat, *.mtx, *.edges, "
                                "*.txt)")
    raise FileNotFoundError(f"road network {path} does not exist; give a GraphML file, a .cnode/.cedge pair, "
                            f"an edge list (.edges, .mtx, .txt) or a folder holding one")


def sniff_format(path: str | Path) -> str:
    """The format of a road file, read from its first bytes: one of :data:`FORMATS`.

    GraphML (an XML document with a ``<graphml`` element in its first MiB), Matrix Market (the ``%%MatrixMarket``
    banner), MATLAB (the ``MATLAB`` header of a v5 ``.mat`` file; a v4 file has no header, so it is
    binary content named ``.mat`` that scipy recognises as v4), else a whitespace-separated edge list.

    Raises:
        ValueError: binary content that is none of these, or a gzip-compressed file (naming the file and the fix).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"MATLAB"):
        return "mat"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"%%MatrixMarket"):
        return "matrix-market"
    if text.startswith(b"<") and _has_graphml_element(path, head):
        return "graphml"
    if b"\x00" in head and path.suffix.lower() == ".mat" and _matlab_v4(path):
        return "mat"
    if head.startswith(b"\x1f\x8b"):
        raise InputError(f"{path}: a gzip-compressed file; decompress it first (gunzip -k '{path}') and give the "
                         "decompressed file")
    if b"\x00" in head:
        raise ValueError(f"{path}: binary content that is not a road file fwdlearn reads (GraphML, Matrix Market, "
                         "a MATLAB .mat with 'A' and 'xy', or a text edge list 'u v [length]')")
    if text.startswith(b"<"):
        raise ValueError(f"{path}: an XML document without a <graphml> element; export the road network as GraphML "
                         "(osmnx.save_graphml)")
    return "edge-list"


def _has_graphml_element(path: Path, head: bytes, within: int = 1 << 20) -> bool:
    """Whether a ``<graphml`` element opens within the first ``within`` bytes of the XML file ``path`` (``head``: its
    first bytes; a long prolog of comments or a DOCTYPE can push the element past them)."""
    if b"<graphml" in head or len(head) < 4096:
        return b"<graphml" in head
    with open(path, "rb") as handle:
        return b"<graphml" in handle.read(within)


def _matlab_v4(path: Path) -> bool:
    """Whether scipy takes ``path`` for a MATLAB v4 file (which has no header to recognise)."""
    from scipy.io.matlab import matfile_version

    try:
        return matfile_version(path)[0] == 0
    except Exception:  # noqa: BLE001 - any failure: not a file scipy reads as v4
        return False


_READERS = {"graphml": _read_graphml, "matrix-market": _read_matrix_market, "mat": _read_mat,
            "edge-list": _read_edge_list}


def read_road_graph(source: str | Path) -> RoadGraph:
    """Read any supported road file (or a folder holding one) into a :class:`RoadGraph`.

    A ``.cnode`` / ``.cedge`` pair is recognised by its suffixes; a single file by its content (:func:`sniff_format`).
    """
    files = road_files(source)
    path = files[0]
    if path.suffix in (".cnode", ".cedge"):
        road = _read_node_edge_pair(files[0], files[1])
    else:
        road = _READERS[sniff_format(path)](path)
    road.source = path
    if road.edges.shape[0] == 0:  # (an empty file, often a copy cut short, read as an edge list of no roads)
        named = " / ".join(str(f) for f in files) if path.suffix in (".cnode", ".cedge") else str(path)
        empty = all(f.stat().st_size == 0 for f in files)
        raise InputError(f"{named}: {'an empty file' if empty else 'no roads in it'}; a road file lists at least one "
                         "road (a copy cut short? copy it again)")
    return road
