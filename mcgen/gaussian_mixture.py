"""Batched algebra of Gaussian mixtures over a latent vector.

Used by the GMRF model's mixture prior (``prior_components > 1``): its log density, closed-form
conditioning on a subset of coordinates (a mixture of Gaussian conditionals weighted by the
responsibilities of the known coordinates), the same update when the known coordinates are seen
through Gaussian noise (the encoders' unary potentials), and the EM refit of a mixture to an
aggregate posterior that is itself a mixture of Gaussians.

Everything goes through Cholesky factors and triangular solves; no inverse is formed.  A
mixture is ``(log_w (C,), mu (C, D), L (C, D, D))`` with ``L`` the Cholesky factors of the
component covariances.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from mcgen.gaussian import cholesky_with_jitter, logdet_from_cholesky

_LOG_2PI = math.log(2.0 * math.pi)


def mixture_log_prob(z: Tensor, log_w: Tensor, mu: Tensor, L: Tensor) -> Tensor:
    """``log sum_c w_c N(z; mu_c, L_c L_c^T)`` for ``z`` of shape (..., D); returns (...)."""
    D = z.shape[-1]
    flat = z.reshape(-1, D)  # (N, D)
    diff = (flat.unsqueeze(0) - mu.unsqueeze(1)).mT  # (C, D, N)
    sol = torch.linalg.solve_triangular(L, diff, upper=False)  # (C, D, N)
    comp = -0.5 * (sol.pow(2).sum(1) + D * _LOG_2PI) - 0.5 * logdet_from_cholesky(L).unsqueeze(-1)  # (C, N)
    out = torch.logsumexp(log_w.unsqueeze(-1) + comp, dim=0)
    return out.reshape(z.shape[:-1])


def mixture_sample(n: int, log_w: Tensor, mu: Tensor, L: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws from the mixture: a component by its weight, then a Gaussian draw; (n, D)."""
    C, D = mu.shape
    if C == 1:
        c = torch.zeros(n, dtype=torch.long, device=mu.device)
    else:
        c = torch.multinomial(log_w.softmax(0).expand(n, C), 1, generator=generator).squeeze(-1)
    u = torch.randn((n, D), dtype=mu.dtype, device=mu.device, generator=generator)
    return mu[c] + (L[c] @ u.unsqueeze(-1)).squeeze(-1)


def mixture_moments(log_w: Tensor, mu: Tensor, L: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and covariance (D, D) of the mixture (law of total covariance)."""
    dtype = mu.dtype
    log_w, mu, L = log_w.double(), mu.double(), L.double()  # sums of second moments: float64
    w = log_w.softmax(0)
    m = (w.unsqueeze(-1) * mu).sum(0)
    d = mu - m
    S = L @ L.mT
    cov = (w[:, None, None] * (S + d.unsqueeze(-1) * d.unsqueeze(-2))).sum(0)
    return m.to(dtype), (0.5 * (cov + cov.mT)).to(dtype)


def condition_mixture(log_w: Tensor, mu: Tensor, S: Tensor, known_idx: Tensor, unknown_idx: Tensor,
                      z_known: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Conditional of a Gaussian mixture for the ``unknown_idx`` coordinates given the known ones.

    Parameters
    ----------
    log_w : Tensor (C,)
        Log mixture weights (normalised or not).
    mu : Tensor (C, D)
    S : Tensor (C, D, D)
        Component covariances.
    known_idx, unknown_idx : LongTensor
        Disjoint coordinate sets.
    z_known : Tensor (..., |K|)

    Returns
    -------
    log_resp : Tensor (..., C)
        Normalised log responsibilities ``log w_c N(z_K; mu_cK, S_cKK) - log sum``.
    mean : Tensor (..., C, |U|)
        Each component's conditional mean ``mu_cU + S_cUK S_cKK^-1 (z_K - mu_cK)``.
    L_cond : Tensor (C, |U|, |U|)
        Cholesky factors of each component's conditional covariance (the same for every row).
    """
    K = known_idx.numel()
    dtype = z_known.dtype
    # float64: S_UU - S_UK S_KK^-1 S_KU cancels badly in float32 when a component is strongly
    # correlated or nearly singular (C small D x D matrices, so the cost is negligible).
    S, mu, log_w, z_known = S.double(), mu.double(), log_w.double(), z_known.double()
    S_KK = S[:, known_idx][:, :, known_idx]
    S_UK = S[:, unknown_idx][:, :, known_idx]
    S_UU = S[:, unknown_idx][:, :, unknown_idx]
    L_KK, _ = cholesky_with_jitter(S_KK)
    G = torch.linalg.solve_triangular(L_KK, S_UK.mT, upper=False)  # (C, K, U)
    flat = z_known.reshape(-1, K)
    resid = (flat.unsqueeze(0) - mu[:, known_idx].unsqueeze(1)).mT  # (C, K, N)
    w = torch.linalg.solve_triangular(L_KK, resid, upper=False)  # (C, K, N)
    mean = mu[:, unknown_idx].unsqueeze(-1) + G.mT @ w  # (C, U, N)
    loglik = -0.5 * (w.pow(2).sum(1) + K * _LOG_2PI) - 0.5 * logdet_from_cholesky(L_KK).unsqueeze(-1)  # (C, N)
    log_resp = torch.log_softmax(log_w.unsqueeze(-1) + loglik, dim=0)
    cov = S_UU - G.mT @ G
    L_cond, _ = cholesky_with_jitter(0.5 * (cov + cov.mT))
    batch = z_known.shape[:-1]
    return (log_resp.mT.reshape(*batch, -1).to(dtype),
            mean.permute(2, 0, 1).reshape(*batch, *mean.shape[:2]).to(dtype), L_cond.to(dtype))


def condition_mixture_on_noisy(log_w: Tensor, mu: Tensor, S: Tensor, known_idx: Tensor, y: Tensor,
                               noise_var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Posterior of the known coordinates ``z_K`` of a mixture seen through Gaussian noise.

    The observation is ``y = z_K + e``, ``e ~ N(0, diag(noise_var))`` (one encoder output per
    known component, used as a Gaussian unary potential on its latent).  Each mixture
    component's posterior is Gaussian in closed form; the component weights become
    ``w_c N(y; mu_cK, S_cKK + diag(noise_var))``.

    Parameters
    ----------
    log_w, mu, S : the mixture, shapes (C,), (C, D), (C, D, D)
    known_idx : LongTensor (|K|,)
    y, noise_var : Tensor (N, |K|)

    Returns
    -------
    log_resp : Tensor (N, C)
    mean : Tensor (N, C, |K|)
        ``mu_cK + S_cKK A^-1 (y - mu_cK)``, ``A = S_cKK + diag(noise_var)``.
    L_post : Tensor (N, C, |K|, |K|)
        Cholesky factors of ``S_cKK A^-1 diag(noise_var)`` (equal to ``S_cKK - S_cKK A^-1 S_cKK``;
        row-dependent, since the noise is).

    Computed in float64 and returned in the dtype of ``y``.
    """
    K = known_idx.numel()
    dtype = y.dtype
    # float64, as condition_mixture: the updates subtract nearly equal second moments.
    log_w, mu, S, y, noise_var = log_w.double(), mu.double(), S.double(), y.double(), noise_var.double()
    S_KK = S[:, known_idx][:, :, known_idx]  # (C, K, K)
    A = S_KK.unsqueeze(0) + torch.diag_embed(noise_var).unsqueeze(1)  # (N, C, K, K)
    L_A, _ = cholesky_with_jitter(A)
    resid = (y.unsqueeze(1) - mu[:, known_idx].unsqueeze(0)).unsqueeze(-1)  # (N, C, K, 1)
    a = torch.linalg.solve_triangular(L_A, resid, upper=False)  # L_A^-1 r
    H = torch.linalg.solve_triangular(L_A, S_KK.expand_as(A), upper=False)  # L_A^-1 S_KK
    mean = mu[:, known_idx].unsqueeze(0) + (H.mT @ a).squeeze(-1)
    loglik = -0.5 * (a.squeeze(-1).pow(2).sum(-1) + K * _LOG_2PI) - 0.5 * logdet_from_cholesky(L_A)  # (N, C)
    log_resp = torch.log_softmax(log_w + loglik, dim=-1)
    # S A^-1 V rather than S - S A^-1 S: no cancellation when the noise is tiny (P -> V) or huge
    # (P -> S_KK), both of which occur with trained encoders.
    J = torch.linalg.solve_triangular(L_A, torch.diag_embed(noise_var).unsqueeze(1).expand_as(A), upper=False)
    P = H.mT @ J
    L_post, _ = cholesky_with_jitter(0.5 * (P + P.mT))
    return log_resp.to(dtype), mean.to(dtype), L_post.to(dtype)


def em_bound_terms(mus: Tensor, Ss: Tensor, log_w: Tensor, m: Tensor, L: Tensor) -> Tensor:
    """Per row and component ``log w_c + E_{N(mu_n, S_n)} log N(z; m_c, L_c L_c^T)``, (N, C).

    ``E log N(z; m, P) = log N(mu_n; m, P) - tr(P^-1 S_n) / 2`` for ``z ~ N(mu_n, S_n)``.
    """
    C, D = m.shape
    diff = (mus.unsqueeze(0) - m.unsqueeze(1)).mT  # (C, D, N)
    sol = torch.linalg.solve_triangular(L, diff, upper=False)
    eye = torch.eye(D, dtype=L.dtype, device=L.device)
    L_inv = torch.linalg.solve_triangular(L, eye.expand(C, D, D), upper=False)  # (C, D, D), L^-1
    P_inv = L_inv.mT @ L_inv  # (C, D, D): only a DxD per component, for the linear trace term
    trace = torch.einsum("cij,nij->nc", P_inv, Ss)
    log_n = -0.5 * (sol.pow(2).sum(1).mT + D * _LOG_2PI) - 0.5 * logdet_from_cholesky(L)
    return log_w.log_softmax(0) + log_n - 0.5 * trace


def fit_mixture_to_gaussians(batches: Callable[[], Iterable[tuple[Tensor, Tensor]]], log_w: Tensor, mu: Tensor,
                             L: Tensor, max_iter: int = 100, tol: float = 1e-6, reg: float = 1e-6,
                             project: Callable[[Tensor], Tensor] | None = None
                             ) -> tuple[Tensor, Tensor, Tensor, list[float]]:
    """EM for the mixture that best explains an aggregate of Gaussians ``(1/N) sum_n N(mu_n, S_n)``.

    Maximises the variational bound
    ``(1/N) sum_n sum_c r_nc [log w_c + E_{N(mu_n, S_n)} log N(z; m_c, P_c) - log r_nc]`` on
    ``(1/N) sum_n E_{N(mu_n, S_n)} log p(z)``, i.e. minimises an upper bound on the average
    ``KL(N(mu_n, S_n) || p)``.  E-step: ``r_nc`` proportional to ``w_c N(mu_n; m_c, P_c)
    exp(-tr(P_c^-1 S_n) / 2)``.  M-step: ``w_c = N_c / N``, ``m_c = sum r mu / N_c``,
    ``P_c = sum r (S_n + (mu_n - m_c)(mu_n - m_c)^T) / N_c``.  With one component it is the moment
    match in one step.  Computed in float64 (second moments of offset latents lose precision in
    float32).

    Parameters
    ----------
    batches : callable returning an iterable of ``(mu (b, D), S (b, D, D))``
        Called once per iteration (a list of tensors, or a generator that re-encodes the data).
    log_w, mu, L : the starting mixture, shapes (C,), (C, D), (C, D, D)
    max_iter : int
    tol : float
        Stop when the bound improves by less than ``tol * (1 + |bound|)``.
    reg : float
        Added to each covariance's diagonal, relative to each diagonal entry (``P_ii (1 + reg)``,
        with a floor of ``1e-12`` times the largest entry), so small variances keep their scale.
    project : callable, optional
        Constrains the M-step: maps the components' M-step covariances (C, D, D) (float64, after
        the ridge) to the covariances of the constrained family that maximise the same expected
        log-likelihood, e.g. covariance selection on a graph (the GMRF prior with ``graph=``);
        the bound then still never decreases.

    Returns
    -------
    log_w, mu, L : the fitted mixture (dtype and device of the input)
    bounds : list of float
        The bound per row after each E-step (non-decreasing).
    """
    dtype, dev = mu.dtype, mu.device
    lw, m, Lc = log_w.double().log_softmax(0), mu.double(), L.double()
    C, D = m.shape
    bounds: list[float] = []
    for _ in range(max_iter):
        n = 0
        s_r = torch.zeros(C, dtype=torch.float64, device=dev)
        s_rmu = torch.zeros(C, D, dtype=torch.float64, device=dev)
        s_rmm = torch.zeros(C, D, D, dtype=torch.float64, device=dev)
        s_rS = torch.zeros(C, D, D, dtype=torch.float64, device=dev)
        total = 0.0
        for mus, Ss in batches():
            mus, Ss = mus.double(), Ss.double()
            t = em_bound_terms(mus, Ss, lw, m, Lc)  # (b, C)
            lse = torch.logsumexp(t, -1, keepdim=True)
            total += float(lse.sum())
            r = (t - lse).exp()
            n += mus.shape[0]
            s_r += r.sum(0)
            s_rmu += r.mT @ mus
            s_rmm += torch.einsum("nc,ni,nj->cij", r, mus, mus)
            s_rS += torch.einsum("nc,nij->cij", r, Ss)
        bounds.append(total / n)
        if len(bounds) > 1 and bounds[-1] - bounds[-2] < tol * (1.0 + abs(bounds[-1])):
            break
        Nc = s_r.clamp_min(1e-10 * n)
        lw = torch.log(Nc / Nc.sum())
        m = s_rmu / Nc[:, None]
        P = (s_rS + s_rmm) / Nc[:, None, None] - m.unsqueeze(-1) * m.unsqueeze(-2)
        # A component that explains (almost) no row has no usable statistics (its second moments
        # would be rounding noise): park it at the whole aggregate's moments, with its tiny weight.
        dead = Nc < 1e-3 * n / C
        if bool(dead.any()):
            m_all = s_rmu.sum(0) / n
            P_all = (s_rS.sum(0) + s_rmm.sum(0)) / n - torch.outer(m_all, m_all)
            m = torch.where(dead[:, None], m_all, m)
            P = torch.where(dead[:, None, None], P_all, P)
        P = 0.5 * (P + P.mT)
        diag = P.diagonal(dim1=-2, dim2=-1).clamp_min(0.0)
        floor = (1e-12 * diag.amax(-1, keepdim=True)).clamp_min(1e-300)
        P = P + reg * torch.diag_embed(torch.maximum(diag, floor))
        if project is not None:
            P = project(P)
        Lc, _ = cholesky_with_jitter(P)
    return lw.to(dtype), m.to(dtype), Lc.to(dtype), bounds
