"""MVAE (Wu & Goodman, 2018): one shared latent, product-of-experts posterior with a prior expert.

The joint posterior of an observed subset S is the product of the N(0, I) prior expert and the
Gaussian experts ``q_m(z | x_m)`` of S.  Training uses the paper's sub-sampled objective:

    loss = L(all) + sum_m L({m}) + sum_{j=1..n_random_subsets} L(S_j),
    L(S) = sum_{m in S} llik_scale_m * (-log p(x_m | z_S)) + beta_t * KL(q_S || N(0, I)),  z_S ~ q_S,

with the random subsets S_j drawn per batch from the subsets of size 2..M-1 (a size uniformly
among the sizes, then a subset of that size uniformly, no repeats), and ``beta_t`` the optionally
annealed KL weight (set from outside through :attr:`MVAEModule.kl_weight`).

Missing components (``mask``): every term is restricted to the row's observed components O: ``L(S)``
becomes ``L(S & O)`` (the product of the prior expert and the experts of ``S & O``, only the
components of ``S & O`` scored), and a term with ``S & O`` empty is dropped for that row.  The joint
term is then ``L(O)``, the single terms of missing components are dropped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mcgen.distributions import gaussian_rsample, kl_diag_gaussian_std
from mcgen.models._multimodal import ProductOfExpertsModule, observed_inputs, shared_latent_size
from mcgen.models.base import ComponentSpec
from mcgen.models.experts import observed_subset_mask, subset_mask


class MVAEModule(ProductOfExpertsModule):
    """MVAE with the sub-sampled training objective.

    Parameters
    ----------
    specs : list of ComponentSpec
        All with the same ``latent_dim`` (the shared latent size).
    beta : float
        Weight of every KL term.
    n_random_subsets : int
        Random subsets of size 2..M-1 added to the objective per batch (``k`` of the paper).
    """

    def __init__(self, specs: list[ComponentSpec], beta: float = 1.0, n_random_subsets: int = 1):
        D = shared_latent_size(specs, "MVAE")
        super().__init__(specs, D)
        self.beta = float(beta)
        self.n_random_subsets = int(n_random_subsets)
        #: Annealing factor of the KL weight (1 = no annealing); set by the estimator's callback.
        self.kl_weight = 1.0

    # ------------------------------------------------------------------------------------------
    def posterior(self, xs: list[Tensor], which: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """``PoE(prior, q_m for m in which)``: mean and log-variance, each ``(B, D)``."""
        return self.product(xs, which)

    def random_subsets(self) -> list[tuple[int, ...]]:
        """``n_random_subsets`` distinct subsets of size 2..M-1 drawn with torch's global RNG."""
        M = self.n_components
        counts = {s: math.comb(M, s) for s in range(2, M)}
        drawn: set[tuple[int, ...]] = set()
        out: list[tuple[int, ...]] = []
        while len(out) < self.n_random_subsets and counts:
            sizes = sorted(counts)
            size = sizes[int(torch.randint(len(sizes), ()))]
            while True:
                s = tuple(sorted(torch.randperm(M)[:size].tolist()))
                if s not in drawn:
                    break
            drawn.add(s)
            out.append(s)
            counts[size] -= 1
            if counts[size] == 0:
                del counts[size]
        return out

    def training_subsets(self) -> list[tuple[int, ...]]:
        M = self.n_components
        subsets = [tuple(range(M))] + [(m,) for m in range(M)] if M > 1 else [(0,)]
        return subsets + self.random_subsets()

    def subset_losses(self, xs: list[Tensor], subsets: list[tuple[int, ...]], kl_weight: float,
                      scaled: bool = True, generator: torch.Generator | None = None,
                      observed: Tensor | None = None) -> Tensor:
        """``L(S)`` for every listed subset (one sample each), shape ``(len(subsets), B)``.

        ``observed`` (B, M) bool: row b's term of S is ``L(S & O_b)``, 0 where ``S & O_b`` is empty
        (``xs`` as :func:`mcgen.models._multimodal.observed_inputs` returns them).
        """
        M = self.n_components
        mask = subset_mask(M, subsets, prior=True, device=self.llik_scales.device)
        if observed is not None:
            mask = observed_subset_mask(mask, observed)  # (1 + M, S, B)
        mu, logvar = self.subset_products(xs, mask)  # (S, B, D)
        z = gaussian_rsample(mu, logvar, generator=generator)
        loss = kl_weight * kl_diag_gaussian_std(mu, logvar)
        if observed is not None:
            loss = torch.where(mask[1:].any(0), loss, 0.0)  # S & O_b empty: no term
        for m in range(M):
            rows = [j for j, s in enumerate(subsets) if m in s]
            if not rows:
                continue
            idx = torch.tensor(rows, device=z.device)
            ll = self.component_log_lik(m, self.decode_component(m, z[idx]), xs[m])  # (n_m, B)
            if scaled:
                ll = ll * self.llik_scales[m]
            if observed is not None:
                ll = torch.where(observed[:, m], ll, 0.0)
            loss = loss.index_add(0, idx, -ll)
        return loss

    def forward(self, xs: list[Tensor], mask: Tensor | None = None) -> Tensor:
        xs, mask = observed_inputs(xs, mask)
        subsets = self.training_subsets()
        return self.subset_losses(xs, subsets, self.beta * self.kl_weight, observed=mask).sum(0)

    # ------------------------------------------------------------------------------------------
    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        """Joint ELBO with the PoE of every expert: ``E_q[sum_m log p(x_m|z)] - KL(q || N(0, I))``;
        with ``mask``, of each row's observed experts and components (a bound on ``log p(x_O)``)."""
        xs, mask = observed_inputs(xs, mask)
        full = [tuple(range(self.n_components))] * n_mc
        return -self.subset_losses(xs, full, 1.0, scaled=False, generator=generator, observed=mask).mean(0)

    def encode(self, xs: list[Tensor]) -> Tensor:
        return self.posterior(xs)[0]

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None) -> dict[int, Tensor]:
        """``z ~ PoE(prior, q_k for k in known)``, decode the unknown components."""
        mu, logvar = self.posterior(xs_known, known)
        z = gaussian_rsample(mu, logvar, (n_samples,), generator)
        return self.decode_missing(z, known)
