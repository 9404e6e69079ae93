"""Experts over a shared latent: their scales, their products and their mixtures.

An *expert* is one component's unimodal posterior ``q_m(z | x_m)``, diagonal Gaussian or Laplace
(:mod:`mcgen.distributions`).  This module holds what the baselines do with experts:

* **scales** from an encoder head's raw output (:func:`positive_scale`, :func:`softmax_scale`;
  a Gaussian expert given by its log-variance uses :func:`mcgen.distributions.std_from_logvar`);
* **products** of Gaussian experts (MVAE, MoPoE-VAE): the N(0, I) prior expert put in front
  (:func:`with_prior_expert`), the subsets to multiply (:func:`non_empty_subsets`,
  :func:`subset_mask`); the product itself is :func:`mcgen.gaussian.product_of_experts`;
* **uniform mixtures** of experts (MMVAE, MMVAE+): their log density
  (:func:`mixture_log_prob`) and reparameterised draws (:func:`sample_mixture`);
* **missing components** (a ``(B, M)`` mask, True where row b holds component m): a product over
  a row's observed experts only (:func:`observed_subset_mask`), which subsets a row can use
  (:func:`subsets_meeting`, :func:`subsets_within`), a mixture over a row's observed experts only
  (``mask`` of :func:`mixture_log_prob`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations

import torch
from torch import Tensor
from torch.nn import functional as F

from mcgen.distributions import log_prob, rsample

__all__ = [
    "SCALE_EPS",
    "SCALE_PARAMETERISATIONS",
    "mixture_log_prob",
    "non_empty_subsets",
    "observed_subset_mask",
    "positive_scale",
    "sample_mixture",
    "softmax_scale",
    "subset_mask",
    "subsets_meeting",
    "subsets_within",
    "with_prior_expert",
]

#: How an encoder head's raw output becomes an expert's scale (:func:`positive_scale`).
SCALE_PARAMETERISATIONS = ("softmax", "softplus")
#: Added to every posterior scale (the official MMVAE code adds 1e-6 after its softmax).
SCALE_EPS = 1e-6


# --- scales --------------------------------------------------------------------------------------
def softmax_scale(raw: Tensor) -> Tensor:
    """Scales that average 1 over the last axis: ``softmax(raw) * D``.

    Parameters
    ----------
    raw : Tensor (..., D)

    Returns
    -------
    Tensor (..., D)
        Positive, summing to ``D`` over the last axis (all 1 when ``D = 1``, whatever ``raw``).
        The MMVAE prior and the MMVAE+ auxiliary priors are parameterised so.
    """
    return F.softmax(raw, dim=-1) * raw.shape[-1]


def positive_scale(raw: Tensor, parameterisation: str) -> Tensor:
    """An expert's scale from its encoder head's raw output.

    Parameters
    ----------
    raw : Tensor (..., D)
    parameterisation : {"softmax", "softplus"}
        ``"softmax"``: ``softmax(raw) * D + eps`` over the latent axis (the official MMVAE /
        MMVAE+ parameterisation: the scales of a posterior always sum to about D, i.e. average
        1).  ``"softplus"``: ``softplus(raw) + eps``, each scale free.

    Returns
    -------
    Tensor (..., D)
        Scales of at least ``eps`` = :data:`SCALE_EPS`.
    """
    if parameterisation == "softmax":
        return softmax_scale(raw) + SCALE_EPS
    return F.softplus(raw) + SCALE_EPS


# --- products of experts --------------------------------------------------------------------------
def with_prior_expert(mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """Put the N(0, I) prior expert in front of Gaussian experts.

    Parameters
    ----------
    mu, logvar : Tensor (E, B, D)
        The experts' means and log-variances, experts on the first axis.

    Returns
    -------
    mus, logvars : Tensor (1 + E, B, D)
        Row 0 is the prior expert (mean 0, log-variance 0); row ``1 + e`` is expert ``e``.
    """
    zero = mu.new_zeros(1, *mu.shape[1:])
    return torch.cat([zero, mu]), torch.cat([zero, logvar])


def non_empty_subsets(M: int) -> list[tuple[int, ...]]:
    """All non-empty subsets of ``range(M)``: singletons, pairs, ..., the full set (the order of
    the official MoPoE code).

    Parameters
    ----------
    M : int

    Returns
    -------
    list of tuple of int
        ``2^M - 1`` sorted tuples.
    """
    return [s for k in range(1, M + 1) for s in combinations(range(M), k)]


def subset_mask(M: int, subsets: Sequence[tuple[int, ...]], prior: bool | Callable[[tuple[int, ...]], bool] = True,
                device=None) -> Tensor:
    """Which experts each subset multiplies, for :func:`mcgen.gaussian.product_of_experts`.

    Parameters
    ----------
    M : int
        Number of components (experts besides the prior expert).
    subsets : sequence of tuple of int
        Component indices of each product.
    prior : bool or callable, default=True
        Whether the prior expert (row 0 of :func:`with_prior_expert`) joins a product: for every
        subset, or per subset (``prior(subset) -> bool``).
    device : torch.device, optional

    Returns
    -------
    Tensor (1 + M, len(subsets)) of bool
        ``mask[1 + m, j]``: component ``m`` is in ``subsets[j]``; ``mask[0, j]``: the prior expert
        is.  Expand the experts with ``unsqueeze(1)`` to multiply every subset at once.
    """
    mask = torch.zeros(M + 1, len(subsets), dtype=torch.bool, device=device)
    for j, s in enumerate(subsets):
        mask[[1 + m for m in s], j] = True
        mask[0, j] = prior(s) if callable(prior) else bool(prior)
    return mask


def observed_subset_mask(mask: Tensor, observed: Tensor) -> Tensor:
    """A :func:`subset_mask` restricted, row by row, to the observed components.

    Parameters
    ----------
    mask : Tensor (1 + M, S) of bool
        Which experts each product multiplies (row 0: the prior expert).
    observed : Tensor (B, M) of bool
        True where row b holds component m.

    Returns
    -------
    Tensor (1 + M, S, B) of bool
        ``mask[e, j]`` and (``e = 0``, the prior expert, or component ``e - 1`` observed in row
        b): a missing component's expert takes no part (zero precision) in any product of its
        row.  :func:`mcgen.gaussian.product_of_experts` broadcasts it against experts
        ``(1 + M, 1, B, D)``.
    """
    present = torch.cat([observed.new_ones(observed.shape[0], 1), observed], 1).T  # (1 + M, B)
    return mask.unsqueeze(-1) & present.unsqueeze(1)


def subsets_meeting(members: Tensor, observed: Tensor) -> Tensor:
    """Which subsets hold at least one of a row's observed components.

    Parameters
    ----------
    members : Tensor (M, S) of bool
        ``members[m, j]``: component m is in subset j (rows ``1:`` of :func:`subset_mask`).
    observed : Tensor (B, M) of bool

    Returns
    -------
    Tensor (S, B) of bool
    """
    return (members.unsqueeze(-1) & observed.T.unsqueeze(1)).any(0)


def subsets_within(members: Tensor, observed: Tensor) -> Tensor:
    """Which subsets hold only components observed in a row.

    Parameters
    ----------
    members : Tensor (M, S) of bool
        As :func:`subsets_meeting`.
    observed : Tensor (B, M) of bool

    Returns
    -------
    Tensor (S, B) of bool
    """
    return ~(members.unsqueeze(-1) & ~observed.T.unsqueeze(1)).any(0)


# --- uniform mixtures of experts -----------------------------------------------------------------
def mixture_log_prob(family: str, z: Tensor, loc: Tensor, scale: Tensor, mask: Tensor | None = None) -> Tensor:
    """Log density of the uniform mixture of ``E`` diagonal experts, ``log (1/E) sum_e q_e(z)``.

    Parameters
    ----------
    family : {"laplace", "gaussian"}
    z : Tensor (..., B, D)
        Points, any leading axes.
    loc, scale : Tensor (E, B, D)
        The experts' parameters.
    mask : Tensor (B, E) of bool, optional
        Which experts row b's mixture holds (at least one per row): ``log (1/|O_b|) sum_{e in
        O_b} q_e(z)``; the others' densities are left out with ``torch.where`` (no value or
        gradient of theirs reaches the result).

    Returns
    -------
    Tensor (..., B)
    """
    lp = log_prob(family, z.unsqueeze(-3), loc, scale)  # (..., E, B)
    if mask is None:
        return torch.logsumexp(lp, dim=-2) - math.log(loc.shape[0])
    present = mask.T  # (E, B)
    lp = torch.where(present, lp, float("-inf"))
    return torch.logsumexp(lp, dim=-2) - torch.log(present.sum(0).to(lp.dtype))


def sample_mixture(family: str, loc: Tensor, scale: Tensor, n_samples: int,
                   generator: torch.Generator | None = None) -> Tensor:
    """Draws from the uniform mixture of ``E`` diagonal experts: each draw picks an expert
    uniformly, then draws from it (reparameterised).

    Parameters
    ----------
    family : {"laplace", "gaussian"}
    loc, scale : Tensor (E, B, D)
    n_samples : int
        Draws per row.
    generator : torch.Generator, optional

    Returns
    -------
    Tensor (n_samples, B, D)
    """
    E, B, _ = loc.shape
    pick = torch.randint(E, (n_samples, B), device=loc.device, generator=generator)
    rows = torch.arange(B, device=loc.device)
    return rsample(family, loc[pick, rows], scale[pick, rows], generator=generator)
