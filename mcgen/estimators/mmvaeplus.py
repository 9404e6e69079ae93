"""``MMVAEPlus`` (Palumbo et al., 2023) as an estimator: its parameters and the torch module it
builds (``mcgen/models/mmvaeplus.py``).  See ``docs/baselines.md`` for the objective and the
defaults."""

from __future__ import annotations

from numbers import Integral

from sklearn.utils._param_validation import Interval, StrOptions

from mcgen.estimators._shared_latent import SHARED_LATENT_ATTRIBUTES, _SharedLatentVAE
from mcgen.models._multimodal import LATENT_FAMILIES, OBJECTIVES, SCALE_PARAMETERISATIONS
from mcgen.models.base import ComponentSpec
from mcgen.models.mmvaeplus import MMVAEPlusModule

__all__ = ["MMVAEPlus"]


class MMVAEPlus(_SharedLatentVAE):
    __doc__ = """MMVAE+ (Palumbo et al., 2023): shared and component-specific latents, auxiliary
    priors for cross-reconstruction.

    Conditional generation samples the shared latent from the mixture of the observed
    components' posteriors and the specific latents of the missing components from the prior.
    ``transform`` returns ``[shared ; w_1 ; ... ; w_M]`` (width ``latent_dim + M private_dim``).
    ``score_samples`` is the method's objective in its ELBO form.

    Parameters
    ----------
    [shared parameters]
    private_dim : int, default=2
        Size of every component-specific latent ``w_m``.
    objective : {"elbo", "iwae", "dreg"}, default="elbo"
        As MMVAE's (per-component stratified IWAE; ``"iwae"`` is what the official code calls
        ``m_elbo``).  The official PolyMNIST script trains ``elbo`` with K = 1.
    K : int, default=1
        Importance samples per component.
    posterior : {"laplace", "gaussian"}, default="laplace"
        Family of the posteriors and of the priors.
    posterior_scale : {"softmax", "softplus"}, default="softmax"
        Scale parameterisation of the posteriors (as MMVAE's).

    Notes
    -----
    ``latent_dim`` is the size Dz of the latent shared by all components (a single integer;
    ``None`` gives ``2 M``, the total latent size of the GMRF model's default).  The Copula
    benchmark uses 3, the paper's setting.
""" + SHARED_LATENT_ATTRIBUTES

    _parameter_constraints: dict = {
        **_SharedLatentVAE._parameter_constraints,
        "private_dim": [Interval(Integral, 1, None, closed="left")],
        "objective": [StrOptions(set(OBJECTIVES))],
        "K": [Interval(Integral, 1, None, closed="left")],
        "posterior": [StrOptions(set(LATENT_FAMILIES))],
        "posterior_scale": [StrOptions(set(SCALE_PARAMETERISATIONS))],
    }

    def __init__(self, latent_dim=None, beta=0.1, *, max_epochs=200, private_dim=2, objective="elbo", K=1,
                 posterior="laplace", posterior_scale="softmax", **shared):
        super().__init__(latent_dim, beta, max_epochs=max_epochs, **shared)
        self.private_dim = private_dim
        self.objective = objective
        self.K = K
        self.posterior = posterior
        self.posterior_scale = posterior_scale

    def _build_module(self, specs: list[ComponentSpec]) -> MMVAEPlusModule:
        return MMVAEPlusModule(specs, private_dim=int(self.private_dim), beta=self.beta, objective=self.objective,
                               K=int(self.K), posterior=self.posterior, posterior_scale=self.posterior_scale)
