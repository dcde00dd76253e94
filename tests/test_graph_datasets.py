"""load_graph: names, splits and clear errors (no data folder needed)."""

import pytest
import torch

from fwdlearn.data import DataNotFoundError
from fwdlearn.graphs import load_graph
from fwdlearn.graphs.data.datasets import check_masks, random_split


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_karate_public_and_random():
    data = load_graph("karate")
    assert data.num_classes == 4 and int(data.train_mask.sum()) == 4
    assert not bool((data.train_mask & (data.val_mask | data.test_mask)).any())
    rand = load_graph("Karate", split="random", seed=3)
    assert int(rand.train_mask.sum()) == round(0.64 * 34)
    assert bool((rand.train_mask | rand.val_mask | rand.test_mask).all())


def test_random_split_partitions_and_is_seeded():
    masks = random_split(100, seed=5)
    assert torch.equal(sum(m.long() for m in masks), torch.ones(100, dtype=torch.long))
    assert [int(m.sum()) for m in masks] == [64, 16, 20]
    assert torch.equal(masks[0], random_split(100, seed=5)[0])


def test_synthetic_city_goes_through_load_city():
    data = load_graph("synthetic-city:300", seed=0)
    assert data.num_classes == 10 and data.train_mask.dtype == torch.bool


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="unknown graph 'nope'"):
        load_graph("nope")
    with pytest.raises(ValueError, match="unknown split 'half'"):
        load_graph("karate", split="half")


def test_missing_planetoid_files_name_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("FWDLEARN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError, match="FWDLEARN_DATA_DIR"):
        load_graph("citeseer")
    with pytest.raises(DataNotFoundError, match="download=True"):
        load_graph("amazon:photo")


def test_overlapping_masks_are_refused():
    data = load_graph("karate", split="random")
    data.val_mask = data.val_mask | data.train_mask
    with pytest.raises(ValueError, match="overlap"):
        check_masks(data)


def test_which_names_have_a_public_split():
    from fwdlearn.graphs.data.datasets import has_public_split, is_city

    assert all(has_public_split(n) for n in ("Cora", "karate", "city:roads/x.graphml", "synthetic-city:50"))
    assert not any(has_public_split(n) for n in ("amazon:photo", "citationfull:cora_ml"))
    assert is_city(" Synthetic-City:10") and not is_city("cora")


def test_built_in_sbm_is_balanced_homophilous_and_needs_the_graph(one_torch_thread):
    """sbm: 5 equal classes, ~80% of edges inside a class, features weak alone: a GCN beats an MLP clearly."""
    from fwdlearn.fit import seed_everything
    from fwdlearn.graphs import ForwardGNN, load_graph

    data = load_graph("sbm:1000", split="auto", seed=0)
    assert data.num_classes == 5 and torch.bincount(data.y).tolist() == [200] * 5
    src, dst = data.edge_index
    assert 0.72 <= float((data.y[src] == data.y[dst]).float().mean()) <= 0.88
    assert torch.equal(load_graph("sbm:1000", split="auto", seed=0).x, data.x)
    accuracy = {}
    for conv, layers in (("mlp", 2), ("gcn", 3)):
        seed_everything(0)
        model = ForwardGNN(data.num_features, 5, conv=conv, hidden=32, layers=layers, method="bp")
        accuracy[conv] = model.fit(data, epochs=60, lr=0.01, patience=None, eval_every=60, quiet=True).test_accuracy
    assert accuracy["mlp"] < 0.7 and accuracy["gcn"] > 0.85, accuracy
    with pytest.raises(ValueError, match="sbm:N needs an integer"):
        load_graph("sbm:many")
