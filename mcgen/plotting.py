"""Plots (matplotlib is the optional ``[plot]`` extra)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'mcgen[plot]'") from exc
    return plt


def pair_plot(real: Sequence[np.ndarray], generated: Sequence[np.ndarray], path: str | None = None,
              names: Sequence[str] | None = None, max_points: int = 2000, coordinate: int | None = None):
    """Scatter every pair of scalar columns, real (grey) against generated (colour).

    Parameters
    ----------
    real, generated : list of (n, d) arrays
    path : str, optional
        Write a PNG there.
    names : list of str, optional
        Component names.
    coordinate : int, optional
        Only plot this coordinate of every component (e.g. the Copula's coordinate 0 or 1).

    Returns
    -------
    matplotlib Figure
    """
    plt = _plt()
    names = names or [f"c{i}" for i in range(len(real))]
    cols_r, cols_g, labels = [], [], []
    for i, (r, g) in enumerate(zip(real, generated)):
        r = np.asarray(r).reshape(len(r), -1)
        g = np.asarray(g).reshape(len(g), -1)
        js = range(r.shape[1]) if coordinate is None else [coordinate]
        for j in js:
            cols_r.append(r[:max_points, j])
            cols_g.append(g[:max_points, j])
            labels.append(f"{names[i]}[{j}]")
    P = len(labels)
    fig, axes = plt.subplots(P, P, figsize=(1.6 * P + 1, 1.6 * P + 1), squeeze=False)
    for a in range(P):
        for b in range(P):
            ax = axes[a, b]
            if a == b:
                ax.hist(cols_r[a], bins=30, color="0.6", density=True, alpha=0.8)
                ax.hist(cols_g[a], bins=30, color="tab:blue", density=True, alpha=0.5)
            else:
                ax.scatter(cols_r[b], cols_r[a], s=1, color="0.6", alpha=0.4, rasterized=True)
                ax.scatter(cols_g[b], cols_g[a], s=1, color="tab:blue", alpha=0.4, rasterized=True)
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_ylabel(labels[a], fontsize=7)
            if a == P - 1:
                ax.set_xlabel(labels[b], fontsize=7)
    fig.suptitle("real (grey) vs generated (blue)")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=90)
        plt.close(fig)
    return fig
