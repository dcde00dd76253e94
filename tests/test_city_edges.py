"""Edges of the road readers and the City-Networks builder that the other city tests leave open (found by mutation
testing): list-valued and partial GraphML attributes, Matrix Market fields, size lines, pair and .mat checks, the
folder search, the labels' class cut, the one-hot categories and the cache key."""

import networkx as nx
import numpy as np
import pytest
import scipy.io
import torch

from fwdlearn.errors import InputError
from fwdlearn.graphs import build_city_network
from fwdlearn.graphs.data.citynet import city_data
from fwdlearn.graphs.data.road_readers import RoadGraph, read_road_graph, road_files, sniff_format


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))


def _write_graphml(path, nodes, edges):
    """A MultiDiGraph GraphML of ``nodes`` (id -> attributes) and ``edges`` ((u, v, attributes)), all strings."""
    g = nx.MultiDiGraph()
    for node, attrs in nodes.items():
        g.add_node(node, **attrs)
    for u, v, attrs in edges:
        g.add_edge(u, v, **attrs)
    nx.write_graphml(g, path)
    return path


def test_graphml_list_attributes_keep_their_first_item(tmp_path):
    """OSMnx writes the attributes of merged roads as a list literal: the first item is the road's value."""
    path = _write_graphml(tmp_path / "g.graphml", {"a": {"x": "0", "y": "0"}, "b": {"x": "1", "y": "0"}},
                          [("a", "b", {"length": "['3.5', '7.0']", "highway": "['primary', 'residential']"}),
                           ("b", "a", {"length": "2", "highway": "[]"})])
    road = read_road_graph(path)
    assert road.length.tolist() == [3.5, 2.0]
    assert road.edge_attrs["highway"] == ["primary", None]


def test_graphml_attributes_some_roads_or_junctions_lack_are_kept_for_the_others(tmp_path):
    """A road without a length (or with 'nan') is NaN among the given lengths, which the coordinates fill in; a
    street_count on some junctions only is kept, None for the others."""
    nodes = {"a": {"x": "0", "y": "0", "street_count": "3"}, "b": {"x": "3", "y": "4"},
             "c": {"x": "6", "y": "8", "street_count": "1"}}
    path = _write_graphml(tmp_path / "g.graphml", nodes, [("a", "b", {"length": "9.5"}), ("b", "c", {}),
                                                          ("c", "a", {"length": "nan"})])
    road = read_road_graph(path)
    assert road.length[0] == 9.5 and np.isnan(road.length[1:]).all()
    assert road.node_attrs["street_count"] == ["3", None, "1"]


def test_matrix_market_integer_values_are_lengths_and_complex_ones_are_refused(tmp_path):
    rows = "4 4 3\n1 2 5\n2 3 1\n3 4 2\n"
    (tmp_path / "int.mtx").write_text("%%MatrixMarket matrix coordinate integer general\n" + rows)
    assert read_road_graph(tmp_path / "int.mtx").length.tolist() == [5.0, 1.0, 2.0]
    (tmp_path / "c.mtx").write_text("%%MatrixMarket matrix coordinate complex general\n4 4 1\n1 2 5 1\n")
    with pytest.raises(InputError, match=r"c\.mtx: a complex Matrix Market matrix; road lengths are real numbers: "
                                         r"write it as 'real' \(or 'pattern', without lengths\)"):
        read_road_graph(tmp_path / "c.mtx")


def test_matrix_market_bad_lengths_name_the_entry_as_the_file_numbers_it_and_a_wide_matrix_counts_its_columns(
        tmp_path):
    (tmp_path / "n.mtx").write_text("%%MatrixMarket matrix coordinate real general\n3 3 2\n1 2 1.0\n2 3 -4\n")
    with pytest.raises(InputError, match=r"n\.mtx: the entry \(2, 3\) has the length -4\.0; give every road a finite "
                                         r"length >= 0"):
        read_road_graph(tmp_path / "n.mtx")
    (tmp_path / "w.mtx").write_text("%%MatrixMarket matrix coordinate pattern general\n3 5 2\n1 2\n2 5\n")
    road = read_road_graph(tmp_path / "w.mtx")
    assert road.num_nodes == 5 and road.edges.tolist() == [[0, 1], [1, 4]]


def test_a_first_row_is_a_size_line_only_when_it_counts_the_rows_after_it(tmp_path):
    """'n m k' with n != m is a road with a length, not a Matrix Market size line; a lone row is a road."""
    path = tmp_path / "r.edges"
    path.write_text("3 4 3\n0 1 1.5\n1 2 2.5\n2 0 1.0\n")
    road = read_road_graph(path)
    assert road.num_nodes == 5 and road.length.tolist() == [3.0, 1.5, 2.5, 1.0]
    path.write_text("3 0\n")
    road = read_road_graph(path)
    assert road.num_nodes == 2 and road.edges.tolist() == [[1, 0]]


def test_comment_lines_may_start_with_a_percent_sign_anywhere(tmp_path):
    (tmp_path / "p.edges").write_text("0 1\n% a note\n1 2\n# another\n2 3\n")
    assert read_road_graph(tmp_path / "p.edges").edges.tolist() == [[0, 1], [1, 2], [2, 3]]


def test_a_road_to_a_junction_the_node_file_lacks_names_that_junction(tmp_path):
    (tmp_path / "g.cnode").write_text("0 0.0 0.0\n1 1.0 0.0\n2 2.0 0.0\n")
    for row, node in (("7 0 9 1.0", 9), ("7 9 1 1.0", 9)):
        (tmp_path / "g.cedge").write_text(f"0 0 1 1.0\n{row}\n")
        with pytest.raises(ValueError, match=rf"g\.cedge: edge 7 joins node {node}, which is not in .*g\.cnode"):
            read_road_graph(tmp_path / "g.cnode")


def test_a_mat_needs_a_square_adjacency_and_names_a_bad_coordinate_by_its_row(tmp_path):
    scipy.io.savemat(tmp_path / "w.mat", {"A": np.ones((3, 4)), "xy": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"w\.mat: the adjacency matrix 'A' must be square; got 3 x 4"):
        read_road_graph(tmp_path / "w.mat")
    xy = np.zeros((3, 2))
    xy[1, 0] = np.inf
    scipy.io.savemat(tmp_path / "c.mat", {"A": np.ones((3, 3)) - np.eye(3), "xy": xy})
    with pytest.raises(InputError, match=r"c\.mat: 'xy' row 2 \(junction 2 of 'A'\) has the coordinates \(inf, 0\.0\), "
                                         r"which are not finite"):
        read_road_graph(tmp_path / "c.mat")


def test_a_zero_stored_in_a_sparse_mat_adjacency_is_no_road(tmp_path):
    """A sparse A may hold explicit zeros (a road removed by setting its entry to 0): they were read as roads."""
    import scipy.sparse

    a = scipy.sparse.csc_matrix((np.array([1.0, 0.0, 1.0, 0.0]), (np.array([0, 0, 1, 2]), np.array([1, 2, 0, 0]))),
                                shape=(3, 3))
    assert a.nnz == 4
    scipy.io.savemat(tmp_path / "z.mat", {"A": a, "xy": np.zeros((3, 2))})
    assert sorted(read_road_graph(tmp_path / "z.mat").edges.tolist()) == [[0, 1], [1, 0]]


def test_a_folder_is_searched_for_road_files_before_notes(tmp_path):
    """A folder holding a road file and a README.txt reads the road file (.txt is the last kind looked for)."""
    (tmp_path / "README.txt").write_text("Roads of a town\n")
    (tmp_path / "town.edges").write_text("0 1\n1 2\n")
    assert road_files(tmp_path) == [tmp_path / "town.edges"]
    assert read_road_graph(tmp_path).edges.tolist() == [[0, 1], [1, 2]]


def test_formats_are_sniffed_past_a_byte_order_mark_and_a_v4_mat_in_capitals(tmp_path):
    (tmp_path / "bom.mtx").write_bytes(b"\xef\xbb\xbf%%MatrixMarket matrix coordinate pattern general\n3 3 1\n1 2\n")
    assert sniff_format(tmp_path / "bom.mtx") == "matrix-market"
    ring = np.roll(np.eye(4), 1, axis=1) + np.roll(np.eye(4), -1, axis=1)
    scipy.io.savemat(tmp_path / "v4.mat", {"A": ring, "xy": np.zeros((4, 2))}, format="4")
    (tmp_path / "v4.mat").rename(tmp_path / "ROADS.MAT")
    assert sniff_format(tmp_path / "ROADS.MAT") == "mat"
    assert read_road_graph(tmp_path / "ROADS.MAT").edges.shape == (8, 2)


def test_a_graphml_whose_prolog_is_longer_than_the_first_bytes_read_is_still_graphml(tmp_path):
    """The format was sniffed from the first 4 KiB only: a GraphML with a long comment before its ``<graphml``
    element was refused as "an XML document without a <graphml> element"."""
    path = _write_graphml(tmp_path / "g.graphml", {"a": {"x": "0", "y": "0"}, "b": {"x": "1", "y": "0"},
                                                   "c": {"x": "1", "y": "1"}},
                          [("a", "b", {"length": "3"}), ("b", "c", {"length": "4"})])
    header, rest = path.read_bytes().split(b"?>", 1)
    path.write_bytes(header + b"?>\n<!-- " + b"exported by a tool that writes a long note. " * 200 + b"-->" + rest)
    assert path.read_bytes().index(b"<graphml") > 8192
    assert sniff_format(path) == "graphml"
    assert read_road_graph(path).length.tolist() == [3.0, 4.0]
    (tmp_path / "other.xml").write_bytes(b"<?xml version='1.0'?>\n<!-- " + b"x" * 8192 + b" -->\n<gexf/>\n")
    with pytest.raises(ValueError, match=r"other\.xml: an XML document without a <graphml> element"):
        sniff_format(tmp_path / "other.xml")


def test_a_node_file_with_an_empty_edge_file_names_both_and_says_no_roads(tmp_path):
    (tmp_path / "g.cnode").write_text("0 0.0 0.0\n1 1.0 0.0\n")
    (tmp_path / "g.cedge").write_text("")
    with pytest.raises(InputError, match=r"g\.cnode / .*g\.cedge: no roads in it; a road file lists at least one "
                                         r"road"):
        read_road_graph(tmp_path / "g.cedge")


def test_an_edge_list_that_mentions_graphml_in_a_comment_is_an_edge_list(tmp_path):
    (tmp_path / "r.txt").write_text("# converted from a <graphml> export\n0 1\n1 2\n")
    assert sniff_format(tmp_path / "r.txt") == "edge-list"


def test_parallel_roads_give_their_pair_the_mean_length_and_a_zero_length_road_joins_its_junctions():
    """Step 1: the pair's length is the mean over its roads (not their sum); a road of length 0 (two junctions at one
    place) still joins them in the eccentricity."""
    from fwdlearn.graphs.data.citynet import local_eccentricity

    road = RoadGraph(4, np.array([[0, 1], [1, 0], [1, 2], [2, 3], [3, 0]]), None,
                     np.array([2.0, 4.0, 1.0, 5.0, 6.0]))
    with pytest.warns(UserWarning, match=r"dropped feature\(s\) street_count"):  # every junction has 2 roads
        data = city_data(road, hops=2, classes=2, split=(0.5, 0.25, 0.25))
    lengths = dict(zip(map(tuple, data.edge_index.t().tolist()), data.edge_length.tolist()))
    assert (lengths[(0, 1)], lengths[(1, 0)], lengths[(1, 2)]) == (3.0, 3.0, 1.0)
    edges = np.array([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    np.testing.assert_allclose(local_eccentricity(edges, np.array([1.0, 1.0, 0.0, 0.0, 2.0, 2.0]), 4, hops=3),
                               [3.0, 2.0, 2.0, 3.0])


def test_eccentricity_batches_follow_what_each_batch_held_when_the_measured_sources_are_isolated(monkeypatch):
    """The pairs a source holds are measured on 64 sources spread over the ids; when those are isolated junctions
    (a ball of 1) the first batch is too large, and each later one is sized by the most a batch has held."""
    import fwdlearn.graphs.data.citynet as citynet

    n = 1000
    spread = np.unique(np.linspace(0, n - 1, 64).astype(np.int64))
    ring = np.setdiff1d(np.arange(n), spread)
    pairs = np.stack([ring, np.roll(ring, -1)])
    edges = np.concatenate([pairs, pairs[::-1]], axis=1)
    length = np.ones(edges.shape[1])
    held, balls = [], citynet.hop_balls

    def spy(*args, **kwargs):
        found = balls(*args, **kwargs)
        held.append(found.num_pairs)
        return found

    whole = citynet.local_eccentricity(edges, length, n, hops=6, batch_pairs=10 ** 9)
    monkeypatch.setattr(citynet, "hop_balls", spy)
    batched = citynet.local_eccentricity(edges, length, n, hops=6, batch_pairs=200)
    np.testing.assert_array_equal(batched, whole)
    assert held[0] == len(spread) and held[1] > 1000  # measured 1 pair a source: the first batch held 200 sources
    assert max(held[2:]) <= 200, held  # then about 200 / 13 sources a batch (a ring junction's ball holds 13)


def test_equal_frequency_classes_break_ties_by_node_index():
    from fwdlearn.graphs.data.citynet import _equal_frequency

    values = np.random.default_rng(0).integers(0, 3, 120).astype(float)
    ranked = sorted(range(len(values)), key=lambda i: (values[i], i))
    expected = np.empty(len(values), dtype=np.int64)
    expected[ranked] = np.arange(len(values)) * 4 // len(values)
    np.testing.assert_array_equal(_equal_frequency(values, 4), expected)
    assert np.bincount(expected).tolist() == [30, 30, 30, 30]


def test_maxspeed_takes_the_first_number_of_the_value():
    from fwdlearn.graphs.data.citynet import _speed

    np.testing.assert_array_equal(_speed(["50;30", "30 mph", None, "walk", "7.5", ""]),
                                  [50.0, 30.0, np.nan, np.nan, 7.5, np.nan])


def test_the_top_categories_are_the_most_frequent_among_the_kept_roads_most_frequent_first():
    """A category counts over the roads of the largest component only (roads dropped with a smaller component, or
    self-loops, take no column); the columns go from the most frequent down, unused ones after them."""
    n = 12
    ring = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    chords = np.array([[0, 6], [3, 9]])
    apart = np.tile([[n, n + 1]], (20, 1))  # 20 parallel roads of a 2-junction component, dropped
    edges = np.concatenate([ring, chords, apart])
    highway = ["residential"] * 7 + ["primary"] * 5 + ["service"] * 2 + ["track"] * 20
    length = np.random.default_rng(0).uniform(1, 3, len(edges))
    road = RoadGraph(n + 2, edges, None, length, edge_attrs={"highway": highway})
    with pytest.warns(UserWarning, match=r"not connected: kept its largest component \(12 of 14 junctions"):
        data = city_data(road, hops=3, classes=2, split=(0.5, 0.25, 0.25))
    assert data.feature_names[-7:] == ["highway=residential", "highway=primary", "highway=service",
                                       "highway=<unused0>", "highway=<unused1>", "highway=<unused2>", "highway=other"]
    assert float(data.x[:, -7:].sum()) == pytest.approx(n)  # each junction's incident roads: one category each


def test_a_feature_constant_but_for_one_junction_of_a_small_city_is_dropped():
    """At most n // 1000 junctions, and at least 1, may differ from the most common value before a feature is kept."""
    from fwdlearn.graphs.data.citynet import _informative

    block = np.stack([np.ones(50), np.ones(50), np.arange(50.0)], axis=1)
    block[7, 0] = 4.0  # one junction differs: dropped
    block[[7, 9], 1] = 4.0  # two: kept
    with pytest.warns(UserWarning, match=r"dropped feature\(s\) a: constant on all but at most 1 of 50 junctions"):
        kept, names = _informative(block, ["a", "b", "c"])
    assert names == ["b", "c"]
    np.testing.assert_array_equal(kept, block[:, 1:])


def test_label_settings_and_a_component_smaller_than_the_classes_are_refused_before_labelling(tmp_path):
    path = tmp_path / "r.edges"
    path.write_text("0 1 1.0\n1 2 2.0\n2 0 1.5\n")
    for kwargs, message in (({"hops": 0}, r"hops must be an int >= 1 \(the hop radius of the eccentricity labels\), "
                                          r"got 0"),
                            ({"classes": 1}, r"classes must be an int >= 2 \(the eccentricity label classes\), got 1")):
        with pytest.raises(ValueError, match=message):
            build_city_network(path, cache=False, **kwargs)
    with pytest.raises(ValueError, match=r"the largest connected component has 3 nodes, fewer than classes=4"):
        build_city_network(path, hops=2, classes=4, cache=False)


def test_bad_lengths_are_counted_and_a_zero_length_is_a_length(tmp_path):
    (tmp_path / "z.edges").write_text("0 1 0\n1 2 1.5\n")
    assert read_road_graph(tmp_path / "z.edges").length.tolist() == [0.0, 1.5]
    n = 20
    edges = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    length = 1.0 + np.arange(n) % 3
    length[[4, 11]] = -1.0
    with pytest.raises(ValueError, match=r"2 of 20 roads have a negative or infinite length, e\.g\. the road 4-5"):
        city_data(RoadGraph(n, edges, None, length), hops=3, classes=2, split=(0.5, 0.25, 0.25))
    length[[4, 11]] = 0.0
    with pytest.warns(UserWarning, match=r"dropped feature\(s\) street_count"):  # a ring: every junction has 2 roads
        data = city_data(RoadGraph(n, edges, None, length), hops=3, classes=2, split=(0.5, 0.25, 0.25))
    assert float(data.edge_length.min()) == 0.0 and data.num_nodes == n


def test_a_dropped_component_changes_no_feature_and_the_continuous_features_are_z_scored():
    """The roads of a smaller component are dropped with it: their maxspeed (a road of the kept component without
    one takes the mean of the kept roads') and categories change nothing."""
    rng = np.random.default_rng(1)
    n = 30
    ring = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    edges = np.concatenate([ring, rng.integers(0, n, (10, 2))])
    speeds = [None if i % 4 == 0 else str(int(s)) for i, s in enumerate(rng.choice([30, 50, 70], len(edges)))]
    lanes = [str(int(k)) for k in rng.integers(1, 4, len(edges))]
    length = rng.uniform(1, 3, len(edges))
    kept = city_data(RoadGraph(n, edges, None, length, edge_attrs={"maxspeed": speeds, "lanes": lanes}),
                     hops=3, classes=3)
    apart = np.tile([[n, n + 1]], (8, 1))
    road = RoadGraph(n + 2, np.concatenate([edges, apart]), None, np.concatenate([length, np.full(8, 2.0)]),
                     edge_attrs={"maxspeed": speeds + ["130"] * 8, "lanes": lanes + ["6"] * 8})
    with pytest.warns(UserWarning, match=r"kept its largest component \(30 of 32 junctions"):
        both = city_data(road, hops=3, classes=3)
    assert both.feature_names == kept.feature_names and "speed" in kept.feature_names
    torch.testing.assert_close(both.x, kept.x)
    assert torch.equal(both.y, kept.y)
    continuous = kept.x[:, :kept.feature_names.index("speed") + 1].double()
    torch.testing.assert_close(continuous.mean(0), torch.zeros(continuous.shape[1], dtype=torch.float64), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(continuous.std(0, unbiased=False), torch.ones(continuous.shape[1], dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_labels_with_fewer_distinct_values_than_classes_are_refused():
    """A triangle with a tail, every road of length 1: the eccentricities are 1 and 2 only."""
    road = RoadGraph(4, np.array([[0, 1], [1, 2], [2, 0], [2, 3]]))
    with pytest.warns(UserWarning, match="no edge lengths and no coordinates"), \
            pytest.raises(ValueError, match=r"degenerate labels: the 5-hop eccentricity takes only 2 distinct "
                                            r"value\(s\) over 4 junctions, fewer than classes=3"):
        city_data(road, hops=5, classes=3, split=(0.5, 0.25, 0.25))


def test_the_missing_lengths_warning_counts_the_roads_of_the_kept_component(tmp_path):
    (tmp_path / "t.cnode").write_text("NodeID x y\n0 0 0\n1 1 1\n2 2 2\n3 3 0\n4 9 9\n5 9 8\n")
    (tmp_path / "t.cedge").write_text("EdgeID a b l\n0 0 1 5.0\n1 1 2 nan\n2 2 3 2.0\n3 4 5 nan\n")
    with pytest.warns(UserWarning, match=r"t\.cnode: 1 of 3 roads have no length; the 1 junction pairs without any "
                                         r"take the straight-line distance"), \
            pytest.warns(UserWarning, match="kept its largest component"):
        build_city_network(tmp_path / "t.cnode", hops=3, classes=2, split=(0.5, 0.25, 0.25), cache=False)


def test_node_land_use_takes_the_six_most_frequent_values_and_other():
    n = 24
    edges = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    uses = ["a"] * 6 + ["b"] * 5 + ["c"] * 4 + ["d"] * 3 + ["e"] * 2 + ["f"] * 2 + ["g", None]
    road = RoadGraph(n, edges, None, 1.0 + np.arange(n) % 5, node_attrs={"landuse": uses})
    with pytest.warns(UserWarning, match=r"dropped feature\(s\) street_count"):  # a ring: every junction has 2 roads
        data = city_data(road, hops=3, classes=3)
    assert data.feature_names[-7:] == [f"landuse={u}" for u in "abcdef"] + ["landuse=other"]
    np.testing.assert_array_equal(data.x[:, -1].numpy(), [0.0] * 22 + [1.0, 1.0])  # 'g' and no land use: other


def test_a_city_of_two_junctions_too_few_for_its_split_names_three():
    from fwdlearn.graphs.data.citynet import _city_masks

    with pytest.raises(ValueError, match=r"split=\(0\.25, 0\.25, 0\.5\) of the 2 junctions of the largest connected "
                                         r"component leaves the train and val masks empty; this split needs a "
                                         r"largest connected component of at least 3 junctions"):
        _city_masks(2, 0, (0.25, 0.25, 0.5))


def test_a_cached_city_that_is_not_a_dict_is_rebuilt_naming_what_it_holds(tmp_path):
    import os
    from pathlib import Path

    path = tmp_path / "r.edges"
    rng = np.random.default_rng(0)
    path.write_text("\n".join(f"{i} {i + 1} {w:.3f}" for i, w in enumerate(rng.uniform(1, 5, 40))) + "\n")
    built = build_city_network(path, hops=3, classes=4)
    (cached,) = (Path(os.environ["FWDLEARN_CACHE_DIR"]) / "citynet").glob("*.pt")
    torch.save([1, 2], cached)
    with pytest.warns(UserWarning, match=r"could not be read \(ValueError: it holds a list, not a dict of tensors\); "
                                         r"rebuilding it"):
        again = build_city_network(path, hops=3, classes=4)
    assert torch.equal(again.x, built.x) and torch.equal(again.y, built.y)


def test_the_cache_key_holds_the_classes_and_both_files_of_a_pair(tmp_path):
    """A cached build is reused only for the same label classes and the same bytes of the .cnode and the .cedge."""
    (tmp_path / "p.cnode").write_text("\n".join(f"{i} {i % 7} {i // 7 + (i % 3) * 0.1}" for i in range(28)) + "\n")
    rng = np.random.default_rng(0)
    rows = [(i, i + 1) for i in range(27)] + [(i, i + 7) for i in range(21)]
    (tmp_path / "p.cedge").write_text("".join(f"{k} {u} {v} {w:.3f}\n" for k, ((u, v), w)
                                              in enumerate(zip(rows, rng.uniform(1, 5, len(rows))))))
    four = build_city_network(tmp_path / "p.cnode", hops=3, classes=4)
    three = build_city_network(tmp_path / "p.cnode", hops=3, classes=3)
    assert (four.num_classes, int(four.y.max())) == (4, 3) and (three.num_classes, int(three.y.max())) == (3, 2)
    (tmp_path / "p.cedge").write_text("".join(f"{k} {u} {v} {w:.3f}\n" for k, ((u, v), w)
                                              in enumerate(zip(rows, rng.uniform(1, 5, len(rows))))))
    again = build_city_network(tmp_path / "p.cnode", hops=3, classes=4)
    fresh = build_city_network(tmp_path / "p.cnode", hops=3, classes=4, cache=False)
    assert torch.equal(again.eccentricity, fresh.eccentricity)
    assert not torch.equal(again.eccentricity, four.eccentricity)
    with pytest.raises(ValueError, match=r"^split must be three non-negative fractions \(train, val, test\) summing to "
                                         r"1; got \(0\.5, 0\.5, 0\.5\)"):  # (a cached build, too, is refused by name)
        build_city_network(tmp_path / "p.cnode", hops=3, classes=4, split=(0.5, 0.5, 0.5))


def test_a_synthetic_city_needs_four_junctions():
    from fwdlearn.graphs import synthetic_city

    with pytest.raises(ValueError, match=r"synthetic_city needs n >= 4 junctions, got 3"):
        synthetic_city(3, hops=2, classes=2)


def test_a_generated_city_kept_in_the_process_is_labelled_again_for_other_classes(monkeypatch):
    import fwdlearn.graphs.data.citynet as citynet

    monkeypatch.setattr(citynet, "_last_synthetic", {})
    three = citynet.synthetic_city(64, seed=3, hops=4, classes=3)
    four = citynet.synthetic_city(64, seed=3, hops=4, classes=4)
    assert (three.num_classes, int(three.y.max())) == (3, 2) and (four.num_classes, int(four.y.max())) == (4, 3)


def test_synthetic_city_without_a_size_has_2500_junctions(monkeypatch):
    import fwdlearn.graphs.data.citynet as citynet

    monkeypatch.setattr(citynet, "synthetic_city", lambda n, **kwargs: n)
    assert citynet.load_city("synthetic-city") == 2500 and citynet.load_city("Synthetic-City:81") == 81


def test_a_road_graph_without_roads_is_refused_by_city_data():
    with pytest.raises(ValueError, match=r"^the road graph has no edges$"):
        city_data(RoadGraph(3, np.zeros((0, 2), dtype=np.int64)), hops=2, classes=2)


def test_a_synthetic_city_one_junction_over_the_limit_is_refused_before_drawing_it(monkeypatch):
    import fwdlearn.graphs.data.citynet as citynet

    def drawn(*args, **kwargs):
        raise AssertionError("the city was drawn")

    monkeypatch.setattr(citynet.np.random, "default_rng", drawn)
    with pytest.raises(ValueError, match=r"synthetic_city builds at most 10,000,000 junctions, got 10,000,001"):
        citynet.synthetic_road_graph(citynet.MAX_SYNTHETIC_JUNCTIONS + 1)


def test_a_junction_without_a_street_count_takes_its_degree():
    n = 12
    edges = np.concatenate([np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1), [[0, 6], [3, 9]]])
    counts = ["4", None, "3", None, "1", "2", None, "5", "2", "3", "1", "4"]
    length = np.random.default_rng(0).uniform(1, 3, len(edges))
    road = RoadGraph(n, edges, None, length, node_attrs={"street_count": counts})
    data = city_data(road, hops=3, classes=3)
    raw = np.array([4, 2, 3, 3, 1, 2, 3, 5, 2, 3, 1, 4], dtype=np.float64)  # junctions 1, 3, 6: degree 2, 3, 3
    np.testing.assert_allclose(data.x[:, data.feature_names.index("street_count")].numpy(),
                               (raw - raw.mean()) / raw.std(), rtol=1e-5)


def test_a_relative_city_path_in_the_working_folder_comes_before_the_data_folder(tmp_path, monkeypatch):
    from pathlib import Path

    from fwdlearn.graphs.data.citynet import road_path

    for folder in ("work", "data"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "r.edges").write_text("0 1\n")
    (tmp_path / "data" / "only.edges").write_text("0 1\n")
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path / "data"))
    assert road_path("r.edges") == Path("r.edges")
    assert road_path("only.edges") == tmp_path / "data" / "only.edges"
