"""The GMRF Multi-Component VAE module (DESIGN section 3).

Posterior ``q(z | X) = N(mu, Sigma)`` with a full covariance assembled from per-component
diagonal variances and off-diagonal blocks produced by a global encoder; a learned
full-covariance Gaussian prior; closed-form conditioning under the prior for missing components.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mcgen.gaussian import (
    assemble_blockwise,
    assemble_elementwise,
    cholesky_with_jitter,
    count_jitter,
    kl_mvn,
    logdet_from_cholesky,
)
from mcgen.gaussian_mixture import (
    condition_mixture,
    condition_mixture_on_noisy,
    fit_mixture_to_gaussians,
    mixture_log_prob,
    mixture_moments,
    mixture_sample,
)
from mcgen.models.base import ComponentSpec, MultiComponentModule, build_decoder, build_encoder

_SOFTPLUS_INV_ONE = math.log(math.e - 1.0)
_LOG_2PI = math.log(2.0 * math.pi)
#: How the known components' latents are formed at completion time.
INFERENCE_MODES = ("sample", "potential")


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
        Learned full-covariance Gaussian (mixture) or fixed N(0, I).
    var_floor : float
        Lower bound of the posterior variances.
    prior_components : int
        Number C of full-covariance Gaussians in the learned prior (1: the paper's GMRF).
    cond_weight : float
        Weight of the conditional-generation term (0: the paper's objective).
    inference : {"sample", "potential"}
        Completion: draw each known latent from its own encoder (``"sample"``), or combine the
        known encoders' outputs as Gaussian unary potentials with the prior (``"potential"``).
    """

    def __init__(self, specs: list[ComponentSpec], beta: float = 1.0, covariance: str = "elementwise",
                 epsilon: float = 0.9, delta: float = 1e-6, offdiag_hidden: int = 128,
                 offdiag_layers: int = 2, prior: str = "learned", var_floor: float = 1e-5,
                 prior_components: int = 1, cond_weight: float = 0.0, inference: str = "sample"):
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

        # Prior: a mixture of C full-covariance Gaussians sum_c w_c N(mu_c, L_c L_c^T), each L_c
        # lower triangular with softplus diagonal (C = 1: the paper's single Gaussian prior).
        tril = torch.tril_indices(D, D, offset=-1)
        self.register_buffer("tril_flat_idx", tril[0] * D + tril[1], persistent=False)
        C = self.n_prior_components = int(prior_components)  # validated by the estimator
        if prior == "learned":
            # Distinct starting means break the symmetry between mixture components (all at 0
            # they would receive identical gradients forever); C = 1 starts at N(0, I).
            mean0 = torch.randn(C, D) if C > 1 else torch.zeros(1, D)
            self.prior_mean = nn.Parameter(mean0)
            self.prior_diag_raw = nn.Parameter(torch.full((C, D), _SOFTPLUS_INV_ONE))
            self.prior_offdiag = nn.Parameter(torch.zeros(C, tril.shape[1]))
            self.prior_logits = nn.Parameter(torch.zeros(C))
        elif prior == "standard":
            # N(0, I) has one component whatever prior_components says
            C = self.n_prior_components = 1
            self.register_buffer("prior_mean", torch.zeros(1, D))
            self.register_buffer("prior_diag_raw", torch.full((1, D), _SOFTPLUS_INV_ONE))
            self.register_buffer("prior_offdiag", torch.zeros(1, tril.shape[1]))
            self.register_buffer("prior_logits", torch.zeros(1))
        else:
            raise ValueError(f"prior must be 'learned' or 'standard', got {prior!r}")
        self.inference = inference
        self.cond_weight = float(cond_weight)
        # Count of posterior Cholesky factorisations that needed jitter (diagnostics).
        self.register_buffer("n_jitter", torch.zeros((), dtype=torch.long), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files written before the mixture prior hold a single Gaussian: (D,) and (T,) tensors
        # without the component axis and no weights.
        for name in ("prior_mean", "prior_diag_raw", "prior_offdiag"):
            t = state_dict.get(prefix + name)
            if t is not None and t.dim() == 1:
                state_dict[prefix + name] = t.unsqueeze(0)
        if prefix + "prior_mean" in state_dict and prefix + "prior_logits" not in state_dict:
            state_dict[prefix + "prior_logits"] = torch.zeros(state_dict[prefix + "prior_mean"].shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        return self.D

    def prior_cholesky(self) -> Tensor:
        """Cholesky factors of the prior components' covariances, (C, D, D)."""
        C, D = self.prior_mean.shape
        L = torch.zeros(C, D * D, dtype=self.prior_diag_raw.dtype, device=self.prior_diag_raw.device)
        L = L.index_copy(1, self.tril_flat_idx, self.prior_offdiag).reshape(C, D, D)
        return L + torch.diag_embed(F.softplus(self.prior_diag_raw))

    def prior_mixture(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(log_w (C,), mu (C, D), L (C, D, D))`` of the prior."""
        return self.prior_logits.log_softmax(0), self.prior_mean, self.prior_cholesky()

    def prior_covariance(self) -> Tensor:
        """Covariance of the prior over all latents, (D, D) (of the whole mixture when C > 1)."""
        log_w, mu, L = self.prior_mixture()
        if mu.shape[0] == 1:
            return L[0] @ L[0].mT
        return mixture_moments(log_w, mu, L)[1]

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """``log p(z)`` under the prior, for z of shape (..., D)."""
        return mixture_log_prob(z, *self.prior_mixture())

    @torch.no_grad()
    def set_prior(self, mean: Tensor, cov: Tensor, log_w: Tensor | None = None) -> None:
        """Set the prior to ``N(mean, cov)`` ((D,), (D, D)) or to the mixture
        ``sum_c w_c N(mean_c, cov_c)`` ((C, D), (C, D, D), ``log_w`` (C,))."""
        if mean.dim() == 1:
            mean, cov = mean.unsqueeze(0), cov.unsqueeze(0)
        if mean.shape[0] != self.prior_mean.shape[0]:
            raise ValueError(f"the prior has {self.prior_mean.shape[0]} components, got {mean.shape[0]}")
        with self._counting_jitter():
            L, _ = cholesky_with_jitter(0.5 * (cov + cov.mT).double())
        self.set_prior_cholesky(mean, L.to(cov.dtype), log_w)

    @torch.no_grad()
    def set_prior_cholesky(self, mean: Tensor, L: Tensor, log_w: Tensor | None = None) -> None:
        """Set the prior mixture from its means (C, D), Cholesky factors (C, D, D) and weights."""
        diag = L.diagonal(dim1=-2, dim2=-1).clamp_min(1e-6)
        # softplus^-1(y) = y + log(-expm1(-y)), stable for small and large y.
        self.prior_mean.copy_(mean)
        self.prior_diag_raw.copy_(diag + torch.log(-torch.expm1(-diag)))
        self.prior_offdiag.copy_(L.reshape(L.shape[0], -1)[:, self.tril_flat_idx])
        self.prior_logits.copy_(torch.zeros_like(self.prior_logits) if log_w is None else log_w.log_softmax(0))

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

    def _assemble(self, mus: list[Tensor], vs: list[Tensor], es: list[Tensor]) -> tuple[Tensor, Tensor]:
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

    def posterior(self, xs: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Posterior mean (B, D) and covariance (B, D, D)."""
        return self._assemble(*self.encode_components(xs))

    @contextmanager
    def _counting_jitter(self) -> Iterator[None]:
        """Add the Cholesky factorisations jittered inside the block (posterior, conditioning,
        prior refit, ``set_prior``) to ``n_jitter``, which the estimator records per epoch."""
        with count_jitter() as events:
            yield
        if events.n:
            self.n_jitter += events.n

    def _cholesky(self, S: Tensor) -> Tensor:
        with self._counting_jitter():
            L, _ = cholesky_with_jitter(S)
        return L

    def _posterior_cholesky(self, xs):
        mu, S = self.posterior(xs)
        return mu, self._cholesky(S)

    def _split(self, z: Tensor) -> list[Tensor]:
        return list(torch.split(z, self.block_sizes, dim=-1))

    def _decode_locs(self, z: Tensor) -> list[Tensor]:
        return [dec(zi) for dec, zi in zip(self.decoders, self._split(z))]

    def _kl(self, mu: Tensor, L: Tensor, z: Tensor) -> Tensor:
        """``KL(q || p)`` per row: closed form for one prior component; for a mixture, the exact
        entropy of q minus the Monte Carlo cross-entropy at the draws ``z`` (..., B, D)."""
        log_w, mu_p, L_p = self.prior_mixture()
        if mu_p.shape[0] == 1:
            return kl_mvn(mu, L, mu_p[0], L_p[0])
        entropy = 0.5 * (self.D * (1.0 + _LOG_2PI) + logdet_from_cholesky(L))
        return -entropy - mixture_log_prob(z, log_w, mu_p, L_p).reshape(-1, mu.shape[0]).mean(0)

    # ------------------------------------------------------------------------------------------
    def forward(self, xs: list[Tensor]) -> Tensor:
        mus, vs, es = self.encode_components(xs)
        mu, S = self._assemble(mus, vs, es)
        L = self._cholesky(S)
        z = mu + (L @ torch.randn_like(mu).unsqueeze(-1)).squeeze(-1)
        ll = self.log_likelihoods(self._decode_locs(z), xs)
        loss = -(ll * self.llik_scales).sum(-1) + self.beta * self._kl(mu, L, z)
        if self.cond_weight > 0 and self.n_components > 1:
            loss = loss + self.cond_weight * self._conditional_term(xs, mus, vs)
        return loss

    def _conditional_term(self, xs: list[Tensor], mus: list[Tensor], vs: list[Tensor]) -> Tensor:
        """Minus the conditional-generation bound for one random known subset K (per row):
        z_K from the known encoders as at prediction time, z_U from the prior's conditional,
        ``-sum_{i in U} lambda_i log p(x_i | z_i)`` (|U| <= M - 1 extra decoder passes)."""
        M = self.n_components
        k = int(torch.randint(1, M, ()))
        known = sorted(torch.randperm(M)[:k].tolist())
        z_U, unknown = self._complete_latent([mus[i] for i in known], [vs[i] for i in known], known, 1, None)
        z_U = z_U[0]
        parts = torch.split(z_U, [self.block_sizes[u] for u in unknown], dim=-1)
        ll = torch.stack([self.likelihoods[i].log_prob(self.decoders[i](zi), xs[i]) * self.llik_scales[i]
                          for i, zi in zip(unknown, parts)], -1)
        return -ll.sum(-1)

    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None) -> Tensor:
        mu, L = self._posterior_cholesky(xs)
        u = torch.randn((n_mc, *mu.shape), dtype=mu.dtype, device=mu.device, generator=generator)
        z = mu + (L @ u.unsqueeze(-1)).squeeze(-1)  # (n_mc, B, D)
        xs_rep = [x.repeat(n_mc, *([1] * (x.dim() - 1))) for x in xs]
        ll = self.log_likelihoods(self._decode_locs(z.reshape(-1, self.D)), xs_rep).sum(-1)
        return ll.reshape(n_mc, -1).mean(0) - self._kl(mu, L, z)

    def encode(self, xs: list[Tensor]) -> Tensor:
        mus, _, _ = self.encode_components(xs)
        return torch.cat(mus, -1)

    def decode(self, z: Tensor) -> list[Tensor]:
        return self.means(self._decode_locs(z))

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the prior, (n, D)."""
        return mixture_sample(n, *self.prior_mixture(), generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        return self.decode(self.sample_latent(n, generator))

    def latent_indices(self, components: list[int]) -> Tensor:
        """Latent coordinates of the given components, concatenated in that order."""
        dev = self.prior_mean.device
        return torch.cat([torch.arange(self.offsets[k], self.offsets[k + 1], device=dev) for k in components])

    def conditional_latent(self, z_K: Tensor, known: list[int]) -> tuple[Tensor, Tensor, Tensor, list[int]]:
        """Prior conditional ``z_U | z_K`` for the components not in ``known``.

        Returns the log responsibilities of the prior components (..., C), each component's
        conditional mean (..., C, |U|), the Cholesky factors of the (row-independent)
        conditional covariances (C, |U|, |U|) and the list of unknown components.
        """
        unknown = [i for i in range(self.n_components) if i not in known]
        log_w, mu_p, L_p = self.prior_mixture()
        with self._counting_jitter():
            S_p = L_p.double() @ L_p.double().mT  # float64 from the factor on (conditioning cancels)
            log_resp, mean, L_c = condition_mixture(log_w, mu_p, S_p, self.latent_indices(known),
                                                    self.latent_indices(unknown), z_K)
        return log_resp, mean, L_c, unknown

    @staticmethod
    def _pick(log_resp: Tensor, generator: torch.Generator | None) -> Tensor:
        """One mixture component per row, drawn by its responsibility (N, C) -> (N,)."""
        if log_resp.shape[-1] == 1:
            return torch.zeros(log_resp.shape[0], dtype=torch.long, device=log_resp.device)
        return torch.multinomial(log_resp.detach().exp(), 1, generator=generator).squeeze(-1)

    def _complete_latent(self, mus_K: list[Tensor], vs_K: list[Tensor], known: list[int], n_samples: int,
                         generator: torch.Generator | None, use_mean: bool = False) -> tuple[Tensor, list[int]]:
        """Draw ``z_U`` (n_samples, B, |U|) given the known encoders' outputs (see ``inference``);
        ``use_mean`` conditions on the known encoders' means instead (either inference mode)."""
        mu_K = torch.cat(mus_K, -1)
        v_K = torch.cat(vs_K, -1)
        B, K = mu_K.shape
        n = n_samples * B
        log_w, mu_p, L_p = self.prior_mixture()
        n_mix = mu_p.shape[0]
        S_p = L_p.double() @ L_p.double().mT  # float64 from the factor on (conditioning cancels)
        k_idx = self.latent_indices(known)
        rows = torch.arange(n, device=mu_K.device)
        if use_mean:
            z_K = mu_K.repeat(n_samples, 1)
        elif self.inference == "sample":
            # z_K ~ q(z_K | x_K), each known component from its own encoder.
            u = torch.randn((n_samples, B, K), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
            z_K = (mu_K + v_K.sqrt() * u).reshape(n, K)
        else:
            # z_K from the prior combined in closed form with the encoders' Gaussian unary
            # potentials N(mu_k; z_k, diag v_k): a mixture posterior over (c, z_K).
            with self._counting_jitter():
                log_r, m_post, L_post = condition_mixture_on_noisy(log_w, mu_p, S_p, k_idx, mu_K, v_K)
            c = self._pick(log_r.repeat(n_samples, 1), generator)
            b = rows % B
            u = torch.randn((n, K, 1), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
            z_K = m_post[b, c] + (L_post[b, c] @ u).squeeze(-1)
        unknown = [i for i in range(self.n_components) if i not in known]
        with self._counting_jitter():
            log_resp, mean, L_c = condition_mixture(log_w, mu_p, S_p, k_idx, self.latent_indices(unknown), z_K)
        u = torch.randn((n, mean.shape[-1]), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
        if self.inference == "sample" and n_mix > 1 and torch.is_grad_enabled() and self.training:
            z_U = self._straight_through_draw(log_resp, mean, L_c, u)
        else:
            if use_mean or self.inference == "sample":
                c = self._pick(log_resp, generator)
            z_U = mean[rows, c] + (L_c[c] @ u.unsqueeze(-1)).squeeze(-1)
        return z_U.reshape(n_samples, B, -1), unknown

    @staticmethod
    def _straight_through_draw(log_resp: Tensor, mean: Tensor, L_c: Tensor, u: Tensor, tau: float = 1.0) -> Tensor:
        """A draw from the mixture conditional whose gradient reaches the responsibilities.

        Forward: the exact draw (c = argmax(log r_c + Gumbel noise) is distributed as r, then
        ``mean_c + L_c u``).  Backward: straight through the Gumbel-softmax weights, so the
        conditional-generation term also trains which component the known latents select (a
        plain categorical draw would give the responsibilities no gradient at all)."""
        gumbel = -torch.log(-torch.log(torch.rand_like(log_resp).clamp(1e-20, 1.0)))
        soft = torch.softmax((log_resp + gumbel) / tau, dim=-1)
        hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        weights = hard - soft.detach() + soft
        candidates = mean + torch.einsum("cij,nj->nci", L_c, u)  # (N, C, |U|)
        return (weights.unsqueeze(-1) * candidates).sum(1)

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None, use_mean: bool = False) -> dict[int, Tensor]:
        mus, vs, _ = self.encode_components(xs_known, which=known)
        B = mus[0].shape[0]
        # Rows per chunk: bounds the per-row work (B x C x |K|^2 covariances for "potential",
        # n_samples x C candidate means per row) at about 2^24 numbers.
        K = sum(m.shape[-1] for m in mus)
        C = self.n_prior_components
        step = max(1, 2**24 // (C * K * K + n_samples * C * self.D))
        chunks = []
        for s in range(0, B, step):
            z_U, unknown = self._complete_latent([m[s:s + step] for m in mus], [v[s:s + step] for v in vs],
                                                 known, n_samples, generator, use_mean)
            chunks.append(z_U)
        z_U = torch.cat(chunks, 1).reshape(n_samples * B, -1)
        out: dict[int, Tensor] = {}
        for i, zi in zip(unknown, torch.split(z_U, [self.block_sizes[u_] for u_ in unknown], dim=-1)):
            x = self.likelihoods[i].mean(self.decoders[i](zi))
            out[i] = x.reshape(n_samples, B, *x.shape[1:])
        return out

    @torch.no_grad()
    def refit_prior(self, posteriors, max_iter: int = 200) -> list[float]:
        """Refit the prior to the aggregate posterior in closed form.

        One component: the moment match (one M-step).  A mixture: EM from the current prior
        (:func:`mcgen.gaussian_mixture.fit_mixture_to_gaussians`).  ``posteriors`` is a callable
        returning an iterable of ``(mu, Sigma)`` batches.  Returns the EM bound per iteration.
        """
        log_w, mu, L = self.prior_mixture()
        iters = 1 if mu.shape[0] == 1 else max_iter
        with self._counting_jitter():
            log_w, mu, L, bounds = fit_mixture_to_gaussians(posteriors, log_w, mu, L, max_iter=iters)
        self.set_prior_cholesky(mu, L, log_w)
        return bounds
