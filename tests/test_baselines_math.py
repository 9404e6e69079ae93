"""The baselines' algebra and gradients against explicit references (NumPy, SciPy,
torch.distributions, hand-assembled autograd)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import mcgen
from mcgen.distributions import kl_diag_gaussian_std, log_prob, standard_noise
from mcgen.likelihoods import make_likelihood
from mcgen.models.base import ComponentSpec
from mcgen.models.experts import sample_mixture
from mcgen.models.mmvae import MMVAEModule
from mcgen.models.mmvaeplus import MMVAEPlusModule
from mcgen.models.mopoe import MoPoEModule
from mcgen.models.mvae import MVAEModule
from mcgen.plugins import get_architecture

# Tiny networks: one thread avoids oversubscription on a shared CPU.
torch.set_num_threads(1)

TINY = {"hidden": (8,)}


def specs(M=3, D=2, shape=(2,), likelihood="gaussian"):
    mlp = get_architecture("mlp")
    return [ComponentSpec(shape=shape, latent_dim=D, encoder=mlp.encoder_factory, decoder=mlp.decoder_factory,
                          encoder_kwargs=TINY, decoder_kwargs=TINY, likelihood=likelihood) for _ in range(M)]


def batch(M=3, B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, 2, generator=g, dtype=torch.float64) for _ in range(M)]


def numpy_poe(mus, variances):
    """Closed-form product of Gaussian experts (precision-weighted mean, summed precisions)."""
    prec = sum(1.0 / v for v in variances)
    return sum(m / v for m, v in zip(mus, variances)) / prec, 1.0 / prec


# ----------------------------------------------------------------------------------------------
# Product of experts
# ----------------------------------------------------------------------------------------------
def test_mvae_posterior_is_closed_form_poe_with_prior_expert():
    torch.manual_seed(0)
    mod = MVAEModule(specs()).double()
    xs = batch()
    mu, logvar = mod.encoder_outputs(xs)
    exp_mus = [np.zeros((5, 2))] + [m.detach().numpy() for m in mu]
    exp_var = [np.ones((5, 2))] + [np.exp(v.detach().numpy()) for v in logvar]
    ref_mu, ref_var = numpy_poe(exp_mus, exp_var)
    got_mu, got_logvar = mod.posterior(xs)
    np.testing.assert_allclose(got_mu.detach().numpy(), ref_mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.exp(got_logvar.detach().numpy()), ref_var, rtol=1e-6)
    # Conditioning on components 0 and 2 only: prior + those two experts.
    sub_mu, sub_lv = mod.posterior([xs[0], xs[2]], [0, 2])
    ref_mu, ref_var = numpy_poe([exp_mus[0], exp_mus[1], exp_mus[3]], [exp_var[0], exp_var[1], exp_var[3]])
    np.testing.assert_allclose(sub_mu.detach().numpy(), ref_mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.exp(sub_lv.detach().numpy()), ref_var, rtol=1e-6)


@pytest.mark.parametrize("policy", ["full", "all", "none"])
def test_mopoe_subset_posteriors_are_closed_form_poes(policy):
    torch.manual_seed(1)
    M = 3
    mod = MoPoEModule(specs(M), prior_expert=policy).double()
    xs = batch(M)
    mu, logvar = mod.encoder_outputs(xs)
    mus = [m.detach().numpy() for m in mu]
    var = [np.exp(v.detach().numpy()) for v in logvar]
    got_mu, got_lv = mod.subset_posteriors(xs)
    assert mod.subsets == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    for j, s in enumerate(mod.subsets):
        with_prior = policy == "all" or (policy == "full" and len(s) == M)
        e_mu = [mus[m] for m in s] + ([np.zeros((5, 2))] if with_prior else [])
        e_var = [var[m] for m in s] + ([np.ones((5, 2))] if with_prior else [])
        ref_mu, ref_var = numpy_poe(e_mu, e_var)
        np.testing.assert_allclose(got_mu[j].detach().numpy(), ref_mu, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(np.exp(got_lv[j].detach().numpy()), ref_var, rtol=1e-6)


def test_kl_and_latent_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * lv).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_diag_gaussian_std(mu, lv), ref)
    z, scale = torch.randn(4, 3, generator=g, dtype=torch.float64), lv.exp()
    torch.testing.assert_close(log_prob("laplace", z, mu, scale),
                               torch.distributions.Laplace(mu, scale).log_prob(z).sum(-1))
    torch.testing.assert_close(log_prob("gaussian", z, mu, scale),
                               torch.distributions.Normal(mu, scale).log_prob(z).sum(-1))


def test_standard_laplace_noise_is_laplace():
    x = standard_noise("laplace", (20000,), torch.zeros((), dtype=torch.float64), torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    assert stats.kstest(x.numpy(), stats.laplace.cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------------------------
# Mixture sampling proportions
# ----------------------------------------------------------------------------------------------
def test_mopoe_partition_blocks_match_official_rule():
    mod = MoPoEModule(specs(5))
    a = mod.assignment(256, "cpu")
    counts = torch.bincount(a, minlength=31)
    assert counts[:30].tolist() == [8] * 30 and counts[30] == 16  # M=5, B=256: 30 blocks of 8, full set 16
    assert (a[1:] >= a[:-1]).all()  # contiguous blocks
    assert torch.bincount(mod.assignment(20, "cpu"), minlength=31)[30] == 20  # B < 2^M - 1: all to the full set


def test_mopoe_random_assignment_is_uniform():
    mod = MoPoEModule(specs(3), mixture_sampling="random")
    a = mod.assignment(70_000, "cpu", torch.Generator().manual_seed(0))
    counts = torch.bincount(a, minlength=7).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3


def test_mixture_of_unimodal_posteriors_sampling_proportions():
    E, B, n = 3, 2, 30_000
    loc = torch.tensor([-10.0, 0.0, 10.0]).view(E, 1, 1).expand(E, B, 1).contiguous()
    scale = torch.full((E, B, 1), 0.01)
    z = sample_mixture("laplace", loc, scale, n, torch.Generator().manual_seed(0))  # (n, B, 1)
    which = torch.round(z / 10).long() + 1
    for b in range(B):
        counts = torch.bincount(which[:, b, 0], minlength=E).numpy()
        assert counts.sum() == n
        assert stats.chisquare(counts).pvalue > 1e-3


def test_mvae_random_subsets_sizes_uniform_and_distinct():
    torch.manual_seed(0)
    mod = MVAEModule(specs(4), n_random_subsets=1)
    sizes = [len(mod.random_subsets()[0]) for _ in range(2000)]
    n2 = sizes.count(2)
    assert set(sizes) == {2, 3}
    assert abs(n2 / 2000 - 0.5) < 4 * math.sqrt(0.25 / 2000)
    mod.n_random_subsets = 10  # more than the 6 + 4 available: every subset of size 2..3 exactly once
    drawn = mod.random_subsets()
    assert len(drawn) == 10 and len(set(drawn)) == 10
    assert MVAEModule(specs(2), n_random_subsets=3).random_subsets() == []


# ----------------------------------------------------------------------------------------------
# Objectives
# ----------------------------------------------------------------------------------------------
def _manual_loss_terms(mod, xs, z, comps):
    return sum(mod.component_log_lik(m, mod.decode_component(m, z), xs[m]) * mod.llik_scales[m] for m in comps)


def test_mvae_loss_is_sum_of_subset_elbos():
    torch.manual_seed(0)
    M = 3
    mod = MVAEModule(specs(M), beta=0.7, n_random_subsets=1).double()
    mod.llik_scales = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    xs = batch(M)
    torch.manual_seed(5)
    loss = mod(xs)
    torch.manual_seed(5)
    subsets = mod.training_subsets()  # consumes the same RNG draws as forward
    eps = torch.randn(len(subsets), 5, 2, dtype=torch.float64)
    ref = 0.0
    for j, s in enumerate(subsets):
        mu, lv = mod.posterior([xs[m] for m in s], list(s))
        z = mu + (0.5 * lv).exp() * eps[j]
        ref = ref - _manual_loss_terms(mod, xs, z, s) + 0.7 * kl_diag_gaussian_std(mu, lv)
    assert subsets[:4] == [(0, 1, 2), (0,), (1,), (2,)] and len(subsets[4]) == 2
    torch.testing.assert_close(loss, ref)


def test_mopoe_loss_matches_official_formula():
    torch.manual_seed(0)
    M = 3
    mod = MoPoEModule(specs(M), beta=0.3).double()
    mod.llik_scales = torch.tensor([1.0, 3.0, 1.0], dtype=torch.float64)
    xs = batch(M, B=14)
    torch.manual_seed(2)
    loss = mod(xs)
    torch.manual_seed(2)
    eps = torch.randn(14, 2, dtype=torch.float64)
    mu_s, lv_s = mod.subset_posteriors(xs)
    assign = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # 14 rows, 7 subsets: blocks of 2
    rows = torch.arange(14)
    z = mu_s[assign, rows] + (0.5 * lv_s[assign, rows]).exp() * eps
    kl = torch.stack([kl_diag_gaussian_std(mu_s[j], lv_s[j]) for j in range(7)]).mean(0)
    ref = -_manual_loss_terms(mod, xs, z, range(M)) + 0.3 * kl
    torch.testing.assert_close(loss, ref)


def test_mmvae_log_weights_match_torch_distributions():
    torch.manual_seed(0)
    M, K = 2, 3
    mod = MMVAEModule(specs(M), beta=0.5, K=K).double()
    with torch.no_grad():
        mod.prior_logits.copy_(torch.tensor([0.3, -0.2]))
    xs = batch(M)
    g = torch.Generator().manual_seed(1)
    z, lw = mod.log_weights(xs, K, 0.5, scaled=True, detach_q=False, generator=g)
    loc, scale = mod.posteriors(xs)
    qs = [torch.distributions.Laplace(loc[m], scale[m]) for m in range(M)]
    prior = torch.distributions.Laplace(torch.zeros(2, dtype=torch.float64), torch.softmax(mod.prior_logits, 0) * 2)
    for k in range(K):
        for m in range(M):
            zz = z[k, m]
            log_q = torch.logsumexp(torch.stack([q.log_prob(zz).sum(-1) for q in qs]), 0) - math.log(M)
            ll = sum(mod.likelihoods[d].log_prob(mod.decoders[d](zz), xs[d]) for d in range(M))
            ref = ll + 0.5 * (prior.log_prob(zz).sum(-1) - log_q)
            torch.testing.assert_close(lw[k, m], ref)
    # The posterior scales follow the original's softmax(a) * D + 1e-6: they sum to D.
    torch.testing.assert_close(scale.sum(-1), torch.full((M, 5), 2 + 2e-6, dtype=torch.float64))


@pytest.mark.parametrize("cls", [MMVAEModule, MMVAEPlusModule])
def test_iwae_with_one_sample_equals_elbo(cls):
    torch.manual_seed(0)
    mod = cls(specs(3), K=1, objective="iwae").double()  # the paper's stratified (looser) IWAE
    xs = batch(3)
    torch.manual_seed(3)
    iwae = mod(xs)
    mod.objective = "elbo"
    torch.manual_seed(3)
    elbo = mod(xs)
    torch.testing.assert_close(iwae, elbo)
    mod.objective, mod.K = "iwae", 4
    torch.manual_seed(3)
    iwae4 = mod(xs)
    mod.objective = "elbo"
    torch.manual_seed(3)
    assert (iwae4 <= mod(xs) + 1e-12).all()  # the IWAE bound is tighter (minus sign: a smaller loss)


def test_tight_iwae_with_one_sample_is_log_mean_exp_over_components():
    torch.manual_seed(0)
    mod = MMVAEModule(specs(3), K=1, objective="iwae", looser=False).double()
    xs = batch(3)
    torch.manual_seed(3)
    tight = mod(xs)
    torch.manual_seed(3)
    _, lw = mod.log_weights(xs, 1, 1.0, scaled=True, detach_q=False)
    torch.testing.assert_close(tight, -(torch.logsumexp(lw[0], 0) - math.log(3)))
    assert (tight <= -lw[0].mean(0) + 1e-12).all()  # Jensen: above the stratified ELBO


def _grads(mod, loss):
    mod.zero_grad()
    loss.backward()
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in mod.named_parameters()}


def _is_encoder(name):
    return name.startswith(("encoders", "heads"))


@pytest.mark.parametrize("cls, looser", [(MMVAEModule, True), (MMVAEModule, False), (MMVAEPlusModule, True)])
def test_dreg_generative_gradients_and_value_are_the_iwae_ones(cls, looser):
    """On the same draws, DReG reports the IWAE bound and gives the decoders, prior and auxiliary
    priors exactly the IWAE gradient (catches a score correction that leaks into the generative
    parameters, e.g. through the decoders' z-gradients, and a DReG that silently falls back to
    IWAE on the encoders).  Unbiasedness of the encoder gradients: tests/test_dreg_unbiased.py."""
    torch.manual_seed(0)
    kw = {"looser": looser} if cls is MMVAEModule else {"private_dim": 2}
    mod = cls(specs(3), beta=0.8, objective="dreg", K=4, **kw).double()
    xs = batch(3)
    torch.manual_seed(11)
    loss = mod(xs).mean()
    got = _grads(mod, loss)
    mod.objective = "iwae"
    torch.manual_seed(11)
    iwae_loss = mod(xs).mean()
    iw = _grads(mod, iwae_loss)
    torch.testing.assert_close(loss, iwae_loss)
    assert any(_is_encoder(n) for n in got)
    for n in got:
        if _is_encoder(n):
            assert not torch.allclose(got[n], iw[n], rtol=1e-3, atol=1e-8), n
        else:
            torch.testing.assert_close(got[n], iw[n], msg=n)


def test_dreg_pooled_rejects_reparameterised_cross_terms():
    """The pooled bound cannot move the other experts' terms onto the pool's own samples."""
    from mcgen.models.importance import dreg_loss

    z = torch.zeros(2, 2, 1, 3, requires_grad=True)
    with pytest.raises(ValueError, match="fresh draw"):
        dreg_loss(z.sum(-1), z, "gaussian", torch.zeros(2, 1, 3), torch.ones(2, 1, 3), 1.0, looser=False,
                  cross="reparam")


# ----------------------------------------------------------------------------------------------
# Likelihoods and llik_scale
# ----------------------------------------------------------------------------------------------
def test_likelihoods_match_scipy():
    g = torch.Generator().manual_seed(0)
    loc, x = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    fixed = make_likelihood({"name": "laplace", "scale": 0.75, "learn_scale": False}, (3,), 0).double()
    assert not any(True for _ in fixed.parameters())
    np.testing.assert_allclose(fixed.log_prob(loc, x).numpy(),
                               stats.laplace.logpdf(x.numpy(), loc.numpy(), 0.75).sum(-1), rtol=1e-6)
    learned = make_likelihood("laplace", (3,), 0).double()
    assert sum(p.numel() for p in learned.parameters()) == 3
    np.testing.assert_allclose(learned.log_prob(loc, x).detach().numpy(),
                               stats.laplace.logpdf(x.numpy(), loc.numpy(), learned.scale.detach().numpy()).sum(-1))
    gauss = make_likelihood("gaussian", (3,), 0).double()
    np.testing.assert_allclose(gauss.log_prob(loc, x).detach().numpy(),
                               stats.norm.logpdf(x.numpy(), loc.numpy(), gauss.scale.detach().numpy()).sum(-1))
    xb = (x > 0).double()
    bern = make_likelihood("bernoulli", (3,), 0)
    np.testing.assert_allclose(bern.log_prob(loc, xb).numpy(),
                               stats.bernoulli.logpmf(xb.numpy(), 1 / (1 + np.exp(-loc.numpy()))).sum(-1))


@pytest.mark.parametrize("name", ["mvae", "mmvae", "mopoe", "mmvaeplus"])
def test_llik_scale_and_likelihood_reach_the_module(name):
    from tests._factories import FACTORIES

    X, _ = mcgen.load_dataset("copula", n_samples=64)
    lik = ["gaussian", {"name": "laplace", "scale": 0.75, "learn_scale": False}, "laplace", "bernoulli"]
    est = FACTORIES[name](max_epochs=1, likelihood=lik, llik_scale=[1.0, 2.0, 0.5, 3.0]).fit(X)
    mod = est.module_
    assert [type(lk).__name__ for lk in mod.likelihoods] == ["GaussianLikelihood", "LaplaceLikelihood",
                                                           "LaplaceLikelihood", "BernoulliLikelihood"]
    # a fixed scale is in the data's units: 0.75 / sd on the standardised component
    torch.testing.assert_close(mod.likelihoods[1].scale, 0.75 / torch.from_numpy(est.standardize_scale_[1]))
    assert mod.likelihoods[2].log_scale.requires_grad and not mod.likelihoods[1].log_scale.requires_grad
    assert mod.llik_scales.tolist() == [1.0, 2.0, 0.5, 3.0]
    # The loss scales each component's log-likelihood: doubling every weight changes the loss
    # by exactly the (negative) weighted log-likelihood term.
    xs = [est._to_tensor(a, i) for i, a in enumerate(X.arrays)]
    if hasattr(mod, "objective"):
        mod.objective = "elbo"  # linear in the log-likelihoods (IWAE/DReG are not)
    mod.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        l1 = mod(xs)
        mod.llik_scales *= 2
        torch.manual_seed(0)
        l2 = mod(xs)
        mod.llik_scales /= 2
        mod.beta = 0.0
        torch.manual_seed(0)
        recon = mod(xs)
    # loss = -(scaled log-likelihoods) + beta * (latent terms): doubling the weights adds the
    # scaled log-likelihood term once more, which is the loss at beta = 0.
    torch.testing.assert_close(l2 - l1, recon)


def test_kl_annealing_schedule():
    from skorch.callbacks import Callback

    class Record(Callback):
        def initialize(self):
            self.seen = []
            return self

        def on_batch_end(self, net, training=None, **kw):
            if training:
                self.seen.append(net.module_.kl_weight)

    rec = Record()
    X, _ = mcgen.load_dataset("copula", n_samples=96)
    mcgen.MVAE(latent_dim=2, max_epochs=4, batch_size=32, kl_annealing=3, callbacks=[rec],
               encoder_kwargs=TINY, decoder_kwargs=TINY, random_state=0).fit(X)
    N, A = 3, 3
    expected = [min(1.0, (i + (e - 1) * N + 1) / (A * N)) if e < A else 1.0 for e in range(1, 5) for i in range(N)]
    assert rec.seen == pytest.approx(expected)
