"""fwdlearn graph train, bench graph and quickstart end to end with tiny settings."""

import json

import pytest

from fwdlearn.cli import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_graph_train_writes_record_and_table(tmp_path, capsys):
    path = tmp_path / "run.json"
    args = ["graph", "train", "--data", "karate", "--method", "sf", "--layers", "2", "--hidden", "8", "--epochs", "5",
            "--splits", "2", "--quiet", "--json", str(path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean ± std" in out and "test_accuracy" in out
    record = json.loads(path.read_text())
    assert record["job"] == "graph-train" and len(record["metrics"]) == 2
    assert "test_accuracy_mean" in record["summary"]
    assert main(args) != 0  # the record exists: refused before any work
    assert "--overwrite" in capsys.readouterr().err


def test_graph_train_link_task(tmp_path, capsys):
    path = tmp_path / "link.json"
    assert main(["graph", "train", "--data", "karate", "--task", "link", "--method", "ce", "--layers", "2",
                 "--hidden", "8", "--epochs", "3", "--quiet", "--json", str(path)]) == 0
    assert 0.0 <= json.loads(path.read_text())["summary"]["test_auc"] <= 1.0


def test_graph_train_refuses_a_node_method_for_links(tmp_path, capsys):
    try:
        status = main(["graph", "train", "--data", "karate", "--task", "link", "--method", "sf",
                       "--json", str(tmp_path / "x.json")])
    except SystemExit as exit:
        status, message = 1, str(exit)
    else:
        message = capsys.readouterr().err
    assert status != 0 and "not a link method" in message


def test_bench_graph_tiny(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "graph", "--data", "karate", "--depths", "1", "2", "--methods", "bp", "sf", "--splits", "1",
                 "--epochs", "3", "--hidden", "8", "--link-layers", "1", "--link-epochs", "2", "--quiet",
                 "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    methods = {(r["method"], r["layers"]) for r in result["rows"]}
    assert {("bp", 1), ("sf", 1), ("bp", 2), ("sf", 2), ("ce", 1)} <= methods
    sf2 = next(r for r in result["rows"] if r["method"] == "sf" and r["layers"] == 2)
    assert sf2["time_vs_bp"] > 0 and sf2["saved_vs_bp"] > 0
    md = out.with_suffix(".md").read_text()
    assert "Claims checked in this run" in md and "fwdlearn" in md


def test_bench_graph_dfa_rows_use_their_learning_rate(tmp_path, capsys):
    out = tmp_path / "bench-dfa"
    assert main(["bench", "graph", "--data", "karate", "--depths", "2", "--methods", "dfa", "dfa:gaussian", "--splits",
                 "1", "--epochs", "3", "--hidden", "8", "--link-layers", "0", "--dfa-lr", "0.05", "--quiet",
                 "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [(r["method"], r["layers"]) for r in result["rows"]] == [("bp", 2), ("dfa", 2), ("dfa:gaussian", 2)]
    assert all(r["saved_vs_bp"] > 0 for r in result["rows"])
    assert "DFA 0.05" in out.with_suffix(".md").read_text()


def test_node_method_choices_are_the_registered_methods():
    from fwdlearn.graphs.cli.train import NODE_METHODS
    from fwdlearn.graphs.methods import method_class, method_names

    assert sorted(NODE_METHODS) == sorted(method_names())
    assert all(method_class(m).rule for m in NODE_METHODS)


def test_quickstart_tiny(tmp_path, capsys):
    path = tmp_path / "quick.json"
    assert main(["quickstart", "--data", "synthetic-city:300", "karate", "--no-cora", "--layers", "2", "--hidden", "8",
                 "--epochs", "3", "--samples", "10", "--quiet", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| R |" in out
    rows = json.loads(path.read_text())["summary"]["rows"]
    assert [(r["data"], r["method"]) for r in rows] == [("synthetic-city:300", "bp"), ("synthetic-city:300", "sf"),
                                                       ("karate", "bp"), ("karate", "sf")]
    assert all(r["R"] >= 0 for r in rows)
