"""Figures of the diagnostics (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_influence_curves"]


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
