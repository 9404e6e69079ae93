"""Dependency structure: Spearman-correlation error between generated and real samples."""

from __future__ import annotations

import numpy as np
from scipy import stats

from mcgen.metrics._common import MetricResult, check_pair


def spearman_matrix(arrays: list[np.ndarray]) -> np.ndarray:
    """Spearman correlation matrix of all scalar columns of all components.

    The Pearson correlation of the columns' ranks (ties get their average rank, as SciPy's
    ``spearmanr``).  A constant column has no defined correlation: it counts as uncorrelated
    with every other column (0 off the diagonal, 1 on it), without a division-by-zero warning.
    """
    X = np.concatenate([np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in arrays], 1)
    P = X.shape[1]
    if P == 1:
        return np.ones((1, 1))
    R = stats.rankdata(X, axis=0)
    R -= R.mean(0)
    norm = np.sqrt(np.square(R).sum(0))
    constant = norm == 0
    Z = np.divide(R, norm, out=np.zeros_like(R), where=~constant)
    rho = np.clip(Z.T @ Z, -1.0, 1.0)
    np.fill_diagonal(rho, 1.0)
    return rho


def dependency_error(gen, ref) -> MetricResult:
    """Mean absolute difference of the off-diagonal Spearman correlations (all scalar columns).

    The most direct measure of whether the cross-component structure was learned;
    ``details["cross_component"]`` restricts the mean to pairs of columns from different
    components.
    """
    g, r = check_pair(gen, ref)
    Sg, Sr = spearman_matrix(g), spearman_matrix(r)
    P = Sg.shape[0]
    off = ~np.eye(P, dtype=bool)
    comp = np.concatenate([np.full(a.shape[1], i) for i, a in enumerate(g)])
    cross = comp[:, None] != comp[None, :]
    diff = np.abs(Sg - Sr)
    value = float(diff[off].mean()) if off.any() else 0.0
    return MetricResult("dependency_error", value,
                        {"cross_component": float(diff[cross].mean()) if cross.any() else 0.0,
                         "spearman_generated": Sg, "spearman_reference": Sr},
                        g[0].shape[0], r[0].shape[0])
