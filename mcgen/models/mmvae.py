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
  unbiased for the mixture proposal (:func:`dreg_loss`): the decoder and prior get
  ``sum w_hat grad lw``; the encoders get the path derivative ``sum w_hat (d lw/dz)(dz/dphi)``
  (posterior parameters detached inside ``log q``) minus ``beta`` times a reparameterised
  estimate of the score term of ``log q_mix``, which holds every expert's score, not only the
  one each sample was drawn from.  With one expert and ``beta = 1`` this is the usual
  ``w_hat^2`` path weight; the released code's DReG (whose hook never fires) and a
  ``w_hat^2`` weight on the mixture are both biased.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mcgen.distributions import log_prob, rsample, standard_noise
from mcgen.models._multimodal import (
    LATENT_FAMILIES,
    OBJECTIVES,
    SCALE_PARAMETERISATIONS,
    SharedLatentModule,
    check_choice,
    iw_weights,
    log_mean_exp,
    positive_scale,
    shared_latent_size,
)
from mcgen.models.base import ComponentSpec


def mixture_log_prob(family: str, z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """``log (1/E) sum_e q_e(z)`` for samples ``z`` ``(*lead, B, D)`` and ``E`` experts
    ``loc, scale`` ``(E, B, D)``; returns ``(*lead, B)``."""
    lp = log_prob(family, z.unsqueeze(-3), loc, scale)  # (*lead, E, B)
    return torch.logsumexp(lp, dim=-2) - math.log(loc.shape[0])


def iw_objective(lw: Tensor, objective: str, looser: bool) -> Tensor:
    """Objective value per row from log-weights ``(K, M, B)`` (DReG has the IWAE value)."""
    if objective == "elbo":
        return lw.mean((0, 1))
    if looser:
        return log_mean_exp(lw, 0).mean(0)
    return log_mean_exp(lw, (0, 1))


def others_logsumexp(a: Tensor) -> Tensor:
    """``out[k] = log sum_{l != k} exp(a[l])`` along the first axis, for every ``k``
    (``-inf`` where the axis has one entry)."""
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=a.device).reshape(n, n, *([1] * (a.dim() - 1)))
    return torch.logsumexp(a.unsqueeze(0).masked_fill(eye, float("-inf")), dim=1)


def dreg_loss(lw: Tensor, z: Tensor, family: str, loc: Tensor, scale: Tensor, beta: float, looser: bool,
              cross: str = "reparam", private: Tensor | None = None) -> Tensor:
    """Per-row loss whose value is minus the IWAE bound and whose gradient is an unbiased
    doubly-reparameterised (DReG) estimate of the IWAE gradient for a mixture proposal.

    Parameters
    ----------
    lw : Tensor (K, M, B)
        Log-weights ``a = b(z) - beta log q_mix(z)`` (``b``: the log-likelihoods and
        ``beta log p``), computed with the posterior parameters **detached** inside ``log q`` and
        the reparameterised samples live; group ``m`` holds the K samples drawn from expert m.
    z : Tensor (K, M, B, D)
        Those samples of the mixture latent.
    family : {"laplace", "gaussian"}
    loc, scale : Tensor (M, B, D)
        The experts' parameters (live: the cross terms of ``cross="score"`` differentiate them).
    beta : float
        Weight of ``log p - log q`` in ``lw`` (it multiplies the score terms).
    looser : bool
        Stratified bound (log-mean-exp within each group) or one pool of ``M K`` samples.
    cross : {"reparam", "score"}
        How the other experts' score terms of ``log q_mix`` are estimated: moved onto the other
        groups' samples and reparameterised (needs ``looser``; no extra decoder pass), or kept as
        score-function terms weighted by the responsibilities.
    private : Tensor (K, M, B, Dw), optional
        Samples of a latent whose proposal in group ``m`` is one density (not a mixture; MMVAE+'s
        ``w_m``), also inside ``lw``.

    Notes
    -----
    The gradient is: decoders, prior and any other generative parameter, ``sum w_hat grad lw``
    (the IWAE gradient); encoders, the path term ``sum w_hat (d lw / d z)(d z / d phi)`` minus
    ``beta`` times a reparameterised form of the score term
    ``E[sum_k w_hat_k sum_j r_j(z_k) d log q_j(z_k) / d phi]`` (``r_j`` the responsibilities).
    ``docs/baselines.md`` ("DReG for mixture proposals") derives it.  The z-gradients of the
    log-weights come from one ``autograd.grad`` (through the decoders' inputs only); with the
    stratified bound and K = 1 the score term has expectation zero and is left out (the estimator
    is then the path derivative).
    """
    if cross not in ("reparam", "score"):
        raise ValueError(f"cross must be 'reparam' or 'score', got {cross!r}")
    if cross == "reparam" and not looser:
        raise ValueError("cross='reparam' needs the stratified (looser) bound: the pooled bound would need a "
                         "fresh draw from every expert outside the pool")
    K, M, B = lw.shape
    value = iw_objective(lw.detach(), "iwae", looser)
    w = iw_weights(lw, 0 if looser else (0, 1))
    norm = M if looser else 1
    surrogate = (w * lw).sum((0, 1)) / norm
    latents = [z] if private is None else [z, private]
    live = torch.is_grad_enabled() and all(t.requires_grad for t in latents) and lw.requires_grad
    if live and not (looser and K == 1) and beta != 0:
        surrogate = surrogate - beta * _score_correction(lw, latents, family, loc, scale, w, looser, cross) / norm
    return -(value + surrogate - surrogate.detach())


def _score_correction(lw: Tensor, latents: list[Tensor], family: str, loc: Tensor, scale: Tensor, w: Tensor,
                      looser: bool, cross: str) -> Tensor:
    """Surrogate (per row, before the ``1/M`` of the stratified bound) whose encoder gradient is
    the estimate of the score term of :func:`dreg_loss`; it has no gradient for any generative
    parameter."""
    K, M, B = lw.shape
    grads = torch.autograd.grad(lw.sum(), latents, retain_graph=True)
    base = lw.detach()

    def linear(i: int) -> Tensor:
        """``lw`` to first order in latent ``i`` alone: its value and z-gradient, no parameter."""
        t = latents[i]
        return base + ((t - t.detach()) * grads[i]).sum(-1)

    # Leave-one-out normalisers: log sum_{l != k} exp lw_l within each group (or over the pool).
    others = others_logsumexp(base) if looser else others_logsumexp(base.reshape(K * M, B)).reshape(K, M, B)
    z = latents[0]
    lp = log_prob(family, z.unsqueeze(-3), loc.detach(), scale.detach())  # (K, J, E, B): q_e at z_kj
    log_r = lp - torch.logsumexp(lp, dim=2, keepdim=True)
    a_z = linear(0)
    if cross == "reparam":
        # Expert m's score at group j's samples: z_kj stands in for the k-th sample of group m,
        # weighted by w(z_kj) / (w(z_kj) + sum_{l != k} w(z_lm)) and by r_m(z_kj).
        a = a_z.unsqueeze(2)
        log_w_hat = a - torch.logaddexp(a, others.unsqueeze(1))  # (K, J, M, B)
        out = (log_w_hat + log_r).exp().sum((0, 1, 2))
    else:
        own = log_r.diagonal(dim1=1, dim2=2).movedim(-1, 1)  # r_j(z_kj), (K, J, B)
        out = (a_z - torch.logaddexp(a_z, others) + own).exp().sum((0, 1))
        # The other experts' terms as score functions: sum w_hat sum_{e != j} r_e d log q_e(z).
        lq = log_prob(family, z.detach().unsqueeze(-3), loc, scale)  # live parameters, fixed samples
        r_cross = log_r.detach().exp() * (1 - torch.eye(M, dtype=lw.dtype, device=lw.device)).unsqueeze(-1)
        out = out + (w.unsqueeze(2) * r_cross * lq).sum((0, 1, 2))
    if len(latents) > 1:  # the private latent: its own density, no mixture
        a_w = linear(1)
        out = out + (a_w - torch.logaddexp(a_w, others)).exp().sum((0, 1))
    return out


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
        self.objective = check_choice(objective, OBJECTIVES, "objective")
        self.family = check_choice(posterior, LATENT_FAMILIES, "posterior")
        self.posterior_scale = check_choice(posterior_scale, SCALE_PARAMETERISATIONS, "posterior_scale")
        if isinstance(K, bool) or int(K) != K or K < 1:
            raise ValueError(f"K must be a positive integer, got {K!r}")
        self.K = int(K)
        self.looser = bool(looser)
        if learn_prior:
            self.prior_logits = nn.Parameter(torch.zeros(D))
        else:
            self.register_buffer("prior_logits", torch.zeros(D))

    @property
    def latent_size(self) -> int:
        return self.D

    def prior_scale(self) -> Tensor:
        """``softmax(theta) D`` (1 everywhere at initialisation)."""
        return torch.softmax(self.prior_logits, -1) * self.D

    def posteriors(self, xs: list[Tensor], which: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Locations and scales of the listed unimodal posteriors, each ``(E, B, D)``."""
        loc, raw = self.encoder_outputs(xs, which)
        return loc, positive_scale(raw, self.posterior_scale)

    # ------------------------------------------------------------------------------------------
    def log_weights(self, xs: list[Tensor], K: int, beta: float, scaled: bool, detach_q: bool,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Stratified samples ``z`` ``(K, M, B, D)`` and their log-weights ``(K, M, B)``."""
        _, _, z, lw = self._sample_and_weigh(xs, K, beta, scaled, detach_q, generator)
        return z, lw

    def _sample_and_weigh(self, xs: list[Tensor], K: int, beta: float, scaled: bool, detach_q: bool,
                          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Posterior locations and scales ``(M, B, D)``, samples and log-weights."""
        loc, scale = self.posteriors(xs)
        z = rsample(self.family, loc, scale, (K,), generator)
        q_loc, q_scale = (loc.detach(), scale.detach()) if detach_q else (loc, scale)
        log_q = mixture_log_prob(self.family, z, q_loc, q_scale)
        log_p = log_prob(self.family, z, torch.zeros_like(self.prior_scale()), self.prior_scale())
        ll = 0.0
        for d in range(self.n_components):
            lld = self.component_log_lik(d, self.decode_component(d, z), xs[d])  # (K, M, B)
            ll = ll + (lld * self.llik_scales[d] if scaled else lld)
        return loc, scale, z, ll + beta * (log_p - log_q)

    def forward(self, xs: list[Tensor]) -> Tensor:
        dreg = self.objective == "dreg"
        loc, scale, z, lw = self._sample_and_weigh(xs, self.K, self.beta, scaled=True, detach_q=dreg)
        if dreg:
            return dreg_loss(lw, z, self.family, loc, scale, self.beta, self.looser,
                             cross="reparam" if self.looser else "score")
        return -iw_objective(lw, self.objective, self.looser)

    # ------------------------------------------------------------------------------------------
    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Stratified estimate of the mixture ELBO with ``n_mc`` samples per component."""
        _, lw = self.log_weights(xs, n_mc, 1.0, scaled=False, detach_q=False, generator=generator)
        return lw.mean((0, 1))

    def encode(self, xs: list[Tensor]) -> Tensor:
        """Mean of the mixture posterior (the average of the unimodal locations)."""
        return self.posteriors(xs)[0].mean(0)

    def decode(self, z: Tensor) -> list[Tensor]:
        return [self.likelihoods[d].mean(self.decode_component(d, z)) for d in range(self.n_components)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        scale = self.prior_scale()
        return self.decode(scale * standard_noise(self.family, (n, self.D), scale, generator))

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None) -> dict[int, Tensor]:
        """``z`` from the mixture of the known components' unimodal posteriors (each draw picks
        one of them uniformly), decode the unknown components."""
        loc, scale = self.posteriors(xs_known, known)
        z = sample_mixture(self.family, loc, scale, n_samples, generator)
        return {d: self.likelihoods[d].mean(self.decode_component(d, z))
                for d in range(self.n_components) if d not in known}


def sample_mixture(family: str, loc: Tensor, scale: Tensor, n_samples: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """``n_samples`` draws per row from the uniform mixture of ``E`` experts ``(E, B, D)``:
    returns ``(n_samples, B, D)``."""
    E, B, _ = loc.shape
    pick = torch.randint(E, (n_samples, B), device=loc.device, generator=generator)
    rows = torch.arange(B, device=loc.device)
    return rsample(family, loc[pick, rows], scale[pick, rows], generator=generator)
