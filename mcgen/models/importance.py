"""Importance-weighted objectives over log-weights ``lw`` of samples from a proposal.

The stratified ELBO and IWAE values (:func:`iw_objective`), their building blocks
(:func:`log_mean_exp`, :func:`iw_weights`, :func:`others_logsumexp`), and the loss with
doubly-reparameterised gradients made unbiased for a mixture proposal (:func:`dreg_loss`;
``docs/baselines.md``, "DReG for mixture proposals", derives it).  MMVAE and MMVAE+ use them
with log-weights of shape ``(K, M, B)``: ``K`` samples from each of ``M`` experts for ``B`` rows.

With missing components (``mask`` (B, M), True where row b holds component m) a row's proposal is
the mixture of its observed experts only, so its groups are those of its observed experts: every
function here then restricts each row's sums, means and normalisers to those groups (``|O_b|``
of them), and leaves the other groups' log-weights, whatever they are, out with ``torch.where``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mcgen.distributions import log_prob

__all__ = ["dreg_loss", "iw_objective", "iw_weights", "log_mean_exp", "others_logsumexp"]


def log_mean_exp(x: Tensor, dim) -> Tensor:
    """``log mean exp`` over ``dim``, numerically stable.

    Parameters
    ----------
    x : Tensor
    dim : int or tuple of int

    Returns
    -------
    Tensor
        ``logsumexp(x, dim) - log n``, ``n`` the number of entries reduced; ``dim`` removed.
    """
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    n = math.prod(x.shape[d] for d in dims)
    return torch.logsumexp(x, dim=dims) - math.log(n)


def iw_weights(lw: Tensor, dim) -> Tensor:
    """Normalised importance weights ``softmax(lw)`` over ``dim``, detached.

    Parameters
    ----------
    lw : Tensor
        Log-weights.
    dim : int or tuple of int

    Returns
    -------
    Tensor
        The shape of ``lw``, summing to 1 over ``dim``, without gradient.
    """
    lw = lw.detach()
    return torch.exp(lw - torch.logsumexp(lw, dim=dim, keepdim=True))


def iw_objective(lw: Tensor, objective: str, looser: bool, mask: Tensor | None = None) -> Tensor:
    """Objective value per row from stratified log-weights.

    Parameters
    ----------
    lw : Tensor (K, M, B)
        ``K`` samples from each of ``M`` experts.
    objective : {"elbo", "iwae", "dreg"}
        ``"elbo"``: the mean of ``lw``; ``"iwae"`` and ``"dreg"`` (same value): the IWAE bound.
    looser : bool
        IWAE stratified per expert, ``(1/M) sum_m log (1/K) sum_k exp lw``, or pooled,
        ``log (1/(MK)) sum_{m,k} exp lw``.
    mask : Tensor (B, M) of bool, optional
        Row b's groups are its observed experts' only: ``M`` becomes ``|O_b|`` and every sum over
        ``m`` runs over ``O_b``.

    Returns
    -------
    Tensor (B,)
    """
    if mask is None:
        if objective == "elbo":
            return lw.mean((0, 1))
        if looser:
            return log_mean_exp(lw, 0).mean(0)
        return log_mean_exp(lw, (0, 1))
    groups = mask.T  # (M, B)
    n_obs = groups.sum(0).to(lw.dtype)
    K = lw.shape[0]
    kept = torch.where(groups, lw, 0.0)
    if objective == "elbo":
        return kept.sum((0, 1)) / (K * n_obs)
    if looser:
        return torch.where(groups, log_mean_exp(kept, 0), 0.0).sum(0) / n_obs
    return torch.logsumexp(torch.where(groups, lw, float("-inf")), dim=(0, 1)) - torch.log(K * n_obs)


def others_logsumexp(a: Tensor) -> Tensor:
    """Leave-one-out log-sum-exp along the first axis.

    Parameters
    ----------
    a : Tensor (n, ...)

    Returns
    -------
    Tensor (n, ...)
        ``out[k] = log sum_{l != k} exp(a[l])`` (``-inf`` where ``n = 1``).
    """
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=a.device).reshape(n, n, *([1] * (a.dim() - 1)))
    return torch.logsumexp(a.unsqueeze(0).masked_fill(eye, float("-inf")), dim=1)


def dreg_loss(lw: Tensor, z: Tensor, family: str, loc: Tensor, scale: Tensor, beta: float, looser: bool,
              cross: str = "reparam", private: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
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
    mask : Tensor (B, M) of bool, optional
        Missing components: row b's proposal is the mixture of its observed experts ``O_b`` (so
        ``lw`` must hold ``log q_mix`` over them, :func:`mcgen.models.experts.mixture_log_prob`),
        its groups are those of ``O_b``, its bound :func:`iw_objective` with ``mask``; the
        responsibilities, the pool and every sum of the estimator run over ``O_b`` only.  The
        other groups' log-weights and samples reach neither value nor gradient.

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
    if mask is None:
        groups = None
        w = iw_weights(lw, 0 if looser else (0, 1))
        norm = M if looser else 1
    else:
        groups = mask.T  # (M, B)
        lw = torch.where(groups, lw, 0.0)  # a missing expert's group: a constant, weight 0 below
        w = iw_weights(lw if looser else torch.where(groups, lw, float("-inf")), 0 if looser else (0, 1))
        w = torch.where(groups, w, 0.0)
        norm = groups.sum(0).to(lw.dtype) if looser else 1
    value = iw_objective(lw.detach(), "iwae", looser, mask)
    surrogate = (w * lw).sum((0, 1)) / norm
    latents = [z] if private is None else [z, private]
    live = torch.is_grad_enabled() and all(t.requires_grad for t in latents) and lw.requires_grad
    if live and not (looser and K == 1) and beta != 0:
        correction = _score_correction(lw, latents, family, loc, scale, w, looser, cross, groups)
        surrogate = surrogate - beta * correction / norm
    return -(value + surrogate - surrogate.detach())


def _score_correction(lw: Tensor, latents: list[Tensor], family: str, loc: Tensor, scale: Tensor, w: Tensor,
                      looser: bool, cross: str, groups: Tensor | None = None) -> Tensor:
    """Surrogate (per row, before the ``1/M`` of the stratified bound) whose encoder gradient is
    the estimate of the score term of :func:`dreg_loss`; it has no gradient for any generative
    parameter.  ``groups`` (M, B): the observed experts of each row (None: all); ``lw`` and ``w``
    are then 0 in the other groups."""
    K, M, B = lw.shape
    grads = torch.autograd.grad(lw.sum(), latents, retain_graph=True)
    base = lw.detach()

    def own_groups(t: Tensor, axis: int) -> Tensor:
        """``t`` (log terms, rows on the last axis) at -inf wherever its axis ``axis`` indexes a
        missing expert of the row (its group's samples, or its density)."""
        if groups is None:
            return t
        g = groups.reshape(M, *([1] * (t.dim() - axis - 2)), B)
        return torch.where(g, t, float("-inf"))

    def linear(i: int) -> Tensor:
        """``lw`` to first order in latent ``i`` alone: its value and z-gradient, no parameter."""
        t = latents[i]
        return base + ((t - t.detach()) * grads[i]).sum(-1)

    # Leave-one-out normalisers: log sum_{l != k} exp lw_l within each group (or over the pool).
    if looser:
        others = others_logsumexp(base)
    else:
        others = others_logsumexp(own_groups(base, 1).reshape(K * M, B)).reshape(K, M, B)
    z = latents[0]
    lp = log_prob(family, z.unsqueeze(-3), loc.detach(), scale.detach())  # (K, J, E, B): q_e at z_kj
    lp = own_groups(lp, 2)  # responsibilities over the row's observed experts only
    log_r = lp - torch.logsumexp(lp, dim=2, keepdim=True)
    a_z = linear(0)
    if cross == "reparam":
        # Expert m's score at group j's samples: z_kj stands in for the k-th sample of group m,
        # weighted by w(z_kj) / (w(z_kj) + sum_{l != k} w(z_lm)) and by r_m(z_kj).
        a = a_z.unsqueeze(2)
        log_w_hat = a - torch.logaddexp(a, others.unsqueeze(1))  # (K, J, M, B)
        out = own_groups(log_w_hat + log_r, 1).exp().sum((0, 1, 2))
    else:
        own = log_r.diagonal(dim1=1, dim2=2).movedim(-1, 1)  # r_j(z_kj), (K, J, B)
        out = own_groups(a_z - torch.logaddexp(a_z, others) + own, 1).exp().sum((0, 1))
        # The other experts' terms as score functions: sum w_hat sum_{e != j} r_e d log q_e(z).
        lq = log_prob(family, z.detach().unsqueeze(-3), loc, scale)  # live parameters, fixed samples
        r_cross = log_r.detach().exp() * (1 - torch.eye(M, dtype=lw.dtype, device=lw.device)).unsqueeze(-1)
        cross_terms = w.unsqueeze(2) * r_cross * lq
        if groups is not None:  # both the sample's group j and the expert e observed
            cross_terms = torch.where(groups.unsqueeze(1) & groups.unsqueeze(0), cross_terms, 0.0)
        out = out + cross_terms.sum((0, 1, 2))
    if len(latents) > 1:  # the private latent: its own density, no mixture
        a_w = linear(1)
        out = out + own_groups(a_w - torch.logaddexp(a_w, others), 1).exp().sum((0, 1))
    return out
