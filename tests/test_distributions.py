"""mcgen.distributions against torch.distributions, and the observation models built on it."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as td

from mcgen.distributions import (
    FAMILIES,
    kl_diag_gaussian_std,
    log_density,
    log_prob,
    rsample,
    standard_noise,
    std_from_logvar,
)
from mcgen.likelihoods import make_likelihood

torch.set_num_threads(1)

REFERENCE = {"gaussian": td.Normal, "laplace": td.Laplace}


@pytest.mark.parametrize("family", FAMILIES)
def test_log_density_matches_torch_distributions(family):
    g = torch.Generator().manual_seed(0)
    x, loc = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    scale = torch.rand(3, generator=g, dtype=torch.float64) + 0.1
    ref = REFERENCE[family](loc, scale).log_prob(x)
    torch.testing.assert_close(log_density(family, x, loc, scale), ref)
    torch.testing.assert_close(log_prob(family, x, loc, scale), ref.sum(-1))


@pytest.mark.parametrize("family", FAMILIES)
def test_rsample_is_loc_plus_scale_noise_and_differentiable(family):
    loc = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([2.0, 0.1], dtype=torch.float64, requires_grad=True)
    z = rsample(family, loc, scale, (5, 3), torch.Generator().manual_seed(1))
    assert z.shape == (5, 3, 2)
    noise = standard_noise(family, (5, 3, 2), loc, torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, loc + scale * noise)
    z.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((2,), 15.0, dtype=torch.float64))
    torch.testing.assert_close(scale.grad, noise.sum((0, 1)))


def test_standard_noise_moments():
    g = torch.Generator().manual_seed(2)
    like = torch.zeros((), dtype=torch.float64)
    for family, var in (("gaussian", 1.0), ("laplace", 2.0)):
        x = standard_noise(family, (40000,), like, g)
        assert torch.isfinite(x).all()
        assert abs(float(x.mean())) < 0.03 and abs(float(x.var()) - var) < 0.06


def test_kl_diag_gaussian_std_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    q = td.Normal(mu, std_from_logvar(logvar))
    ref = td.kl_divergence(q, td.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    torch.testing.assert_close(kl_diag_gaussian_std(mu, logvar), ref)


@pytest.mark.parametrize("family", FAMILIES)
def test_likelihoods_use_the_shared_densities_and_draws(family):
    lik = make_likelihood({"name": family, "scale": 0.5, "learn_scale": False}, (3,), 0)
    g = torch.Generator().manual_seed(4)
    loc, x = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    torch.testing.assert_close(lik.log_prob(loc, x), log_prob(family, x, loc, lik.scale), rtol=0, atol=0)
    drawn = lik.sample(loc, torch.Generator().manual_seed(5))
    torch.testing.assert_close(drawn, rsample(family, loc, lik.scale, generator=torch.Generator().manual_seed(5)),
                               rtol=0, atol=0)


def test_unknown_family_is_refused():
    like = torch.zeros(())
    with pytest.raises(ValueError, match="unknown distribution family 'cauchy'"):
        log_density("cauchy", like, like, like + 1)
    with pytest.raises(ValueError, match="unknown distribution family"):
        standard_noise("cauchy", (2,), like)
