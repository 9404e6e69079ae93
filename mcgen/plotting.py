"""Plots (matplotlib is the optional ``[plot]`` extra)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pair_plot", "plot_dependency_graph"]


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


def plot_dependency_graph(weights, names: Sequence[str] | None = None, ax=None, path: str | None = None,
                          threshold: float = 0.0, title: str | None = None, annotate: bool = True,
                          max_width: float = 8.0):
    """Draw a dependency graph between components as a weighted graph.

    Nodes sit on a circle (the first at the top, then clockwise); every pair whose weight is above
    ``threshold`` is joined by a straight edge whose width and opacity grow with the weight (width
    ``max_width * w / max(w)``, opacity from 0.25 to 1), strongest edges drawn last.  Typically
    ``weights = est.dependency_graph()`` (partial canonical correlations, in [0, 1]).

    Parameters
    ----------
    weights : array-like (M, M)
        Symmetric, non-negative; the diagonal is ignored.
    names : list of str, optional
        Node labels (default ``c0, c1, ...``).
    ax : matplotlib Axes, optional
        Draw there (default: a new figure).
    path : str, optional
        Write a PNG there.
    threshold : float
        Edges with weight at or below it are not drawn.
    title : str, optional
    annotate : bool
        Write each drawn edge's weight at its middle.
    max_width : float
        Line width of the strongest edge.

    Returns
    -------
    matplotlib Figure
    """
    plt = _plt()
    W = np.asarray(weights, dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"weights must be a square (M, M) array, got shape {W.shape}")
    if not np.allclose(W, W.T, equal_nan=True):
        raise ValueError("weights must be symmetric")
    M = W.shape[0]
    names = list(names) if names is not None else [f"c{i}" for i in range(M)]
    if len(names) != M:
        raise ValueError(f"names has {len(names)} entries for {M} components")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 5.2))
    else:
        fig = ax.figure
    angles = np.pi / 2 - 2 * np.pi * np.arange(M) / M
    xy = np.stack([np.cos(angles), np.sin(angles)], 1)
    iu = [(i, j) for i in range(M) for j in range(i + 1, M) if np.isfinite(W[i, j]) and W[i, j] > threshold]
    top = max((W[i, j] for i, j in iu), default=1.0) or 1.0
    cmap = plt.get_cmap("viridis_r")
    for i, j in sorted(iu, key=lambda e: W[e]):
        s = W[i, j] / top
        ax.plot(*xy[[i, j]].T, color=cmap(0.15 + 0.75 * s), lw=max(0.5, max_width * s), alpha=0.25 + 0.75 * s,
                solid_capstyle="round", zorder=1)
        if annotate:
            mid = xy[[i, j]].mean(0)
            ax.text(*mid, f"{W[i, j]:.2f}", fontsize=8, ha="center", va="center", zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.scatter(*xy.T, s=160, color="white", edgecolors="0.2", linewidths=1.5, zorder=2)
    for (x, y), name in zip(xy, names):  # labels just outside the circle
        ha = "center" if abs(x) < 0.3 else ("left" if x > 0 else "right")
        va = "center" if abs(y) >= 0.3 and abs(x) >= 0.3 else ("bottom" if y > 0 else "top")
        ax.text(1.13 * x, 1.13 * y, name, fontsize=10, ha=ha, va=va, zorder=4)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    if path:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
