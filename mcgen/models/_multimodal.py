"""Building blocks shared by the multimodal VAE baselines (MVAE, MMVAE, MoPoE-VAE, MMVAE+).

Diagonal latent distributions (Gaussian or Laplace) with reparameterised sampling through an
optional ``torch.Generator``, their log densities, the closed-form KL of a diagonal Gaussian to
N(0, I), normalised importance weights, and a base module with one encoder (plus a linear
head) and one decoder per component over a latent shared by all components.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# kl_diag_gaussian_std, log_prob, standard_noise: at home in mcgen.distributions, re-exported here.
from mcgen.distributions import kl_diag_gaussian_std, log_prob, standard_noise
from mcgen.models.base import ComponentSpec, MultiComponentModule, build_decoder, build_encoder

__all__ = [
    "LATENT_FAMILIES",
    "OBJECTIVES",
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

LATENT_FAMILIES = ("laplace", "gaussian")
SCALE_PARAMETERISATIONS = ("softmax", "softplus")
OBJECTIVES = ("elbo", "iwae", "dreg")
#: Added to every posterior scale (the official MMVAE code adds 1e-6 after its softmax).
SCALE_EPS = 1e-6


def check_choice(value, valid: tuple[str, ...], name: str) -> str:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")
    return value


def positive_scale(raw: Tensor, parameterisation: str) -> Tensor:
    """Posterior scale from a raw head output.

    ``"softmax"``: ``softmax(raw) * D + eps`` over the latent axis (the official MMVAE / MMVAE+
    parameterisation: the scales of a posterior always sum to D, i.e. average 1).
    ``"softplus"``: ``softplus(raw) + eps``, each scale free.
    """
    if parameterisation == "softmax":
        return F.softmax(raw, dim=-1) * raw.shape[-1] + SCALE_EPS
    return F.softplus(raw) + SCALE_EPS


def log_mean_exp(x: Tensor, dim) -> Tensor:
    """``log mean exp`` over ``dim`` (an int or a tuple of ints), numerically stable."""
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    n = math.prod(x.shape[d] for d in dims)
    return torch.logsumexp(x, dim=dims) - math.log(n)


def iw_weights(lw: Tensor, dim) -> Tensor:
    """Normalised importance weights ``softmax(lw)`` over ``dim`` (detached)."""
    lw = lw.detach()
    return torch.exp(lw - torch.logsumexp(lw, dim=dim, keepdim=True))


def non_empty_subsets(M: int) -> list[tuple[int, ...]]:
    """All non-empty subsets of ``range(M)``: singletons, pairs, ..., the full set (the order
    of the official MoPoE code)."""
    return [s for k in range(1, M + 1) for s in combinations(range(M), k)]


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
