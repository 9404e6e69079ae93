"""Metrics comparing generated and real multi-component samples.

Every metric takes two lists of component arrays (or ``Components``) and returns a
:class:`MetricResult` (``float(result)`` is the value, lower is better for distances).
"""

from mcgen.metrics._common import MetricResult
from mcgen.metrics.evaluate import conditional_metrics, evaluate, noise_floor, unconditional_metrics
from mcgen.metrics.structure import dependency_error, spearman_matrix
from mcgen.metrics.wasserstein import joint_wasserstein, marginal_wasserstein, sliced_wasserstein

__all__ = [
    "MetricResult",
    "conditional_metrics",
    "dependency_error",
    "evaluate",
    "joint_wasserstein",
    "marginal_wasserstein",
    "noise_floor",
    "sliced_wasserstein",
    "spearman_matrix",
    "unconditional_metrics",
]
