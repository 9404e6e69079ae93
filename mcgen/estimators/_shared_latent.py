"""What the four baselines share as estimators: one latent shared by every component."""

from __future__ import annotations

from numbers import Integral

from sklearn.utils._param_validation import Interval

from mcgen.base import MultiComponentVAE, _positive_int

#: The docstring sections every shared-latent estimator ends with.
SHARED_LATENT_NOTES = """
    Notes
    -----
    ``latent_dim`` is the size of the one latent shared by all components (a single integer;
    ``None`` gives ``2 M``, the total latent size of the GMRF model's default).  The Copula
    benchmark uses 3, the paper's setting.
"""

SHARED_LATENT_ATTRIBUTES = """
    Attributes
    ----------
    n_components_ : int
        Number of components M seen in ``fit``.
    component_shapes_ : tuple of tuple
        Sample shape of every component.
    n_features_in_ : int
        Total number of features over the components (a single 2-D array: its columns).
    latent_dims_ : list of int
        The shared latent size, once per component.
    standardizer_ : Standardizer
        The per-feature standardisation of the location-scale components.
    net_ : skorch NeuralNet
        The trained net (``net_.module_`` is the torch module).
    history_ : skorch History
"""


class _SharedLatentVAE(MultiComponentVAE):
    """Resolves one latent size shared by every component."""

    _parameter_constraints: dict = {
        **MultiComponentVAE._parameter_constraints,
        "latent_dim": [Interval(Integral, 1, None, closed="left"), list, tuple, None],
    }
    _shared_parameter_docs = {
        "latent_dim": ("int or None", "Size of the latent shared by all components (see Notes)."),
    }

    def _latent_dims(self, shapes) -> list[int]:
        M = len(shapes)
        d = self.latent_dim
        if d is None:
            return [2 * M] * M
        if isinstance(d, (list, tuple)):
            if len(set(d)) != 1:
                raise ValueError(f"{type(self).__name__} has one latent shared by all components; latent_dim "
                                 f"must be a single integer, got {list(d)}")
            d = d[0]
        return [_positive_int(d, "latent_dim")] * M
