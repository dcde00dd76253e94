"""Result tables for ``fwdlearn bench``: one JSON file and one markdown table per bench.

Example::

    rows = [{"method": "bp", "layers": 4, "accuracy": 0.86}, {"method": "sf", "layers": 4, "accuracy": 0.85}]
    write_results("out/bench-graph", rows, columns=["method", "layers", "accuracy"],
                  title="ForwardGNN vs BP on Cora", command="fwdlearn bench graph")
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .files import atomic_write_all
from .invocation import invoked_as, invoked_command
from .records import json_text, library_versions

__all__ = ["describe_resume", "format_value", "markdown_table", "write_results", "result_texts", "result_paths",
           "invoked_command", "invoked_as", "mean_std", "ratio", "ratio_row"]


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of numbers (a list, a NumPy array, a 1-d tensor, ...)."""
    values = [float(v) for v in values]  # (an array or a tensor of several values has no truth value)
    if not values:
        raise ValueError("mean_std needs at least one value")
    m = sum(values) / len(values)
    return m, (sum((v - m) ** 2 for v in values) / len(values)) ** 0.5


def _scalar(value: Any) -> Any:
    """A 0-d tensor or array as its Python number (as :func:`format_value` shows it); anything else as it is."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", None) == 0 else value


def ratio(value: Any, baseline: Any) -> float | None:
    """``value / baseline``, or ``None`` where either is not a number (a missing figure) or the baseline is 0. A 0-d
    tensor is a number (its ``.item()``)."""
    value, baseline = _scalar(value), _scalar(baseline)
    numbers_ = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (value, baseline))
    return value / baseline if numbers_ and baseline else None


def ratio_row(columns: Sequence[str], *cells: Any) -> dict[str, Any]:
    """A row of a table whose last three columns are a value, its baseline and their :func:`ratio`.

    ``cells`` fill ``columns`` in order up to the baseline, which may be left out (``None``: no baseline); the last
    column gets the ratio. Example: ``ratio_row(["metric", "value", "bp", "ratio"], "seconds", 2.0, 4.0)`` is
    ``{"metric": "seconds", "value": 2.0, "bp": 4.0, "ratio": 0.5}``.
    """
    if len(columns) < 3:  # (two columns failed with "tuple index out of range"; none asked for -2 or -1 cells)
        raise ValueError(f"ratio_row needs at least three columns (..., value, baseline, ratio), got {list(columns)}")
    if not len(columns) - 2 <= len(cells) <= len(columns) - 1:
        raise ValueError(f"a row of {len(columns)} columns takes {len(columns) - 2} or {len(columns) - 1} cells "
                         f"(the ratio is computed), got {len(cells)}")
    cells = (*cells, None)[: len(columns) - 1]
    return {**dict(zip(columns, cells)), columns[-1]: ratio(cells[-2], cells[-1])}


def format_value(value: Any) -> str:
    """Compact, human formatting for a table cell (NumPy and 0-d torch scalars as Python numbers; a value below 1
    never shown as 1: 0.99996 is 0.99996, not a perfect score)."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0 or isinstance(value, numbers.Real) \
            and not isinstance(value, (bool, int, float)):
        value = value.item() if hasattr(value, "item") else float(value)
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 1:
            text = f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
            return f"{value:,.0f}" if abs(float(text)) >= 1000 else text  # (999.96 as 1,000, as 1000.0 is: not 1000.0)
        text = f"{value:.3g}"
        return text if abs(float(text)) < 1 else repr(value)  # (the digits that keep it below 1)
    return str(value)


def _cell(text: str) -> str:
    """A table cell's text: a '|' escaped and line breaks as spaces (either would break the row)."""
    return text.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   headers: Mapping[str, str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (dicts), one column per key in ``columns`` (default: every key of every
    row, in the order they first appear; a row without a key has an empty cell)."""
    if isinstance(columns, str):  # (its letters were taken for column names: "acc" made columns a, c, c, all empty)
        raise TypeError(f"columns is a list of keys, got the string {columns!r}: pass [{columns!r}]")
    rows = list(rows)
    if not rows:
        return "(no rows)\n"
    # (the first row's keys alone dropped a key only later rows have, with its values, without a word)
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    headers = dict(headers or {})
    lines = ["| " + " | ".join(_cell(str(headers.get(c, c))) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(format_value(row.get(c))) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def result_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """``(<out>.json, <out>.md, <out>-record.json)`` for a results prefix; a trailing ``.json`` / ``.md``
    is dropped first, and any other dot stays part of the name (``runs/lr0.003`` -> ``runs/lr0.003.json``); a leading
    ``~`` is the home folder (as for the model files and checkpoints; it made a folder named ``~``)."""
    out = Path(out).expanduser()
    if out.suffix in (".json", ".md"):
        out = out.with_suffix("")
    return (out.with_name(out.name + ".json"), out.with_name(out.name + ".md"),
            out.with_name(out.name + "-record.json"))


def write_results(out: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None,
                  title: str = "", command: str | None = None, notes: str = "",
                  headers: Mapping[str, str] | None = None,
                  extra: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``<out>.json`` (rows, command, versions, extra) and ``<out>.md`` (title, command, table, notes),
    atomically and together (:func:`~fwdlearn.files.atomic_write_all`: a failure leaves an earlier pair whole, not a
    new JSON beside an old table); the JSON is valid (non-finite numbers as ``null``, listed under ``"non_finite"``).
    Both are UTF-8 whatever the system's locale (Windows' cp1252 has no ``−``: a graph bench's table failed to write
    there, after the whole run).

    Returns:
        The two paths.
    """
    json_path, md_path, _ = result_paths(out)
    json_part, md_part = result_texts(rows, columns, title=title, command=command, notes=notes, headers=headers,
                                      extra=extra)
    atomic_write_all({json_path: lambda tmp: tmp.write_text(json_part, encoding="utf-8"),
                      md_path: lambda tmp: tmp.write_text(md_part, encoding="utf-8")})
    return json_path, md_path


def result_texts(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, title: str = "",
                 command: str | None = None, notes: str = "", headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """The texts :func:`write_results` writes, ``(<out>.json's, <out>.md's)``, for a caller that writes them with
    other files (:meth:`fwdlearn.bench.BenchRun.finish`: with the run record)."""
    rows = list(rows)  # (once: a generator went into the JSON and left the table nothing, which then failed)
    command = command or invoked_command()
    json_part = json_text({
        "title": title, "command": command, "rows": rows, "versions": library_versions(), **(extra or {}),
    })
    parts = [f"### {title}\n" if title else "", f"Command: `{command}`\n", markdown_table(rows, columns, headers)]
    if notes:
        parts.append("\n" + notes.strip() + "\n")
    return json_part, "\n".join(p for p in parts if p)


def describe_resume(resumed: Mapping[str, Any] | None) -> str:
    """One line for a resumed run that changed settings (``FitResult.resumed``; ``""`` otherwise): the step it
    continued from (of the part it stopped in, for a layer-by-layer fit) and each setting's old and new value."""
    if not resumed or not resumed.get("changed"):
        return ""
    changed = ", ".join(f"{k} {then} -> {now}" for k, (then, now) in resumed["changed"].items())
    return f"resumed from step {resumed['from_step']} with {changed}"
