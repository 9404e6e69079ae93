"""MMVAE+ (Palumbo, Daunhawer & Vogt, 2023): shared and component-specific latents with
auxiliary priors for cross-reconstruction.

Component m has a specific latent ``w_m`` (size Dw) and an encoding of the shared latent ``z``
(size Dz), from two independent encoder branches: ``q(w_m | x_m)`` and ``q_m(z | x_m)``, Laplace
(default) or Gaussian.  The shared posterior is the mixture ``q(z | X) = (1/M) sum_m q_m(z | x_m)``.
Priors ``p(z)`` and ``p(w)`` are fixed standard Laplace (Gaussian) distributions; every
component d has a learnable auxiliary prior ``r_d(w) = Laplace(0, softmax(theta_d) Dw)``.
Decoder d reads ``[w_d ; z]``.

For each m, K samples ``(w_m^k, z_m^k) ~ q(. | x_m)``; component m is reconstructed from
``[w_m^k ; z_m^k]`` and every other component d from ``[w~ ; z_m^k]`` with ``w~ ~ r_d``
(reparameterised, fresh per (k, m, d), no density term in training, as the official code).
Log-weight

    lw_{m,k} = sum_d llik_scale_d log p(x_d | .) + beta [log p(z_m^k) + log p(w_m^k)
               - log q(z_m^k | X) - log q(w_m^k | x_m)].

Objectives as MMVAE's stratified ones per component: ``"elbo"`` (mean of lw), ``"iwae"``
(``(1/M) sum_m log (1/K) sum_k exp lw``, which the official code calls ``m_elbo``), ``"dreg"``
(IWAE value, doubly-reparameterised gradients, unbiased for the mixture ``q(z | X)``: see
:func:`mcgen.models.importance.dreg_loss`; ``w_m`` has one density, ``z`` the mixture, whose other
experts' score terms stay score functions here).  :meth:`MMVAEPlusModule.elbo` (the score)
adds ``sum_{d != m} [log p(w~_d) - log r_d(w~_d)]``, without which it is no lower bound.
Unconditional samples: ``z ~ p(z)``, ``w_d ~ p(w)``.  Conditional: ``z`` from the mixture of the
observed components' ``q_m(z | x_m)``, ``w_d ~ p(w)`` for every missing d (official test time).

Missing components in training (``mask``): a row with observed components O has the shared proposal
``(1/|O|) sum_{m in O} q_m(z | x_m)``, groups ``m in O`` only (so ``w_m`` only of observed m), and
reconstructs and cross-reconstructs the components of O only: ``lw_{m,k}`` sums ``d in O``, its
``log q`` is of the mixture over O, and the ``elbo`` density terms of ``w~_d`` are those of
``d in O, d != m``; the objectives average over the |O| groups.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mcgen.distributions import log_prob, rsample, standard_noise
from mcgen.models._multimodal import (
    check_latent_options,
    check_positive_int,
    component_log_lik,
    decode_rows,
    encode_heads,
    linear_heads,
    observed_inputs,
    shared_latent_size,
)
from mcgen.models.base import ComponentSpec, MultiComponentModule, build_decoder, build_encoder
from mcgen.models.experts import mixture_log_prob, positive_scale, sample_mixture, softmax_scale
from mcgen.models.importance import dreg_loss, iw_objective


class MMVAEPlusModule(MultiComponentModule):
    """MMVAE+.

    Parameters
    ----------
    specs : list of ComponentSpec
        All with the same ``latent_dim`` = Dz, the shared latent size.
    private_dim : int
        Dw, the size of every component-specific latent.
    beta : float
    objective : {"elbo", "iwae", "dreg"}
    K : int
    posterior : {"laplace", "gaussian"}
    posterior_scale : {"softmax", "softplus"}
        ``"softmax"``: ``softmax(a) * size + 1e-6`` per latent block.  A block of size 1 (``Dz = 1``
        or ``private_dim = 1``) then has scale 1 whatever ``a``, and the auxiliary priors of
        ``private_dim = 1`` are fixed at scale 1 (equal to ``p(w)``): nothing of those scales can
        learn; use ``"softplus"`` (the auxiliary priors stay softmax-parameterised, as the
        official code) or a block of size 2 or more.
    """

    def __init__(self, specs: list[ComponentSpec], private_dim: int = 2, beta: float = 1.0,
                 objective: str = "elbo", K: int = 1, posterior: str = "laplace",
                 posterior_scale: str = "softmax"):
        Dz = shared_latent_size(specs, "MMVAE+")
        super().__init__(specs)
        self.Dz, self.Dw = int(Dz), check_positive_int(private_dim, "private_dim")
        self.K = check_positive_int(K, "K")
        self.beta = float(beta)
        self.objective, self.family, self.posterior_scale = check_latent_options(objective, posterior, posterior_scale)
        self.encoders_z = nn.ModuleList([build_encoder(s) for s in specs])
        self.encoders_w = nn.ModuleList([build_encoder(s) for s in specs])
        self.heads_z = linear_heads(self.encoders_z, self.Dz)
        self.heads_w = linear_heads(self.encoders_w, self.Dw)
        self.decoders = nn.ModuleList([build_decoder(s, latent_dim=self.Dw + self.Dz) for s in specs])
        # Auxiliary priors r_d(w): scale softmax(theta_d) * Dw, theta_d = 0 at start (scale 1).
        self.aux_logits = nn.Parameter(torch.zeros(len(specs), self.Dw))

    @property
    def latent_size(self) -> int:
        return self.Dz + self.n_components * self.Dw

    def aux_scale(self) -> Tensor:
        """Scales of the auxiliary priors ``r_d``, ``(M, Dw)``."""
        return softmax_scale(self.aux_logits)

    def posteriors(self, xs: list[Tensor], which: list[int] | None = None):
        """``(loc_z, scale_z, loc_w, scale_w)`` of the listed components, each ``(E, B, .)``."""
        lz, rz = encode_heads(self.encoders_z, self.heads_z, xs, which)
        lw, rw = encode_heads(self.encoders_w, self.heads_w, xs, which)
        return lz, positive_scale(rz, self.posterior_scale), lw, positive_scale(rw, self.posterior_scale)

    def decode_component(self, d: int, w: Tensor, z: Tensor) -> Tensor:
        """Decoder ``d`` on ``[w ; z]`` with any leading axes -> ``(*lead, *shape_d)``."""
        return decode_rows(self.decoders[d], torch.cat([w, z], -1))

    def _mean(self, d: int, w: Tensor, z: Tensor) -> Tensor:
        return self.likelihoods[d].mean(self.decode_component(d, w, z))

    # ------------------------------------------------------------------------------------------
    def log_weights(self, xs: list[Tensor], K: int, beta: float, scaled: bool, detach_q: bool,
                    generator: torch.Generator | None = None, aux_density: bool = False,
                    mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Samples ``w`` ``(K, M, B, Dw)``, ``z`` ``(K, M, B, Dz)`` and log-weights ``(K, M, B)``.

        ``aux_density`` adds ``beta sum_{d != m} [log p(w~_d) - log r_d(w~_d)]`` for the
        cross-reconstruction draws ``w~_d ~ r_d`` of group m: without it (the official objective)
        the expectation exceeds the ELBO by ``sum_{d != m} KL(r_d || p(w))``; with it the
        log-weight is an ELBO term of the generative model on the space of every latent drawn.

        ``mask`` (B, M): row b's log-weights hold its observed components O only (``log q`` of the
        mixture over O; the reconstructions, and the density terms of ``w~_d``, of ``d in O``); the
        groups of missing experts are not samples of its proposal (the objectives leave them out).
        """
        _, _, w, z, lw = self._sample_and_weigh(xs, K, beta, scaled, detach_q, generator, aux_density, mask)
        return w, z, lw

    def _sample_and_weigh(self, xs: list[Tensor], K: int, beta: float, scaled: bool, detach_q: bool,
                          generator: torch.Generator | None = None, aux_density: bool = False,
                          mask: Tensor | None = None):
        """Shared-posterior locations and scales ``(M, B, Dz)``, samples ``w``, ``z`` and log-weights."""
        lz, sz, lw_, sw = self.posteriors(xs)
        M = self.n_components
        z = rsample(self.family, lz, sz, (K,), generator)
        w = rsample(self.family, lw_, sw, (K,), generator)
        qz_loc, qz_scale = lz, sz
        if detach_q:
            lz, sz, lw_, sw = lz.detach(), sz.detach(), lw_.detach(), sw.detach()
        log_q = mixture_log_prob(self.family, z, lz, sz, mask) + log_prob(self.family, w, lw_, sw)
        zero = torch.zeros((), dtype=z.dtype, device=z.device)
        one = torch.ones((), dtype=z.dtype, device=z.device)
        log_p = log_prob(self.family, z, zero, one) + log_prob(self.family, w, zero, one)
        aux = self.aux_scale()
        m_idx = torch.arange(M, device=z.device).view(1, M, 1, 1)
        ll = 0.0
        for d in range(M):
            w_aux = aux[d] * standard_noise(self.family, w.shape, w, generator)
            w_in = torch.where(m_idx == d, w, w_aux)
            lld = component_log_lik(self.likelihoods[d], self.decode_component(d, w_in, z), xs[d])  # (K, M, B)
            lld = lld * self.llik_scales[d] if scaled else lld
            ll = ll + (lld if mask is None else torch.where(mask[:, d], lld, 0.0))
            if aux_density:
                ratio = log_prob(self.family, w_aux, zero, one) - log_prob(self.family, w_aux, zero, aux[d])
                cross = m_idx[..., 0] != d
                if mask is not None:  # no cross-reconstruction to a missing d: no w~_d
                    cross = cross & mask[:, d]
                log_p = log_p + torch.where(cross, ratio, torch.zeros_like(ratio))
        return qz_loc, qz_scale, w, z, ll + beta * (log_p - log_q)

    def forward(self, xs: list[Tensor], mask: Tensor | None = None) -> Tensor:
        xs, mask = observed_inputs(xs, mask)
        dreg = self.objective == "dreg"
        lz, sz, w, z, lw = self._sample_and_weigh(xs, self.K, self.beta, scaled=True, detach_q=dreg, mask=mask)
        if dreg:
            # The shared z has the mixture proposal; the other experts' score terms stay score
            # functions (moving them onto other groups' samples would need new decoder passes).
            return dreg_loss(lw, z, self.family, lz, sz, self.beta, looser=True, cross="score", private=w,
                             mask=mask)
        return -iw_objective(lw, self.objective, looser=True, mask=mask)

    # ------------------------------------------------------------------------------------------
    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        """MMVAE+'s objective with ``n_mc`` samples per component, beta = 1, its ELBO form; with
        ``mask``, over each row's observed components (a bound on ``log p(x_O)``)."""
        xs, mask = observed_inputs(xs, mask)
        _, _, lw = self.log_weights(xs, n_mc, 1.0, scaled=False, detach_q=False, generator=generator,
                                    aux_density=True, mask=mask)
        return iw_objective(lw, "elbo", True, mask)

    def encode(self, xs: list[Tensor]) -> Tensor:
        """``[mean of q(z | X) ; loc of q(w_1 | x_1) ; ... ; loc of q(w_M | x_M)]``."""
        lz, _, lw, _ = self.posteriors(xs)
        return torch.cat([lz.mean(0), lw.transpose(0, 1).reshape(lw.shape[1], -1)], -1)

    def decode(self, Z: Tensor) -> list[Tensor]:
        z = Z[:, : self.Dz]
        ws = Z[:, self.Dz:].reshape(Z.shape[0], self.n_components, self.Dw)
        return [self._mean(d, ws[:, d], z) for d in range(self.n_components)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        like = self.aux_logits
        z = standard_noise(self.family, (n, self.Dz), like, generator)
        ws = standard_noise(self.family, (n, self.n_components, self.Dw), like, generator)
        return [self._mean(d, ws[:, d], z) for d in range(self.n_components)]

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None) -> dict[int, Tensor]:
        lz, sz, _, _ = self.posteriors(xs_known, known)
        z = sample_mixture(self.family, lz, sz, n_samples, generator)  # (n_samples, B, Dz)
        out = {}
        for d in range(self.n_components):
            if d not in known:
                w = standard_noise(self.family, (*z.shape[:-1], self.Dw), z, generator)
                out[d] = self._mean(d, w, z)
        return out
