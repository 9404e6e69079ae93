"""Building blocks shared by the multimodal VAE baselines (MVAE, MMVAE, MoPoE-VAE, MMVAE+).

A base module with one encoder (plus a linear head) and one decoder per component over a latent
shared by all components (:class:`SharedLatentModule`), its products-of-experts form (MVAE,
MoPoE-VAE), the network helpers it is made of, which MMVAE+ (two encoder branches per
component) uses too: heads, encoding, decoding and log-likelihoods over leading sample axes;
the option checks, and the handling of missing components (:func:`observed_inputs`).

The distributions live in :mod:`mcgen.distributions`, what is done with experts (scales,
products, mixtures) in :mod:`mcgen.models.experts`, the importance-weighted objectives in
:mod:`mcgen.models.importance`; the names that used to be defined here are re-exported.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# kl_diag_gaussian_std, log_prob, standard_noise, SCALE_EPS, non_empty_subsets, iw_weights and
# log_mean_exp used to be defined here: re-exported from their homes (listed in __all__).
from mcgen.distributions import FAMILIES, kl_diag_gaussian_std, log_prob, standard_noise
from mcgen.gaussian import product_of_experts
from mcgen.likelihoods import Likelihood
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
    "check_latent_options",
    "check_positive_int",
    "column",
    "component_log_lik",
    "decode_rows",
    "encode_heads",
    "expand_rows",
    "iw_weights",
    "kl_diag_gaussian_std",
    "linear_heads",
    "log_mean_exp",
    "log_prob",
    "non_empty_subsets",
    "observed_inputs",
    "positive_scale",
    "shared_latent_size",
    "standard_noise",
]

#: Families of the latent distributions (``posterior=`` of MMVAE and MMVAE+).
LATENT_FAMILIES = FAMILIES
#: Training objectives of MMVAE and MMVAE+ (:func:`mcgen.models.importance.iw_objective`).
OBJECTIVES = ("elbo", "iwae", "dreg")


def check_choice(value, valid: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``valid``, else ``ValueError`` naming the option ``name``."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")
    return value


def check_positive_int(value, name: str) -> int:
    """``int(value)`` if ``value`` is a positive integer (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_latent_options(objective: str, posterior: str, posterior_scale: str) -> tuple[str, str, str]:
    """The options MMVAE and MMVAE+ share, checked: the objective (:data:`OBJECTIVES`), the
    family of the latent distributions (:data:`LATENT_FAMILIES`) and the scale parameterisation
    (:data:`SCALE_PARAMETERISATIONS`), returned in that order."""
    return (check_choice(objective, OBJECTIVES, "objective"),
            check_choice(posterior, LATENT_FAMILIES, "posterior"),
            check_choice(posterior_scale, SCALE_PARAMETERISATIONS, "posterior_scale"))


def shared_latent_size(specs: list[ComponentSpec], model: str) -> int:
    """The single latent size of a shared-latent model (every spec must agree)."""
    sizes = {s.latent_dim for s in specs}
    if len(sizes) != 1:
        raise ValueError(f"{model} has one latent shared by all components; latent_dim must be a single "
                         f"integer, got one per component: {[s.latent_dim for s in specs]}")
    return sizes.pop()


# --- missing components --------------------------------------------------------------------------
def column(mask: Tensor, i: int, like: Tensor) -> Tensor:
    """Column ``i`` of a ``(B, M)`` mask shaped to broadcast against ``like`` ``(B, ...)``."""
    return mask[:, i].reshape(-1, *([1] * (like.dim() - 1)))


def observed_inputs(xs: list[Tensor], mask: Tensor | None) -> tuple[list[Tensor], Tensor | None]:
    """The batches and mask a model's ``forward`` and ``elbo`` work with.

    Parameters
    ----------
    xs : list of Tensor
        Every component's batch ``(B, *shape_m)``.
    mask : Tensor (B, M) of bool, optional
        True where row b holds component m (:meth:`mcgen.models.base.MultiComponentModule.forward`).

    Returns
    -------
    xs : list of Tensor
        Unchanged (the same objects) when ``mask`` is None; otherwise every missing entry replaced
        by 0 with ``torch.where``, so that whatever the caller put there (zeros by contract, but
        possibly anything, even inf or nan) reaches no network and no gradient: what a missing
        component's encoder then computes is finite, and the models leave it out of every term
        with ``torch.where`` too.
    mask : Tensor (B, M) of bool, or None
        Checked: B rows, one column per component.
    """
    if mask is None:
        return xs, None
    B, M = xs[0].shape[0], len(xs)
    if tuple(mask.shape) != (B, M):
        raise ValueError(f"mask must have shape (batch, components) = ({B}, {M}), got {tuple(mask.shape)}")
    mask = mask.to(device=xs[0].device, dtype=torch.bool)
    return [torch.where(column(mask, i, x), x, torch.zeros((), dtype=x.dtype, device=x.device))
            for i, x in enumerate(xs)], mask


def expand_rows(x: Tensor, lead: tuple[int, ...]) -> Tensor:
    """Broadcast a batch ``(B, *shape)`` to ``(*lead, B, *shape)`` and flatten to rows."""
    return x.expand(*lead, *x.shape).reshape(-1, *x.shape[1:])


# --- networks over a batch with leading sample axes ----------------------------------------------
def linear_heads(encoders: nn.ModuleList, width: int) -> nn.ModuleList:
    """One linear head per encoder, giving two parameter blocks (a location and a raw scale) of
    ``width`` each.

    Parameters
    ----------
    encoders : nn.ModuleList
        Encoders with the ``out_features`` contract (:func:`mcgen.models.base.build_encoder`).
    width : int

    Returns
    -------
    nn.ModuleList of nn.Linear
        ``Linear(encoder.out_features, 2 * width)`` per encoder.
    """
    return nn.ModuleList([nn.Linear(e.out_features, 2 * width) for e in encoders])


def encode_heads(encoders: nn.ModuleList, heads: nn.ModuleList, xs: list[Tensor],
                 which: list[int] | None = None) -> tuple[Tensor, Tensor]:
    """The listed components' encoders and heads: location and raw second parameter.

    Parameters
    ----------
    encoders, heads : nn.ModuleList
        One per component (:func:`linear_heads`).
    xs : list of Tensor
        The listed components' batches ``(B, *shape_m)``, in the order of ``which``.
    which : list of int, optional
        Component indices (default: all, in order).

    Returns
    -------
    loc, raw : Tensor (len(which), B, width)
    """
    which = list(range(len(encoders))) if which is None else which
    out = [heads[i](encoders[i](x)) for i, x in zip(which, xs)]
    loc, raw = torch.stack(out).chunk(2, dim=-1)
    return loc, raw


def decode_rows(decoder: nn.Module, z: Tensor) -> Tensor:
    """A decoder on latents with any leading axes.

    Parameters
    ----------
    decoder : nn.Module
        Maps ``(N, width)`` to ``(N, *shape)``.
    z : Tensor (*lead, width)

    Returns
    -------
    Tensor (*lead, *shape)
    """
    lead = z.shape[:-1]
    out = decoder(z.reshape(-1, z.shape[-1]))
    return out.reshape(*lead, *out.shape[1:])


def component_log_lik(likelihood: Likelihood, loc: Tensor, x: Tensor) -> Tensor:
    """``log p(x | loc)`` of one component's batch under locations with leading sample axes.

    Parameters
    ----------
    likelihood : Likelihood
        The component's observation model.
    loc : Tensor (*lead, B, *shape)
        Decoded locations.
    x : Tensor (B, *shape)
        The batch, broadcast over ``lead``.

    Returns
    -------
    Tensor (*lead, B)
    """
    lead = loc.shape[: loc.dim() - x.dim()]
    flat = loc.reshape(-1, *x.shape[1:])
    return likelihood.log_prob(flat, expand_rows(x, lead)).reshape(*lead, x.shape[0])


class SharedLatentModule(MultiComponentModule):
    """Per-component encoders with a linear head of two parameter blocks (location and a raw
    scale), and per-component decoders reading a latent of width ``decoder_latent``.

    Parameters
    ----------
    specs : list of ComponentSpec
    latent_dim : int
        Width of each encoder head's blocks (the latent size, :attr:`latent_size`).
    decoder_latent : int, optional
        Input width of the decoders (default ``latent_dim``).
    """

    def __init__(self, specs: list[ComponentSpec], latent_dim: int, decoder_latent: int | None = None):
        super().__init__(specs)
        self.D = int(latent_dim)
        self.encoders = nn.ModuleList([build_encoder(s) for s in specs])
        self.heads = linear_heads(self.encoders, self.D)
        width = self.D if decoder_latent is None else int(decoder_latent)
        self.decoders = nn.ModuleList([build_decoder(s, latent_dim=width) for s in specs])

    @property
    def latent_size(self) -> int:
        return self.D

    def encoder_outputs(self, xs: list[Tensor], which: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Location and raw second parameter of each listed component's posterior,
        each ``(len(which), B, D)`` (:func:`encode_heads`)."""
        return encode_heads(self.encoders, self.heads, xs, which)

    def decode_component(self, d: int, z: Tensor) -> Tensor:
        """Decoder ``d`` on latents of any leading shape ``(*lead, width)`` -> ``(*lead, *shape_d)``."""
        return decode_rows(self.decoders[d], z)

    def component_log_lik(self, d: int, loc: Tensor, x: Tensor) -> Tensor:
        """``log p(x_d | .)`` for locations ``(*lead, B, *shape_d)`` against the batch ``x``
        ``(B, *shape_d)``; returns ``(*lead, B)`` (:func:`component_log_lik`)."""
        return component_log_lik(self.likelihoods[d], loc, x)

    def decoded_log_liks(self, z: Tensor, xs: list[Tensor], scaled: bool, mask: Tensor | None = None
                         ) -> list[Tensor]:
        """Every component's log-likelihood of its batch with ``z`` decoded by its decoder.

        Parameters
        ----------
        z : Tensor (*lead, B, width)
        xs : list of Tensor
            Every component's batch ``(B, *shape_m)``.
        scaled : bool
            Multiply component ``m``'s term by its ``llik_scale``.
        mask : Tensor (B, M) of bool, optional
            Observed components: a missing component's term is 0 in its rows (``torch.where``).

        Returns
        -------
        list of Tensor (*lead, B)
            One per component.
        """
        out = []
        for d in range(self.n_components):
            lld = self.component_log_lik(d, self.decode_component(d, z), xs[d])
            lld = lld * self.llik_scales[d] if scaled else lld
            out.append(lld if mask is None else torch.where(mask[:, d], lld, 0.0))
        return out

    def decode(self, z: Tensor) -> list[Tensor]:
        """Likelihood means of every component for latents ``z`` ``(*lead, width)``."""
        return [self.likelihoods[d].mean(self.decode_component(d, z)) for d in range(self.n_components)]

    def decode_missing(self, z: Tensor, known: list[int]) -> dict[int, Tensor]:
        """Likelihood means of the components not in ``known``: ``{d: (*lead, *shape_d)}``."""
        return {d: self.likelihoods[d].mean(self.decode_component(d, z))
                for d in range(self.n_components) if d not in known}


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
        mask : Tensor (1 + M, S) or (1 + M, S, B) of bool
            Which experts each product multiplies (:func:`mcgen.models.experts.subset_mask`), the
            same for every row or per row (:func:`mcgen.models.experts.observed_subset_mask`).

        Returns
        -------
        mu, logvar : Tensor (S, B, D)
        """
        mus, logvars = self.experts(xs)
        return product_of_experts(mus.unsqueeze(1), logvars.unsqueeze(1), mask)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Unconditional samples: ``z ~ N(0, I)``, decoded to likelihood means."""
        return self.decode(standard_noise("gaussian", (n, self.D), self.llik_scales, generator))
