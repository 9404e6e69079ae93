"""Diagonal Gaussian and Laplace distributions as plain tensor functions.

The one home of the elementwise log densities, the standard noise and the reparameterised draws
that the observation models (:mod:`mcgen.likelihoods`) and the latent distributions of the
baselines (:mod:`mcgen.models`) use, and of the closed-form KL of a diagonal Gaussian to
N(0, I).  A distribution is named by its family, ``"gaussian"`` (``scale`` is the standard
deviation) or ``"laplace"``; every draw takes an optional ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "FAMILIES",
    "gaussian_log_density",
    "gaussian_rsample",
    "kl_diag_gaussian_std",
    "laplace_log_density",
    "log_density",
    "log_prob",
    "rsample",
    "standard_noise",
    "std_from_logvar",
]

#: The families these functions know.
FAMILIES = ("laplace", "gaussian")

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _unknown(family) -> ValueError:
    return ValueError(f"unknown distribution family {family!r}; valid: {', '.join(map(repr, FAMILIES))}")


def gaussian_log_density(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Elementwise log density of ``N(loc, scale^2)`` at ``x``.

    Parameters
    ----------
    x, loc, scale : Tensor
        Broadcast against each other; ``scale`` is the standard deviation (positive).

    Returns
    -------
    Tensor
        ``-((x - loc) / scale)^2 / 2 - log(scale) - log(2 pi) / 2``, in the broadcast shape.
    """
    return -0.5 * ((x - loc) / scale).pow(2) - torch.log(scale) - _HALF_LOG_2PI


def laplace_log_density(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Elementwise log density of ``Laplace(loc, scale)`` at ``x``.

    Parameters
    ----------
    x, loc, scale : Tensor
        Broadcast against each other; ``scale`` positive.

    Returns
    -------
    Tensor
        ``-|x - loc| / scale - log(2 scale)``, in the broadcast shape.
    """
    return -(x - loc).abs() / scale - torch.log(2 * scale)


def log_density(family: str, x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Elementwise log density of the ``family`` distribution (see :data:`FAMILIES`).

    Parameters
    ----------
    family : {"gaussian", "laplace"}
    x, loc, scale : Tensor
        Broadcast against each other.

    Returns
    -------
    Tensor
        :func:`gaussian_log_density` or :func:`laplace_log_density`.
    """
    if family == "gaussian":
        return gaussian_log_density(x, loc, scale)
    if family == "laplace":
        return laplace_log_density(x, loc, scale)
    raise _unknown(family)


def log_prob(family: str, z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Log density of a diagonal distribution, summed over the last axis.

    Parameters
    ----------
    family : {"gaussian", "laplace"}
    z, loc, scale : Tensor (..., D)
        Broadcast against each other over the leading axes.

    Returns
    -------
    Tensor (...)
        ``sum_d log_density(family, z_d, loc_d, scale_d)``.
    """
    return log_density(family, z, loc, scale).sum(-1)


def standard_noise(family: str, shape, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gaussian or standard Laplace (location 0, scale 1) noise.

    Parameters
    ----------
    family : {"gaussian", "laplace"}
    shape : tuple of int
    like : Tensor
        Gives the dtype and the device.
    generator : torch.Generator, optional
        Default: torch's global generator.

    Returns
    -------
    Tensor of ``shape``
        Laplace noise by the inverse CDF: ``-sign(u) log(1 - |u|)`` with ``u`` uniform on
        ``(-1, 1)``, ``|u|`` kept below 1 so that the logarithm stays finite (``torch.rand`` can
        return 0, i.e. ``u = -1``).
    """
    if family == "gaussian":
        return torch.randn(shape, dtype=like.dtype, device=like.device, generator=generator)
    if family != "laplace":
        raise _unknown(family)
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator) * 2 - 1
    eps = torch.finfo(like.dtype).eps
    u = u.clamp(-1 + eps, 1 - eps)
    # |x| = -log(1 - |u|) is Exp(1) for |u| ~ U(0, 1); the sign is symmetric.
    return -torch.sign(u) * torch.log1p(-u.abs())


def rsample(family: str, loc: Tensor, scale: Tensor, sample_shape: tuple[int, ...] = (),
            generator: torch.Generator | None = None) -> Tensor:
    """Reparameterised draws ``loc + scale * noise`` (differentiable in ``loc`` and ``scale``).

    Parameters
    ----------
    family : {"gaussian", "laplace"}
    loc : Tensor (...)
    scale : Tensor
        Broadcasts against ``loc``.
    sample_shape : tuple of int, default=()
        Leading axes of independent draws.
    generator : torch.Generator, optional

    Returns
    -------
    Tensor (*sample_shape, ...)
    """
    return loc + scale * standard_noise(family, (*sample_shape, *loc.shape), loc, generator)


def std_from_logvar(logvar: Tensor) -> Tensor:
    """Standard deviation ``exp(logvar / 2)`` of a Gaussian parameterised by its log-variance."""
    return torch.exp(0.5 * logvar)


def gaussian_rsample(mu: Tensor, logvar: Tensor, sample_shape: tuple[int, ...] = (),
                     generator: torch.Generator | None = None) -> Tensor:
    """Reparameterised draws from ``N(mu, exp(logvar))`` (diagonal).

    Parameters
    ----------
    mu, logvar : Tensor (...)
        Mean and log-variance.
    sample_shape : tuple of int, default=()
    generator : torch.Generator, optional

    Returns
    -------
    Tensor (*sample_shape, ...)
        ``rsample("gaussian", mu, std_from_logvar(logvar), sample_shape, generator)``.
    """
    return rsample("gaussian", mu, std_from_logvar(logvar), sample_shape, generator)


def kl_diag_gaussian_std(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` of a diagonal Gaussian, summed over the last axis.

    Parameters
    ----------
    mu, logvar : Tensor (..., D)

    Returns
    -------
    Tensor (...)
        ``-(1/2) sum_d (1 + logvar_d - mu_d^2 - exp(logvar_d))``.
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
