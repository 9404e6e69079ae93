"""Metrics comparing generated and real multi-component samples.

Every metric takes two lists of component arrays (or ``Components``) and returns a
:class:`MetricResult` (``float(result)`` is the value, lower is better for distances).  The
metrics are registered by name through the plugin hooks, like a plugin's own; :func:`evaluate`,
the scorers and ``mcgen demo --metrics`` look them up there.
The probabilistic-completion metrics (:mod:`mcgen.metrics.completion`) take arrays of sampled
completions and the truth and return floats.
"""

from mcgen.metrics._common import MetricResult
from mcgen.metrics.coherence import coherence, conditional_coherence, predict_labels, unconditional_coherence
from mcgen.metrics.completion import (
    completion_metrics,
    completion_r2,
    energy_score,
    interval_coverage,
    single_completion_r2,
)
from mcgen.metrics.conditional import complete_rows, known_subsets
from mcgen.metrics.evaluate import (
    DEFAULT_METRICS,
    compute_metric,
    conditional_metrics,
    evaluate,
    noise_floor,
    unconditional_metrics,
)
from mcgen.metrics.images import (
    ClassifierFeatures,
    InceptionV3Features,
    centre_of_mass_wasserstein,
    centres_of_mass,
    conditional_centre_of_mass_wasserstein,
    conditional_fid,
    conditional_ssim,
    fid,
    frechet_distance,
    load_inception_v3,
    ssim,
)
from mcgen.metrics.structure import dependency_error, spearman_matrix
from mcgen.metrics.wasserstein import joint_wasserstein, marginal_wasserstein, sliced_wasserstein

__all__ = [
    "DEFAULT_METRICS",
    "ClassifierFeatures",
    "InceptionV3Features",
    "MetricResult",
    "centre_of_mass_wasserstein",
    "centres_of_mass",
    "coherence",
    "complete_rows",
    "completion_metrics",
    "completion_r2",
    "compute_metric",
    "conditional_centre_of_mass_wasserstein",
    "conditional_coherence",
    "conditional_fid",
    "conditional_ssim",
    "energy_score",
    "fid",
    "frechet_distance",
    "interval_coverage",
    "known_subsets",
    "load_inception_v3",
    "predict_labels",
    "single_completion_r2",
    "ssim",
    "unconditional_coherence",
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
