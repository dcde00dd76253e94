"""load_graph on real Planetoid files and accuracy floors on Cora (skipped without FWDLEARN_DATA_DIR)."""

import pytest
import torch

from fwdlearn.data import data_dir
from fwdlearn.fit import seed_everything
from fwdlearn.graphs import ForwardGNN, load_graph
from fwdlearn.graphs.methods import method_names

METHODS = method_names()


pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_cora = pytest.mark.skipif(
    data_dir() is None or not (data_dir() / "Planetoid" / "Cora" / "raw").is_dir(),
    reason="Cora needs FWDLEARN_DATA_DIR with Planetoid/Cora/raw (see /work/shared/data/README.md)")


@pytest.fixture(scope="module")
def cora():
    return load_graph("cora", split="random", seed=0)


@needs_cora
def test_cora_public_and_random_splits():
    public = load_graph("cora")
    assert (public.num_nodes, public.num_features, public.num_classes) == (2708, 1433, 7)
    assert [int(m.sum()) for m in (public.train_mask, public.val_mask, public.test_mask)] == [140, 500, 1000]
    a, b = load_graph("cora", split="random", seed=1), load_graph("cora", split="random", seed=2)
    counts = [int(m.sum()) for m in (a.train_mask, a.val_mask, a.test_mask)]
    assert sum(counts) == 2708 and abs(counts[0] - 0.64 * 2708) <= 1
    assert not torch.equal(a.train_mask, b.train_mask)
    assert torch.equal(a.train_mask, load_graph("cora", split="random", seed=1).train_mask)


@needs_cora
@pytest.mark.parametrize("method", METHODS)
def test_accuracy_floor_on_cora(method, cora):
    seed_everything(0)
    if method in ("ff-la", "ff-vn"):  # goodness methods learn slowly (as in the paper): one layer, lr 0.01
        # FF-VN runs on SAGE: with GCN normalisation a class virtual node of degree ~250 adds only
        # ~1/sqrt(250 d_i) to a node's aggregate and FF-VN stays at the majority class (docs/benchmarks.md)
        conv, hidden = ("sage", 64) if method == "ff-vn" else ("gcn", 128)
        model = ForwardGNN(cora.num_features, cora.num_classes, conv=conv, hidden=hidden, layers=1, method=method)
        report = model.fit(cora, epochs=100, lr=0.01, patience=None, eval_every=100, quiet=True)
        floor = 0.75 if method == "ff-la" else 0.72  # measured 0.840 / 0.825; the largest class is 0.29
    else:
        epochs = 100 if method.startswith("dfa") else 30  # DFA: the forward weights must align with B first
        model = ForwardGNN(cora.num_features, cora.num_classes, hidden=32, layers=2, method=method)
        report = model.fit(cora, epochs=epochs, lr=0.01, patience=None, eval_every=epochs, quiet=True)
        floor = 0.65 if method in ("ff-symba", "sf-top2loss") else 0.8
    assert report.test_accuracy >= floor, report
    if method.startswith("ff-"):  # the test split is scored with the training and validation labels appended: an
        # untrained FF-LA reaches 0.79 there (their labels spread by the graph), one trained on negatives that carry
        # the true labels 0.80. The training split is scored with no label known: 0.42 / 0.67 / 0.97 trained
        # (ff-la / ff-symba / ff-vn), 0.06-0.18 untrained, 0.07 for FF-LA on true-label negatives.
        assert report.train_accuracy >= 0.3, report


@needs_cora
def test_cora_loads_from_a_relative_data_dir_and_a_root_with_a_tilde(tmp_path, monkeypatch):
    """A relative FWDLEARN_DATA_DIR was linked into the cache as written, so every link pointed nowhere and Cora was
    reported missing; root="~/..." was checked unexpanded and left a folder named "~" in the current folder."""
    import os
    import shutil

    expected = load_graph("cora")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("FWDLEARN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FWDLEARN_DATA_DIR", os.path.relpath(data_dir(), work))
    assert torch.equal(load_graph("cora").x, expected.x)
    home = tmp_path / "home"
    shutil.copytree(data_dir() / "Planetoid" / "Cora" / "raw", home / "pyg" / "Cora" / "raw")
    monkeypatch.setenv("HOME", str(home))
    assert torch.equal(load_graph("cora", root="~/pyg").edge_index, expected.edge_index)
    assert list(work.iterdir()) == []  # (nothing made in the current folder)
