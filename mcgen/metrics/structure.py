"""Dependency structure: Spearman-correlation error between generated and real samples."""

from __future__ import annotations

import numpy as np
from scipy import stats

from mcgen.metrics._common import MetricResult, check_pair


def spearman_matrix(arrays: list[np.ndarray]) -> np.ndarray:
    """Spearman correlation matrix of all scalar columns of all components."""
    X = np.concatenate(arrays, 1)
    if X.shape[1] == 1:
        return np.ones((1, 1))
    rho = stats.spearmanr(X).statistic
    if np.ndim(rho) == 0:  # SciPy returns a scalar, not a matrix, for exactly two columns
        rho = np.array([[1.0, rho], [rho, 1.0]])
    # Constant columns give NaN correlations: count them as uncorrelated.
    return np.nan_to_num(rho, nan=0.0)


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
