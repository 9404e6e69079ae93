"""``MMVAE`` (Shi et al., 2019) as an estimator: its parameters and the torch module it builds
(``mcgen/models/mmvae.py``).  See ``docs/baselines.md`` for the objective and the defaults."""

from __future__ import annotations

from numbers import Integral

from sklearn.utils._param_validation import Interval, StrOptions

from mcgen.estimators._shared_latent import SHARED_LATENT_ATTRIBUTES, SHARED_LATENT_NOTES, _SharedLatentVAE
from mcgen.models._multimodal import LATENT_FAMILIES, OBJECTIVES, SCALE_PARAMETERISATIONS
from mcgen.models.base import ComponentSpec
from mcgen.models.mmvae import MMVAEModule

__all__ = ["MMVAE"]


class MMVAE(_SharedLatentVAE):
    __doc__ = """MMVAE (Shi et al., 2019): mixture-of-experts posterior with stratified sampling.

    Laplace unimodal posteriors and prior as in the original (Gaussian as an option), K
    importance samples per component, each decoded by every decoder.  Conditional generation
    samples the mixture of the observed components' unimodal posteriors.  ``score_samples`` is
    the stratified estimate of the mixture-posterior ELBO.

    Parameters
    ----------
    [shared parameters]
    objective : {"elbo", "iwae", "dreg"}, default="elbo"
        Stratified ELBO, stratified IWAE, or IWAE with doubly-reparameterised gradients made
        unbiased for the mixture proposal (``docs/baselines.md``).  The paper trains with
        ``"dreg"`` and ``K=30``; the default is the ELBO with ``beta=0.1`` because that is what the
        completion benchmark measured best on images and tables alike (with ``"dreg"`` at
        ``K=1`` MMVAE collapsed on PolyMNIST at the CPU budget; ``docs/results.md``).
    K : int, default=1
        Importance samples per component.  The paper's MNIST-SVHN run uses 30; every sample is
        decoded by all M decoders, so the cost of a step grows as M^2 K (with K = 1, ``"dreg"``
        is the path-derivative "sticking the landing" ELBO gradient).
    looser : bool, default=True
        IWAE/DReG with the log-mean-exp per component (the paper's stratified bound) or over all
        ``M K`` samples.
    posterior : {"laplace", "gaussian"}, default="laplace"
        Family of the unimodal posteriors and of the prior.
    posterior_scale : {"softmax", "softplus"}, default="softmax"
        ``"softmax"``: the original's ``softmax(a) D + 1e-6`` (a posterior's scales sum to D);
        ``"softplus"``: each scale free.
    learn_prior : bool, default=True
        Learn the prior's scale ``softmax(theta) D`` (``--learn-prior`` of the paper's runs).
""" + SHARED_LATENT_NOTES + SHARED_LATENT_ATTRIBUTES

    _parameter_constraints: dict = {
        **_SharedLatentVAE._parameter_constraints,
        "objective": [StrOptions(set(OBJECTIVES))],
        "K": [Interval(Integral, 1, None, closed="left")],
        "looser": ["boolean"],
        "posterior": [StrOptions(set(LATENT_FAMILIES))],
        "posterior_scale": [StrOptions(set(SCALE_PARAMETERISATIONS))],
        "learn_prior": ["boolean"],
    }

    def __init__(self, latent_dim=None, beta=0.1, *, max_epochs=200, objective="elbo", K=1, looser=True,
                 posterior="laplace", posterior_scale="softmax", learn_prior=True, **shared):
        super().__init__(latent_dim, beta, max_epochs=max_epochs, **shared)
        self.objective = objective
        self.K = K
        self.looser = looser
        self.posterior = posterior
        self.posterior_scale = posterior_scale
        self.learn_prior = learn_prior

    def _build_module(self, specs: list[ComponentSpec]) -> MMVAEModule:
        return MMVAEModule(specs, beta=self.beta, objective=self.objective, K=int(self.K), looser=self.looser,
                           posterior=self.posterior, posterior_scale=self.posterior_scale,
                           learn_prior=self.learn_prior)
