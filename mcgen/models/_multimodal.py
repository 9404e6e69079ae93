"""Building blocks shared by the multimodal VAE baselines (MVAE, MMVAE, MoPoE-VAE, MMVAE+).

A base module with one encoder (plus a linear head) and one decoder per component over a latent
shared by all components, its products-of-experts form (MVAE, MoPoE-VAE), and the option
checks.  The distributions live in :mod:`mcgen.distributions`, what is done with experts
(scales, products, mixtures) in :mod:`mcgen.models.experts`, the importance-weighted objectives
in :mod:`mcgen.models.importance`; the names that used to be defined here are re-exported.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Re-exported from their homes (they used to be defined here).
from mcgen.distributions import FAMILIES, kl_diag_gaussian_std, log_prob, standard_noise
from mcgen.gaussian import product_of_experts
from mcgen.models.base import ComponentSpec, MultiComponentModule, build_decoder, build_encoder
from mcgen.models.experts import (
    SCALE_EPS,
    SCALE_PARAMETERISATIONS,
    non_empty_subsets,
    positive_scale,
    with_prior_expert,
)
from mcgen.models.importance import iw_weights, log_mean_exp

__all__ = [
    "LATENT_FAMILIES",
    "OBJECTIVES",
    "ProductOfExpertsModule",
    "SCALE_EPS",
    "SCALE_PARAMETERISATIONS",
    "SharedLatentModule",
    "check_choice",
    "expand_rows",
    "iw_weights",
    "kl_diag_gaussian_std",
    "log_mean_exp",
    "log_prob",
    "non_empty_subsets",
    "positive_scale",
    "shared_latent_size",
    "standard_noise",
]

#: Families of the latent distributions (``posterior=`` of MMVAE and MMVAE+).
LATENT_FAMILIES = FAMILIES
#: Training objectives of MMVAE and MMVAE+ (:func:`mcgen.models.importance.iw_objective`).
OBJECTIVES = ("elbo", "iwae", "dreg")


def check_choice(value, valid: tuple[str, ...], name: str) -> str:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")
    return value


def shared_latent_size(specs: list[ComponentSpec], model: str) -> int:
    """The single latent size of a shared-latent model (every spec must agree)."""
    sizes = {s.latent_dim for s in specs}
    if len(sizes) != 1:
        raise ValueError(f"{model} has one latent shared by all components; latent_dim must be a single "
                         f"integer, got one per component: {[s.latent_dim for s in specs]}")
    return sizes.pop()


def expand_rows(x: Tensor, lead: tuple[int, ...]) -> Tensor:
    """Broadcast a batch ``(B, *shape)`` to ``(*lead, B, *shape)`` and flatten to rows."""
    return x.expand(*lead, *x.shape).reshape(-1, *x.shape[1:])


class SharedLatentModule(MultiComponentModule):
    """Per-component encoders with a linear head of two parameter blocks (location and a raw
    scale), and per-component decoders reading a latent of width ``decoder_latent``.

    Parameters
    ----------
    specs : list of ComponentSpec
    latent_dim : int
        Width of each encoder head's blocks.
    decoder_latent : int, optional
        Input width of the decoders (default ``latent_dim``).
    """

    def __init__(self, specs: list[ComponentSpec], latent_dim: int, decoder_latent: int | None = None):
        super().__init__(specs)
        self.D = int(latent_dim)
        self.encoders = nn.ModuleList([build_encoder(s) for s in specs])
        self.heads = nn.ModuleList([nn.Linear(e.out_features, 2 * self.D) for e in self.encoders])
        width = self.D if decoder_latent is None else int(decoder_latent)
        self.decoders = nn.ModuleList([build_decoder(s, latent_dim=width) for s in specs])

    def encoder_outputs(self, xs: list[Tensor], which: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Location and raw second parameter of each listed component's posterior,
        each ``(len(which), B, D)``."""
        which = list(range(self.n_components)) if which is None else which
        out = [self.heads[i](self.encoders[i](x)) for i, x in zip(which, xs)]
        loc, raw = torch.stack(out).chunk(2, dim=-1)
        return loc, raw

    def decode_component(self, d: int, z: Tensor) -> Tensor:
        """Decoder ``d`` on latents of any leading shape ``(*lead, width)`` -> ``(*lead, *shape_d)``."""
        lead = z.shape[:-1]
        out = self.decoders[d](z.reshape(-1, z.shape[-1]))
        return out.reshape(*lead, *out.shape[1:])

    def component_log_lik(self, d: int, loc: Tensor, x: Tensor) -> Tensor:
        """``log p(x_d | .)`` for locations ``(*lead, B, *shape_d)`` against the batch ``x``
        ``(B, *shape_d)``; returns ``(*lead, B)``."""
        lead = loc.shape[: loc.dim() - x.dim()]
        flat = loc.reshape(-1, *x.shape[1:])
        return self.likelihoods[d].log_prob(flat, expand_rows(x, lead)).reshape(*lead, x.shape[0])


class ProductOfExpertsModule(SharedLatentModule):
    """A :class:`SharedLatentModule` whose encoder heads give Gaussian experts (mean and
    log-variance), multiplied together with the N(0, I) prior expert (MVAE, MoPoE-VAE).

    The experts are stacked with the prior expert in row 0 (:func:`mcgen.models.experts.with_prior_expert`),
    the products are :func:`mcgen.gaussian.product_of_experts`.
    """

    def experts(self, xs: list[Tensor], which: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Means and log-variances of the prior expert (row 0) and the listed components' experts.

        Parameters
        ----------
        xs : list of Tensor
            The listed components' batches, in the order of ``which``.
        which : list of int, optional
            Component indices (default: all, in order).

        Returns
        -------
        mus, logvars : Tensor (1 + len(which), B, D)
        """
        return with_prior_expert(*self.encoder_outputs(xs, which))

    def product(self, xs: list[Tensor], which: list[int] | None = None, prior: bool = True
                ) -> tuple[Tensor, Tensor]:
        """The product of the listed components' experts, and of the prior expert when ``prior``.

        Parameters
        ----------
        xs : list of Tensor
        which : list of int, optional
        prior : bool, default=True

        Returns
        -------
        mu, logvar : Tensor (B, D)
        """
        mus, logvars = self.experts(xs, which)
        mask = None
        if not prior:
            mask = torch.ones(mus.shape[0], dtype=torch.bool, device=mus.device)
            mask[0] = False
        return product_of_experts(mus, logvars, mask)

    def subset_products(self, xs: list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
        """The product for every subset of the components, all at once.

        Parameters
        ----------
        xs : list of Tensor
            Every component's batch.
        mask : Tensor (1 + M, S) of bool
            Which experts each product multiplies (:func:`mcgen.models.experts.subset_mask`).

        Returns
        -------
        mu, logvar : Tensor (S, B, D)
        """
        mus, logvars = self.experts(xs)
        return product_of_experts(mus.unsqueeze(1), logvars.unsqueeze(1), mask)
