"""Edges of the figures (fwdlearn.diagnostics.plots): the legend's place and the figure's width at the threshold, the
series' looks, the reference lines, the labels, the ticks of non-whole or non-numeric x, the format from the suffix,
and the values an influence curve leaves out."""

import math

import pytest

pytest.importorskip("matplotlib")

from test_core_diagnostics import _drawn  # noqa: E402 (the figures a plot draws, kept: one helper for both files)


def _legend_outside(figure) -> bool:
    figure.canvas.draw()
    ax = figure.axes[0]
    return ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1


def test_four_legend_entries_stay_inside_the_axes_and_five_go_right_of_a_wider_figure(tmp_path, monkeypatch):
    from fwdlearn.diagnostics.plots import plot_curves

    figures = _drawn(monkeypatch)
    for count in (3, 4):  # with the chance line: 4 and 5 entries
        plot_curves({f"run{i}": ([0, 1], [0.1 * i, 0.2]) for i in range(count)}, tmp_path / f"{count}.png", "step",
                    "accuracy", chance=0.1)
    inside, outside = figures
    assert len(inside.axes[0].get_legend().get_texts()) == 4 and not _legend_outside(inside)
    assert len(outside.axes[0].get_legend().get_texts()) == 5 and _legend_outside(outside)
    assert (inside.get_figwidth(), outside.get_figwidth()) == (5.0, 7.5)  # (the axes keep their size)


def test_the_first_colours_are_solid_and_the_next_round_dashed(tmp_path, monkeypatch):
    """The colours of matplotlib's cycle first, all solid with round markers; then the same colours dashed, squares."""
    from matplotlib import rcParams

    from fwdlearn.diagnostics.plots import plot_influence_curves

    colours = len(rcParams["axes.prop_cycle"].by_key()["color"])
    figures = _drawn(monkeypatch)
    plot_influence_curves({f"m{i}": [1.0, 0.5] for i in range(colours + 1)}, tmp_path / "i.png")
    lines = figures[0].axes[0].get_lines()
    assert [(line.get_linestyle(), line.get_marker()) for line in lines] == [("-", "o")] * colours + [("--", "s")]
    assert lines[0].get_color() == lines[colours].get_color()


def test_speedups_keep_their_legend_below_the_axes_with_reference_line_and_label(tmp_path, monkeypatch):
    """plot_speedups passes its own legend place: many series do not move it to the right of the axes."""
    from fwdlearn.diagnostics.plots import plot_speedups

    figures = _drawn(monkeypatch)
    plot_speedups({f"s{i}": [(10.0 + i, 2.0, "g")] for i in range(6)}, tmp_path / "s.png", "size", "PyG")
    figure = figures[0]
    ax = figure.axes[0]
    figure.canvas.draw()
    assert figure.get_figwidth() == 6.0
    assert ax.get_legend().get_window_extent().y1 <= ax.get_window_extent().y0  # below the axes
    assert ax.get_ylabel() == "speed-up over PyG"
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[1.0, 1.0]]  # the dotted 1x line


def test_reference_lines_and_labels_of_the_curves(tmp_path, monkeypatch):
    """A chance of 0 is drawn (it is a chance); the alignment plot draws y = 0; the influence plot's y label names the
    distance; a plot with no labelled series has no legend; an alignment point with no steps yet is drawn empty."""
    from fwdlearn.diagnostics.plots import plot_alignment, plot_curves, plot_influence_curves

    figures = _drawn(monkeypatch)
    plot_curves({"run": ([0, 1], [0.0, 0.5])}, tmp_path / "c.png", "step", "accuracy", chance=0.0)
    plot_alignment({"block0": [(0, 0.1), (5, 0.3)], "block1": []}, tmp_path / "a.png")
    plot_influence_curves({"gru": [1.0, 0.5]}, tmp_path / "i.png", xlabel="lag")
    plot_curves({}, tmp_path / "empty.png", "step", "accuracy")
    chance, alignment, influence, empty = (figure.axes[0] for figure in figures)
    assert [t.get_text() for t in chance.get_legend().get_texts()] == ["run", "chance"]
    assert [list(line.get_ydata()) for line in chance.get_lines()][1] == [0.0, 0.0]
    assert [t.get_text() for t in alignment.get_legend().get_texts()] == ["block0", "block1"]
    assert [list(line.get_ydata()) for line in alignment.get_lines()][2] == [0.0, 0.0]  # the zero line
    assert alignment.get_ylabel() == "cos(DFA signal, true gradient)" and alignment.get_xlabel() == "step"
    assert influence.get_ylabel() == "influence / influence at lag 0" and influence.get_xlabel() == "lag"
    assert empty.get_legend() is None


def test_ticks_of_x_values_that_are_not_whole_numbers(tmp_path, monkeypatch):
    """Whole-number ticks only where every x is whole: fractional x keep matplotlib's ticks (0.2, 0.4, ... here);
    x values that are not numbers (categories) are drawn with matplotlib's own ticks, not refused."""
    from fwdlearn.diagnostics.plots import plot_curves

    figures = _drawn(monkeypatch)
    plot_curves({"run": ([0.0, 0.5, 1.0], [0.1, 0.2, 0.3])}, tmp_path / "f.png", "epoch", "accuracy")
    plot_curves({"run": (["small", "large"], [0.1, 0.2])}, tmp_path / "s.png", "size", "accuracy")
    figures[0].canvas.draw()
    assert any(t != int(t) for t in figures[0].axes[0].get_xticks())
    assert [t.get_text() for t in figures[1].axes[0].get_xticklabels()] == ["small", "large"]


def test_the_format_follows_the_suffix(tmp_path):
    from fwdlearn.diagnostics.plots import plot_curves

    svg = plot_curves({"run": ([0, 1], [0.1, 0.2])}, tmp_path / "c.svg", "step", "loss")
    assert svg.read_bytes().lstrip().startswith(b"<?xml") and b"<svg" in svg.read_bytes()
    assert plot_curves({"run": ([0, 1], [0.1, 0.2])}, tmp_path / "c.pdf", "step", "loss").read_bytes()[:5] == b"%PDF-"


def test_an_infinite_or_negative_influence_is_not_drawn_and_is_named_not_available(tmp_path, monkeypatch):
    """Only 0 < value < inf is drawn on the log scale: an infinity (an overflow) is n/a, as a negative value is,
    and neither is called 0."""
    from fwdlearn.diagnostics.plots import plot_influence_curves

    figures = _drawn(monkeypatch)
    plot_influence_curves({"rnn": [1.0, float("inf"), -0.5, 0.25]}, tmp_path / "c.png", xlabel="lag")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rnn (n/a at lag 1-2: not drawn)"]
    drawn = list(ax.get_lines()[0].get_ydata())
    assert drawn[0] == 1.0 and drawn[3] == 0.25 and math.isnan(drawn[1]) and math.isnan(drawn[2])
