"""Batched Gaussian algebra for multi-component latent models.

Everything works on batches (leading dimensions) and goes through Cholesky factors and
triangular solves; no explicit inverse is ever formed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor


# --------------------------------------------------------------------------------------------
# Cholesky
# --------------------------------------------------------------------------------------------
class JitterEvents:
    """Number of matrices that needed jitter inside a :func:`count_jitter` block (``n``)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


_JITTER_EVENTS: ContextVar[JitterEvents | None] = ContextVar("mcgen_jitter_events", default=None)


@contextmanager
def count_jitter() -> Iterator[JitterEvents]:
    """Count the matrices that :func:`cholesky_with_jitter` had to jitter inside the block, however
    deeply it is called (conditioning, EM refits, ...).

    The count goes to the innermost open block only (nested blocks do not double count), and is
    per thread (a context variable).

    Examples
    --------
    >>> with count_jitter() as events:
    ...     L, _ = cholesky_with_jitter(torch.zeros(1, 2, 2))
    >>> events.n
    1
    """
    events = JitterEvents()
    token = _JITTER_EVENTS.set(events)
    try:
        yield events
    finally:
        _JITTER_EVENTS.reset(token)


def cholesky_with_jitter(S: Tensor, max_tries: int = 6, jitter: float = 1e-6) -> tuple[Tensor, int]:
    """Cholesky factor of a batch of SPD matrices, adding jitter only where it fails.

    Parameters
    ----------
    S : Tensor, shape (..., D, D)
        Symmetric matrices that should be positive definite.
    max_tries : int
        Number of times the jitter is multiplied by 10 before giving up.
    jitter : float
        First jitter, relative to **each** diagonal entry of a failing matrix: ``S_ii`` becomes
        ``S_ii (1 + jitter)`` (entries below ``eps * max_j |S_jj|`` count as that floor), so a
        variance of 1e-5 beside ones of 1e3 keeps its scale.  On the correlation matrix this
        adds ``jitter`` to the diagonal.

    Returns
    -------
    L : Tensor
        Lower-triangular factors, ``L @ L.mT == S (+ jitter * diag(S) where it was needed)``.
    n_jittered : int
        How many matrices of the batch needed jitter (0 in the normal case).  It is also added
        to the innermost open :func:`count_jitter` block.

    Raises
    ------
    torch.linalg.LinAlgError
        When a matrix is still not positive definite after ``max_tries`` increases.
    """
    L, info = torch.linalg.cholesky_ex(S)
    failed = info > 0
    # One host sync to learn whether anything failed; the common path pays nothing more.
    if not bool(failed.any()):
        return L, 0
    n_failed = int(failed.sum())
    events = _JITTER_EVENTS.get()
    if events is not None:
        events.n += n_failed
    finfo = torch.finfo(S.dtype)
    d = S.diagonal(dim1=-2, dim2=-1).abs()
    floor = (d.amax(-1, keepdim=True) * finfo.eps).clamp_min(finfo.tiny)
    scale = torch.diag_embed(torch.maximum(d, floor))
    eps = jitter
    for _ in range(max_tries):
        S_j = torch.where(failed[..., None, None], S + eps * scale, S)
        L, info = torch.linalg.cholesky_ex(S_j)
        failed = info > 0
        if not bool(failed.any()):
            return L, n_failed
        eps *= 10.0
    raise torch.linalg.LinAlgError(
        f"Cholesky failed for {int(failed.sum())} matrices even with relative jitter {eps / 10:g}"
    )


def logdet_from_cholesky(L: Tensor) -> Tensor:
    """``log|L L^T|`` from a Cholesky factor, shape (...)."""
    return 2.0 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)


def mvn_rsample(mu: Tensor, L: Tensor, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Reparameterised samples ``mu + L u``, ``u ~ N(0, I)``.

    ``mu`` is (..., D), ``L`` is (..., D, D) (broadcastable).  With ``n`` the result gains a
    leading axis of size ``n``.
    """
    shape = torch.broadcast_shapes(mu.shape, L.shape[:-1])
    if n is not None:
        shape = (n, *shape)
    u = torch.randn(shape, dtype=mu.dtype, device=mu.device, generator=generator)
    return mu + (L @ u.unsqueeze(-1)).squeeze(-1)


def mvn_log_prob(z: Tensor, mu: Tensor, L: Tensor) -> Tensor:
    """Log density of ``N(mu, L L^T)`` at ``z`` (broadcasting over leading dimensions)."""
    diff = (z - mu).unsqueeze(-1)
    L_b = L.expand(*diff.shape[:-2], *L.shape[-2:]) if L.dim() < diff.dim() else L
    sol = torch.linalg.solve_triangular(L_b, diff, upper=False).squeeze(-1)
    D = z.shape[-1]
    return -0.5 * (sol.pow(2).sum(-1) + D * math.log(2 * math.pi)) - 0.5 * logdet_from_cholesky(L)


# --------------------------------------------------------------------------------------------
# SPD covariance assembly from a diagonal and free off-diagonal entries
# --------------------------------------------------------------------------------------------
def assemble_elementwise(v: Tensor, W: Tensor, epsilon: float = 0.9, delta: float = 1e-6) -> Tensor:
    """Element-wise diagonally dominant covariance ``diag(v) + (sqrt(a) sqrt(a)^T) o W``.

    Parameters
    ----------
    v : Tensor, shape (B, D)
        Positive variances.
    W : Tensor, shape (B, D, D)
        Symmetric off-diagonal entries with zero diagonal (blocks).
    epsilon : float in (0, 1)
        Dominance margin: the scaled off-diagonal row sums are at most ``epsilon`` times the
        diagonal.
    delta : float > 0
        Keeps the row sums away from zero.

    Notes
    -----
    With ``s_k = sum_l |W_kl| + delta`` and ``a_k = min(1, epsilon v_k / s_k)``, the result is
    congruent (by ``diag(sqrt(a))``) to ``diag(v / a) + W``, whose diagonal ``v_k / a_k >= s_k /
    epsilon`` strictly dominates each row: it is SPD for every input.
    """
    s = W.abs().sum(-1) + delta
    alpha = torch.clamp(epsilon * v / s, max=1.0)
    r = alpha.sqrt()
    return torch.diag_embed(v) + r.unsqueeze(-1) * W * r.unsqueeze(-2)


def assemble_elementwise_entries(v: Tensor, off: Tensor, rows: Tensor, cols: Tensor, epsilon: float = 0.9,
                                 delta: float = 1e-6) -> Tensor:
    """:func:`assemble_elementwise` from W's free entries, without forming W.

    Parameters
    ----------
    v : Tensor, shape (B, D)
        Positive variances.
    off : Tensor, shape (B, E)
        The entries ``W[rows, cols] = W[cols, rows]`` (W is zero elsewhere).
    rows, cols : LongTensor, shape (E,)
        Their coordinates, ``rows < cols``, each pair at most once.
    epsilon, delta : float
        As :func:`assemble_elementwise`.

    Returns
    -------
    Tensor, shape (B, D, D)
        The same matrix as ``assemble_elementwise(v, W, epsilon, delta)``.

    Notes
    -----
    The row sums ``s_k = sum_l |W_kl|`` and the scaling ``sqrt(a_k) W_kl sqrt(a_l)`` act on the
    E entries, and the matrix is written once; the dense route makes about ten passes over
    (B, D, D) tensors forward and backward, which dominates a step when D is a few dozen.
    """
    B, D = v.shape
    E = off.shape[1]
    a = off.abs()
    s = torch.zeros_like(v).index_add(1, rows, a).index_add(1, cols, a) + delta
    r = torch.clamp(epsilon * v / s, max=1.0).sqrt()
    scaled = r.index_select(1, rows) * off * r.index_select(1, cols)
    # Each of the D * D positions reads one column of [0 | scaled entries | v]: a single gather
    # writes the matrix (and its backward is a single scatter-add).
    source_of = torch.zeros(D * D, dtype=torch.long, device=v.device)
    entry = torch.arange(1, E + 1, device=v.device)
    source_of[rows * D + cols] = entry
    source_of[cols * D + rows] = entry
    source_of[torch.arange(D, device=v.device) * (D + 1)] = torch.arange(E + 1, E + 1 + D, device=v.device)
    source = torch.cat([v.new_zeros(B, 1), scaled, v], 1)
    return source.index_select(1, source_of).view(B, D, D)


def assemble_blockwise(
    v: Tensor, W: Tensor, block_sizes: list[int], epsilon: float = 0.9, delta: float = 1e-6
) -> Tensor:
    """Block-wise diagonally dominant covariance (Theorem 1 of the GMRF-MVAE paper).

    ``s_i = sum_{j != i} ||W_ij||_2 + delta``, ``a_i = min(1, epsilon lambda_min(Sigma_ii) / s_i)``,
    ``Sigma_ij = sqrt(a_i a_j) W_ij`` and ``Sigma_ii = diag(v_i)``.  SPD for every input by the
    block Gershgorin theorem.
    """
    offsets = [0]
    for d in block_sizes:
        offsets.append(offsets[-1] + d)
    M = len(block_sizes)
    B = v.shape[0]
    norms = v.new_zeros(B, M, M)
    lam_min = torch.stack([v[:, offsets[i]:offsets[i + 1]].min(-1).values for i in range(M)], -1)
    # Loop over block pairs (M^2 small kernels), never over rows.
    for i in range(M):
        for j in range(i + 1, M):
            blk = W[:, offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]]
            nrm = torch.linalg.matrix_norm(blk, ord=2)
            norms[:, i, j] = nrm
            norms[:, j, i] = nrm
    s = norms.sum(-1) + delta
    alpha = torch.clamp(epsilon * lam_min / s, max=1.0)  # (B, M)
    sizes = torch.tensor(block_sizes, device=v.device)
    r = torch.repeat_interleave(alpha.sqrt(), sizes, dim=1)  # (B, D)
    return torch.diag_embed(v) + r.unsqueeze(-1) * W * r.unsqueeze(-2)


# --------------------------------------------------------------------------------------------
# KL divergence and conditioning
# --------------------------------------------------------------------------------------------
def kl_mvn(mu_q: Tensor, L_q: Tensor, mu_p: Tensor, L_p: Tensor) -> Tensor:
    """``KL(N(mu_q, L_q L_q^T) || N(mu_p, L_p L_p^T))`` through triangular solves.

    Shapes broadcast: ``mu_q`` (B, D), ``L_q`` (B, D, D), ``mu_p`` (D,) or (B, D), ``L_p``
    (D, D) or (B, D, D).  Returns (B,).
    """
    D = mu_q.shape[-1]
    batch = torch.broadcast_shapes(L_q.shape[:-2], L_p.shape[:-2], mu_q.shape[:-1], mu_p.shape[:-1])
    if L_p.dim() == 2:
        # One prior factor for the whole batch: a single triangular solve against every
        # right-hand side side by side, [L_q,b | mu_p - mu_q,b] for all b, instead of a batch of
        # tiny solves with the factor repeated (the training step's KL; same arithmetic).
        rhs = torch.cat([L_q.expand(*batch, D, D), (mu_p - mu_q).expand(*batch, D).unsqueeze(-1)], -1)
        sol = torch.linalg.solve_triangular(L_p, rhs.movedim(-2, 0).reshape(D, -1), upper=False)
        trace_maha = sol.pow(2).reshape(D, *batch, D + 1).sum((0, -1))  # ||L_p^-1 L_q||_F^2 + maha
        return 0.5 * (trace_maha - D + logdet_from_cholesky(L_p) - logdet_from_cholesky(L_q))
    L_pb = L_p.expand(*batch, D, D)
    # tr(Sp^-1 Sq) = ||L_p^-1 L_q||_F^2
    A = torch.linalg.solve_triangular(L_pb, L_q.expand(*batch, D, D), upper=False)
    trace = A.pow(2).sum((-2, -1))
    diff = (mu_p - mu_q).expand(*batch, D).unsqueeze(-1)
    maha = torch.linalg.solve_triangular(L_pb, diff, upper=False).pow(2).sum((-2, -1))
    return 0.5 * (trace + maha - D + logdet_from_cholesky(L_p) - logdet_from_cholesky(L_q))


def condition_gaussian(
    mu: Tensor, S: Tensor, known_idx: Tensor, unknown_idx: Tensor, z_known: Tensor
) -> tuple[Tensor, Tensor]:
    """Conditional of ``N(mu, S)`` for the ``unknown_idx`` coordinates given the known ones.

    Parameters
    ----------
    mu : Tensor (D,)
    S : Tensor (D, D)
    known_idx, unknown_idx : LongTensor
        Disjoint coordinate index sets.
    z_known : Tensor (..., |K|)
        Values of the known coordinates (any batch shape).

    Returns
    -------
    mean : Tensor (..., |U|)
        ``mu_U + S_UK S_KK^-1 (z_K - mu_K)``.
    L_cond : Tensor (|U|, |U|)
        Cholesky factor of ``S_UU - S_UK S_KK^-1 S_KU`` (the same for every row).

    Computed in float64 and returned in the dtype of ``z_known``.
    """
    dtype = z_known.dtype
    # float64: S_UU - S_UK S_KK^-1 S_KU cancels badly in float32 for strongly correlated latents.
    mu, S, z_known = mu.double(), S.double(), z_known.double()
    S_KK = S[known_idx][:, known_idx]
    S_UK = S[unknown_idx][:, known_idx]
    S_UU = S[unknown_idx][:, unknown_idx]
    L_KK, _ = cholesky_with_jitter(S_KK)
    # G = L_KK^-1 S_KU  so that S_UK S_KK^-1 S_KU = G^T G and S_UK S_KK^-1 r = G^T L_KK^-1 r
    G = torch.linalg.solve_triangular(L_KK, S_UK.mT, upper=False)
    resid = (z_known - mu[known_idx]).reshape(-1, known_idx.numel()).mT  # (|K|, N)
    w = torch.linalg.solve_triangular(L_KK, resid, upper=False)
    mean = mu[unknown_idx] + (G.mT @ w).mT
    cov = S_UU - G.mT @ G
    cov = 0.5 * (cov + cov.mT)
    L_cond, _ = cholesky_with_jitter(cov)
    return mean.reshape(*z_known.shape[:-1], unknown_idx.numel()).to(dtype), L_cond.to(dtype)


def product_of_experts(mus: Tensor, logvars: Tensor, mask: Tensor | None = None, eps: float = 1e-8
                       ) -> tuple[Tensor, Tensor]:
    """Product of diagonal Gaussian experts.

    Parameters
    ----------
    mus, logvars : Tensor (E, ..., D)
        Expert means and log-variances, experts on the first axis.
    mask : Tensor (E,) or (E, ...) of bool, optional
        Which experts take part (broadcast against the batch dimensions).

    Returns
    -------
    mu, logvar : Tensor (..., D)
        ``T_j = 1/(var_j + eps)``, ``var = 1/sum T_j``, ``mu = var * sum T_j mu_j``.
    """
    T = 1.0 / (logvars.exp() + eps)
    if mask is not None:
        m = mask.to(T.dtype)
        while m.dim() < T.dim():
            m = m.unsqueeze(-1)
        T = T * m
    precision = T.sum(0)
    mu = (T * mus).sum(0) / precision
    return mu, -torch.log(precision)
