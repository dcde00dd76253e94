"""Edges of the bench tables (fwdlearn.reporting): the cells' formats at their thresholds, ratio rows' counts, the
texts' parts, and a resumed run's line."""

import json

import pytest

from fwdlearn.reporting import describe_resume, format_value, markdown_table, ratio, ratio_row, result_texts


def test_format_value_at_its_thresholds():
    """1000 is the first number with a thousands separator, negative ones included, and 999.96, which rounds to it
    (it was 1000.0); 10 the first shown with one decimal; NaN is n/a; a bool is its word, not 1; an empty cell for
    None."""
    cases = {1000.0: "1,000", 999.5: "999.5", 999.96: "1,000", -999.96: "-1,000", -1234.5: "-1,234", -5.25: "-5.25",
             10.0: "10.0", 9.5: "9.5", float("nan"): "n/a", True: "True", False: "False", None: "", -0.5: "-0.5",
             12345: "12,345"}
    assert {value: format_value(value) for value in cases} == cases
    assert format_value(float("nan")) == "n/a"  # (NaN is no dict key that finds itself)


def test_ratio_takes_no_tensor_of_several_values():
    """Only a 0-d tensor or array is a number: one of one or more elements is no figure (None), not its first
    element, and not an error."""
    import numpy as np
    import torch

    assert ratio(torch.tensor([2.0]), 1.0) is None and ratio(np.array([2.0, 3.0]), 1.0) is None
    assert ratio(1.0, torch.tensor([2.0, 4.0])) is None


def test_ratio_row_takes_the_columns_less_two_or_less_one_cells():
    columns = ["metric", "value", "bp", "ratio"]
    assert ratio_row(columns, "s", 3.0) == {"metric": "s", "value": 3.0, "bp": None, "ratio": None}
    for cells in (("s",), ("s", 1.0, 2.0, 0.5)):
        with pytest.raises(ValueError, match=rf"^a row of 4 columns takes 2 or 3 cells \(the ratio is computed\), got "
                                             rf"{len(cells)}$"):
            ratio_row(columns, *cells)
    with pytest.raises(ValueError, match=r"takes 1 or 2 cells \(the ratio is computed\), got 0$"):
        ratio_row(["value", "bp", "ratio"])


def test_markdown_table_of_no_rows_and_of_windows_line_breaks():
    assert markdown_table([]) == "(no rows)\n"
    assert markdown_table([{"note": "a\r\nb"}]).splitlines()[2] == "| a b |"  # (not "a\r b": a stray \r)


def test_result_texts_parts(monkeypatch):
    """No title, no '### ' line; the command defaults to the one invoked; ``extra`` joins the JSON; notes are
    stripped."""
    import fwdlearn.reporting as reporting

    monkeypatch.setattr(reporting, "invoked_command", lambda: "fwdlearn bench demo")
    json_part, md_part = result_texts([{"a": 1}], notes="  Reduced run.  \n", extra={"budget": 3})
    assert md_part == "Command: `fwdlearn bench demo`\n\n| a |\n|---|\n| 1 |\n\n\nReduced run.\n"
    saved = json.loads(json_part)
    assert saved["command"] == "fwdlearn bench demo" and saved["budget"] == 3 and saved["title"] == ""
    assert result_texts([{"a": 1}], title="T", command="c")[1].startswith("### T\n\nCommand: `c`\n")


def test_describe_resume_says_what_changed_from_old_to_new():
    assert describe_resume(None) == "" and describe_resume({"from_step": 3, "changed": {}}) == ""
    assert describe_resume({"from_step": 3}) == ""
    assert describe_resume({"from_step": 40, "changed": {"lr": (0.01, 0.001), "steps": (100, 200)}}) == \
        "resumed from step 40 with lr 0.01 -> 0.001, steps 100 -> 200"
