"""Evaluate an estimator: unconditional and conditional metrics, and noise floors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcgen.components import Components
from mcgen.metrics.structure import dependency_error
from mcgen.metrics.wasserstein import joint_wasserstein, marginal_wasserstein, sliced_wasserstein

DEFAULT_METRICS = ("marginal_wasserstein", "joint_wasserstein", "sliced_wasserstein", "dependency_error")

_FUNCS = {
    "marginal_wasserstein": lambda g, r, rs: marginal_wasserstein(g, r),
    "joint_wasserstein": lambda g, r, rs: joint_wasserstein(g, r, random_state=rs),
    "sliced_wasserstein": lambda g, r, rs: sliced_wasserstein(g, r, random_state=rs),
    "dependency_error": lambda g, r, rs: dependency_error(g, r),
}


def evaluate(gen, ref, metrics: Sequence[str] = DEFAULT_METRICS, random_state=0) -> dict[str, float]:
    """Compute several metrics between generated and reference samples."""
    unknown = [m for m in metrics if m not in _FUNCS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; valid: {', '.join(_FUNCS)}")
    return {m: float(_FUNCS[m](gen, ref, random_state)) for m in metrics}


def noise_floor(ref_a, ref_b, metrics: Sequence[str] = DEFAULT_METRICS, random_state=0) -> dict[str, float]:
    """The metrics between two independent real samples: what a perfect model would score."""
    return evaluate(ref_a, ref_b, metrics, random_state)


def _arrays(X) -> list[np.ndarray]:
    return list(X.arrays) if isinstance(X, Components) else [np.asarray(a) for a in X]


def unconditional_metrics(estimator, X_ref, metrics: Sequence[str] = DEFAULT_METRICS, n_samples: int | None = None,
                          random_state=0) -> dict[str, float]:
    """Compare ``estimator.sample(n)`` with the reference rows (``n`` defaults to their count)."""
    ref = _arrays(X_ref)
    gen = estimator.sample(n_samples or len(ref[0]), random_state=random_state)
    return evaluate(gen, ref, metrics, random_state)


def conditional_metrics(estimator, X_ref, known_sets: Sequence[Sequence[int]] | None = None,
                        metrics: Sequence[str] = DEFAULT_METRICS, random_state=0) -> dict:
    """Complete the reference rows from each observed subset and compare with the real rows.

    Parameters
    ----------
    known_sets : list of lists, optional
        Observed subsets (default: every single component).

    Returns
    -------
    dict with ``"per_subset"`` (``{tuple(known): {metric: value}}``) and ``"mean"`` (metric
    averaged over the subsets).
    """
    ref = _arrays(X_ref)
    M = len(ref)
    if known_sets is None:
        known_sets = [[i] for i in range(M)]
    per = {}
    for known in known_sets:
        full = estimator.predict_missing(ref, known=list(known), random_state=random_state)
        per[tuple(known)] = evaluate(full, ref, metrics, random_state)
    mean = {m: float(np.mean([v[m] for v in per.values()])) for m in metrics}
    return {"per_subset": per, "mean": mean}
