"""``file:<path>``: a graph of the user's own, a PyG ``Data`` saved with ``torch.save``, from the commands and
``load_graph`` (the CLI took built-in names only: "unknown graph 'file:my.pt'")."""

import json
import os
import warnings

import pytest
import torch
from torch_geometric.data import Data, HeteroData

from fwdlearn.cli import main
from fwdlearn.errors import InputError, UsageError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _graph(n: int = 40, classes: int = 3, **changes) -> Data:
    """A small undirected graph: a ring with chords, features that carry the class."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    chords = torch.stack([torch.arange(0, n, 2), (torch.arange(0, n, 2) + 7) % n])
    edges = torch.cat([ring, chords], 1)
    attrs = dict(x=torch.nn.functional.one_hot(y, classes).float() + 0.1 * torch.randn(n, classes, generator=gen),
                 edge_index=torch.cat([edges, edges.flip(0)], 1), y=y)
    attrs.update(changes)
    return Data(**{key: value for key, value in attrs.items() if value is not None})


def _saved(tmp_path, data, name: str = "g.pt"):
    path = tmp_path / name
    torch.save(data, path)
    return path


def _refusal(path, **kwargs) -> str:
    """The message of the :class:`InputError` ``load_graph(f"file:{path}", **kwargs)`` raises."""
    from fwdlearn.graphs.data.datasets import load_graph

    with pytest.raises(InputError) as error:
        load_graph(f"file:{path}", **kwargs)
    return str(error.value)


def test_graph_train_trains_on_a_saved_graph_and_records_the_file(tmp_path, capsys):
    from fwdlearn.graphs.data.datasets import graph_files, load_graph

    data = _graph()
    path = _saved(tmp_path, data)
    record = tmp_path / "run.json"
    assert main(["graph", "train", "--data", f"file:{path}", "--layers", "2", "--hidden", "8", "--epochs", "3",
                 "--splits", "2", "--quiet", "--json", str(record)]) == 0
    assert "mean ± std" in capsys.readouterr().out
    saved = json.loads(record.read_text())
    assert saved["config"]["data"] == f"file:{path}" and len(saved["metrics"]) == 2
    assert graph_files(f"file:{path}") == [path] and graph_files(f"file:{tmp_path / 'none.pt'}") == []
    loaded = load_graph(f"file:{path}", split="random", seed=0)
    assert torch.equal(loaded.x, data.x) and torch.equal(loaded.edge_index, data.edge_index)
    assert loaded.num_classes == 3 and loaded.y.dtype == torch.long
    assert [int(loaded[key].sum()) for key in ("train_mask", "val_mask", "test_mask")] == [26, 6, 8]  # 64/16/20
    # the file is an input: no output may replace it, --overwrite or not
    assert main(["graph", "train", "--data", f"file:{path}", "--checkpoint", str(path), "--epochs", "1", "--quiet",
                 "--json", str(tmp_path / "other.json"), "--overwrite"]) == 2
    assert f"is the file --data {path} reads" in capsys.readouterr().err
    # the checkpoint beside --json x.json is x.pt: named as such (it read "--json x.pt is the file ...", given x.json)
    assert main(["graph", "train", "--data", f"file:{path}", "--json", str(path.with_suffix(".json")), "--epochs",
                 "1", "--quiet"]) == 2
    assert (f"the checkpoint {path}, which --json places beside the record {path.with_suffix('.json')}, is the file "
            f"--data {path} reads: an output never replaces what the command reads; give --json another value, or "
            "the checkpoint its own path with --checkpoint") in capsys.readouterr().err


def test_a_record_given_as_the_graph_file_is_named_as_the_record(tmp_path, capsys):
    """--json g.pt, the graph file itself, was refused as "the checkpoint g.pt, which --json places beside the record
    g.pt", whose fix "or the checkpoint its own path with --checkpoint" left the record on the input: the record is
    named, and --json alone."""
    path = _saved(tmp_path, _graph())
    assert main(["graph", "train", "--data", f"file:{path}", "--json", str(path), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (f"--json {path} is the file --data {path} reads: an output never replaces what the command reads; give "
            "--json another path") in err, err
    assert "--checkpoint" not in err, err


def test_a_saved_graphs_masks_are_its_public_split(tmp_path, capsys):
    from fwdlearn.graphs.data.datasets import load_graph

    n = 40
    masks = {key: (torch.arange(n) % 4 == i) for i, key in enumerate(("train_mask", "val_mask", "test_mask"))}
    path = _saved(tmp_path, _graph(n, **masks))
    for split in ("public", "auto"):
        loaded = load_graph(f"file:{path}", split=split)
        assert all(torch.equal(loaded[key], mask) for key, mask in masks.items())
    with pytest.warns(UserWarning, match=r"holds its own train/val/test masks; the random split .* and the only split "
                                         r"of bench graph and quickstart; .* pass --split public to graph train "
                                         r"\(split='public'\) to use the file's$"):
        loaded = load_graph(f"file:{path}", split="random")
    assert int(loaded.train_mask.sum()) == 26
    record = tmp_path / "public.json"
    assert main(["graph", "train", "--data", f"file:{path}", "--split", "public", "--layers", "1", "--hidden", "8",
                 "--epochs", "2", "--quiet", "--json", str(record)]) == 0
    # one fixed split: several runs of it would report the model seeds' spread as the splits'
    assert main(["graph", "train", "--data", f"file:{path}", "--split", "public", "--splits", "3", "--quiet",
                 "--json", str(tmp_path / "three.json")]) == 2
    assert f"--split public is one fixed split of file:{path}" in capsys.readouterr().err


def test_link_prediction_on_a_saved_graph_says_nothing_of_its_node_masks(tmp_path, capsys):
    """graph train --task link on a saved graph with its own masks warned that the random split replaced them and to
    pass --split public, which --task link refuses (it splits the edges and reads no node mask); a train_mask alone
    was warned about too."""
    n = 40
    masks = {key: (torch.arange(n) % 4 == i) for i, key in enumerate(("train_mask", "val_mask", "test_mask"))}
    for name, data in (("three.pt", _graph(n, **masks)), ("one.pt", _graph(n, train_mask=torch.arange(n) < 6))):
        path = _saved(tmp_path, data, name)
        assert main(["graph", "train", "--data", f"file:{path}", "--task", "link", "--layers", "1", "--hidden", "8",
                     "--epochs", "1", "--quiet", "--json", str(tmp_path / f"{name}.json")]) == 0
        assert "warning" not in capsys.readouterr().err
    assert main(["graph", "train", "--data", f"file:{tmp_path / 'three.pt'}", "--layers", "1", "--hidden", "8",
                 "--epochs", "1", "--quiet", "--json", str(tmp_path / "node.json")]) == 0
    assert "holds its own train/val/test masks" in capsys.readouterr().err  # (node classification: still said)


def test_a_saved_graph_without_masks_draws_a_split_of_its_labelled_nodes(tmp_path):
    from fwdlearn.graphs.data.datasets import load_graph

    y = torch.arange(100) % 2
    y[::4] = -1  # 25 unlabelled nodes: in no split
    loaded = load_graph(f"file:{_saved(tmp_path, _graph(100, 2, y=y))}", split="auto", seed=3)
    held = loaded.train_mask | loaded.val_mask | loaded.test_mask
    assert torch.equal(held, y >= 0) and int(loaded.train_mask.sum()) == 48
    assert _refusal(_saved(tmp_path, _graph(), 'bare.pt'), split="public") == (
        f"{tmp_path / 'bare.pt'} holds no train_mask and no val_mask and no test_mask: its own split (split='public', "
        "--split public) needs train_mask, val_mask and test_mask; use split='random' (--split random: 64/16/20 of "
        "the labelled nodes drawn from the seed), or save the graph with the three boolean masks")


def test_a_directed_saved_graph_is_used_as_saved_with_one_warning_naming_to_undirected(tmp_path, capsys):
    from fwdlearn.graphs.data.datasets import load_graph

    data = _graph()
    one_way = data.edge_index[:, : data.edge_index.shape[1] // 2]  # each edge once
    path = _saved(tmp_path, _graph(edge_index=one_way))
    with pytest.warns(UserWarning) as caught:
        loaded = load_graph(f"file:{path}", split="random")
    message, = [str(w.message) for w in caught]
    assert message.startswith(f"{path}: data.edge_index is directed (60 of its 60 edges have no reverse edge)")
    assert "data.edge_index = torch_geometric.utils.to_undirected(data.edge_index, num_nodes=data.num_nodes)" in message
    assert torch.equal(loaded.edge_index, one_way)  # (not changed behind the user's back)
    with pytest.warns(UserWarning, match="is directed"):  # the same file again: each call warns, as Python shows it
        load_graph(f"file:{path}", split="random", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_graph(f"file:{_saved(tmp_path, _graph(), 'both.pt')}", split="auto")  # both directions: no warning
    path = _saved(tmp_path, _graph(edge_index=one_way), "cli.pt")
    assert main(["graph", "train", "--data", f"file:{path}", "--splits", "3", "--layers", "1", "--hidden", "4",
                 "--epochs", "1", "--quiet", "--json", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().err.count("is directed") == 1  # (once, not once per split)


def test_a_saved_graphs_warning_is_shown_once_in_every_run_of_a_process(tmp_path, capsys):
    """The directed-edge warning was given once per file for the whole Python process (a set of the files warned
    about, kept beside the splits' own once-per-run mechanism): a second graph train of the same file in one session
    (a notebook, a script running several) showed none. Each run shows it once, whatever the warning filter, over its
    splits (no "split 1 met the warning above again" line: it is the file's, not the split's); bench graph too."""
    data = _graph()
    path = _saved(tmp_path, _graph(edge_index=data.edge_index[:, : data.edge_index.shape[1] // 2]))
    train = ["graph", "train", "--data", f"file:{path}", "--splits", "2", "--layers", "1", "--hidden", "4", "--epochs",
             "1", "--quiet", "--json", str(tmp_path / "r.json"), "--overwrite"]
    bench = ["bench", "graph", "--data", f"file:{path}", "--depths", "1", "--methods", "sf", "--splits", "2",
             "--epochs", "1", "--hidden", "4", "--link-layers", "0", "--quiet", "--out", str(tmp_path / "b"),
             "--overwrite"]
    for command, always in ((train, False), (train, False), (train, True), (bench, True)):
        with warnings.catch_warnings():
            if always:
                warnings.simplefilter("always")
            assert main(command) == 0
        err = capsys.readouterr().err
        assert err.count("is directed") == 1 and "met the warning above again" not in err, (command[:2], err)


class _Planted:
    def __reduce__(self):
        return (os.system, ("touch planted-ran",))


@pytest.mark.parametrize("changes,message", [
    ({"y": None}, "data.y, one class id per node, is missing: file:<path> trains node classification, so the graph "
                  "needs labels (link prediction reads none: graph train --task link, load_graph('file:<path>', "
                  "labels=False) in Python): set data.y (int64 class ids 0..C-1, -1 for an unlabelled node)"),
    ({"x": None}, "data.x must be a [num_nodes, num_features] tensor of node features; the graph has none: give it "
                  "some, e.g. data.x = torch.ones(num_nodes, 1), one-hot degrees "
                  "(torch_geometric.transforms.OneHotDegree) or one feature per node, torch.eye(num_nodes)"),
    ({"y": (torch.arange(40) % 3).float()}, "data.y must hold integer class ids; got torch.float32; its values are "
                                            "whole numbers: data.y = data.y.long()"),
    ({"y": torch.linspace(0, 1, 40)}, "data.y must hold integer class ids; got torch.float32 values that are not "
                                      "whole numbers (regression targets? fwdlearn's graph models classify nodes): "
                                      "give int64 class ids 0..C-1"),
    ({"y": torch.eye(3)[torch.arange(40) % 3]}, "data.y must hold one class id per node; got shape [40, 3] of one-hot "
                                                "rows: data.y = data.y.argmax(dim=1)"),
    ({"edge_index": torch.tensor([[0, 40], [40, 0]])}, "data.edge_index values must lie in [0, 39] (data.x has 40 "
                                                       "rows); got values in [0, 40]"),
    ({"edge_index": None}, "data.edge_index, the [2, num_edges] tensor of the graph's edges, is missing"),
    ({"num_classes": 2}, "data.num_classes is 2 but data.y holds class ids up to 2: set data.num_classes = 3 (or "
                         "more, for classes no node has), or drop it"),
])
def test_a_saved_graph_lacking_what_training_reads_is_refused_naming_the_fix(tmp_path, changes, message):
    path = _saved(tmp_path, _graph(**changes))
    assert _refusal(path, split="random") == f"{path}: {message}; then save it again, torch.save(data, path)"


def _hetero():
    data = HeteroData()
    data["paper"].x = torch.randn(3, 2)
    return data


@pytest.mark.parametrize("content,message", [
    ({"x": torch.randn(3, 2), "edge_index": torch.zeros(2, 0, dtype=torch.long)},
     "holds a dict (keys x, edge_index), not a torch_geometric.data.Data: save it as one, torch.save(Data(**d), path) "
     "(from torch_geometric.data import Data)"),
    (torch.randn(3), "holds a Tensor, not a torch_geometric.data.Data; file:<path> reads a graph saved with "
                     "torch.save(data, path), data a Data with x, edge_index and y"),
    ([_graph(), _graph()], "holds a list of 2 graphs; file:<path> reads one graph: save one of them, "
                           "torch.save(graphs[0], path)"),
    (_hetero(), "holds a HeteroData (node types 'paper'); file:<path> reads one homogeneous graph: save "
                "data.to_homogeneous() (node features of one width across the types), or a Data of one node type "
                "and its edges"),
])
def test_a_file_that_is_not_one_saved_data_is_refused_naming_what_it_holds(tmp_path, content, message):
    path = _saved(tmp_path, content)
    assert _refusal(path) == f"{path} {message}"


def test_a_saved_graph_is_read_tensors_only(tmp_path, monkeypatch):
    """An object in the file whose unpickling would run code is refused by its type, and nothing runs."""
    monkeypatch.chdir(tmp_path)
    path = _saved(tmp_path, _graph(planted=_Planted()))
    assert _refusal(path).startswith(f"cannot read {path} as a saved graph (UnpicklingError: it holds a Python "
                                       "object of type posix.system, which fwdlearn does not unpickle")
    assert not (tmp_path / "planted-ran").exists()


def test_a_saved_graph_name_is_refused_with_its_fix(tmp_path, monkeypatch, capsys):
    from fwdlearn.graphs.data.datasets import check_graph_name, load_graph

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FWDLEARN_DATA_DIR", raising=False)
    _saved(tmp_path, _graph(), "my.pt")
    assert check_graph_name(" file:my.pt ") == "file:my.pt" and check_graph_name("FILE:My.pt") == "file:My.pt"
    assert main(["graph", "train", "--data", "my.pt", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "; a graph saved with torch.save(data, path) is named file:<path>, here 'file:my.pt'")
    with pytest.raises(ValueError) as error:
        check_graph_name("file:")
    assert str(error.value) == ("file: needs a path: the file a torch_geometric.data.Data was saved to, "
                                "torch.save(data, 'my_graph.pt'), named file:my_graph.pt")
    with pytest.raises(FileNotFoundError) as error:
        load_graph("file:none.pt")
    assert str(error.value) == (f"graph file 'none.pt' not found (looked for {tmp_path / 'none.pt'}); file:<path> "
                                "names a torch_geometric.data.Data saved with torch.save(data, path)")
    assert load_graph("file:my.pt", split="random").num_nodes == 40  # (a relative path, from the working folder)
    (tmp_path / "data" / "graphs").mkdir(parents=True)
    _saved(tmp_path / "data" / "graphs", _graph(20))
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path / "data"))  # (then under the data folder, as city:<path>)
    assert load_graph("file:graphs/g.pt", split="random").num_nodes == 20


def test_the_graph_commands_help_names_a_saved_graph():
    from fwdlearn.graphs.cli.influence import InfluenceGraphConfig
    from fwdlearn.graphs.cli.train import GraphTrainConfig
    from dataclasses import fields

    helps = [next(f.metadata["help"] for f in fields(cls) if f.name == "data")
             for cls in (GraphTrainConfig, InfluenceGraphConfig)]
    assert all("file:<path>" in text for text in helps)


def test_a_numpy_attribute_is_named_as_numpy_not_as_a_file_that_is_no_torch_file(tmp_path):
    """torch's reader refuses a numpy array by what it built ("... but got <class 'numpy.dtypes.Int64DType'>"): that
    was reported as "not a torch file". The refusal is load_torch's (one wording for every torch file), with the fix
    in a saved graph's words (it was reworded here: "numpy", "the tensors-only reader")."""
    import numpy as np

    path = _saved(tmp_path, _graph(years=np.arange(40)))
    message = _refusal(path)
    assert message == (
        f"cannot read {path} as a saved graph: it holds a NumPy array or number (numpy.dtypes.Int64DType), which "
        "fwdlearn does not unpickle (that could run code the file carries): make each NumPy attribute a tensor, "
        "data.<name> = torch.as_tensor(data.<name>), or drop it, and save it again")
    assert "not a torch file" not in message
    path = _saved(tmp_path, _graph(count=np.float32(3)), "scalar.pt")  # (a NumPy number: its class is another)
    assert "it holds a NumPy array or number (numpy." in _refusal(path) and "data.<name> = " in _refusal(path)


def test_a_graph_pyg_transformed_or_batched_is_refused_naming_its_fix(tmp_path):
    """A transform such as ToUndirected leaves PyG's attribute cache (a defaultdict of AttrType) in the Data, and a
    Batch pickles its class through DynamicInheritanceGetter: neither can be read tensors-only. Both were refused as
    "a Python object ... fwdlearn's own models and checkpoints hold none"; the fix is named and works."""
    import torch_geometric.transforms as T
    from torch_geometric.data import Batch
    from torch_geometric.utils import to_edge_index

    from fwdlearn.graphs.data.datasets import load_graph

    one_way = _graph().edge_index[:, :60]
    undirected = T.ToUndirected()(_graph(edge_index=one_way))
    path = _saved(tmp_path, undirected)
    assert _refusal(path) == (
        f"cannot read {path} as a saved graph: its Data carries PyG's cache of which attributes are node or edge "
        "attributes (left by a transform such as ToUndirected or ToSparseTensor, or by data.subgraph), which the "
        "tensors-only reader cannot rebuild; save a copy without it, torch.save(data.clone(), path)")
    fixed = load_graph(f"file:{_saved(tmp_path, undirected.clone(), 'fixed.pt')}", split="auto")
    assert fixed.edge_index.shape[1] == 120
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (torch's beta warning on sparse CSR tensors)
        sparse = T.ToSparseTensor()(_graph()).clone()
        path = _saved(tmp_path, sparse, "sparse.pt")
        with pytest.raises(InputError, match=r"or its edges read back, data\.edge_index = torch_geometric\.utils\."
                                             r"to_edge_index\(data\.adj_t\)\[0\]\.flip\(0\)\)"):
            load_graph(f"file:{path}")
        sparse.edge_index = to_edge_index(sparse.adj_t)[0].flip(0)  # (the fix named)
    read = load_graph(f"file:{_saved(tmp_path, sparse, 'sparse.pt')}", split="auto")
    assert sorted(zip(*read.edge_index.tolist())) == sorted(zip(*_graph().edge_index.tolist()))
    graphs = Batch.from_data_list([_graph(), _graph()])
    path = _saved(tmp_path, graphs, "batch.pt")
    assert _refusal(path) == (
        f"{path} holds a torch_geometric.data.Batch (graphs collated by a DataLoader or Batch.from_data_list), which "
        "the tensors-only reader cannot rebuild; file:<path> reads one graph: save one of them, "
        "torch.save(batch.get_example(0), path)")
    assert load_graph(f"file:{_saved(tmp_path, graphs.get_example(0), 'one.pt')}", split="auto").num_nodes == 40


def test_a_pyg_data_sets_processed_file_is_named_as_one(tmp_path):
    """processed/data.pt of an InMemoryDataset, (data.to_dict(), slices, Data) since PyG 2.4, (data, slices) before,
    was refused as "holds a tuple"."""
    from torch_geometric.data.collate import collate

    from fwdlearn.graphs.data.datasets import load_graph

    path = _saved(tmp_path, (_graph().to_dict(), None, Data))
    assert _refusal(path) == (
        f"{path} holds a PyG data set's processed file (the (data, slices) an InMemoryDataset writes to "
        "processed/data.pt, of 1 graph); file:<path> reads one Data saved with torch.save: load the data set with "
        "its class and save a graph of it, torch.save(dataset[0], path)")
    data, slices, _ = collate(Data, [_graph()] * 3, increment=False, add_batch=False)
    path = _saved(tmp_path, (data, slices), "three.pt")
    with pytest.raises(InputError, match=r"processed/data\.pt, of 3 graphs\); file:<path> reads one Data"):
        load_graph(f"file:{path}")


def test_a_saved_graph_with_a_train_mask_alone_gets_a_random_split_with_a_warning(tmp_path, capsys):
    """PyG's KarateClub holds a train_mask and no val_mask or test_mask: split='auto' (influence graph, bench
    influence) took that for the file's own split and refused it as incomplete, telling to pass a --split those
    commands have not."""
    from fwdlearn.graphs.data.datasets import load_graph

    path = _saved(tmp_path, _graph(train_mask=torch.arange(40) < 6))
    with pytest.warns(UserWarning) as caught:
        loaded = load_graph(f"file:{path}", split="auto")
    assert [str(w.message) for w in caught] == [
        f"{path} holds train_mask but no val_mask and no test_mask, so it has no split of its own: a random split "
        "replaces it with 64/16/20 of the labelled nodes drawn from the seed; to train on the file's split, save the "
        "graph with the three boolean masks"]
    assert [int(loaded[key].sum()) for key in ("train_mask", "val_mask", "test_mask")] == [26, 6, 8]
    with pytest.raises(InputError, match="holds no val_mask and no test_mask"):
        load_graph(f"file:{path}", split="public")  # (asked for: still refused)
    assert main(["influence", "graph", "--data", f"file:{path}", "--layers", "1", "--hidden", "4", "--epochs", "1",
                 "--samples", "4", "--quiet", "--json", str(tmp_path / "influence.json")]) == 0
    capsys.readouterr()


def test_a_saved_num_classes_tensor_of_one_integer_is_read_as_that_int(tmp_path):
    """num_classes saved as torch.tensor(3) (or tensor([3]), as a Batch collates it) was refused: "data.num_classes
    is tensor([3]) but data.y holds class ids up to 2: set data.num_classes = 3"."""
    from fwdlearn.graphs.data.datasets import load_graph

    for saved in (torch.tensor(3), torch.tensor([5])):
        loaded = load_graph(f"file:{_saved(tmp_path, _graph(num_classes=saved))}", split="random")
        assert loaded.num_classes == int(saved) and type(loaded.num_classes) is int
    with pytest.raises(InputError, match=r"data\.num_classes is tensor\(\[3, 3\]\) but"):
        load_graph(f"file:{_saved(tmp_path, _graph(num_classes=torch.tensor([3, 3])))}", split="random")


def test_bench_influence_refuses_one_saved_file_named_by_two_paths(tmp_path, monkeypatch, capsys):
    """--graphs file:g.pt file:./g.pt (or a link to it) timed one graph twice, as two rows."""
    monkeypatch.chdir(tmp_path)
    _saved(tmp_path, _graph())
    (tmp_path / "link.pt").symlink_to(tmp_path / "g.pt")
    for second in ("file:./g.pt", f"file:{tmp_path / 'link.pt'}"):
        assert main(["bench", "influence", "--graphs", "file:g.pt", second, "--depths", "1", "--samples", "2",
                     "--pyg-samples", "1", "--repeats", "1", "--epochs", "0", "--quiet", "--out", "b"]) == 2
        assert capsys.readouterr().err.strip().endswith(
            f"--graphs names the graph file:g.pt more than once (file:g.pt, {second}); give each once")
    assert not (tmp_path / "b.md").exists()


def test_a_saved_graph_with_too_few_labelled_nodes_for_a_random_split_says_so(tmp_path):
    """A graph labelling 4 of its nodes, split at random, was refused as "data.test_mask selects no node ...; then save
    it again": a mask the file does not hold, and no fix there. It names the labelled nodes and the fixes."""
    from fwdlearn.graphs.data.datasets import load_saved_graph

    y = torch.full((40,), -1)
    y[:4] = torch.tensor([0, 1, 2, 0])
    with pytest.raises(InputError, match=r"labels only 4 node\(s\) \(data.y >= 0\), too few for a random 64/16/20 "
                                         r"split with a validation and a test node \(5 at least\)"):
        load_saved_graph(_saved(tmp_path, _graph(y=y)), split="random")
    y[4] = 1
    loaded = load_saved_graph(_saved(tmp_path, _graph(y=y), "five.pt"), split="random")
    assert [int(loaded[key].sum()) for key in ("train_mask", "val_mask", "test_mask")] == [3, 1, 1]


def test_resuming_on_a_saved_graph_that_changed_names_the_file(tmp_path, capsys):
    """A saved graph changed after its run's checkpoint was written was refused at --resume as "made by a different
    run: graph '3bd2...' (checkpoint) vs '891d...' (now)", naming no file: the refusal names the file, says that it
    changed since the checkpoint was written (or, not modified since, that it was replaced or --split differs), and
    what to do. A difference the settings explain (another --seed draws another split) keeps the settings' words."""
    path = _saved(tmp_path, _graph())
    run = ["graph", "train", "--data", f"file:{path}", "--layers", "1", "--hidden", "4", "--epochs", "2", "--quiet",
           "--json", str(tmp_path / "run.json")]
    assert main(run) == 0
    checkpoint = tmp_path / "run.pt"
    assert checkpoint.is_file()
    capsys.readouterr()
    data = _graph()
    _saved(tmp_path, _graph(edge_index=data.edge_index[:, 2:]))  # two edges dropped
    written = checkpoint.stat().st_mtime
    os.utime(path, (written + 60, written + 60))
    assert main([*run, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"the checkpoint {checkpoint} was trained on another graph than {path} holds now: the file has changed " \
           "since the checkpoint was written (the file modified " in err
    assert err.rstrip().endswith("To resume, restore the file as it was; to train on it as it is, start a new run "
                                 "(another --name or --checkpoint, or --overwrite to replace this one)")
    os.utime(path, (written - 60, written - 60))  # (an older copy put in its place)
    assert main([*run, "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"was trained on another graph than the one read from {path} now (its features, edges, labels or split " \
           "differ): the file was replaced since (by a copy not modified after the checkpoint was written), or the " \
           "run used another --split" in err
    _saved(tmp_path, _graph())  # the file as it was: another --seed is a difference of the settings
    os.utime(path, (written - 60, written - 60))
    assert main([*run, "--resume", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "was made by a different run: --seed 0 (checkpoint) vs 1 (now); graph '" in err and str(path) not in err
    assert "Resume with --seed 0 and the graph and split it was made with, or start a new run" in err


def _unlabelled_graphs(tmp_path) -> list:
    """Saved graphs link prediction can train on, which node classification refuses: no ``y``, no labelled node,
    too few labelled nodes for a node split, and float (regression) targets."""
    few = torch.full((40,), -1)
    few[:3] = 0
    return [_saved(tmp_path, _graph(**changes), name) for name, changes in (
        ("none.pt", {"y": None}), ("unlabelled.pt", {"y": torch.full((40,), -1)}), ("few.pt", {"y": few}),
        ("float.pt", {"y": torch.linspace(0, 1, 40)}))]


def test_link_prediction_trains_on_a_saved_graph_without_labels(tmp_path, capsys):
    """Link prediction reads no node label, yet graph train --task link and load_graph refused a saved graph without
    y ("data.y, one class id per node, is missing: file:<path> trains node classification"), with no labelled node,
    or with too few for a node split: a graph of x and edge_index trains links and reports its AUC."""
    from fwdlearn.graphs import ForwardLinkPredictor
    from fwdlearn.graphs.data.datasets import load_graph

    for path, splits in zip(_unlabelled_graphs(tmp_path)[:3], (2, 1, 1)):
        record = tmp_path / f"{path.stem}-link.json"
        assert main(["graph", "train", "--data", f"file:{path}", "--task", "link", "--layers", "1", "--hidden", "8",
                     "--epochs", "1", "--splits", str(splits), "--quiet", "--json", str(record)]) == 0, \
            capsys.readouterr().err
        assert "test_auc" in capsys.readouterr().out
        summary = json.loads(record.read_text())["summary"]
        assert 0 <= summary["test_auc_mean" if splits > 1 else "test_auc"] <= 1
    data = load_graph(f"file:{tmp_path / 'none.pt'}", labels=False)
    assert set(data.keys()) == {"x", "edge_index"} and data.edge_index.dtype == torch.long
    assert torch.equal(load_graph(f"file:{tmp_path / 'float.pt'}", labels=False).y, torch.linspace(0, 1, 40))
    model = ForwardLinkPredictor(data.num_features, hidden=8, layers=1)
    assert 0 <= model.fit(data, epochs=2, quiet=True).test_auc <= 1
    with pytest.raises(UsageError, match="labels must be True or False, got 'False'"):
        load_graph(f"file:{tmp_path / 'none.pt'}", labels="False")


def test_node_classification_refuses_a_saved_graph_without_labels_as_before(tmp_path, capsys):
    none, unlabelled, few, _ = _unlabelled_graphs(tmp_path)
    assert main(["graph", "train", "--data", f"file:{none}", "--layers", "1", "--epochs", "1", "--quiet",
                 "--json", str(tmp_path / "node.json")]) == 2
    assert (f"{none}: data.y, one class id per node, is missing: file:<path> trains node classification, so the graph "
            "needs labels") in capsys.readouterr().err
    assert "data.y labels no node" in _refusal(unlabelled, split="random")
    assert "labels only 3 node(s)" in _refusal(few, split="random")


def test_the_node_refusal_of_a_graph_without_labels_names_link_prediction(tmp_path, capsys):
    """A graph without labels was refused with "set data.y" alone, though link prediction trains on it: the refusal
    names --task link and labels=False, the way to train it as it is."""
    none, unlabelled, _, _ = _unlabelled_graphs(tmp_path)
    way_out = "link prediction reads none: graph train --task link, load_graph('file:<path>', labels=False) in Python"
    for path in (none, unlabelled):
        assert way_out in _refusal(path, split="random")
        assert main(["graph", "train", "--data", f"file:{path}", "--layers", "1", "--epochs", "1", "--quiet",
                     "--json", str(tmp_path / f"{path.stem}-node.json")]) == 2
        assert way_out in capsys.readouterr().err


def test_a_link_run_on_a_saved_graph_without_labels_resumes(tmp_path, capsys):
    """--resume compares the graph's features and edges, the link checkpoint's fingerprint: a label-free graph resumes,
    and one whose edges changed is refused naming the file."""
    path = _unlabelled_graphs(tmp_path)[0]
    run = ["graph", "train", "--data", f"file:{path}", "--task", "link", "--method", "bp", "--layers", "1",
           "--hidden", "8", "--quiet", "--json", str(tmp_path / "run.json")]
    assert main([*run, "--epochs", "2"]) == 0
    assert main([*run, "--epochs", "4", "--resume"]) == 0
    summary = json.loads((tmp_path / "run.json").read_text())["summary"]
    assert summary["resumed"]["split 0"]["from_step"] == 2 and 0 <= summary["test_auc"] <= 1
    capsys.readouterr()
    data = _graph(y=None)
    _saved(tmp_path, _graph(y=None, edge_index=data.edge_index[:, 2:]), path.name)
    written = (tmp_path / "run.pt").stat().st_mtime
    os.utime(path, (written + 60, written + 60))
    assert main([*run, "--epochs", "4", "--resume"]) == 2
    assert f"was trained on another graph than {path} holds now: the file has changed" in capsys.readouterr().err


def test_too_few_labelled_nodes_offer_split_public_only_to_the_command_that_takes_it(tmp_path, capsys):
    """The refusal of a saved graph labelling too few nodes for a random split told influence graph, bench graph, bench
    influence and quickstart to "use split='public' (--split public)": a flag graph train alone has. A split='auto'
    load (the influence commands) takes the file's masks by itself; a random one says whose flag --split is."""
    from fwdlearn.graphs.data.datasets import load_saved_graph

    y = torch.full((40,), -1)
    y[:2] = torch.tensor([0, 1])
    path = _saved(tmp_path, _graph(y=y))
    with pytest.raises(InputError, match=r"train_mask, val_mask and test_mask \(used when the file holds all three\)$"):
        load_saved_graph(path, split="auto")
    with pytest.raises(InputError, match=r"and use split='public' \(--split public to graph train; bench graph and "
                                         r"quickstart draw random splits only\)$"):
        load_saved_graph(path, split="random")
    assert main(["influence", "graph", "--data", f"file:{path}", "--layers", "1", "--hidden", "8", "--epochs", "1",
                 "--quiet", "--json", str(tmp_path / "i.json")]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert "labels only 2 node(s)" in line and "--split" not in line and "split=" not in line, line
    assert main(["bench", "graph", "--data", f"file:{path}", "--depths", "1", "--hidden", "8", "--epochs", "1",
                 "--quiet", "--out", str(tmp_path / "b")]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert "(--split public to graph train; bench graph and quickstart draw random splits only)" in line, line


def _influence_r(path, hidden: int, outputs: int, layers: int = 2, samples: int = 10) -> float:
    """R of an untrained GCN as ``influence graph --epochs 0`` builds and measures it, with ``outputs`` outputs."""
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs import ForwardGNN, hop_influence
    from fwdlearn.graphs.data.datasets import load_graph

    data = load_graph(f"file:{path}", labels=False)
    seed_everything(0)
    model = ForwardGNN(data.num_features, outputs, conv="gcn", hidden=hidden, layers=layers, method="bp", seed=0)
    return hop_influence(model, data, layers, samples=samples, seed=0, quiet=True)[1]


def test_influence_graph_measures_a_saved_graph_without_labels_untrained(tmp_path, capsys):
    """influence graph --epochs 0 (its default) trains nothing and reads no label, yet refused a saved graph without
    y ("data.y, one class id per node, is missing ... link prediction reads none"), and one of 1 or 2 nodes (too few
    for a random split it never used): untrained, the models get --hidden outputs where the graph has no labels, one
    per class where it has; training one (--epochs N) is refused naming --epochs 0."""
    none, unlabelled, _, regression = _unlabelled_graphs(tmp_path)
    labelled = _saved(tmp_path, _graph(), "labelled.pt")
    tiny = [_saved(tmp_path, Data(x=torch.randn(n, 3), edge_index=edges, y=torch.arange(n)), f"tiny{n}.pt")
            for n, edges in ((1, torch.zeros(2, 0, dtype=torch.long)), (2, torch.tensor([[0, 1], [1, 0]])))]
    for path, outputs in ((none, 8), (unlabelled, 8), (regression, 8), (labelled, 3), *((p, 8) for p in tiny)):
        record = tmp_path / f"{path.stem}-influence.json"
        assert main(["influence", "graph", "--data", f"file:{path}", "--layers", "2", "--hidden", "8", "--samples",
                     "10", "--quiet", "--json", str(record)]) == 0, capsys.readouterr().err
        row = json.loads(record.read_text())["metrics"][0]
        assert row["R"] == pytest.approx(_influence_r(path, 8, outputs), abs=1e-6), path
        assert row["seeds"] == min(10, torch.load(path, weights_only=False).num_nodes)
    assert json.loads((tmp_path / "tiny1-influence.json").read_text())["metrics"][0]["R"] == 0.0  # (itself alone)
    # (the labelled graph's width is its 3 classes, not --hidden: the R differs)
    assert _influence_r(labelled, 8, 3) != pytest.approx(_influence_r(labelled, 8, 8), abs=1e-6)
    for path in (none, unlabelled):
        assert main(["influence", "graph", "--data", f"file:{path}", "--layers", "1", "--epochs", "1", "--quiet",
                     "--json", str(tmp_path / "trained.json")]) == 2
        line, = capsys.readouterr().err.strip().splitlines()
        assert (f"--epochs 1 trains the models on node labels, and file:{path} has none a node classifier can train "
                "on") in line and "measure the models untrained with --epochs 0, which reads no label" in line, line


def test_float64_and_integer_features_are_read_as_float32(tmp_path, capsys):
    """A saved graph of float64 features loaded as saved, and every command failed on it with a traceback ("data.x is
    torch.float64 but the model's parameters are torch.float32"): read as float32, as integer features were."""
    from fwdlearn.graphs.data.datasets import load_graph

    data = _graph()
    for name, x in (("f64.pt", data.x.double()), ("f16.pt", data.x.half()), ("int.pt", (data.x > 0.5).long())):
        path = _saved(tmp_path, _graph(x=x), name)
        for labels in (True, False):
            loaded = load_graph(f"file:{path}", split="random", labels=labels)
            assert loaded.x.dtype == torch.float32 and torch.equal(loaded.x, x.float())
    path = tmp_path / "f64.pt"
    assert main(["influence", "graph", "--data", f"file:{path}", "--layers", "1", "--hidden", "8", "--epochs", "1",
                 "--samples", "4", "--quiet", "--json", str(tmp_path / "i.json")]) == 0, capsys.readouterr().err
    assert main(["graph", "train", "--data", f"file:{path}", "--layers", "1", "--hidden", "8", "--epochs", "1",
                 "--quiet", "--json", str(tmp_path / "t.json")]) == 0, capsys.readouterr().err


def test_labels_of_one_class_are_refused_naming_y(tmp_path, capsys):
    """A saved graph whose labelled nodes are all of class 0 failed in ForwardGNN with "num_classes must be an int >= 2,
    got 1", naming neither data.y nor a fix; with a num_classes of 2 or more saved it trains, and untrained it is
    measured with --hidden outputs."""
    from fwdlearn.graphs.data.datasets import load_graph

    path = _saved(tmp_path, _graph(y=torch.zeros(40, dtype=torch.long)))
    assert main(["graph", "train", "--data", f"file:{path}", "--layers", "1", "--epochs", "1", "--quiet",
                 "--json", str(tmp_path / "t.json")]) == 2
    assert ("data.y holds one class (every labelled node's id is 0): a node classifier needs 2 classes at least; give "
            "the nodes their class ids 0..C-1, or set data.num_classes = C") in capsys.readouterr().err
    assert load_graph(f"file:{_saved(tmp_path, _graph(y=torch.zeros(40, dtype=torch.long), num_classes=2), 'two.pt')}",
                      split="random").num_classes == 2
    record = tmp_path / "i.json"
    assert main(["influence", "graph", "--data", f"file:{path}", "--layers", "2", "--hidden", "8", "--samples", "10",
                 "--quiet", "--json", str(record)]) == 0
    assert json.loads(record.read_text())["metrics"][0]["R"] == pytest.approx(_influence_r(path, 8, 8), abs=1e-6)


def test_bench_influence_times_saved_graphs_without_labels_or_with_isolated_nodes(tmp_path, capsys):
    """The speed curve's GCNs are untrained, yet --graphs refused a saved graph without labels; PyG's reference failed
    with a raw "IndexError: index 44 is out of bounds for dimension 0 with size 40" on a seed numbered past every edge
    (isolated nodes saved last), and a graph without edges failed the same way: the first is timed, PyG given the
    nodes renumbered, agreeing with fwdlearn; the second refused by name. An unlabelled --data to train is refused
    naming --epochs 0."""
    data = _graph(y=None)
    isolated = _saved(tmp_path, Data(x=torch.cat([data.x, torch.randn(5, 3)]), edge_index=data.edge_index),
                      "isolated.pt")
    out = tmp_path / "b"
    assert main(["bench", "influence", "--graphs", f"file:{isolated}", "--depths", "2", "--samples", "45",
                 "--pyg-samples", "45", "--repeats", "1", "--epochs", "0", "--hidden", "8", "--quiet",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    row, = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert row["seeds"] == row["PyG seeds"] == 45 and row["max rel. diff"] < 1e-4
    edgeless = _saved(tmp_path, Data(x=torch.randn(3, 2), edge_index=torch.zeros(2, 0, dtype=torch.long)), "e.pt")
    assert main(["bench", "influence", "--graphs", f"file:{edgeless}", "--depths", "1", "--samples", "2",
                 "--repeats", "1", "--epochs", "0", "--quiet", "--out", str(tmp_path / "e")]) == 2
    assert f"--graphs file:{edgeless} has no edges" in capsys.readouterr().err
    assert main(["bench", "influence", "--graphs", f"file:{isolated}", "--depths", "1", "--samples", "2",
                 "--repeats", "1", "--data", f"file:{isolated}", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "d")]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert ("--epochs 1 trains the accuracy/R models on the node labels of --data, and file:" in line
            and "time the speed curve alone with --epochs 0" in line), line


def test_bench_influence_trains_models_of_the_saved_graphs_num_classes(tmp_path, monkeypatch):
    """bench influence gave its trained models max(y) + 1 outputs, where influence graph (and every node command)
    reads a saved graph's num_classes."""
    import fwdlearn.graphs.influence.bench as bench

    widths = []
    make_model = bench.make_model
    monkeypatch.setattr(bench, "make_model", lambda conv, features, classes, *rest: widths.append(classes) or
                        make_model(conv, features, classes, *rest))
    path = _saved(tmp_path, _graph(num_classes=5))
    assert main(["bench", "influence", "--graphs", f"file:{path}", "--depths", "1", "--samples", "2",
                 "--pyg-samples", "1", "--repeats", "1", "--data", f"file:{path}", "--epochs", "1", "--layers", "2",
                 "--forward-method", "", "--hidden", "8", "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert widths == [5, 5, 5]  # (the speed curve's GCN, then mlp-2 and gcn-2)


def test_a_graph_for_link_prediction_gets_float_features_from_integer_ones(tmp_path):
    """labels=False returns "float x and int64 edge_index": integer features (counts, 0/1) are read as float there too,
    as for node classification."""
    from fwdlearn.graphs.data.datasets import load_graph

    counts = torch.randint(0, 3, (40, 3), generator=torch.Generator().manual_seed(0))
    data = load_graph(f"file:{_saved(tmp_path, _graph(x=counts, y=None))}", labels=False)
    assert data.x.dtype == torch.float32 and torch.equal(data.x, counts.float())
    assert data.edge_index.dtype == torch.long
