"""MoPoE-VAE (Sutter, Daunhawer & Vogt, 2021): mixture over all non-empty subsets of
products of experts.

For every non-empty subset S (2^M - 1 of them, ordered singletons, pairs, ..., full set),
``q_S`` is the product of the Gaussian experts of S; the posterior is the uniform mixture
``q(z | X) = sum_S w_S q_S``, ``w_S = 1 / (2^M - 1)``.  Training loss per row (official code):

    -sum_m llik_scale_m log p(x_m | z) + beta * sum_S w_S KL(q_S || N(0, I)),

with one ``z`` per row drawn from the mixture component the row is assigned to, and every
subset's KL computed on every row.  The sum of weighted KLs upper-bounds the mixture's KL (KL is
convex), so the objective is a lower bound of the ELBO of the mixture posterior.

Official behaviour, configurable: the N(0, I) prior expert joins the product only for the full
set (``prior_expert="full"``; also ``"all"`` or ``"none"``), and rows are assigned to subsets by
splitting the batch into contiguous blocks of ``floor(B w_S)`` rows, the last subset taking the
remainder (``mixture_sampling="partition"``; ``"random"`` draws each row's subset independently).

Missing components (``mask``): a row with observed components O has the mixture over the non-empty
subsets of O, ``w_S = 1 / (2^|O| - 1)`` for ``S`` within O (each ``q_S`` the same product as in a
complete row, the prior expert by the same policy: with ``"full"`` only a complete row's full set
has it); its KL term is the mean of ``KL(q_S || N(0, I))`` over those subsets, and only the
components of O are reconstructed.  A row keeps the subset the rule assigns it when that subset lies
within O, otherwise it draws one uniformly from the subsets within O: with the partition (or the
random draw) uniform over all subsets, each subset within O is then used with probability
``1 / (2^|O| - 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mcgen.distributions import gaussian_rsample, kl_diag_gaussian_std
from mcgen.models._multimodal import ProductOfExpertsModule, check_choice, observed_inputs, shared_latent_size
from mcgen.models.base import ComponentSpec
from mcgen.models.experts import non_empty_subsets, subset_mask, subsets_within

PRIOR_EXPERT_POLICIES = ("full", "all", "none")
MIXTURE_SAMPLING = ("partition", "random")
#: Above this many components the 2^M - 1 subsets become impractical.
MAX_COMPONENTS = 16


class MoPoEModule(ProductOfExpertsModule):
    """MoPoE-VAE.

    Parameters
    ----------
    specs : list of ComponentSpec
        All with the same ``latent_dim``.
    beta : float
    prior_expert : {"full", "all", "none"}
        Which subsets' products include the N(0, I) prior expert.
    mixture_sampling : {"partition", "random"}
        How training rows are assigned to mixture components.
    """

    def __init__(self, specs: list[ComponentSpec], beta: float = 1.0, prior_expert: str = "full",
                 mixture_sampling: str = "partition"):
        D = shared_latent_size(specs, "MoPoE-VAE")
        if len(specs) > MAX_COMPONENTS:
            raise ValueError(f"MoPoE-VAE enumerates 2^M - 1 subsets; M = {len(specs)} components is more "
                             f"than the supported {MAX_COMPONENTS}")
        super().__init__(specs, D)
        self.beta = float(beta)
        self.prior_expert = check_choice(prior_expert, PRIOR_EXPERT_POLICIES, "prior_expert")
        self.mixture_sampling = check_choice(mixture_sampling, MIXTURE_SAMPLING, "mixture_sampling")
        self.subsets = non_empty_subsets(len(specs))
        self.register_buffer("subset_mask", subset_mask(len(specs), self.subsets, self._with_prior), persistent=False)

    @property
    def n_subsets(self) -> int:
        return len(self.subsets)

    def _with_prior(self, subset) -> bool:
        if self.prior_expert == "all":
            return True
        if self.prior_expert == "none":
            return False
        return len(subset) == self.n_components

    # ------------------------------------------------------------------------------------------
    def subset_posteriors(self, xs: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``q_S`` for every subset: means and log-variances ``(2^M - 1, B, D)``."""
        return self.subset_products(xs, self.subset_mask)

    def valid_subsets(self, mask: Tensor) -> Tensor:
        """Which subsets lie within each row's observed components, ``(2^M - 1, B)`` bool."""
        return subsets_within(self.subset_mask[1:], mask)

    def assignment(self, B: int, device, generator: torch.Generator | None = None,
                   rule: str | None = None, mask: Tensor | None = None) -> Tensor:
        """Subset index of each of ``B`` rows.

        With ``mask`` (B, M), a row whose assigned subset holds a missing component draws one
        uniformly from the subsets within its observed components instead (``torch.rand`` with
        ``generator``, only when some row needs it).
        """
        S = self.n_subsets
        if (rule or self.mixture_sampling) == "random":
            assign = torch.randint(S, (B,), device=device, generator=generator)
        else:
            counts = torch.full((S,), B // S, dtype=torch.long)
            counts[-1] = B - (S - 1) * (B // S)
            assign = torch.repeat_interleave(torch.arange(S), counts).to(device)
        if mask is None:
            return assign
        valid = self.valid_subsets(mask.to(device))  # (S, B)
        kept = valid.gather(0, assign.unsqueeze(0)).squeeze(0)
        if bool(kept.all()):  # complete rows (and lucky ones): the rule's assignment, no draw
            return assign
        u = torch.rand(valid.shape, device=device, generator=generator)
        redraw = torch.where(valid, u, -1.0).argmax(0)  # uniform over the valid subsets
        return torch.where(kept, assign, redraw)

    def _loss(self, xs: list[Tensor], beta: float, scaled: bool, assign: Tensor,
              generator: torch.Generator | None = None, mask: Tensor | None = None) -> Tensor:
        mu_s, logvar_s = self.subset_posteriors(xs)
        if mask is None:
            kl = kl_diag_gaussian_std(mu_s, logvar_s).mean(0)  # sum_S w_S KL_S, (B,)
        else:  # w_S = 1 / #(subsets within O_b) for those, 0 for the others
            valid = self.valid_subsets(mask)
            kl_s = torch.where(valid, kl_diag_gaussian_std(mu_s, logvar_s), 0.0)
            kl = kl_s.sum(0) / valid.sum(0).to(kl_s.dtype)
        rows = torch.arange(mu_s.shape[1], device=mu_s.device)
        mu, logvar = mu_s[assign, rows], logvar_s[assign, rows]
        z = gaussian_rsample(mu, logvar, generator=generator)
        ll = torch.stack(self.decoded_log_liks(z, xs, scaled, mask), -1)
        return -ll.sum(-1) + beta * kl

    def forward(self, xs: list[Tensor], mask: Tensor | None = None) -> Tensor:
        xs, mask = observed_inputs(xs, mask)
        assign = self.assignment(xs[0].shape[0], xs[0].device, mask=mask)
        return self._loss(xs, self.beta, True, assign, mask=mask)

    # ------------------------------------------------------------------------------------------
    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        """MoPoE's bound ``sum_S w_S E_{q_S}[sum_m log p(x_m|z)] - sum_S w_S KL(q_S || N(0, I))``,
        each of the ``n_mc`` draws assigning every row a mixture component at random; with
        ``mask``, over the subsets within each row's observed components O, scoring O only (a
        bound on ``log p(x_O)``)."""
        xs, mask = observed_inputs(xs, mask)
        B, dev = xs[0].shape[0], xs[0].device
        total = 0.0
        for _ in range(n_mc):
            assign = self.assignment(B, dev, generator, rule="random", mask=mask)
            total = total - self._loss(xs, 1.0, False, assign, generator, mask)
        return total / n_mc

    def encode(self, xs: list[Tensor]) -> Tensor:
        """Mean of the mixture posterior, ``sum_S w_S mu_S``."""
        return self.subset_posteriors(xs)[0].mean(0)

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None) -> dict[int, Tensor]:
        """``z ~ q_K`` (the product of the known experts, with the prior expert as the policy
        says), decode the unknown components."""
        mu, logvar = self.product(xs_known, known, prior=self._with_prior(tuple(known)))
        z = gaussian_rsample(mu, logvar, (n_samples,), generator)
        return self.decode_missing(z, known)
