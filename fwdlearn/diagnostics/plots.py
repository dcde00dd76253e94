"""Figures of the diagnostics (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_influence_curves", "plot_alignment"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'fwdlearn[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_influence_curves(curves: dict[str, list[float]], path: str | Path, xlabel: str = "hops",
                          title: str = "") -> Path:
    r"""Draw normalised influence curves :math:`T_d / T_0` on a log scale, one line per model.

    Args:
        curves: model name -> curve (entry ``d`` = influence at distance ``d``).
        path: image file to write (format from the suffix, e.g. ``.png``, ``.pdf``).
        xlabel: what a distance is (``"hops"``, ``"lag"``).
        title: figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        ax.semilogy(range(len(curve)), [max(float(c), 1e-12) for c in curve], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"influence / influence at {xlabel} 0")
    if title:
        ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_alignment(curves: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "") -> Path:
    r"""Draw the alignment diagnostic against training steps: per feedback point, the mean per-sample cosine
    between its DFA signal and the true gradient (:func:`fwdlearn.diagnostics.alignment.feedback_alignment`).

    Args:
        curves: point name -> ``[(step, cosine), ...]``.
        path: image file to write (format from the suffix).
        title: figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, curve in curves.items():
        steps, values = zip(*curve) if curve else ((), ())
        ax.plot(steps, values, marker="o", ms=3, label=name)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("cos(DFA signal, true gradient)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)
