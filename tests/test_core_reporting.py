"""Bench output: the markdown table and JSON carry every row and the command."""

import json

import pytest

from fwdlearn.reporting import markdown_table, mean_std, write_results


def test_write_results_markdown_and_json(tmp_path):
    rows = [{"method": "bp", "acc": 0.861, "bytes": 1234567}, {"method": "sf", "acc": 0.8449, "bytes": 1000}]
    j, m = write_results(tmp_path / "bench", rows, title="Demo", command="fwdlearn bench demo", notes="Reduced run.")
    md = m.read_text()
    assert "### Demo" in md and "Command: `fwdlearn bench demo`" in md and "Reduced run." in md
    assert "| bp | 0.861 | 1,234,567 |" in md and "| sf | 0.845 | 1,000 |" in md
    data = json.loads(j.read_text())
    assert data["rows"] == rows and data["command"] == "fwdlearn bench demo"


def test_markdown_table_columns_and_mean_std():
    table = markdown_table([{"a": 1, "b": 2.5}], columns=["b"], headers={"b": "B"})
    assert table.splitlines() == ["| B |", "|---|", "| 2.5 |"]
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


def test_result_paths_keep_dots_in_the_prefix(tmp_path):
    from fwdlearn.reporting import result_paths

    assert [p.name for p in result_paths(tmp_path / "recall-lr0.003")] == [
        "recall-lr0.003.json", "recall-lr0.003.md", "recall-lr0.003-record.json"]
    assert [p.name for p in result_paths(tmp_path / "graph.md")] == ["graph.json", "graph.md", "graph-record.json"]
    json_path, md_path = write_results(tmp_path / "sub" / "a.b", [{"x": 1}])
    assert (json_path.name, md_path.name) == ("a.b.json", "a.b.md") and md_path.exists()
