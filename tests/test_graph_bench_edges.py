"""bench graph at its edges: each claim on its threshold, the figures of the link rows, the settings each fit is
given (learning rates, patience, seeds) and what the notes say of them, on fits that report fixed figures."""

import json
from types import SimpleNamespace

import pytest
import torch

from fwdlearn.cli import main
from fwdlearn.graphs.cli.bench import _checks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _FakeGNN:
    """A ForwardGNN whose fit reports fixed figures and keeps what it was given (``calls``: the method, layers, seed
    and the keywords of each fit, the untimed warm-up first)."""

    calls: list = []

    def __init__(self, *args, layers, method, seed=0, **kwargs):
        self.key = (method, layers, seed)

    def fit(self, data, **kwargs):
        _FakeGNN.calls.append((*self.key, {**kwargs, "data": data}))
        figures = {"test_accuracy": 0.5, "fit_seconds": 1.0, "saved_bytes_per_step": 10, "step_memory_bytes": 10,
                   "method": f"rule:{self.key[0]}"}
        return SimpleNamespace(**figures, as_dict=lambda: dict(figures))


class _FakeLink:
    """A ForwardLinkPredictor whose fit reports a fixed AUC and cost per method and keeps what it was given."""

    calls: list = []
    figures = {"bp": (0.80, 2.0, 400, 100), "ce": (0.92, 1.0, 100, 50)}

    def __init__(self, *args, layers, method, **kwargs):
        self.method, self.layers = method, layers

    def fit(self, data, **kwargs):
        _FakeLink.calls.append((self.method, self.layers, kwargs))
        auc, seconds, saved, step = self.figures[self.method]
        figures = {"test_auc": auc, "fit_seconds": seconds, "saved_bytes_per_step": saved, "step_memory_bytes": step,
                   "method": self.method}
        return SimpleNamespace(**figures, as_dict=lambda: dict(figures))


@pytest.fixture
def fakes(monkeypatch):
    from fwdlearn.graphs.nn import forward_gnn, linkpred

    monkeypatch.setattr(forward_gnn, "ForwardGNN", _FakeGNN)
    monkeypatch.setattr(linkpred, "ForwardLinkPredictor", _FakeLink)
    monkeypatch.setattr(_FakeGNN, "calls", [])
    monkeypatch.setattr(_FakeLink, "calls", [])


BASE = ["bench", "graph", "--data", "karate", "--depths", "2", "--methods", "sf", "--splits", "1", "--epochs", "1",
        "--quiet"]


def test_each_claim_is_met_on_its_threshold_and_depths_are_listed_in_order():
    """sf 84.00% at 4 layers and 80.00% at 8, saved 8 / 2 exactly 1.2, link AUC exactly 0.90: each is on its
    threshold, so met; the time ratios are listed by depth whatever order the depths ran in."""
    summary = {("sf", 8): {"acc": 0.80, "saved": 120, "time": 3.0}, ("bp", 8): {"acc": 0.8, "saved": 400, "time": 4.0},
               ("sf", 4): {"acc": 0.84, "saved": 110, "time": 1.0}, ("bp", 4): {"acc": 0.8, "saved": 200, "time": 4.0},
               ("sf", 2): {"acc": 0.85, "saved": 100, "time": 1.0}, ("bp", 2): {"acc": 0.8, "saved": 100, "time": 2.0}}
    assert _checks(summary, {"ce": 0.90, "bp": 0.5}) == [
        "- sf >= 84.0% at 4 layers: 84.00% -> met",
        "- sf >= 80% at 8 layers: 80.00% -> met",
        "- sf saved bytes/step 8 vs 2 layers <= 1.2: 1.20, BP 8/2 = 4.00 -> met",
        "- sf fit time / BP fit time < 1: 2 layers 0.50, 4 layers 0.25, 8 layers 0.75 -> met",
        "- link prediction ForwardGNN-CE ROC-AUC >= 0.90: 0.9000 -> met"]


def test_claims_just_off_their_thresholds_are_missed():
    """83.99% at 4 layers, 79.99% at 8, saved 8 / 2 of 1.21 and an AUC of 0.8999: each is missed."""
    summary = {("sf", 4): {"acc": 0.8399, "saved": 100, "time": 1.0}, ("bp", 4): {"acc": 0.8, "saved": 1, "time": 2.0},
               ("sf", 8): {"acc": 0.7999, "saved": 121, "time": 1.0}, ("bp", 8): {"acc": 0.8, "saved": 1, "time": 2.0},
               ("sf", 2): {"acc": 0.85, "saved": 100, "time": 1.0}, ("bp", 2): {"acc": 0.8, "saved": 1, "time": 2.0}}
    lines = _checks(summary, {"ce": 0.8999})
    assert [line.rsplit(" -> ", 1)[1] for line in lines] == ["MISSED", "MISSED", "MISSED", "met", "MISSED"]


def test_the_link_rows_give_bp_its_own_rate_and_each_row_its_difference_to_bp_in_points(tmp_path, fakes):
    """--link-lr with a forward link method sets that method's rate (bp keeps --bp-lr); each link fit is seeded with
    --seed; acc. − BP is 100 x the AUC difference; the record keeps each link fit and the AUCs."""
    out = tmp_path / "b"
    assert main([*BASE, "--link-layers", "2", "--link-methods", "ce", "--link-lr", "0.05", "--bp-lr", "0.002",
                 "--seed", "3", "--out", str(out)]) == 0
    given = {method: (layers, kwargs["lr"], kwargs["seed"]) for method, layers, kwargs in _FakeLink.calls}
    assert given == {"bp": (2, 0.002, 3), "ce": (2, 0.05, 3)}
    rows = {r["method"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]
            if r["task"] == "link, karate gcn"}
    assert rows["ce"]["acc_minus_bp"] == pytest.approx(12.0) and rows["bp"]["acc_minus_bp"] == 0
    assert rows["ce"]["accuracy"] == "AUC 0.9200" and rows["ce"]["time_vs_bp"] == pytest.approx(0.5)
    assert rows["ce"]["saved_vs_bp"] == pytest.approx(0.25) and rows["ce"]["step_memory_vs_bp"] == pytest.approx(0.5)
    record = json.loads(out.with_name("b-record.json").read_text())
    assert record["summary"]["link_auc"] == {"bp": 0.80, "ce": 0.92}
    assert [m["method"] for m in record["metrics"] if m.get("task") == "link"] == ["bp", "ce"]
    notes = out.with_suffix(".md").read_text()
    assert "Link prediction: 64/16/20 edge split (seed 3), 100 epochs per layer" in notes
    assert "Adam lr 0.05 for the forward methods and 0.002 for BP" in notes


def test_patience_0_trains_without_early_stopping_and_the_notes_say_none(tmp_path, fakes):
    """--patience 0 is no early stopping: each fit is given patience None (a patience of 0 is refused by the
    stopper), and so is the link fit; the notes say 'patience none'."""
    out = tmp_path / "b"
    assert main([*BASE, "--patience", "0", "--link-layers", "1", "--out", str(out)]) == 0
    assert {kwargs["patience"] for *_, kwargs in _FakeGNN.calls[1:]} == {None}
    assert {kwargs["patience"] for *_, kwargs in _FakeLink.calls} == {None}
    assert "early-stopping patience none." in out.with_suffix(".md").read_text()


def test_each_fit_gets_its_split_s_seed_the_eval_cadence_and_only_bp_the_bp_rate(tmp_path, fakes):
    """Two splits from --seed 5: the fits of split i are seeded 5 + i, every fit validates every --eval-every epochs,
    only BP's fit is given --bp-lr; the untimed warm-up is a 2-epoch BP fit; the notes name the seeds 5..6 and the
    record the rule of each fit beside the table's name."""
    out = tmp_path / "b"
    assert main([*BASE, "--splits", "2", "--seed", "5", "--epochs", "4", "--eval-every", "2", "--bp-lr", "0.003",
                 "--link-layers", "0", "--out", str(out)]) == 0
    warm, *fits = _FakeGNN.calls
    assert warm[:2] == ("bp", 2) and warm[3]["epochs"] == 2
    assert [(method, seed) for method, _, seed, _ in fits] == [("bp", 5), ("bp", 6), ("sf", 5), ("sf", 6)]
    assert {kwargs["eval_every"] for *_, kwargs in fits} == {2} and {kwargs["epochs"] for *_, kwargs in fits} == {4}
    assert [kwargs["bp_lr"] for *_, kwargs in fits] == [0.003, 0.003, None, None]
    notes = out.with_suffix(".md").read_text()
    assert "Random 64/16/20 node splits (seeds 5..6)" in notes and "over the 2 splits:" in notes
    assert "Link prediction" not in notes
    metrics = json.loads(out.with_name("b-record.json").read_text())["metrics"]
    assert [(m["method"], m["rule"], m["split"]) for m in metrics] == [
        ("bp", "rule:bp", 5), ("bp", "rule:bp", 6), ("sf", "rule:sf", 5), ("sf", "rule:sf", 6)]


def test_one_split_is_named_in_the_singular(tmp_path, fakes):
    """--splits 1: the notes name the one seed and 'the 1 split'."""
    out = tmp_path / "b"
    assert main([*BASE, "--link-layers", "0", "--out", str(out)]) == 0
    notes = out.with_suffix(".md").read_text()
    assert "(seeds 0..0)" in notes and "over the 1 split:" in notes


def test_a_generated_graph_is_drawn_once_and_split_anew_for_each_split(tmp_path, fakes):
    """--data sbm:60 with two splits: both splits' fits see the one graph drawn from --seed, split two ways."""
    assert main([*BASE, "--data", "sbm:60", "--splits", "2", "--seed", "1", "--link-layers", "0", "--out",
                 str(tmp_path / "b")]) == 0
    first, second = (kwargs["data"] for method, _, _, kwargs in _FakeGNN.calls[1:] if method == "sf")
    assert torch.equal(first.edge_index, second.edge_index) and torch.equal(first.x, second.x)
    assert not torch.equal(first.train_mask, second.train_mask)


def test_a_resumed_run_reads_the_link_fits_and_names_each_piece_by_its_split_s_seed(tmp_path, fakes, monkeypatch):
    """Interrupted in its last link fit, a run from --seed 5 is resumed: the five pieces finished are read (the node
    fits keyed by their split's seed, the BP link fit), only the CE link fit runs again, and the notes say so."""
    fit = _FakeLink.fit

    def interrupted(self, data, **kwargs):
        if self.method == "ce":
            raise KeyboardInterrupt
        return fit(self, data, **kwargs)

    monkeypatch.chdir(tmp_path)
    words = [*BASE, "--splits", "2", "--seed", "5", "--link-layers", "1", "--link-methods", "ce", "--out", "b"]
    monkeypatch.setattr(_FakeLink, "fit", interrupted)
    assert main(words) == 130
    monkeypatch.setattr(_FakeLink, "fit", fit)
    _FakeGNN.calls.clear()
    _FakeLink.calls.clear()
    assert main([*words, "--resume"]) == 0
    assert len(_FakeGNN.calls) == 1 and [method for method, *_ in _FakeLink.calls] == ["ce"]  # (the warm-up, CE)
    assert ("Resumed (--resume): 5 of the 6 pieces were finished by an earlier, interrupted run and read from "
            "b-progress.pt (node/bp/layers=2/split=5, node/bp/layers=2/split=6, node/sf/layers=2/split=5, "
            "node/sf/layers=2/split=6, link/bp); 1 ran in this one.") in (tmp_path / "b.md").read_text()
    assert not (tmp_path / "b-progress.pt").exists()


@pytest.mark.parametrize("words,message", [
    (["--splits", "1001"], "--splits must be <= 1000, got 1001"),
    (["--link-epochs", "0"], "--link-epochs must be >= 1, got 0"),
])
def test_bench_graph_refuses_a_count_out_of_its_range(tmp_path, capsys, words, message):
    assert main([*BASE, *words, "--out", str(tmp_path / "b")]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_default_run_measures_every_claim_it_checks():
    """Every claim is measured by a run with the defaults: sf at 2, 4 and 8 layers beside BP, and the CE link row."""
    from fwdlearn.graphs.cli.bench import BenchGraphConfig

    config = BenchGraphConfig()
    assert {2, 4, 8} <= set(config.depths) and "sf" in config.methods
    assert config.link_layers > 0 and "ce" in config.link_methods
