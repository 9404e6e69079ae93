"""The GMRF Multi-Component VAE module (DESIGN section 3).

Posterior ``q(z | X) = N(mu, Sigma)`` with a full covariance assembled from per-component
diagonal variances and off-diagonal blocks produced by a global encoder; a learned
full-covariance Gaussian prior; closed-form conditioning under the prior for missing components.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mcgen.gaussian import (
    assemble_blockwise,
    assemble_elementwise,
    cholesky_with_jitter,
    condition_gaussian,
    kl_mvn,
)
from mcgen.models.base import ComponentSpec, MultiComponentModule, build_decoder, build_encoder

_SOFTPLUS_INV_ONE = math.log(math.e - 1.0)


class GMRFModule(MultiComponentModule):
    """GMRF multi-component VAE.

    Parameters
    ----------
    specs : list of ComponentSpec
    beta : float
        Weight of the KL term in the training loss.
    covariance : {"elementwise", "blockwise"}
        SPD construction of the posterior covariance.
    epsilon, delta : float
        Dominance margin and row-sum offset of the construction.
    offdiag_hidden, offdiag_layers : int
        Width and depth of the global (off-diagonal) encoder.
    prior : {"learned", "standard"}
        Learned full-covariance Gaussian (Cholesky-parameterised) or fixed N(0, I).
    var_floor : float
        Lower bound of the posterior variances.
    """

    def __init__(self, specs: list[ComponentSpec], beta: float = 1.0, covariance: str = "elementwise",
                 epsilon: float = 0.9, delta: float = 1e-6, offdiag_hidden: int = 128,
                 offdiag_layers: int = 2, prior: str = "learned", var_floor: float = 1e-5):
        super().__init__(specs)
        self.beta = float(beta)
        self.covariance = covariance
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.var_floor = float(var_floor)
        self.prior_kind = prior
        dims = [s.latent_dim for s in specs]
        self.block_sizes = dims
        D = sum(dims)
        self.D = D
        offsets = [0]
        for d in dims:
            offsets.append(offsets[-1] + d)
        self.offsets = offsets

        self.encoders = nn.ModuleList([build_encoder(s) for s in specs])
        self.decoders = nn.ModuleList([build_decoder(s) for s in specs])
        # Heads: mean, raw variance and covariance embedding per component, in one Linear each.
        self.heads = nn.ModuleList([nn.Linear(enc.out_features, 3 * d) for enc, d in zip(self.encoders, dims)])

        # Global encoder producing every off-diagonal block entry (upper triangle, i < j).
        rows, cols = [], []
        for i in range(len(dims)):
            for j in range(i + 1, len(dims)):
                r = torch.arange(offsets[i], offsets[i + 1])
                c = torch.arange(offsets[j], offsets[j + 1])
                rr, cc = torch.meshgrid(r, c, indexing="ij")
                rows.append(rr.reshape(-1))
                cols.append(cc.reshape(-1))
        n_off = int(sum(len(r) for r in rows))
        self.n_off = n_off
        flat = (torch.cat(rows) * D + torch.cat(cols)) if rows else torch.zeros(0, dtype=torch.long)
        self.register_buffer("offdiag_flat_idx", flat, persistent=False)
        if n_off > 0:
            layers: list[nn.Module] = []
            width = D
            for _ in range(offdiag_layers):
                layers += [nn.Linear(width, offdiag_hidden), nn.ReLU()]
                width = offdiag_hidden
            layers.append(nn.Linear(width, n_off))
            self.offdiag_net = nn.Sequential(*layers)
        else:
            self.offdiag_net = None

        # Prior N(mu_p, L_p L_p^T), L_p lower triangular with softplus diagonal.
        tril = torch.tril_indices(D, D, offset=-1)
        self.register_buffer("tril_flat_idx", tril[0] * D + tril[1], persistent=False)
        if prior == "learned":
            self.prior_mean = nn.Parameter(torch.zeros(D))
            self.prior_diag_raw = nn.Parameter(torch.full((D,), _SOFTPLUS_INV_ONE))
            self.prior_offdiag = nn.Parameter(torch.zeros(tril.shape[1]))
        elif prior == "standard":
            self.register_buffer("prior_mean", torch.zeros(D))
            self.register_buffer("prior_diag_raw", torch.full((D,), _SOFTPLUS_INV_ONE))
            self.register_buffer("prior_offdiag", torch.zeros(tril.shape[1]))
        else:
            raise ValueError(f"prior must be 'learned' or 'standard', got {prior!r}")
        # Count of posterior Cholesky factorisations that needed jitter (diagnostics).
        self.register_buffer("n_jitter", torch.zeros((), dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        return self.D

    def prior_cholesky(self) -> Tensor:
        """``L_p`` (D, D)."""
        D = self.D
        L = torch.zeros(D * D, dtype=self.prior_diag_raw.dtype, device=self.prior_diag_raw.device)
        L = L.index_copy(0, self.tril_flat_idx, self.prior_offdiag).reshape(D, D)
        return L + torch.diag(F.softplus(self.prior_diag_raw))

    def prior_covariance(self) -> Tensor:
        L = self.prior_cholesky()
        return L @ L.mT

    @torch.no_grad()
    def set_prior(self, mean: Tensor, cov: Tensor) -> None:
        """Set the prior to ``N(mean, cov)`` (used by the closed-form refit)."""
        L, _ = cholesky_with_jitter(0.5 * (cov + cov.mT))
        diag = L.diagonal().clamp_min(1e-6)
        # softplus^-1(y) = y + log(-expm1(-y)), stable for small and large y.
        self.prior_mean.copy_(mean)
        self.prior_diag_raw.copy_(diag + torch.log(-torch.expm1(-diag)))
        self.prior_offdiag.copy_(L.reshape(-1)[self.tril_flat_idx])

    # ------------------------------------------------------------------------------------------
    def encode_components(self, xs: list[Tensor], which: list[int] | None = None
                          ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-component ``mu_i``, variance ``v_i`` and embedding ``e_i``."""
        which = range(self.n_components) if which is None else which
        mus, vs, es = [], [], []
        for i, x in zip(which, xs):
            h = self.heads[i](self.encoders[i](x))
            mu, raw, e = h.chunk(3, dim=-1)
            mus.append(mu)
            vs.append(F.softplus(raw) + self.var_floor)
            es.append(e)
        return mus, vs, es

    def posterior(self, xs: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Posterior mean (B, D) and covariance (B, D, D)."""
        mus, vs, es = self.encode_components(xs)
        mu = torch.cat(mus, -1)
        v = torch.cat(vs, -1)
        B, D = mu.shape
        if self.offdiag_net is None:
            return mu, torch.diag_embed(v)
        off = self.offdiag_net(torch.cat(es, -1))
        W = torch.zeros(B, D * D, dtype=mu.dtype, device=mu.device).index_copy(1, self.offdiag_flat_idx, off)
        W = W.reshape(B, D, D)
        W = W + W.mT
        if self.covariance == "elementwise":
            S = assemble_elementwise(v, W, self.epsilon, self.delta)
        else:
            S = assemble_blockwise(v, W, self.block_sizes, self.epsilon, self.delta)
        return mu, S

    def _posterior_cholesky(self, xs):
        mu, S = self.posterior(xs)
        L, n_bad = cholesky_with_jitter(S)
        if n_bad:
            self.n_jitter += n_bad
        return mu, L

    def _split(self, z: Tensor) -> list[Tensor]:
        return list(torch.split(z, self.block_sizes, dim=-1))

    def _decode_locs(self, z: Tensor) -> list[Tensor]:
        return [dec(zi) for dec, zi in zip(self.decoders, self._split(z))]

    # ------------------------------------------------------------------------------------------
    def forward(self, xs: list[Tensor]) -> Tensor:
        mu, L = self._posterior_cholesky(xs)
        z = mu + (L @ torch.randn_like(mu).unsqueeze(-1)).squeeze(-1)
        ll = self.log_likelihoods(self._decode_locs(z), xs)
        kl = kl_mvn(mu, L, self.prior_mean, self.prior_cholesky())
        return -(ll * self.llik_scales).sum(-1) + self.beta * kl

    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None) -> Tensor:
        mu, L = self._posterior_cholesky(xs)
        u = torch.randn((n_mc, *mu.shape), dtype=mu.dtype, device=mu.device, generator=generator)
        z = (mu + (L @ u.unsqueeze(-1)).squeeze(-1)).reshape(-1, mu.shape[-1])
        xs_rep = [x.repeat(n_mc, *([1] * (x.dim() - 1))) for x in xs]
        ll = self.log_likelihoods(self._decode_locs(z), xs_rep).sum(-1).reshape(n_mc, -1).mean(0)
        return ll - kl_mvn(mu, L, self.prior_mean, self.prior_cholesky())

    def encode(self, xs: list[Tensor]) -> Tensor:
        mus, _, _ = self.encode_components(xs)
        return torch.cat(mus, -1)

    def decode(self, z: Tensor) -> list[Tensor]:
        return self.means(self._decode_locs(z))

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the prior, (n, D)."""
        mu_p = self.prior_mean
        u = torch.randn((n, self.D), dtype=mu_p.dtype, device=mu_p.device, generator=generator)
        return mu_p + u @ self.prior_cholesky().mT

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        return self.decode(self.sample_latent(n, generator))

    def latent_indices(self, components: list[int]) -> Tensor:
        """Latent coordinates of the given components, concatenated in that order."""
        dev = self.prior_mean.device
        return torch.cat([torch.arange(self.offsets[k], self.offsets[k + 1], device=dev) for k in components])

    def conditional_latent(self, z_K: Tensor, known: list[int]) -> tuple[Tensor, Tensor, list[int]]:
        """Prior conditional ``z_U | z_K`` for the components not in ``known``.

        Returns the conditional means (..., |U|), the Cholesky factor of the (row-independent)
        conditional covariance and the list of unknown components.
        """
        unknown = [i for i in range(self.n_components) if i not in known]
        mean, L_c = condition_gaussian(self.prior_mean, self.prior_covariance(), self.latent_indices(known),
                                       self.latent_indices(unknown), z_K)
        return mean, L_c, unknown

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None, use_mean: bool = False) -> dict[int, Tensor]:
        mus, vs, _ = self.encode_components(xs_known, which=known)
        mu_K = torch.cat(mus, -1)
        sd_K = torch.cat(vs, -1).sqrt()
        B = mu_K.shape[0]
        if use_mean:
            z_K = mu_K.expand(n_samples, *mu_K.shape)
        else:
            u = torch.randn((n_samples, *mu_K.shape), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
            z_K = mu_K + sd_K * u
        mean, L_c, unknown = self.conditional_latent(z_K, known)
        u = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
        z_U = mean + u @ L_c.mT  # (n_samples, B, |U|)
        z_U = z_U.reshape(n_samples * B, -1)
        out: dict[int, Tensor] = {}
        for i, zi in zip(unknown, torch.split(z_U, [self.block_sizes[u_] for u_ in unknown], dim=-1)):
            x = self.likelihoods[i].mean(self.decoders[i](zi))
            out[i] = x.reshape(n_samples, B, *x.shape[1:])
        return out

    @torch.no_grad()
    def aggregate_posterior_moments(self, batches) -> tuple[Tensor, Tensor]:
        """Moment match of the aggregate posterior over an iterable of batches ``xs``:
        ``mean(mu)`` and ``mean(Sigma) + cov(mu)`` (population covariance)."""
        n = 0
        s_mu = s_S = s_mm = None
        for xs in batches:
            mu, S = self.posterior(xs)
            b = mu.shape[0]
            if s_mu is None:
                s_mu, s_S, s_mm = mu.sum(0), S.sum(0), mu.mT @ mu
            else:
                s_mu, s_S, s_mm = s_mu + mu.sum(0), s_S + S.sum(0), s_mm + mu.mT @ mu
            n += b
        m = s_mu / n
        cov = s_S / n + s_mm / n - torch.outer(m, m)
        return m, cov
