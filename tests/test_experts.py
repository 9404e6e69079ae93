"""mcgen.models.experts and mcgen.models.importance: scales, products and mixtures of experts,
and the names that stay importable from their former modules."""

from __future__ import annotations

import math

import pytest
import torch

from mcgen import distributions
from mcgen.gaussian import product_of_experts
from mcgen.models import _multimodal, experts, importance, mmvae
from mcgen.models.experts import (
    mixture_log_prob,
    non_empty_subsets,
    positive_scale,
    softmax_scale,
    subset_mask,
    with_prior_expert,
)
from mcgen.models.importance import iw_objective, iw_weights, log_mean_exp, others_logsumexp

torch.set_num_threads(1)


def test_softmax_scale_averages_one_and_positive_scale_adds_eps():
    raw = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = softmax_scale(raw)
    torch.testing.assert_close(s.sum(-1), torch.full((4,), 5.0, dtype=torch.float64))
    torch.testing.assert_close(positive_scale(raw, "softmax"), s + experts.SCALE_EPS, rtol=0, atol=0)
    torch.testing.assert_close(positive_scale(raw, "softplus"), torch.nn.functional.softplus(raw) + 1e-6)


def test_subset_mask_and_prior_policy():
    subsets = non_empty_subsets(3)
    assert len(subsets) == 7 and subsets[0] == (0,) and subsets[-1] == (0, 1, 2)
    mask = subset_mask(3, subsets, prior=lambda s: len(s) == 3)
    for j, s in enumerate(subsets):
        assert mask[1:, j].nonzero().flatten().tolist() == list(s)
        assert bool(mask[0, j]) == (len(s) == 3)
    assert subset_mask(3, subsets, prior=True)[0].all()
    assert not subset_mask(3, subsets, prior=False)[0].any()


def test_products_with_and_without_the_prior_expert():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(2, 3, 4, 2, generator=g, dtype=torch.float64)
    mus, logvars = with_prior_expert(mu, logvar)
    assert mus.shape == (4, 4, 2)
    assert (mus[0] == 0).all() and (logvars[0] == 0).all()
    # A subset's product from the mask equals the product of the experts taken out by hand.
    subsets = [(0, 2), (1,)]
    m, lv = product_of_experts(mus.unsqueeze(1), logvars.unsqueeze(1), subset_mask(3, subsets, prior=False))
    for j, s in enumerate(subsets):
        ref = product_of_experts(mu[list(s)], logvar[list(s)])
        torch.testing.assert_close(m[j], ref[0])
        torch.testing.assert_close(lv[j], ref[1])


def test_mixture_log_prob_is_the_mean_of_the_expert_densities():
    g = torch.Generator().manual_seed(2)
    loc = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    z = torch.randn(5, 2, 4, generator=g, dtype=torch.float64)
    scale = torch.rand(3, 2, 4, generator=g, dtype=torch.float64) + 0.2
    for family in distributions.FAMILIES:
        dens = torch.stack([distributions.log_prob(family, z, loc[e], scale[e]).exp() for e in range(3)]).mean(0)
        torch.testing.assert_close(mixture_log_prob(family, z, loc, scale), dens.log())


def test_importance_helpers():
    g = torch.Generator().manual_seed(3)
    lw = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(log_mean_exp(lw, 0), lw.exp().mean(0).log())
    torch.testing.assert_close(log_mean_exp(lw, (0, 1)), lw.exp().mean((0, 1)).log())
    w = iw_weights(lw.requires_grad_(), 0)
    assert not w.requires_grad
    torch.testing.assert_close(w.sum(0), torch.ones(3, 2, dtype=torch.float64))
    loo = others_logsumexp(lw.detach())
    for k in range(4):
        rest = torch.cat([lw[:k], lw[k + 1:]]).detach()
        torch.testing.assert_close(loo[k], rest.exp().sum(0).log())
    assert iw_objective(lw, "elbo", True).shape == (2,)
    torch.testing.assert_close(iw_objective(lw, "iwae", False), lw.exp().mean((0, 1)).log())
    torch.testing.assert_close(iw_objective(lw, "dreg", True), lw.exp().mean(0).log().mean(0))
    assert math.isinf(float(others_logsumexp(torch.zeros(1))[0]))


@pytest.mark.parametrize("module, names", [
    (_multimodal, ["kl_diag_gaussian_std", "log_prob", "standard_noise", "positive_scale", "log_mean_exp",
                   "iw_weights", "non_empty_subsets", "SCALE_EPS", "SCALE_PARAMETERISATIONS"]),
    (mmvae, ["mixture_log_prob", "sample_mixture", "dreg_loss", "iw_objective", "others_logsumexp"]),
])
def test_moved_names_stay_importable_from_their_former_modules(module, names):
    homes = (distributions, experts, importance)
    for name in names:
        obj = getattr(module, name)
        assert any(getattr(home, name, None) is obj for home in homes), name


def test_module_option_checks_name_the_option():
    from mcgen.models.base import ComponentSpec
    from mcgen.models.mmvae import MMVAEModule
    from mcgen.models.mmvaeplus import MMVAEPlusModule
    from mcgen.plugins import get_architecture

    mlp = get_architecture("mlp")
    specs = [ComponentSpec(shape=(2,), latent_dim=2, encoder=mlp.encoder_factory, decoder=mlp.decoder_factory,
                           encoder_kwargs={"hidden": (4,)}, decoder_kwargs={"hidden": (4,)}) for _ in range(2)]
    for kwargs, message in [({"K": 0}, "K must be a positive integer, got 0"),
                            ({"K": True}, "K must be a positive integer"),
                            ({"objective": "vae"}, "objective must be one of 'elbo', 'iwae', 'dreg'"),
                            ({"posterior": "cauchy"}, "posterior must be one of 'laplace', 'gaussian'"),
                            ({"posterior_scale": "exp"}, "posterior_scale must be one of")]:
        for cls in (MMVAEModule, MMVAEPlusModule):
            with pytest.raises(ValueError, match=message):
                cls(specs, **kwargs)
    with pytest.raises(ValueError, match="private_dim must be a positive integer, got 1.5"):
        MMVAEPlusModule(specs, private_dim=1.5)
