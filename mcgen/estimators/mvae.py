"""``MVAE`` (Wu & Goodman, 2018) as an estimator: its parameters and the torch module it builds
(``mcgen/models/mvae.py``).  See ``docs/baselines.md`` for the objective and the defaults."""

from __future__ import annotations

from numbers import Integral

from sklearn.utils._param_validation import Interval

from mcgen.estimators._shared_latent import SHARED_LATENT_ATTRIBUTES, SHARED_LATENT_NOTES, _SharedLatentVAE
from mcgen.models.base import ComponentSpec
from mcgen.models.mvae import MVAEModule
from mcgen.training import KLAnnealing

__all__ = ["MVAE"]


class MVAE(_SharedLatentVAE):
    __doc__ = """MVAE (Wu & Goodman, 2018): product-of-experts posterior with a N(0, I) prior expert.

    Trained with the sub-sampled objective: the ELBO terms of the full set, of every single
    component and of ``n_random_subsets`` random subsets of size 2..M-1 per batch, each scoring
    only the components of its subset.  Conditional generation samples the PoE of the observed
    experts and the prior expert.  ``score_samples`` is the joint ELBO with the PoE of all
    experts.

    Parameters
    ----------
    [shared parameters]
    n_random_subsets : int, default=1
        Random subsets per batch (``--approx-m`` of the official code; 0 gives the objective of
        the MNIST scripts: joint + unimodal terms only).
    kl_annealing : int, default=0
        Epochs over which the KL weight rises linearly from 0 to ``beta`` (0: no annealing;
        the official MNIST script uses 200 of 500 epochs).
""" + SHARED_LATENT_NOTES + SHARED_LATENT_ATTRIBUTES + """
    Examples
    --------
    >>> from mcgen import MVAE, load_dataset
    >>> X, info = load_dataset("copula", n_samples=500)
    >>> est = MVAE(latent_dim=3, max_epochs=2, random_state=0).fit(X)
    >>> [a.shape for a in est.predict_missing([X.arrays[0]], known=[0])]
    [(500, 2), (500, 2), (500, 2), (500, 2)]
    """

    _parameter_constraints: dict = {
        **_SharedLatentVAE._parameter_constraints,
        "n_random_subsets": [Interval(Integral, 0, None, closed="left")],
        "kl_annealing": [Interval(Integral, 0, None, closed="left")],
    }
    _renamed_parameters = {**_SharedLatentVAE._renamed_parameters, "n_subsets": "n_random_subsets"}

    def __init__(self, latent_dim=None, beta=0.1, *, max_epochs=200, n_random_subsets=1, kl_annealing=0, **shared):
        super().__init__(latent_dim, beta, max_epochs=max_epochs, **shared)
        self.n_random_subsets = n_random_subsets
        self.kl_annealing = kl_annealing

    def _build_module(self, specs: list[ComponentSpec]) -> MVAEModule:
        return MVAEModule(specs, beta=self.beta, n_random_subsets=int(self.n_random_subsets))

    def _callbacks(self) -> list:
        callbacks = super()._callbacks()
        if self.kl_annealing:
            callbacks.append(("kl_annealing", KLAnnealing(int(self.kl_annealing))))
        return callbacks
