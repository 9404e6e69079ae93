"""Metrics comparing generated and real multi-component samples.

Every metric takes two lists of component arrays (or ``Components``) and returns a
:class:`MetricResult` (``float(result)`` is the value, lower is better for distances).
"""

from mcgen.metrics._common import MetricResult
from mcgen.metrics.coherence import coherence, conditional_coherence, predict_labels, unconditional_coherence
from mcgen.metrics.conditional import complete_rows, known_subsets
from mcgen.metrics.evaluate import conditional_metrics, evaluate, noise_floor, unconditional_metrics
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
    "ClassifierFeatures",
    "InceptionV3Features",
    "MetricResult",
    "centre_of_mass_wasserstein",
    "centres_of_mass",
    "coherence",
    "complete_rows",
    "conditional_centre_of_mass_wasserstein",
    "conditional_coherence",
    "conditional_fid",
    "conditional_ssim",
    "fid",
    "frechet_distance",
    "known_subsets",
    "load_inception_v3",
    "predict_labels",
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
