"""The contract every model module fulfils, and the per-component building blocks.

Models receive their networks: a :class:`ComponentSpec` carries the encoder and decoder
*factories* (resolved from the architecture registry by the estimator), so nothing here looks
anything up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mcgen.likelihoods import make_likelihood


@dataclass
class ComponentSpec:
    """What a model needs to know about one component.

    Attributes
    ----------
    shape : tuple of int
        The component's sample shape.
    latent_dim : int
    encoder : callable
        ``encoder(input_shape, **encoder_kwargs) -> nn.Module`` mapping ``(B, *shape)`` to
        ``(B, out_features)``, with an integer attribute ``out_features``.
    decoder : callable
        ``decoder(latent_dim, output_shape, **decoder_kwargs) -> nn.Module`` mapping
        ``(B, latent_dim)`` to the likelihood's location ``(B, *shape)``.
    encoder_kwargs, decoder_kwargs : dict
    likelihood : str, dict or Likelihood
        As :func:`mcgen.likelihoods.make_likelihood` reads it (an instance is copied).
    llik_scale : float
        Weight of the component's log-likelihood in the training loss.
    """

    shape: tuple[int, ...]
    latent_dim: int
    encoder: Callable[..., nn.Module]
    decoder: Callable[..., nn.Module]
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    decoder_kwargs: dict[str, Any] = field(default_factory=dict)
    likelihood: Any = "gaussian"
    llik_scale: float = 1.0


def _factory_name(factory: Callable) -> str:
    return getattr(factory, "__qualname__", None) or type(factory).__name__


def build_encoder(spec: ComponentSpec) -> nn.Module:
    """The spec's encoder, checked for the ``out_features`` contract."""
    enc = spec.encoder(spec.shape, **spec.encoder_kwargs)
    if not isinstance(getattr(enc, "out_features", None), int):
        raise TypeError(f"encoder {_factory_name(spec.encoder)!r} must expose an integer attribute `out_features`")
    return enc


def build_decoder(spec: ComponentSpec, latent_dim: int | None = None) -> nn.Module:
    """The spec's decoder reading latents of width ``latent_dim`` (default: the spec's)."""
    return spec.decoder(spec.latent_dim if latent_dim is None else latent_dim, spec.shape, **spec.decoder_kwargs)


class MultiComponentModule(nn.Module):
    """Base class of the model modules.

    Subclasses implement the methods below; the estimator calls nothing else.  All tensors
    are batches; ``xs`` is a list of M component tensors.
    """

    def __init__(self, specs: list[ComponentSpec]):
        super().__init__()
        self.specs = list(specs)
        self.n_components = len(specs)
        self.likelihoods = nn.ModuleList(
            [make_likelihood(s.likelihood, s.shape, i) for i, s in enumerate(specs)]
        )
        self.register_buffer("llik_scales", torch.tensor([float(s.llik_scale) for s in specs]))

    # --- training --------------------------------------------------------------------------
    def forward(self, xs: list[Tensor], mask: Tensor | None = None) -> Tensor:
        """Per-row training loss (negative objective), shape (B,).

        ``mask`` (B, M) bool, True where row b holds component i; ``None``: every component of
        every row.  A missing component's entries in ``xs`` are zeros, not data: the loss of a
        row depends on its observed components only (the objective over them, the missing ones
        marginalised), and every row has at least one observed component.
        """
        raise NotImplementedError

    # --- inference -------------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        """Width of :meth:`encode`'s output."""
        raise NotImplementedError

    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        """Per-row evidence lower bound (beta = 1, unscaled likelihoods), shape (B,); with
        ``mask`` (as :meth:`forward`) a bound on ``log p(x_O)`` of each row's observed components."""
        raise NotImplementedError

    def encode(self, xs: list[Tensor]) -> Tensor:
        """Posterior means, shape (B, latent_size)."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> list[Tensor]:
        """Likelihood means of every component for latents ``z`` (B, latent_size)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Unconditional samples (likelihood means), M tensors of ``n`` rows."""
        raise NotImplementedError

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None) -> dict[int, Tensor]:
        """Generate the unknown components from the known ones.

        Returns a dict ``{component: Tensor (n_samples, B, *shape)}`` for every unknown
        component.
        """
        raise NotImplementedError

    # --- helpers -----------------------------------------------------------------------------
    def log_likelihoods(self, locs: list[Tensor], xs: list[Tensor]) -> Tensor:
        """Unscaled ``log p(x_i | .)`` per component, shape (B, M)."""
        return torch.stack([lik.log_prob(loc, x) for lik, loc, x in zip(self.likelihoods, locs, xs)], -1)

    def means(self, locs: list[Tensor]) -> list[Tensor]:
        return [lik.mean(loc) for lik, loc in zip(self.likelihoods, locs)]
