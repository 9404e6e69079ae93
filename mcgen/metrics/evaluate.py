"""Evaluate an estimator: unconditional and conditional metrics, and noise floors.

Metrics are looked up by name in the metric registry (:func:`mcgen.plugins.get_registries`),
the one table that ``evaluate``, the scorers (:func:`mcgen.get_scorer`) and ``mcgen demo
--metrics`` read: a metric a plugin registers is usable by name in all three.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np

from mcgen.components import Components
from mcgen.plugins import get_metric_info, get_registries

__all__ = ["DEFAULT_METRICS", "compute_metric", "conditional_metrics", "evaluate", "noise_floor",
           "unconditional_metrics"]

DEFAULT_METRICS = ("marginal_wasserstein", "joint_wasserstein", "sliced_wasserstein", "dependency_error")


def _accepts(function: Callable, name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def compute_metric(metric: str | Callable, gen, ref, random_state=0, **kwargs) -> float:
    """One metric between generated and reference samples, as a float.

    Parameters
    ----------
    metric : str or callable
        A registered metric name or a function ``metric(generated, reference, **kwargs)``.
    gen, ref : list of arrays or Components
    random_state : int
        Passed to the metric when it takes ``random_state`` (and ``kwargs`` does not set it).
    **kwargs
        Further arguments of the metric.

    Returns
    -------
    float
        The value (``float`` of a :class:`~mcgen.metrics.MetricResult`).
    """
    function = get_metric_info(metric).function if isinstance(metric, str) else metric
    if "random_state" not in kwargs and _accepts(function, "random_state"):
        kwargs["random_state"] = random_state
    return float(function(gen, ref, **kwargs))


def evaluate(gen, ref, metrics: Sequence[str] = DEFAULT_METRICS, random_state=0) -> dict[str, float]:
    """Compute several registered metrics between generated and reference samples.

    Parameters
    ----------
    gen, ref : list of arrays or Components
    metrics : sequence of str
        Names in the metric registry (mcgen's own and those plugins register).
    random_state : int
        Seed of the metrics that take one.

    Returns
    -------
    dict
        ``{name: value}``.
    """
    registered = get_registries().metrics
    unknown = [m for m in metrics if m not in registered]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; registered metrics: {', '.join(sorted(registered))}")
    return {m: compute_metric(m, gen, ref, random_state) for m in metrics}


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
