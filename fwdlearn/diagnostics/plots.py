"""Figures of the diagnostics and benches (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fwdlearn.files import atomic_write

__all__ = ["plot_influence_curves", "plot_curves", "plot_speedups", "plot_alignment"]


def _figure(figsize: tuple[float, float]):
    """A new figure and its axes, drawn by Agg and outside pyplot: nothing of it stays in the process once it is
    dropped, an error while drawing included, and the process's pyplot backend is left as it was (``pyplot.subplots``
    kept every figure a failed call had opened, and ``matplotlib.use("Agg")`` switched a notebook's inline backend
    off for the rest of the session)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'fwdlearn[plot]'") from error
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


#: dash patterns and markers of the series past the colours of matplotlib's cycle (the 11th series of the default
#: ten colours was the 1st's blue, solid, with round markers: two legend entries alike)
_DASHES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
#: legend entries drawn inside the axes; more go to the right of them (eight covered the curves they name)
_LEGEND_INSIDE = 4


def _styles(count: int) -> list[dict]:
    """``count`` looks of series (``color``, ``linestyle``, ``marker``), no two alike: the colours of matplotlib's
    cycle, then the same colours again with the next dash pattern and marker."""
    from matplotlib import rcParams

    colours = rcParams["axes.prop_cycle"].by_key().get("color") or ["C0"]
    return [{"color": colours[i % len(colours)], "linestyle": _DASHES[i // len(colours) % len(_DASHES)],
             "marker": _MARKERS[i // len(colours) % len(_MARKERS)]} for i in range(count)]


def _save(fig, ax, path: str | Path, title: str, **legend) -> Path:
    """Title, legend (``legend``: :meth:`~matplotlib.axes.Axes.legend` options; by default inside the axes for up to
    ``_LEGEND_INSIDE`` entries, else to their right; none without a labelled series) and write ``path`` (folders
    created; a leading ``~`` is the home folder)."""
    if title:
        ax.set_title(title)
    entries = len(ax.get_legend_handles_labels()[1])
    if entries and not legend and entries > _LEGEND_INSIDE:  # (the figure widened for it: the axes keep their size)
        legend = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0, "fontsize": "small"}
        fig.set_figwidth(fig.get_figwidth() + 2.5)
    if entries:
        ax.legend(**legend)
    fig.tight_layout()
    path = Path(path).expanduser()  # (matplotlib does not expand it: "~/a.png" went to a folder named "~" here)
    # the format from the real suffix; a kill mid-write leaves no half image under the real name
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix[1:] or "png"))
    return path


def _whole_ticks(ax, xs) -> None:
    """Whole-number ticks on the x axis where every x is a whole number (distances, steps, epochs: the ticks read
    0.25 hops and 2.5 epochs, and a lone point's -0.04 lag)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    try:
        xs = {float(x) for x in xs}
    except (TypeError, ValueError):  # (values matplotlib reads its own way: its ticks)
        return
    if xs and all(x.is_integer() for x in xs):
        ax.xaxis.set_major_locator(FixedLocator(sorted(xs)) if len(xs) == 1 else
                                   MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))  # (AutoLocator's)


def _spans(distances: list[int]) -> str:
    """``[1, 2, 3, 5]`` as ``"1-3, 5"``."""
    runs: list[list[int]] = []
    for d in distances:
        if runs and d == runs[-1][1] + 1:
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def plot_influence_curves(curves: dict[str, list[float]], path: str | Path, xlabel: str = "hops",
                          title: str = "") -> Path:
    r"""Draw normalised influence curves :math:`T_d / T_0` on a log scale, one line per model.

    Args:
        curves: model name -> curve (entry ``d`` = influence at distance ``d``; entries of 0 are not drawn, nor
            ``None``: a record's JSON holds a NaN as ``null``; the legend names the distances left out).
        path: image file to write (format from the suffix, e.g. ``.png``, ``.pdf``; ``~`` is the home folder).
        xlabel: what a distance is (``"hops"``, ``"lag"``; whole numbers on the axis).
        title: figure title.
    """
    fig, ax = _figure((5, 3.5))
    for (name, curve), style in zip(curves.items(), _styles(len(curves))):
        values = [float("nan") if c is None else float(c) for c in curve]
        # (a distance of no influence at all, such as an MLP's hops > 0, is left out: a log scale has no 0; the
        # legend says so: an MLP's one point, 1 at hop 0, lay under the other models' and its entry named nothing seen)
        zero = [d for d, v in enumerate(values) if v == 0]
        unknown = [d for d, v in enumerate(values) if not 0 <= v < float("inf")]
        left_out = "; ".join(f"{what} at {xlabel} {_spans(ds)}" for what, ds in (("0", zero), ("n/a", unknown)) if ds)
        ax.semilogy(range(len(values)), [v if 0 < v < float("inf") else float("nan") for v in values], ms=3,
                    label=f"{name} ({left_out}: not drawn)" if left_out else name, **style)
    _whole_ticks(ax, range(max(map(len, curves.values()), default=0)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"influence / influence at {xlabel} 0")
    return _save(fig, ax, path, title)


def plot_curves(series: dict[str, tuple[list[float], list[float]]], path: str | Path, xlabel: str, ylabel: str,
                title: str = "", chance: float | None = None, zero_line: bool = False) -> Path:
    """Draw training curves, one line per run: ``series[name] = (x values, y values)``; ``chance`` as a dashed line.

    Args:
        series: run name -> (steps or epochs, metric values).
        path: image file to write (format from the suffix).
        xlabel, ylabel, title: labels (whole-number ticks where every x is a whole number).
        chance: the score of a predictor that ignores the input, drawn for reference.
        zero_line: draw the line y = 0 (for signed values such as cosines).
    """
    fig, ax = _figure((5, 3.5))
    for (name, (xs, ys)), style in zip(series.items(), _styles(len(series))):
        ax.plot(xs, ys, ms=2, label=name, **style)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    if zero_line:
        ax.axhline(0.0, color="grey", linewidth=0.8)
    _whole_ticks(ax, [x for xs, _ in series.values() for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, ax, path, title)


def plot_speedups(series: dict[str, Sequence[tuple[float, float, str]]], path: str | Path, xlabel: str,
                  baseline: str, title: str = "") -> Path:
    """Speed-up over a baseline against a size (log-log), one marker colour per series (past the colours of
    matplotlib's cycle, the next marker shape), each point labelled.

    Args:
        series: series name -> points ``(size, speed-up, label)``, e.g. ``{"8 layers": [(25.3, 7.1,
            "california"), ...]}``.
        path: image file to write.
        xlabel: what the size is.
        baseline: the baseline's name (the y-axis reads "speed-up over <baseline>"; a dotted line marks 1x).
        title: the figure's title (none when empty).
    """
    fig, ax = _figure((6, 4))
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for (name, points), style in zip(series.items(), _styles(len(series))):
        ax.scatter([p[0] for p in points], [p[1] for p in points], label=name, color=style["color"],
                   marker=style["marker"])
        for size, ratio, label in points:
            ax.annotate(label, (size, ratio), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"speed-up over {baseline}")
    # below the axes: the points fill the plot
    return _save(fig, ax, path, title, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)


def plot_alignment(curves: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    r"""Draw the alignment diagnostic against training steps: per feedback point, the mean per-sample cosine
    between its DFA signal and the true gradient (:func:`fwdlearn.diagnostics.alignment.feedback_alignment`),
    with the zero line.

    Args:
        curves: point name -> ``[(step, cosine), ...]``.
        path: image file to write (format from the suffix).
        title: figure title.
    """
    series = {name: tuple(zip(*curve)) if curve else ((), ()) for name, curve in curves.items()}
    return plot_curves(series, path, "step", "cos(DFA signal, true gradient)", title, zero_line=True)
