"""``MoPoEVAE`` (Sutter et al., 2021) as an estimator: its parameters and the torch module it
builds (``mcgen/models/mopoe.py``).  See ``docs/baselines.md`` for the objective and the
defaults."""

from __future__ import annotations

from sklearn.utils._param_validation import StrOptions

from mcgen.estimators._shared_latent import SHARED_LATENT_ATTRIBUTES, SHARED_LATENT_NOTES, _SharedLatentVAE
from mcgen.models.base import ComponentSpec
from mcgen.models.mopoe import MIXTURE_SAMPLING, PRIOR_EXPERT_POLICIES, MoPoEModule

__all__ = ["MoPoEVAE"]


class MoPoEVAE(_SharedLatentVAE):
    __doc__ = """MoPoE-VAE (Sutter et al., 2021): mixture over all non-empty subsets of products of
    experts.

    Conditional generation samples the product of the observed experts.  ``score_samples`` is
    the method's bound: the mixture's expected log-likelihood minus the weighted subset KLs.

    Parameters
    ----------
    [shared parameters]
    prior_expert : {"full", "all", "none"}, default="full"
        Which subsets' products include the N(0, I) prior expert: only the full set (the
        official code), every subset, or none.
    mixture_sampling : {"partition", "random"}, default="partition"
        How a training batch draws from the mixture: contiguous blocks of ``floor(B / (2^M - 1))``
        rows per subset, the full set taking the remainder (the official code; relies on shuffled
        batches), or an independent uniform subset per row.
""" + SHARED_LATENT_NOTES + SHARED_LATENT_ATTRIBUTES

    _parameter_constraints: dict = {
        **_SharedLatentVAE._parameter_constraints,
        "prior_expert": [StrOptions(set(PRIOR_EXPERT_POLICIES))],
        "mixture_sampling": [StrOptions(set(MIXTURE_SAMPLING))],
    }

    def __init__(self, latent_dim=None, beta=0.1, *, max_epochs=200, prior_expert="full",
                 mixture_sampling="partition", **shared):
        super().__init__(latent_dim, beta, max_epochs=max_epochs, **shared)
        self.prior_expert = prior_expert
        self.mixture_sampling = mixture_sampling

    def _build_module(self, specs: list[ComponentSpec]) -> MoPoEModule:
        return MoPoEModule(specs, beta=self.beta, prior_expert=self.prior_expert,
                           mixture_sampling=self.mixture_sampling)
