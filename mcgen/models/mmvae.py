"""MMVAE (Shi, Siddharth, Paige & Torr, 2019): mixture-of-experts posterior with stratified
sampling.

``q(z | X) = (1/M) sum_m q_m(z | x_m)`` with Laplace (default, as the original) or Gaussian
unimodal posteriors and prior ``p(z) = Laplace(0, softmax(theta) D)`` (or Gaussian with that
scale), ``theta`` learnable when ``learn_prior``.  Every component contributes K reparameterised
samples ``z_m^k ~ q_m`` (stratified sampling), each decoded by every decoder, with log-weight

    lw_{m,k} = sum_d llik_scale_d log p(x_d | z_m^k) + beta [log p(z_m^k) - log q(z_m^k | X)].

Objectives (per row):

* ``"elbo"``: ``(1/M) sum_m (1/K) sum_k lw_{m,k}``, the stratified estimate of the mixture ELBO;
* ``"iwae"``: ``looser=True``: ``(1/M) sum_m log (1/K) sum_k exp lw_{m,k}`` (the paper's
  stratified IWAE); ``looser=False``: ``log (1/(MK)) sum_{m,k} exp lw_{m,k}``;
* ``"dreg"``: the IWAE value with doubly-reparameterised gradients (Tucker et al. 2019) made
  unbiased for the mixture proposal (:func:`mcgen.models.importance.dreg_loss`): the decoder
  and prior get ``sum w_hat grad lw``; the encoders get the path derivative
  ``sum w_hat (d lw/dz)(dz/dphi)`` (posterior parameters detached inside ``log q``) minus
  ``beta`` times a reparameterised estimate of the score term of ``log q_mix``, which holds
  every expert's score, not only the one each sample was drawn from.  With one expert and
  ``beta = 1`` this is the usual ``w_hat^2`` path weight; the released code's DReG (whose hook
  never fires) and a ``w_hat^2`` weight on the mixture are both biased.

Missing components (``mask``): a row with observed components O has the proposal
``q(z | x_O) = (1/|O|) sum_{m in O} q_m(z | x_m)``, samples from the experts of O only (groups
``m in O``), log-weights ``sum_{d in O} llik_scale_d log p(x_d | z) + beta [log p(z) - log q(z | x_O)]``,
and every objective above with ``M`` replaced by ``|O|`` and its sums over ``O`` (DReG's
responsibilities, pool and score terms included).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mcgen.distributions import log_prob, rsample, standard_noise
from mcgen.models._multimodal import (
    SharedLatentModule,
    check_latent_options,
    check_positive_int,
    observed_inputs,
    shared_latent_size,
)
from mcgen.models.base import ComponentSpec
from mcgen.models.experts import mixture_log_prob, positive_scale, sample_mixture, softmax_scale
from mcgen.models.importance import dreg_loss, iw_objective, others_logsumexp

# mixture_log_prob, sample_mixture, others_logsumexp and dreg_loss used to be defined here; their
# homes are mcgen.models.experts and mcgen.models.importance, and they stay importable from here.
__all__ = ["MMVAEModule", "dreg_loss", "iw_objective", "mixture_log_prob", "others_logsumexp", "sample_mixture"]


class MMVAEModule(SharedLatentModule):
    """MMVAE.

    Parameters
    ----------
    specs : list of ComponentSpec
        All with the same ``latent_dim``.
    beta : float
        Weight of ``log p(z) - log q(z | X)`` in the log-weight (1 in the original).
    objective : {"elbo", "iwae", "dreg"}
    K : int
        Importance samples per component.
    looser : bool
        Stratified IWAE/DReG with the log-mean-exp per component (the paper's) or over all
        ``M K`` samples.
    posterior : {"laplace", "gaussian"}
        Family of the unimodal posteriors and of the prior.
    posterior_scale : {"softmax", "softplus"}
        Scale parameterisation (``"softmax"``: the original's ``softmax(a) D + 1e-6``).  With
        ``D = 1`` the softmax is 1 whatever ``a``: every posterior has scale 1 and cannot learn
        it; use ``"softplus"`` for a one-dimensional latent.
    learn_prior : bool
        Learn the prior scale ``softmax(theta) D`` (fixed at 1 when ``D = 1``, for the same
        reason).
    """

    def __init__(self, specs: list[ComponentSpec], beta: float = 1.0, objective: str = "dreg", K: int = 1,
                 looser: bool = True, posterior: str = "laplace", posterior_scale: str = "softmax",
                 learn_prior: bool = True):
        D = shared_latent_size(specs, "MMVAE")
        super().__init__(specs, D)
        self.beta = float(beta)
        self.objective, self.family, self.posterior_scale = check_latent_options(objective, posterior, posterior_scale)
        self.K = check_positive_int(K, "K")
        self.looser = bool(looser)
        if learn_prior:
            self.prior_logits = nn.Parameter(torch.zeros(D))
        else:
            self.register_buffer("prior_logits", torch.zeros(D))

    def prior_scale(self) -> Tensor:
        """``softmax(theta) D`` (1 everywhere at initialisation)."""
        return softmax_scale(self.prior_logits)

    def posteriors(self, xs: list[Tensor], which: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Locations and scales of the listed unimodal posteriors, each ``(E, B, D)``."""
        loc, raw = self.encoder_outputs(xs, which)
        return loc, positive_scale(raw, self.posterior_scale)

    # ------------------------------------------------------------------------------------------
    def log_weights(self, xs: list[Tensor], K: int, beta: float, scaled: bool, detach_q: bool,
                    generator: torch.Generator | None = None, mask: Tensor | None = None
                    ) -> tuple[Tensor, Tensor]:
        """Stratified samples ``z`` ``(K, M, B, D)`` and their log-weights ``(K, M, B)``.

        With ``mask`` (B, M) (``xs`` as :func:`mcgen.models._multimodal.observed_inputs` returns
        them) the log-weights hold the row's observed components only and ``log q`` of the mixture
        of its observed experts; the groups of its missing experts are not samples of its proposal
        (:func:`mcgen.models.importance.iw_objective` with ``mask`` leaves them out).
        """
        _, _, z, lw = self._sample_and_weigh(xs, K, beta, scaled, detach_q, generator, mask)
        return z, lw

    def _sample_and_weigh(self, xs: list[Tensor], K: int, beta: float, scaled: bool, detach_q: bool,
                          generator: torch.Generator | None = None, mask: Tensor | None = None
                          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Posterior locations and scales ``(M, B, D)``, samples and log-weights."""
        loc, scale = self.posteriors(xs)
        z = rsample(self.family, loc, scale, (K,), generator)
        q_loc, q_scale = (loc.detach(), scale.detach()) if detach_q else (loc, scale)
        log_q = mixture_log_prob(self.family, z, q_loc, q_scale, mask)
        log_p = log_prob(self.family, z, torch.zeros_like(self.prior_scale()), self.prior_scale())
        ll = sum(self.decoded_log_liks(z, xs, scaled, mask))  # (K, M, B)
        return loc, scale, z, ll + beta * (log_p - log_q)

    def forward(self, xs: list[Tensor], mask: Tensor | None = None) -> Tensor:
        xs, mask = observed_inputs(xs, mask)
        dreg = self.objective == "dreg"
        loc, scale, z, lw = self._sample_and_weigh(xs, self.K, self.beta, scaled=True, detach_q=dreg, mask=mask)
        if dreg:
            return dreg_loss(lw, z, self.family, loc, scale, self.beta, self.looser,
                             cross="reparam" if self.looser else "score", mask=mask)
        return -iw_objective(lw, self.objective, self.looser, mask)

    # ------------------------------------------------------------------------------------------
    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        """Stratified estimate of the mixture ELBO with ``n_mc`` samples per component; with
        ``mask``, of the mixture of each row's observed experts (a bound on ``log p(x_O)``)."""
        xs, mask = observed_inputs(xs, mask)
        _, lw = self.log_weights(xs, n_mc, 1.0, scaled=False, detach_q=False, generator=generator, mask=mask)
        return iw_objective(lw, "elbo", True, mask)

    def encode(self, xs: list[Tensor]) -> Tensor:
        """Mean of the mixture posterior (the average of the unimodal locations)."""
        return self.posteriors(xs)[0].mean(0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        scale = self.prior_scale()
        return self.decode(scale * standard_noise(self.family, (n, self.D), scale, generator))

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None) -> dict[int, Tensor]:
        """``z`` from the mixture of the known components' unimodal posteriors (each draw picks
        one of them uniformly), decode the unknown components."""
        loc, scale = self.posteriors(xs_known, known)
        z = sample_mixture(self.family, loc, scale, n_samples, generator)
        return self.decode_missing(z, known)
