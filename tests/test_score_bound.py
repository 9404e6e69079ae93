"""``score_samples`` is a lower bound on ``log p(X)``.

With affine decoders and fixed-scale Gaussian likelihoods, every model here is linear-Gaussian
given its latent (a Gaussian, or for the GMRF model a mixture of Gaussians), so ``log p(X)`` has a
closed form.  The tests compare it with the models' scores: below it for every model, close to it
for a large-K importance-weighted bound, and below it for MMVAE+ even where the auxiliary priors of
its cross-reconstructions would lift a score without their density term above it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mcgen
from mcgen import Components
from mcgen.models.base import ComponentSpec
from mcgen.models.gmrf import GMRFModule
from mcgen.models.mmvae import MMVAEModule
from mcgen.models.mmvaeplus import MMVAEPlusModule
from mcgen.plugins import get_architecture

torch.set_num_threads(1)

LINEAR = {"hidden": ()}
SMALL = {"hidden": (8,)}


# ----------------------------------------------------------------------------------------------
# Closed-form log p(X)
# ----------------------------------------------------------------------------------------------
def _affine(decoder, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A (F, width), b (F,))`` of an affine decoder, read off its values at 0 and the unit vectors."""
    with torch.no_grad():
        pts = torch.cat([torch.zeros(1, width), torch.eye(width)]).to(next(decoder.parameters()))
        out = decoder(pts).reshape(width + 1, -1)
    return (out[1:] - out[0]).mT, out[0]


def _noise_var(mod) -> torch.Tensor:
    return torch.cat([lik.scale.detach().reshape(-1) ** 2 for lik in mod.likelihoods])


def _latent_law(mod):
    """The latent prior as a Gaussian mixture ``(log_w (C,), mean (C, L), cov (C, L, L))`` and the
    affine map ``(A (F, L), b (F,))`` from the latent to all features."""
    dt = torch.float64
    M = mod.n_components
    if isinstance(mod, GMRFModule):
        log_w, mu, L = (t.detach().to(dt) for t in mod.prior_mixture())
        cov = L @ L.mT
        blocks = [_affine(mod.decoders[i], mod.block_sizes[i]) for i in range(M)]
        A = torch.block_diag(*[a for a, _ in blocks])
    elif isinstance(mod, MMVAEPlusModule):
        Dz, Dw = mod.Dz, mod.Dw
        Ltot = Dz + M * Dw  # latent = [z ; w_1 ; ... ; w_M], standard normal
        log_w, mu, cov = torch.zeros(1, dtype=dt), torch.zeros(1, Ltot, dtype=dt), torch.eye(Ltot, dtype=dt)[None]
        blocks = [_affine(mod.decoders[d], Dw + Dz) for d in range(M)]
        rows = []
        for d, (a, _) in enumerate(blocks):
            r = torch.zeros(a.shape[0], Ltot, dtype=a.dtype)
            r[:, :Dz] = a[:, Dw:]
            r[:, Dz + d * Dw: Dz + (d + 1) * Dw] = a[:, :Dw]
            rows.append(r)
        A = torch.cat(rows)
    else:  # one shared latent
        D = mod.D
        var = mod.prior_scale().detach() ** 2 if isinstance(mod, MMVAEModule) else torch.ones(D)
        log_w, mu, cov = torch.zeros(1, dtype=dt), torch.zeros(1, D, dtype=dt), torch.diag(var.to(dt))[None]
        blocks = [_affine(mod.decoders[d], D) for d in range(M)]
        A = torch.cat([a for a, _ in blocks])
    b = torch.cat([bb for _, bb in blocks])
    return log_w, mu, cov, A.to(dt), b.to(dt)


def log_marginal(mod, xs: list[torch.Tensor]) -> torch.Tensor:
    """Closed-form ``log p(X)`` per row for a module with affine decoders and Gaussian likelihoods."""
    log_w, mu, cov, A, b = _latent_law(mod)
    x = torch.cat([t.reshape(t.shape[0], -1) for t in xs], 1).to(torch.float64)
    mean = mu @ A.mT + b  # (C, F)
    S = A @ cov @ A.mT + torch.diag(_noise_var(mod).to(torch.float64))
    comp = torch.distributions.MultivariateNormal(mean, covariance_matrix=S)
    return torch.logsumexp(log_w.log_softmax(0) + comp.log_prob(x.unsqueeze(1)), -1)


def log_scale_sum(est) -> float:
    """``sum log scale`` of the fitted standardisation (density in standardised units minus this is
    the density in the data's units), computed here rather than by the estimator."""
    return float(sum(np.log(np.asarray(sc, dtype=np.float64)).sum()
                     for sc in est.standardize_scale_ if sc is not None))


def _mean_and_se(values: torch.Tensor, B: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean and standard error of ``values`` laid out as ``(R * B,)`` replicate blocks."""
    v = values.detach().reshape(-1, B).double()
    return v.mean(0), v.std(0) / math.sqrt(v.shape[0])


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------
def _specs(M, D, F):
    lik = {"name": "gaussian", "scale": 0.7, "learn_scale": False}
    mlp = get_architecture("mlp")
    return [ComponentSpec(shape=(F,), latent_dim=D, encoder=mlp.encoder_factory, decoder=mlp.decoder_factory,
                          encoder_kwargs=SMALL, decoder_kwargs=LINEAR, likelihood=lik) for _ in range(M)]


def _module(name, M=2, D=2, F=3):
    specs = _specs(M, D, F)
    if name == "gmrf":
        return GMRFModule(specs, prior_components=3, offdiag_hidden=8)
    if name == "mvae":
        return mcgen.models.mvae.MVAEModule(specs)
    if name == "mopoe":
        return mcgen.models.mopoe.MoPoEModule(specs)
    if name == "mmvae":
        mod = MMVAEModule(specs, posterior="gaussian", objective="elbo")
        with torch.no_grad():
            mod.prior_logits.copy_(torch.linspace(-0.5, 0.5, D))
        return mod
    return MMVAEPlusModule(specs, private_dim=2, posterior="gaussian")


@pytest.mark.parametrize("name", ["gmrf", "mvae", "mopoe", "mmvae", "mmvaeplus"])
def test_module_score_is_below_the_closed_form_log_likelihood(name):
    """Every model's score (``module.elbo``, what ``score_samples`` reports) is at most ``log p(X)``
    in expectation, here on random encoders: catches gross errors that lift a score above the
    evidence (a KL with the wrong sign: planted in MVAE, 2 to 14 nats above).  The sharper
    MMVAE+ case is the narrow-auxiliary-prior test below."""
    import mcgen.models.mopoe  # noqa: F401  (for _module)
    import mcgen.models.mvae  # noqa: F401

    torch.manual_seed(0)
    mod = _module(name).double().eval()
    B, R = 6, 400
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(B, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    with torch.no_grad():
        score = mod.elbo([x.repeat(R, 1) for x in xs], n_mc=1, generator=torch.Generator().manual_seed(2))
        mean, se = _mean_and_se(score, B)
        lp = log_marginal(mod, xs)
    assert torch.isfinite(mean).all()
    assert (mean <= lp + 3 * se).all(), (mean - lp) / se


def test_pooled_iwae_approaches_log_likelihood_for_large_k():
    """MMVAE's pooled IWAE bound with proposals near the posterior: K = 1 sits below
    ``log p(X)``, K = 2048 within 0.01 nats of it (checks ``log_marginal`` as well as the bound;
    catches a wrong log-mean-exp normaliser, which would offset the large-K value by log K)."""
    torch.manual_seed(0)
    M, D, F = 2, 2, 3
    mod = MMVAEModule(_specs(M, D, F), posterior="gaussian", objective="iwae", looser=False).double().eval()
    B, R = 4, 20
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(B, F, generator=g, dtype=torch.float64) for _ in range(M)]
    # Exact posterior of z (Gaussian), then each expert as its diagonal, widened and shifted.
    log_w, mu, cov, A, b = _latent_law(mod)
    Sn = torch.diag(1 / _noise_var(mod).double())
    P = torch.linalg.inv(cov[0]) + A.mT @ Sn @ A
    post_cov = torch.linalg.inv(P)
    x = torch.cat(xs, 1)
    post_mean = (x - b) @ Sn @ A @ post_cov
    sd = post_cov.diagonal().sqrt()
    loc = torch.stack([post_mean + 0.2 * sd, post_mean - 0.2 * sd])  # (M, B, D)
    scale = (1.4 * sd).expand(M, B, D)
    mod.posteriors = lambda xs, which=None: (loc.repeat(1, R, 1), scale.repeat(1, R, 1))
    rep = [t.repeat(R, 1) for t in xs]
    lp = log_marginal(mod, xs)
    with torch.no_grad():
        for K, gap_min, gap_max in ((1, 0.02, math.inf), (2048, -math.inf, 0.01)):
            mod.K = K
            torch.manual_seed(3)
            mean, se = _mean_and_se(-mod(rep), B)
            assert (mean <= lp + 3 * se + 1e-9).all(), (K, mean - lp, se)
            assert ((lp - mean) > gap_min).all() and ((lp - mean) < gap_max + 3 * se).all(), (K, lp - mean)


def test_mmvaeplus_score_stays_below_log_likelihood_with_narrow_auxiliary_priors():
    """Catches the MMVAE+ score without ``log p(w~) - log r_d(w~)`` for the cross-reconstruction
    draws ``w~ ~ r_d``: with exact posteriors and an auxiliary prior as narrow as the posterior
    where the data pin ``w_d`` down, that score exceeds ``log p(X)`` by about 1.8 nats
    (``KL(r_d || p(w)) - KL(r_d || p(w | x))``); the bound stays 0.66 nats below."""
    torch.manual_seed(0)
    M, Dz, Dw = 2, 2, 2
    mlp = get_architecture("mlp")
    specs = [ComponentSpec(shape=(3,), latent_dim=Dz, encoder=mlp.encoder_factory, decoder=mlp.decoder_factory,
                           encoder_kwargs=SMALL, decoder_kwargs=LINEAR,
                           likelihood={"name": "gaussian", "scale": 1.0, "learn_scale": False}) for _ in range(M)]
    mod = MMVAEPlusModule(specs, private_dim=Dw, posterior="gaussian").double().eval()
    a, c = 1.5, 10.0
    with torch.no_grad():
        for dec in mod.decoders:  # x_d = [a z ; c w_d[1]] from the input [w_d ; z]
            lin = dec.net[0]
            lin.weight.zero_()
            lin.bias.zero_()
            lin.weight[0, Dw], lin.weight[1, Dw + 1], lin.weight[2, 1] = a, a, c
        mod.aux_logits.copy_(torch.tensor([[math.log(19.0), 0.0]] * M))  # r_d scales (1.9, 0.1)
    B, R = 3, 2000
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(B, 3, generator=g, dtype=torch.float64) for _ in range(M)]
    for x in xs:
        x[:, 2] = 0.0  # where r_d (centred at 0) matches the posterior of w_d[1]
    # Exact posteriors: z from both components' first two features, w_d from x_d alone.
    prec_z = 1 + M * a ** 2
    mz = a * sum(x[:, :2] for x in xs) / prec_z
    lz = mz.expand(M, B, Dz)
    sz = torch.full((M, B, Dz), prec_z ** -0.5, dtype=torch.float64)
    lw = torch.zeros(M, B, Dw, dtype=torch.float64)
    sw = torch.tensor([1.0, (1 + c ** 2) ** -0.5], dtype=torch.float64).expand(M, B, Dw)
    mod.posteriors = lambda xs, which=None: tuple(t.repeat(1, R, 1) for t in (lz, sz, lw, sw))
    with torch.no_grad():
        score = mod.elbo([x.repeat(R, 1) for x in xs], n_mc=1, generator=torch.Generator().manual_seed(2))
        mean, se = _mean_and_se(score, B)
        lp = log_marginal(mod, xs)
    kl = 0.5 * (1.9 ** 2 - 1 - math.log(1.9 ** 2))  # KL(r_d || p(w | x)): the w_d[0] coordinate
    np.testing.assert_allclose((lp - mean).numpy(), kl, atol=4 * float(se.max()) + 1e-3)
    assert (mean <= lp).all()


# ----------------------------------------------------------------------------------------------
# Estimators: score_samples in the data's units
# ----------------------------------------------------------------------------------------------
def _linear_gaussian_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    arrays = [z @ rng.standard_normal((2, 2)) * s + m + 0.3 * rng.standard_normal((n, 2))
              for s, m in ((2.0, 0.0), (10.0, 5.0), (5.0, -3.0))]
    return Components(arrays)


@pytest.mark.parametrize("cls, extra", [
    (mcgen.GMRFMultiComponentVAE, {"latent_dim": 1, "prior_components": 2, "offdiag_hidden": 8}),
    (mcgen.MVAE, {"latent_dim": 2}),
    (mcgen.MoPoEVAE, {"latent_dim": 2}),
    (mcgen.MMVAE, {"latent_dim": 2, "posterior": "gaussian", "K": 2}),
    (mcgen.MMVAEPlus, {"latent_dim": 2, "posterior": "gaussian", "private_dim": 2}),
])
def test_score_samples_is_below_the_closed_form_log_likelihood(cls, extra):
    """``score_samples`` of a fitted estimator, in the data's units (standardisation's Jacobian
    included), is below the closed-form ``log p(X)`` of the fitted model in expectation (the mean
    excess over the rows within its noise): catches a Jacobian with the wrong sign (planted:
    17 nats too high; the learned likelihood scale keeps the gap of a 3-epoch fit below that)."""
    X = _linear_gaussian_data()
    est = cls(max_epochs=3, batch_size=50, random_state=0, encoder_kwargs=SMALL, decoder_kwargs=LINEAR,
              likelihood={"name": "gaussian", "scale": 0.5}, **extra).fit(X)
    mod = est.module_
    xs = [est._to_tensor(a, i) for i, a in enumerate(X.arrays)]
    with torch.no_grad():
        lp = log_marginal(mod.double(), [x.double() for x in xs]).numpy() - log_scale_sum(est)
    mod.float()
    excess = est.score_samples(X) - lp  # <= 0 in expectation, row by row
    assert excess.mean() < 3 * excess.std() / np.sqrt(len(excess))
