"""City-Networks-style builder: real road files, lengths, labels, cache, error messages."""

import os
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from fwdlearn.graphs import build_city_network, load_city, synthetic_city
from fwdlearn.graphs.data.citynet import local_eccentricity

DATA = os.environ.get("FWDLEARN_DATA_DIR")
needs_data = pytest.mark.skipif(not DATA, reason="FWDLEARN_DATA_DIR is unset; real road data is not available")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))


def assert_connected_undirected(data):
    edges = data.edge_index.t().tolist()
    assert set(map(tuple, edges)) == {(v, u) for u, v in edges}
    g = nx.Graph(edges)
    assert g.number_of_nodes() == data.num_nodes and nx.is_connected(g)


@needs_data
def test_westminster_graphml_is_connected_undirected_with_equal_classes():
    data = build_city_network(Path(DATA) / "roads" / "westminster" / "graph.graphml")
    assert_connected_undirected(data)
    counts = torch.bincount(data.y, minlength=10)
    assert len(counts) == 10 and int(counts.max() - counts.min()) <= 1
    assert data.x.shape == (data.num_nodes, 23) and len(data.feature_names) == 23  # documented width
    assert data.feature_names[:5] == ["x", "y", "street_count", "length", "speed"]
    assert int(data.train_mask.sum() + data.val_mask.sum() + data.test_mask.sum()) == data.num_nodes
    assert abs(int(data.train_mask.sum()) - round(0.1 * data.num_nodes)) <= 1
    cached = list((Path(os.environ["FWDLEARN_CACHE_DIR"]) / "citynet").glob("*.pt"))
    assert len(cached) == 1
    again = load_city("city:" + str(Path(DATA) / "roads" / "westminster"))
    assert torch.equal(again.y, data.y)


def test_eccentricity_is_within_the_induced_hop_ball():
    g = nx.random_geometric_graph(80, 0.2, seed=1)
    g = g.subgraph(max(nx.connected_components(g), key=len)).copy()
    g = nx.convert_node_labels_to_integers(g)
    rng = np.random.default_rng(0)
    for u, v in g.edges:
        g[u][v]["w"] = float(rng.uniform(0.5, 2.0))
    edges = np.array([(u, v) for u, v in g.edges] + [(v, u) for u, v in g.edges]).T
    weights = np.array([g[u][v]["w"] for u, v in edges.T])
    ecc = local_eccentricity(edges, weights, g.number_of_nodes(), hops=3, batch_pairs=200)
    for v in g.nodes:
        ball = nx.single_source_shortest_path_length(g, v, cutoff=3)
        lengths = nx.single_source_dijkstra_path_length(g.subgraph(ball), v, weight="w")
        assert ecc[v] == pytest.approx(max(lengths.values()), rel=1e-9)


def test_edge_list_with_coordinates_uses_given_lengths(tmp_path):
    # a path 0-1-2-3 whose given lengths disagree with the coordinates
    (tmp_path / "toy.cnode").write_text("NodeID x y\n0 0 0\n1 1 0\n2 2 0\n3 3 0\n4 9 9\n")
    (tmp_path / "toy.cedge").write_text("EdgeID Start End Length\n0 0 1 5.0\n1 1 2 1.0\n2 2 3 2.0\n")
    with pytest.warns(UserWarning, match=r"not connected: kept its largest component \(4 of 5 junctions; 1 dropped\)"), \
            pytest.warns(UserWarning, match=r"dropped feature\(s\) y"):  # all four junctions lie at y = 0
        data = build_city_network(tmp_path / "toy.cnode", hops=3, classes=2, split=(0.5, 0.25, 0.25))
    assert data.num_nodes == 4  # node 4 is isolated: not in the largest component
    assert torch.allclose(data.eccentricity, torch.tensor([8.0, 5.0, 6.0, 8.0]))
    # a plain edge list without lengths: unit lengths, eccentricity = hop eccentricity
    (tmp_path / "path.edges").write_text("# comment\n10 11\n11 12\n12 13\n")
    with pytest.warns(UserWarning, match="no edge lengths and no coordinates"), \
            pytest.warns(UserWarning, match=r"dropped feature\(s\) length"):  # every road has length 1
        plain = build_city_network(tmp_path / "path.edges", hops=3, classes=2, split=(0.5, 0.25, 0.25))
    assert torch.allclose(plain.eccentricity, torch.tensor([3.0, 2.0, 2.0, 3.0]))


def test_unparsable_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.edges"
    bad.write_text("1 2\n2 3\n3 x\n")
    with pytest.raises(ValueError, match=r"bad\.edges, line 3: expected 'u v \[length\]'"):
        build_city_network(bad)
    bad.write_text("0 1 2\n1 2 x\n2 3 4\n")  # a length that is not a number: named with its line, not unlocated
    with pytest.raises(ValueError, match=r"bad\.edges, line 2: expected 'u v \[length\]', got '1 2 x'"):
        build_city_network(bad)
    (tmp_path / "n.cnode").write_text("NodeID x y\n0 0 0\n1 oops 0\n")
    (tmp_path / "n.cedge").write_text("EdgeID a b l\n0 0 1 1.0\n")
    with pytest.raises(ValueError, match=r"n\.cnode, line 3: expected 'NodeID x y'"):
        build_city_network(tmp_path / "n.cnode")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_city_network(tmp_path / "missing.graphml")
    with pytest.raises(ValueError, match="unknown city source 'town:x'"):
        load_city("town:x")


def test_synthetic_city_has_the_osm_feature_layout_and_equal_classes():
    data = synthetic_city(400, seed=1, hops=6)
    assert_connected_undirected(data)
    assert data.x.shape[1] == 23
    counts = torch.bincount(data.y, minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    assert torch.equal(synthetic_city(400, seed=1, hops=6).x, data.x)


@pytest.mark.filterwarnings("ignore:the road graph is not connected")
def test_synthetic_city_labels_follow_the_street_density_and_are_learnt(one_torch_thread):
    """With one street spacing everywhere the 16-hop eccentricities differed by the jitter alone (1594 to 1879 m on
    2,500 junctions): the classes were noise, and every model, GCN or MLP, 2 to 8 layers, stayed near 0.14 test
    accuracy for chance 0.10 (a 2-layer GCN here: 0.15). The spacing now varies between districts."""
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs import ForwardGNN
    from fwdlearn.graphs.data.citynet import synthetic_road_graph

    data = synthetic_city(900, seed=1, hops=8)
    eccentricity = data.eccentricity
    assert float(eccentricity.max() / eccentricity.min()) > 1.5  # (1.24 with one spacing; now 4.05)
    seed_everything(0)
    model = ForwardGNN(data.num_features, data.num_classes, conv="gcn", hidden=32, layers=2, method="bp")
    assert model.fit(data, epochs=100, lr=1e-2, patience=None, quiet=True).test_accuracy > 0.25  # (0.34)
    # the spacing is drawn after the streets: a seed's streets are those it gave with one spacing
    road = synthetic_road_graph(100, seed=2)
    assert len(road.edges) == 165 and road.edges[-3:].tolist() == [[12, 23], [33, 44], [73, 84]]  # (its diagonals)


def _grid_edges(side):
    ids = np.arange(side * side).reshape(side, side)
    return np.concatenate([np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], 1),
                           np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], 1)])


@pytest.mark.filterwarnings("ignore:dropped feature")
def test_a_city_too_small_for_its_split_is_refused_naming_the_size_it_needs():
    """synthetic_city(4, hops=2, classes=2) came back with 0 train, 0 val and 4 test nodes, without an error."""
    with pytest.raises(ValueError, match=r"split=\(0.1, 0.1, 0.8\) of the 4 junctions of the largest connected "
                                         r"component leaves the train and val masks empty; this split needs a largest "
                                         r"connected component of at least 6 junctions: use a larger graph"):
        synthetic_city(4, hops=2, classes=2)
    data = synthetic_city(9, hops=2, classes=2)  # 3 x 3 junctions: the smallest grid that fits
    assert [int(data[f"{k}_mask"].sum()) for k in ("train", "val", "test")] == [1, 1, 7]


def test_an_empty_road_file_is_named(tmp_path):
    """An empty graph.graphml (a copy cut short) or an edge list of comments said 'the road graph has no edges',
    naming no file."""
    from fwdlearn.graphs.data.datasets import load_graph

    (tmp_path / "graph.graphml").write_text("")
    (tmp_path / "notes.edges").write_text("# only a comment\n")
    with pytest.raises(ValueError, match=r"graph\.graphml: an empty file; a road file lists at least one road \(a "
                                         r"copy cut short\? copy it again\)"):
        load_graph(f"city:{tmp_path / 'graph.graphml'}")
    with pytest.raises(ValueError, match=r"notes\.edges: no roads in it; a road file lists at least one road"):
        build_city_network(tmp_path / "notes.edges")


def test_formats_are_recognised_by_content_not_by_name(tmp_path):
    """A GraphML under another extension, a headerless 1-based edge list saved as .mtx (the DIMACS10 road graphs)
    with its size line, and a Matrix Market file with its banner all read as what they are."""
    g = nx.Graph()
    rng = np.random.default_rng(0)
    for i in range(36):
        g.add_node(str(i), x=str(i % 6 * 100 + rng.normal(0, 9)), y=str(i // 6 * 100 + rng.normal(0, 9)))
    for u, v in _grid_edges(6):
        g.add_edge(str(u), str(v), length=str(float(rng.uniform(50, 150))))
    nx.write_graphml(g, tmp_path / "city.graphml")
    (tmp_path / "city.gxl").write_bytes((tmp_path / "city.graphml").read_bytes())
    a = build_city_network(tmp_path / "city.graphml", hops=3, classes=4, cache=False)
    b = build_city_network(tmp_path / "city.gxl", hops=3, classes=4, cache=False)
    assert torch.equal(a.y, b.y) and torch.equal(a.x, b.x)

    edges = _grid_edges(7) + 1  # 1-based ids
    lines = [f"{49} {49} {len(edges)}"] + [f"{u} {v}" for u, v in edges]
    (tmp_path / "roads.mtx").write_text("\n".join(lines) + "\n")
    from fwdlearn.graphs.data.road_readers import read_road_graph, sniff_format

    assert sniff_format(tmp_path / "roads.mtx") == "edge-list"
    road = read_road_graph(tmp_path / "roads.mtx")
    assert road.num_nodes == 49 and road.edges.shape == (len(edges), 2) and road.edges.min() == 0
    (tmp_path / "banner.mtx").write_text("%%MatrixMarket matrix coordinate pattern general\n" + "\n".join(lines) + "\n")
    assert sniff_format(tmp_path / "banner.mtx") == "matrix-market"
    assert read_road_graph(tmp_path / "banner.mtx").edges.shape == (len(edges), 2)
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match=r"junk\.bin: binary content that is not a road file"):
        read_road_graph(tmp_path / "junk.bin")


def test_degenerate_labels_are_refused_and_degenerate_features_dropped(tmp_path):
    # a long path without lengths or coordinates: every 4-hop eccentricity is 4
    (tmp_path / "path.edges").write_text("\n".join(f"{i} {i + 1}" for i in range(60)) + "\n")
    with pytest.warns(UserWarning, match="no edge lengths"), \
            pytest.raises(ValueError, match=r"degenerate labels: the 4-hop eccentricity takes only 1 distinct value"):
        build_city_network(tmp_path / "path.edges", hops=4, classes=10, cache=False)
    # an edge list with lengths: 'street_count' is 2 everywhere but at the two ends -> dropped, not z-scored
    lengths = np.random.default_rng(0).uniform(1, 5, 2000)
    (tmp_path / "w.edges").write_text("\n".join(f"{i} {i + 1} {w:.4f}" for i, w in enumerate(lengths)) + "\n")
    with pytest.warns(UserWarning, match=r"dropped feature\(s\) street_count: constant on all but at most 2"):
        data = build_city_network(tmp_path / "w.edges", hops=3, classes=4, cache=False)
    assert data.feature_names == ["length"] and float(data.x.abs().max()) < 10


def test_two_way_and_parallel_roads_are_averaged_whatever_the_file_order():
    """Only the first edge of a pair was kept: its 'reversed' flag and length (a two-way street's two directions
    disagree on 'reversed') decided features and labels, so reordering the file changed 11.7 % of Westminster's
    labels. Pairs now take the mean over their roads, as the City-Networks generator does."""
    from fwdlearn.graphs.data.citynet import city_data
    from fwdlearn.graphs.data.road_readers import RoadGraph

    rng = np.random.default_rng(0)
    n = 60
    ring = np.stack([np.arange(n), (np.arange(n) + 1) % n], 1)
    chords = rng.integers(0, n, (40, 2))
    edges = np.concatenate([ring, ring[:, ::-1], chords])  # both directions of the ring: 'reversed' False / True
    length = np.concatenate([rng.uniform(1, 2, n), rng.uniform(1, 2, n), rng.uniform(1, 3, 40)])
    reversed_ = ["False"] * n + ["True"] * n + [str(bool(b)) for b in rng.integers(0, 2, 40)]
    highway = [str(h) for h in rng.choice(["primary", "residential", "service"], len(edges))]

    def build(order):
        road = RoadGraph(n, edges[order], coords=None, length=length[order],
                         edge_attrs={"reversed": [reversed_[i] for i in order], "highway": [highway[i] for i in order]})
        return city_data(road, hops=3, classes=4)

    forward, backward = build(np.arange(len(edges))), build(np.arange(len(edges))[::-1])
    assert torch.equal(forward.y, backward.y)
    torch.testing.assert_close(forward.x, backward.x)
    column = forward.feature_names.index("reversed=False")
    assert 0 < float(forward.x[:, column].min()) < 1  # a ring node's two-way street counts both directions


def test_local_eccentricity_takes_the_shortest_of_parallel_edges_and_needs_both_directions():
    edges = np.array([[0, 1, 0, 1, 1, 2], [1, 0, 1, 0, 2, 1]])
    length = np.array([5.0, 5.0, 3.0, 3.0, 1.0, 1.0])
    np.testing.assert_allclose(local_eccentricity(edges, length, 3, hops=2), [4.0, 3.0, 4.0])  # it summed: [9, 8, 9]
    with pytest.raises(ValueError, match="needs an undirected graph: give both directions of every edge"):
        local_eccentricity(np.array([[0, 1], [1, 2]]), np.ones(2), 3, hops=2)


@pytest.mark.parametrize("length, what", [("-1000", "a negative or infinite length"), ("inf", "a negative or infinite "
                                          "length"), ("nan", r"no length \(NaN\)")])
def test_bad_road_lengths_are_refused_naming_a_road(tmp_path, length, what):
    """A negative length was clamped to 1e-12 in the labels; one NaN discarded every length and warned, falsely,
    that the graph had none. An edge list's reader names the line (and the road by the file's ids); a RoadGraph
    built in Python is refused by city_data."""
    from fwdlearn.graphs.data.citynet import city_data
    from fwdlearn.graphs.data.road_readers import RoadGraph

    rows = [f"{i} {i + 1} {1.0 + i % 3}" for i in range(20)]
    rows[4] = f"4 5 {length}"
    path = tmp_path / "road.edges"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=rf"road\.edges, line 5: the road 4-5 has the length {float(length)}; give "
                                         r"every road a finite length >= 0"):
        build_city_network(path, hops=3, classes=2, split=(0.5, 0.25, 0.25))
    lengths = np.array([1.0 + i % 3 for i in range(20)])
    lengths[4] = float(length)
    road = RoadGraph(21, np.stack([np.arange(20), np.arange(1, 21)], axis=1), None, lengths)
    with pytest.raises(ValueError, match=rf"1 of 20 roads have {what}, e\.g\. the road 4-5"):
        city_data(road, hops=3, classes=2, split=(0.5, 0.25, 0.25))


def test_only_roads_without_any_length_take_the_distance_of_the_coordinates(tmp_path):
    """One road without a length made every road take the Euclidean distance of the coordinates (degrees in an OSMnx
    export, not the metres given), silently. Now a pair of junctions takes the mean of the lengths its roads give,
    only a pair with none the distance, and a warning counts them and names the file."""
    (tmp_path / "toy.cnode").write_text("NodeID x y\n0 0 0\n1 1 0\n2 2 0\n3 3 0\n")
    (tmp_path / "toy.cedge").write_text("EdgeID Start End Length\n0 0 1 5.0\n1 1 2 nan\n2 2 3 2.0\n3 3 2 nan\n")
    with pytest.warns(UserWarning, match=r"toy\.cnode: 2 of 4 roads have no length; the 1 junction pairs without any "
                                         r"take the straight-line distance between their coordinates"), \
            pytest.warns(UserWarning, match=r"dropped feature\(s\) y"):  # all four junctions lie at y = 0
        data = build_city_network(tmp_path / "toy.cnode", hops=3, classes=2, split=(0.5, 0.25, 0.25), cache=False)
    lengths = dict(zip(map(tuple, data.edge_index.t().tolist()), data.edge_length.tolist()))
    assert (lengths[(0, 1)], lengths[(1, 2)], lengths[(2, 3)]) == (5.0, 1.0, 2.0)  # it was (1.0, 1.0, 1.0)
    assert torch.allclose(data.eccentricity, torch.tensor([8.0, 5.0, 6.0, 8.0]))


def test_a_size_line_with_as_many_fields_as_the_roads_is_skipped(tmp_path):
    """An 'N M' first line above 'u v' rows (or 'n n m' above 'u v length' rows) was read as a road to a phantom
    junction. A first line is a size line when it counts the rows after it; else it stays a road."""
    from fwdlearn.graphs.data.road_readers import read_road_graph

    ring = "1 2\n2 3\n3 4\n4 5\n5 1\n1 3\n"
    (tmp_path / "a.edges").write_text("5 6\n" + ring)
    road = read_road_graph(tmp_path / "a.edges")
    assert road.num_nodes == 5 and road.edges.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 0], [0, 2]]
    (tmp_path / "b.edges").write_text("4 4 4\n0 1 1.5\n1 2 2.5\n2 3 1.0\n3 0 2.0\n")
    road = read_road_graph(tmp_path / "b.edges")
    assert road.num_nodes == 4 and road.edges.shape == (4, 2) and road.length.tolist() == [1.5, 2.5, 1.0, 2.0]
    for first in ("5 7", "2 6"):  # not 6 roads; fewer junctions than the 5 the roads join: a road
        (tmp_path / "c.edges").write_text(f"{first}\n" + ring)
        assert read_road_graph(tmp_path / "c.edges").edges.shape == (7, 2)
    (tmp_path / "d.edges").write_text("4 4 5\n0 1 1.5\n1 2 2.5\n2 3 1.0\n3 0 2.0\n")  # 5 roads counted, 4 follow
    assert read_road_graph(tmp_path / "d.edges").length.tolist() == [5.0, 1.5, 2.5, 1.0, 2.0]


@pytest.mark.parametrize("bad, message", [("length", r"edge \('0', '1'\) has length='unknown', which is not a number"),
                                          ("street_count", r"node '1' has street_count='3;4', which is not a number")])
def test_graphml_values_that_are_not_numbers_name_the_file_the_road_or_junction_and_the_attribute(tmp_path, bad,
                                                                                                   message):
    """They raised a bare "could not convert string to float: 'unknown'"."""
    from fwdlearn.errors import InputError

    g = nx.MultiDiGraph()
    for i in range(3):
        g.add_node(i, x=str(i), y="0", street_count="3;4" if bad == "street_count" and i == 1 else "2")
    g.add_edge(0, 1, length="unknown" if bad == "length" else "1.5")
    g.add_edge(1, 2, length="2.5")
    nx.write_graphml(g, tmp_path / "g.graphml")
    with pytest.raises(InputError, match=r"g\.graphml: " + message + "; give a number or leave the attribute out"):
        build_city_network(tmp_path / "g.graphml", hops=2, classes=2, cache=False)


def test_a_node_file_without_its_edge_file_is_named_before_the_cache_hashes_it(tmp_path):
    """build_city_network hashed both files before read_road_graph checked them: a raw '[Errno 2] No such file'."""
    (tmp_path / "only.cnode").write_text("NodeID x y\n0 0 0\n1 1 1\n")
    (tmp_path / "lone.cedge").write_text("EdgeID a b l\n0 0 1 1.0\n")
    for given, missing in (("only.cnode", "only.cedge"), ("lone.cedge", "lone.cnode")):
        with pytest.raises(FileNotFoundError, match=rf"{missing} is missing; a node/edge pair needs both \.cnode and "
                                                    r"\.cedge"):
            build_city_network(tmp_path / given)


def test_edge_list_ids_must_be_integers(tmp_path):
    """'1.2 1.7' was truncated to the road 1-1; string ids had their first line skipped as a header, then a
    confusing error. Integral numbers as numpy.savetxt writes them still read."""
    from fwdlearn.errors import InputError
    from fwdlearn.graphs.data.road_readers import read_road_graph

    path = tmp_path / "ids.edges"
    for text, line, token in (("1.2 1.7\n1.7 2.5\n", 1, "1.2"), ("a b 1.0\nb c 2.0\n", 2, "b"),
                              ("0 1\n1 2\n2 nan\n", 3, "nan")):
        path.write_text(text)
        with pytest.raises(InputError, match=rf"ids\.edges, line {line}: expected 'u v \[length\]' with integer node "
                                             rf"ids, got '{token}' in .*; number the junctions"):
            read_road_graph(path)
    np.savetxt(path, np.array([[1, 2], [2, 3], [3, 1]]))  # '1.000000000000000000e+00 2.000...'
    assert read_road_graph(path).edges.tolist() == [[0, 1], [1, 2], [2, 0]]
    (tmp_path / "f.cnode").write_text("0 0 0\n1.5 1 0\n")
    (tmp_path / "f.cedge").write_text("0 0 1.5 1.0\n")
    with pytest.raises(InputError, match=r"f\.cnode, line 2: expected 'NodeID x y' with integer node ids, got '1\.5'"):
        read_road_graph(tmp_path / "f.cnode")


def test_a_road_folder_missing_its_cnode_names_it(tmp_path):
    """A folder holding a .cedge and a note (.txt) but no .cnode read the note as an edge list; the folder search
    now finds the .cedge, and the pair check names the missing .cnode."""
    (tmp_path / "cal.cedge").write_text("0 0 1 1.0\n1 1 2 1.0\n")
    (tmp_path / "cal_source.txt").write_text("California road network\nhttps://example.org/roads\n")
    with pytest.raises(FileNotFoundError, match=r"cal\.cnode is missing; a node/edge pair needs both \.cnode and "
                                                 r"\.cedge"):
        build_city_network(tmp_path)


def test_a_byte_order_mark_does_not_drop_the_first_road_or_junction(tmp_path):
    """A file saved with a UTF-8 byte-order mark (Windows editors) had its first row taken for a header: the road
    0-1 of an edge list and the junction and road of a .cnode/.cedge pair's first rows were dropped silently."""
    from fwdlearn.graphs.data.road_readers import read_road_graph

    (tmp_path / "bom.edges").write_text("\ufeff0 1\r\n1 2\r\n2 3\r\n", encoding="utf-8", newline="")
    assert read_road_graph(tmp_path / "bom.edges").edges.tolist() == [[0, 1], [1, 2], [2, 3]]  # was [[0,1],[1,2]]
    (tmp_path / "g.cnode").write_text("\ufeff0 0.0 0.0\n1 1.0 0.0\n2 2.0 0.0\n", encoding="utf-8")
    (tmp_path / "g.cedge").write_text("\ufeff0 0 1 1.5\n1 1 2 2.5\n", encoding="utf-8")
    road = read_road_graph(tmp_path / "g.cnode")
    assert road.num_nodes == 3 and road.edges.tolist() == [[0, 1], [1, 2]] and road.length.tolist() == [1.5, 2.5]
    assert road.coords.tolist() == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]


def test_a_first_road_with_a_typo_is_refused_by_line_not_skipped_as_a_header(tmp_path):
    """A first row with numeric ids but a length that is not a number ('0 1 abc') was skipped as a header: its road
    vanished without a word. A header is a first row whose node ids are not numbers."""
    from fwdlearn.graphs.data.road_readers import read_road_graph

    (tmp_path / "t.edges").write_text("0 1 abc\n1 2 3\n2 3 4\n")
    with pytest.raises(ValueError, match=r"t\.edges, line 1: expected 'u v \[length\]', got '0 1 abc'"):
        read_road_graph(tmp_path / "t.edges")
    (tmp_path / "t.cnode").write_text("0 0 0\n1 1 0\n2 2 0\n")
    (tmp_path / "t.cedge").write_text("0 0 1 1,5\n1 1 2 2.5\n")
    with pytest.raises(ValueError, match=r"t\.cedge, line 1: expected 'EdgeID StartNodeID EndNodeID Length'"):
        read_road_graph(tmp_path / "t.cnode")
    (tmp_path / "h.edges").write_text("source target length\n0 1 3\n1 2 4\n")  # a header still reads as one
    assert read_road_graph(tmp_path / "h.edges").length.tolist() == [3.0, 4.0]


def test_an_edge_list_gives_every_road_a_length_or_none(tmp_path):
    """One road without a length made every length of the file disappear (a warning then said the graph had none);
    '0 1 5' above roads without lengths was skipped as a size line; a size line counting more roads than follow it
    (a copy cut short) was skipped without a word."""
    from fwdlearn.errors import InputError
    from fwdlearn.graphs.data.road_readers import read_road_graph

    path = tmp_path / "m.edges"
    for text in ("0 1 5\n1 2 3\n2 3\n3 4 2\n", "0 1 5\n1 2\n2 3\n"):
        path.write_text(text)
        missing = 3 if text.startswith("0 1 5\n1 2 3") else 2
        with pytest.raises(InputError, match=rf"m\.edges, line {missing}: the road '\d \d' has no length, while "
                                             r"line 1 gives one \('0 1 5'\); give every road a length \(u v length\), "
                                             r"or none"):
            read_road_graph(path)
    path.write_text("5 5 6\n1 2\n2 3\n3 4\n4 5\n5 1\n")
    with pytest.raises(InputError, match=r"m\.edges, line 1: '5 5 6' reads as a size line 'n n m', but 5 roads follow "
                                         r"it, not 6 \(a copy cut short\? copy it again\)"):
        read_road_graph(path)
    path.write_text("5 5 5\n1 2\n2 3\n3 4\n4 5\n5 1\n")  # a size line that counts them: skipped
    assert read_road_graph(path).edges.shape == (5, 2)


def test_bad_lengths_and_coordinates_name_the_file_the_line_and_the_ids_of_the_file(tmp_path):
    """A negative length was refused naming the road by the ids after relabelling ('the road 1-2' for the file's
    20-30) and no file; a NaN coordinate turned the whole x feature column into NaN, found only by training."""
    from fwdlearn.errors import InputError
    from fwdlearn.graphs.data.road_readers import read_road_graph

    (tmp_path / "n.edges").write_text("10 20 5\n20 30 -2\n30 40 1\n")
    with pytest.raises(InputError, match=r"n\.edges, line 2: the road 20-30 has the length -2\.0; give every road a "
                                         r"finite length >= 0"):
        build_city_network(tmp_path / "n.edges", hops=2, classes=2, cache=False)
    (tmp_path / "c.cnode").write_text("NodeID x y\n0 0 0\n1 nan 0\n2 2 0\n")
    (tmp_path / "c.cedge").write_text("EdgeID a b l\n0 0 1 1.0\n1 1 2 1.0\n")
    with pytest.raises(InputError, match=r"c\.cnode, line 3: node 1 has the coordinates \(nan, 0\.0\), which are not "
                                         r"finite; give every junction finite x and y"):
        read_road_graph(tmp_path / "c.cnode")
    (tmp_path / "c.cnode").write_text("NodeID x y\n0 0 0\n1 1 0\n2 2 0\n")
    (tmp_path / "c.cedge").write_text("EdgeID a b l\n0 0 1 1.0\n1 1 2 inf\n")
    with pytest.raises(InputError, match=r"c\.cedge, line 3: the road 1-2 has the length inf"):
        read_road_graph(tmp_path / "c.cnode")


def test_matrix_market_values_are_road_lengths_as_the_third_column_of_an_edge_list(tmp_path):
    """The same roads with and without the %%MatrixMarket banner read different graphs: the banner's values were
    dropped (every road length 1 or the straight line), the headerless file's third column was the length."""
    from fwdlearn.graphs.data.road_readers import read_road_graph

    rows = "4 4 3\n1 2 5.0\n2 3 1.0\n3 4 2.0\n"
    (tmp_path / "plain.mtx").write_text(rows)
    (tmp_path / "banner.mtx").write_text("%%MatrixMarket matrix coordinate real general\n" + rows)
    plain, banner = read_road_graph(tmp_path / "plain.mtx"), read_road_graph(tmp_path / "banner.mtx")
    assert plain.length.tolist() == banner.length.tolist() == [5.0, 1.0, 2.0]
    assert plain.edges.tolist() == banner.edges.tolist()
    (tmp_path / "pattern.mtx").write_text("%%MatrixMarket matrix coordinate pattern general\n4 4 1\n1 2\n")
    assert read_road_graph(tmp_path / "pattern.mtx").length is None


def test_a_graphml_without_coordinates_reads_like_an_edge_list(tmp_path):
    """A GraphML without x/y (networkx.write_graphml of any graph) was refused with "node 'a' has no numeric 'x'/'y'
    attributes ('x')", naming no fix, while the same roads as an edge list read."""
    from fwdlearn.errors import InputError
    from fwdlearn.graphs.data.road_readers import read_road_graph

    g = nx.MultiGraph()
    for u, v, w in (("a", "b", "1.5"), ("b", "c", "2.5"), ("c", "a", "4")):
        g.add_edge(u, v, length=w)
    nx.write_graphml(g, tmp_path / "g.graphml")
    road = read_road_graph(tmp_path / "g.graphml")
    assert road.num_nodes == 3 and road.coords is None and road.length.tolist() == [1.5, 4.0, 2.5]
    g.add_node("a", x="0", y="0")  # one junction placed, the others not
    nx.write_graphml(g, tmp_path / "g.graphml")
    with pytest.raises(InputError, match=r"g\.graphml: node 'b' has no 'x'/'y' attributes, while 1 of the 3 junctions "
                                         r"have them; give every junction its coordinates x and y, or none"):
        read_road_graph(tmp_path / "g.graphml")


def test_a_folder_with_two_road_files_of_one_kind_and_a_gzip_file_are_refused_naming_the_fix(tmp_path):
    """A folder holding a.graphml and b.graphml read a.graphml without a word; a .gz was 'binary content'."""
    import gzip

    from fwdlearn.errors import InputError
    from fwdlearn.graphs.data.road_readers import read_road_graph

    for name in ("b.edges", "a.edges"):
        (tmp_path / name).write_text("0 1\n1 2\n")
    with pytest.raises(InputError, match=r"holds 2 road files of one kind \(a\.edges, b\.edges\); name the one to "
                                         r"read, e\.g\. .*a\.edges"):
        read_road_graph(tmp_path)
    (tmp_path / "r.edges.gz").write_bytes(gzip.compress(b"0 1\n1 2\n"))
    with pytest.raises(InputError, match=r"r\.edges\.gz: a gzip-compressed file; decompress it first \(gunzip -k"):
        read_road_graph(tmp_path / "r.edges.gz")


def test_an_unknown_city_network_is_refused_naming_the_cities():
    """citynetwork:tokyo was 'not in <cache>: pass download=True', and with download=True PyG's bare AssertionError
    was blamed on the internet connection; neither named the four cities."""
    from fwdlearn.graphs.data.datasets import check_graph_name, load_graph

    for download in (False, True):
        with pytest.raises(ValueError, match=r"citynetwork:tokyo is not a City-Networks city; torch_geometric\.datasets"
                                             r"\.CityNetwork has paris, shanghai, la, london"):
            load_graph("citynetwork:tokyo", download=download)
    with pytest.raises(ValueError, match="citynetwork: is not a City-Networks city"):
        check_graph_name("citynetwork:")  # (a bench refuses it before its first timing)
    assert check_graph_name("CityNetwork:Paris") == "citynetwork:Paris"


def _small_road_file(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"{i} {i + 1} {w:.3f}" for i, w in enumerate(rng.uniform(1, 5, 120))]
    rows += [f"{i} {i + 7} {w:.3f}" for i, w in enumerate(rng.uniform(1, 5, 110))]
    path = tmp_path / "roads.edges"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_damaged_cache_file_is_rebuilt_not_read(tmp_path):
    """torch.load reads no CRC: one flipped bit in the cached features loaded silently as another feature value; a
    torch file of another dict loaded as a city without labels."""
    import struct
    import zipfile

    path = _small_road_file(tmp_path)
    built = build_city_network(path, hops=3, classes=4)
    (cached,) = (Path(os.environ["FWDLEARN_CACHE_DIR"]) / "citynet").glob("*.pt")
    with zipfile.ZipFile(cached) as archive:  # the largest record: the features
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(cached.read_bytes())
    name_length, extra_length = struct.unpack("<HH", raw[record.header_offset + 26:record.header_offset + 30])
    raw[record.header_offset + 30 + name_length + extra_length + 9] ^= 0x01
    cached.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=r"could not be read \(UnpicklingError: its record .* does not match the "
                                         r"checksum saved with it.*; rebuilding it"):
        again = build_city_network(path, hops=3, classes=4)
    assert torch.equal(again.x, built.x) and torch.equal(again.y, built.y)
    torch.save({"x": torch.zeros(3, 1)}, cached)
    with pytest.warns(UserWarning, match=r"could not be read \(ValueError: it lacks eccentricity, edge_index"):
        again = build_city_network(path, hops=3, classes=4)
    assert torch.equal(again.x, built.x) and torch.equal(again.y, built.y)


def test_the_splits_of_a_city_share_one_cached_build(tmp_path, monkeypatch):
    """The cache was keyed by the split seed too: every split of `graph train --data city:... --splits N` labelled
    the city again (11 s each for Westminster) and kept one more copy of it."""
    from fwdlearn.graphs.data import citynet

    path = _small_road_file(tmp_path)
    fresh = [build_city_network(path, hops=3, classes=4, seed=seed, cache=False) for seed in (0, 1)]
    builds = []
    city_data = citynet.city_data
    monkeypatch.setattr(citynet, "city_data", lambda *args, **kwargs: builds.append(1) or city_data(*args, **kwargs))
    for seed in (0, 1, 0):
        data = build_city_network(path, hops=3, classes=4, seed=seed)
        for key in ("train_mask", "val_mask", "test_mask", "y", "x"):  # as built without the cache, split by seed
            assert torch.equal(data[key], fresh[seed][key]), (seed, key)
    assert not torch.equal(fresh[0].train_mask, fresh[1].train_mask)
    assert len(builds) == 1 and len(list((Path(os.environ["FWDLEARN_CACHE_DIR"]) / "citynet").glob("*.pt"))) == 1
    data = build_city_network(path, hops=3, classes=4, split=(0.5, 0.25, 0.25))
    assert data.num_nodes == 121 and [int(data[f"{k}_mask"].sum()) for k in ("train", "val", "test")] == [60, 30, 31]
    assert len(builds) == 1
    build_city_network(path, hops=4, classes=4)  # another parameter of the labels: built again
    assert len(builds) == 2


def test_a_synthetic_city_too_large_to_build_is_refused_before_any_work():
    """synthetic-city:1000000000000 ended in numpy's MemoryError traceback (and 10**8 would have labelled for a
    day)."""
    with pytest.raises(ValueError, match=r"synthetic_city builds at most 10,000,000 junctions, got 1,000,000,000,000"):
        synthetic_city(10 ** 12)


def test_a_generated_graph_with_a_negative_seed_is_refused_naming_the_seed():
    """load_graph takes torch's seeds (negative ones too), but a generated graph is drawn by numpy, which raised a
    bare 'expected non-negative integer'."""
    from fwdlearn.graphs.data.datasets import load_graph

    for name, kwargs, which in (("synthetic-city:100", {"seed": -1}, "seed"),
                                ("sbm:100", {"graph_seed": -3}, "graph_seed")):
        with pytest.raises(ValueError, match=rf"{name} is drawn by numpy's generator, which takes no negative seed: "
                                             rf"give {which} >= 0, got -\d"):
            load_graph(name, **kwargs)


def test_a_generated_city_is_labelled_once_per_process_and_each_call_gets_its_own_copy(monkeypatch):
    """`graph train --splits N` on synthetic-city labelled the same drawn city N times (20 s each at 20,000)."""
    import fwdlearn.graphs.data.citynet as citynet

    calls = []
    real = citynet.city_data
    monkeypatch.setattr(citynet, "city_data", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(citynet, "_last_synthetic", {})
    first = citynet.synthetic_city(64, seed=3, hops=4, classes=3)
    first.x.add_(1.0)  # (a caller's change stays its own)
    other = citynet.synthetic_city(64, seed=3, hops=4, classes=3, split=(0.3, 0.3, 0.4))
    fresh = real(citynet.synthetic_road_graph(64, 3), 4, 3, (0.3, 0.3, 0.4), 3)
    assert len(calls) == 1
    for key in ("x", "edge_index", "y", "train_mask", "val_mask", "test_mask", "eccentricity"):
        assert torch.equal(getattr(other, key), getattr(fresh, key)), key
    citynet.synthetic_city(64, seed=4, hops=4, classes=3)
    assert len(calls) == 2  # (another seed is another city)


def test_eccentricity_batches_hold_about_batch_pairs_whatever_the_first_ids_are(monkeypatch):
    """The pairs a source holds were measured on sources 0..63 alone: on a road graph whose first ids are a quiet
    road (the edge of a grid city, a street leading out of town) the balls there are a fraction of the others', and
    every batch held several times batch_pairs (twice on a generated city: a 40,000-junction one peaked at 2.5 GB for
    1.4 GB). Measured on sources spread over the ids, then on what each batch held; the labels are the same."""
    import fwdlearn.graphs.data.citynet as citynet

    side, road = 40, 100  # a road of 100 junctions (ids 0..99) into a 40 x 40 grid (ids 100..1699)
    grid = np.arange(side * side).reshape(side, side) + road
    pairs = [(i, i + 1) for i in range(road - 1)] + [(road - 1, road)]
    pairs += list(zip(grid[:, :-1].ravel(), grid[:, 1:].ravel())) + list(zip(grid[:-1].ravel(), grid[1:].ravel()))
    pairs = np.array(pairs).T
    edges = np.concatenate([pairs, pairs[::-1]], axis=1)
    length = np.random.default_rng(0).uniform(1.0, 2.0, pairs.shape[1])
    length = np.concatenate([length, length])
    held, balls = [], citynet.hop_balls

    def spy(*args, **kwargs):
        found = balls(*args, **kwargs)
        held.append(found.num_pairs)
        return found

    one_batch = local_eccentricity(edges, length, road + side * side, hops=6, batch_pairs=10 ** 9)
    monkeypatch.setattr(citynet, "hop_balls", spy)
    batched = local_eccentricity(edges, length, road + side * side, hops=6, batch_pairs=2000)
    np.testing.assert_array_equal(batched, one_batch)
    assert max(held[1:]) <= 1.5 * 2000, held  # (a grid junction's ball holds 85 pairs, a road junction's 13)


def test_self_loops_are_dropped_and_change_nothing():
    """Step 1 of the builder: an undirected simple graph, self-loops dropped (a loop's length entered its junction's
    mean length and the loop stayed in edge_index)."""
    from fwdlearn.graphs.data.citynet import city_data
    from fwdlearn.graphs.data.road_readers import RoadGraph

    rng = np.random.default_rng(0)
    n = 40
    edges = np.concatenate([np.stack([np.arange(n), (np.arange(n) + 1) % n], 1), rng.integers(0, n, (20, 2))])
    edges = edges[edges[:, 0] != edges[:, 1]]
    length = rng.uniform(1, 3, len(edges))
    loops = np.array([[5, 5], [17, 17]])
    plain = city_data(RoadGraph(n, edges, coords=None, length=length), hops=3, classes=4)
    looped = city_data(RoadGraph(n, np.concatenate([edges, loops]), coords=None,
                                 length=np.concatenate([length, [50.0, 80.0]])), hops=3, classes=4)
    assert bool((looped.edge_index[0] != looped.edge_index[1]).all())
    assert torch.equal(looped.edge_index, plain.edge_index) and torch.equal(looped.y, plain.y)
    torch.testing.assert_close(looped.x, plain.x)
