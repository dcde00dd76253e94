"""Figures of the diagnostics and benches (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fwdlearn.files import atomic_write

__all__ = ["plot_influence_curves", "plot_curves", "plot_speedups", "plot_alignment"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'fwdlearn[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, ax, path: str | Path, title: str, **legend) -> Path:
    """Title, legend (``legend``: :meth:`~matplotlib.axes.Axes.legend` options), write ``path`` (folders created; a
    leading ``~`` is the home folder) and close the figure."""
    if title:
        ax.set_title(title)
    ax.legend(**legend)
    fig.tight_layout()
    path = Path(path).expanduser()  # (matplotlib does not expand it: "~/a.png" went to a folder named "~" here)
    try:  # the format from the real suffix; a kill mid-write leaves no half image under the real name
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix[1:] or "png"))
    finally:
        plt.close(fig)
    return path


def plot_influence_curves(curves: dict[str, list[float]], path: str | Path, xlabel: str = "hops",
                          title: str = "") -> Path:
    r"""Draw normalised influence curves :math:`T_d / T_0` on a log scale, one line per model.

    Args:
        curves: model name -> curve (entry ``d`` = influence at distance ``d``; entries of 0 are not drawn, nor
            ``None``: a record's JSON holds a NaN as ``null``).
        path: image file to write (format from the suffix, e.g. ``.png``, ``.pdf``; ``~`` is the home folder).
        xlabel: what a distance is (``"hops"``, ``"lag"``).
        title: figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        # (a distance of no influence at all, such as an MLP's hops > 0, is left out: a log scale has no 0)
        ax.semilogy(range(len(curve)), [float(c) if c is not None and float(c) > 0 else float("nan") for c in curve],
                    marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"influence / influence at {xlabel} 0")
    return _save(plt, fig, ax, path, title)


def plot_curves(series: dict[str, tuple[list[float], list[float]]], path: str | Path, xlabel: str, ylabel: str,
                title: str = "", chance: float | None = None, zero_line: bool = False) -> Path:
    """Draw training curves, one line per run: ``series[name] = (x values, y values)``; ``chance`` as a dashed line.

    Args:
        series: run name -> (steps or epochs, metric values).
        path: image file to write (format from the suffix).
        xlabel, ylabel, title: labels.
        chance: the score of a predictor that ignores the input, drawn for reference.
        zero_line: draw the line y = 0 (for signed values such as cosines).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", ms=2, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    if zero_line:
        ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(plt, fig, ax, path, title)


def plot_speedups(series: dict[str, Sequence[tuple[float, float, str]]], path: str | Path, xlabel: str,
                  baseline: str, title: str = "") -> Path:
    """Speed-up over a baseline against a size (log-log), one marker colour per series, each point labelled.

    Args:
        series: series name -> points ``(size, speed-up, label)``, e.g. ``{"8 layers": [(25.3, 7.1,
            "california"), ...]}``.
        path: image file to write.
        xlabel: what the size is.
        baseline: the baseline's name (the y-axis reads "speed-up over <baseline>"; a dotted line marks 1x).
        title: the figure's title (none when empty).
    """
    plt = _pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        ax.scatter([p[0] for p in points], [p[1] for p in points], label=name)
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
    return _save(plt, fig, ax, path, title, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)


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
