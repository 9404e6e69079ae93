"""Per-component observation models p(x_i | z_i).

A decoder outputs one tensor in the component's shape (the location); the likelihood owns any
scale parameter, learned per feature when ``learn_scale`` is on.  ``log_prob`` sums over the
component's features and returns one value per row.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mcgen.distributions import log_density, rsample

LIKELIHOODS = ("gaussian", "laplace", "bernoulli")


class Likelihood(nn.Module):
    """Base class: ``log_prob(loc, x) -> (B,)`` and ``mean(loc)``.

    ``location_scale`` says whether the family is closed under shifting and scaling the data
    (then the estimators standardise the component internally and undo it on output).
    """

    name = "base"
    location_scale = False

    def check_support(self, x, label: str) -> None:
        """Raise ``ValueError`` naming ``label`` when the data ``x`` (an array) lie outside the
        family's support (nothing to check by default)."""

    def log_prob(self, loc: Tensor, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, loc: Tensor) -> Tensor:
        return loc

    def sample(self, loc: Tensor, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class _ScaledLikelihood(Likelihood):
    """A location-scale likelihood with one scale per feature.

    A **fixed** scale (``learn_scale=False``) is in the units of the data as the user passed them:
    when the estimator standardises the component (``x_std = (x - mean) / sd`` per feature), it
    calls :meth:`set_data_scale` with ``sd`` and the model uses ``scale / sd`` on the standardised
    features, so ``Laplace(x | loc, 0.75)`` means a scale of 0.75 pixel units whatever each
    pixel's spread.  A **learned** scale lives in the model's (standardised) units, ``scale``
    being its starting value there, and is floored at ``min_scale``.

    The density and the draws are :mod:`mcgen.distributions`' for the subclass's ``family``.
    """

    location_scale = True
    #: The distribution family of :mod:`mcgen.distributions` (each subclass sets it).
    family: str | None = None

    def __init__(self, shape: tuple[int, ...], scale: float = 1.0, learn_scale: bool = True,
                 min_scale: float = 1e-3):
        super().__init__()
        if not (math.isfinite(float(scale)) and float(scale) > 0):
            raise ValueError(f"likelihood scale must be a positive number, got {scale!r}")
        self.learn_scale = learn_scale
        # The floor guards a learned scale only; a fixed scale is used exactly as given.
        self.min_scale = min_scale if learn_scale else 0.0
        init = torch.full(shape, math.log(float(scale)))
        if learn_scale:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)
        # Per-feature standardisation scale of the data (1: the model sees the data's units).
        self.register_buffer("data_scale", torch.ones(shape))

    @torch.no_grad()
    def set_data_scale(self, sd) -> None:
        """Tell a fixed scale the per-feature standard deviation ``sd`` by which the estimator
        divides the data (no effect on a learned scale)."""
        sd = torch.as_tensor(sd, dtype=self.data_scale.dtype, device=self.data_scale.device)
        self.data_scale.copy_(sd.expand_as(self.data_scale))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Models saved before data_scale existed used their fixed scale in standardised units.
        state_dict.setdefault(prefix + "data_scale", torch.ones_like(self.data_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def scale(self) -> Tensor:
        """The scale in the model's units (per feature)."""
        if self.learn_scale:
            # A floor keeps a learned scale from collapsing to zero on (nearly) discrete features.
            return self.log_scale.exp() + self.min_scale
        return self.log_scale.exp() / self.data_scale

    def log_prob(self, loc: Tensor, x: Tensor) -> Tensor:
        return log_density(self.family, x, loc, self.scale).flatten(1).sum(-1)

    def sample(self, loc: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return rsample(self.family, loc, self.scale, generator=generator)


class GaussianLikelihood(_ScaledLikelihood):
    """``N(x | loc, scale^2)`` with one (learned) scale per feature."""

    name = "gaussian"
    family = "gaussian"


class LaplaceLikelihood(_ScaledLikelihood):
    """``Laplace(x | loc, scale)`` with one (learned or fixed) scale per feature."""

    name = "laplace"
    family = "laplace"


class BernoulliLikelihood(Likelihood):
    """``Bernoulli(x | sigmoid(logits))``; x may be any value in [0, 1] (continuous Bernoulli
    without its normaliser, as the multimodal VAE literature uses it)."""

    name = "bernoulli"

    def check_support(self, x, label: str) -> None:
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{label} has values outside [0, 1] ({x.min():g}..{x.max():g}); "
                             "the bernoulli likelihood needs data in [0, 1]")

    def log_prob(self, loc: Tensor, x: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(loc, x, reduction="none").flatten(1).sum(-1)

    def mean(self, loc: Tensor) -> Tensor:
        return torch.sigmoid(loc)

    def sample(self, loc: Tensor, generator: torch.Generator | None = None) -> Tensor:
        p = torch.sigmoid(loc)
        return torch.bernoulli(p, generator=generator)


def make_likelihood(spec, shape: tuple[int, ...], component: int) -> Likelihood:
    """Build component ``component``'s likelihood from a name (``"gaussian"``, ``"laplace"``,
    ``"bernoulli"``), a dict ``{"name": ..., "scale": ..., "learn_scale": ...}``, or an instance.

    An instance is copied (each component learns its own parameters) after checking that its
    parameters broadcast to the component's ``shape``.
    """
    if isinstance(spec, Likelihood):
        for key, value in spec.state_dict().items():
            try:
                ok = torch.broadcast_shapes(value.shape, shape) == torch.Size(shape)
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"the {type(spec).__name__} given as likelihood for component {component} has {key} of shape "
                    f"{tuple(value.shape)}, which does not fit the component's shape {tuple(shape)}; pass a name "
                    "or a dict (e.g. {'name': 'gaussian'}) to build one per component")
        return copy.deepcopy(spec)
    kwargs = {}
    if isinstance(spec, dict):
        kwargs = dict(spec)
        spec = kwargs.pop("name", None)
    if not isinstance(spec, str):
        raise TypeError(
            f"likelihood for component {component} must be a name, a dict or a Likelihood, "
            f"got {type(spec).__name__}"
        )
    if spec == "gaussian":
        return GaussianLikelihood(shape, **kwargs)
    if spec == "laplace":
        kwargs.setdefault("scale", 0.75)
        return LaplaceLikelihood(shape, **kwargs)
    if spec == "bernoulli":
        if kwargs:
            raise ValueError(f"bernoulli likelihood (component {component}) takes no options, got {kwargs}")
        return BernoulliLikelihood()
    raise ValueError(
        f"unknown likelihood {spec!r} for component {component}; valid: {', '.join(LIKELIHOODS)}"
    )
