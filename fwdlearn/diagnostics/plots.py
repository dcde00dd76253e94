"""Figures of the diagnostics (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_influence_curves", "plot_curves"]


def plot_influence_curves(curves: dict[str, list[float]], path: str | Path, xlabel: str = "hops",
                          title: str = "") -> Path:
    r"""Draw normalised influence curves :math:`T_d / T_0` on a log scale, one line per model.

    Args:
        curves: model name -> curve (entry ``d`` = influence at distance ``d``).
        path: image file to write (format from the suffix, e.g. ``.png``, ``.pdf``).
        xlabel: what a distance is (``"hops"``, ``"lag"``).
        title: figure title.
    """
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'fwdlearn[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        ax.semilogy(range(len(curve)), [max(float(c), 1e-12) for c in curve], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"influence / influence at {xlabel} 0")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(series: dict[str, tuple[list[float], list[float]]], path: str | Path, xlabel: str, ylabel: str,
                title: str = "", chance: float | None = None) -> Path:
    """Draw training curves, one line per run: ``series[name] = (x values, y values)``; ``chance`` as a dashed line.

    Args:
        series: run name -> (steps or epochs, metric values).
        path: image file to write (format from the suffix).
        xlabel, ylabel, title: labels.
        chance: the score of a predictor that ignores the input, drawn for reference.
    """
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'fwdlearn[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", ms=2, label=name)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
