"""The mixture-of-GMRFs prior, the conditional-generation term and the two inference modes:
exact algebra against NumPy/SciPy and statistical properties of the draws."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from mcgen import load_dataset
from mcgen.gaussian import kl_mvn
from mcgen.gaussian_mixture import (
    condition_mixture,
    condition_mixture_on_noisy,
    fit_mixture_to_gaussians,
    mixture_log_prob,
    mixture_moments,
    mixture_sample,
)
from tests._factories import gmrf

torch.set_num_threads(1)


def _random_mixture(C=3, D=5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(C))
    mu = rng.standard_normal((C, D)) * 2
    S = []
    for _ in range(C):
        A = rng.standard_normal((D, D))
        S.append(A @ A.T / D + 0.3 * np.eye(D))
    S = np.stack(S)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return w, mu, S, t(np.log(w)), t(mu), t(S), torch.linalg.cholesky(t(S))


def test_mixture_log_prob_matches_scipy():
    w, mu, S, log_w, mu_t, _, L = _random_mixture()
    z = np.random.default_rng(1).standard_normal((7, 5))
    ref = np.log(sum(w[c] * multivariate_normal(mu[c], S[c]).pdf(z) for c in range(3)))
    got = mixture_log_prob(torch.tensor(z), log_w, mu_t, L).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_mixture_sample_has_the_mixture_moments():
    _, _, _, log_w, mu, _, L = _random_mixture(C=2, D=3)
    g = torch.Generator().manual_seed(0)
    z = mixture_sample(200_000, log_w, mu, L, generator=g).numpy()
    m, cov = mixture_moments(log_w, mu, L)
    # sd of the mixture is ~2-3 per coordinate: MC error of the mean ~0.007, of a covariance ~0.03
    np.testing.assert_allclose(z.mean(0), m.numpy(), atol=0.03)
    np.testing.assert_allclose(np.cov(z.T), cov.numpy(), atol=0.1)


def test_condition_mixture_matches_bayes_rule():
    w, mu, S, log_w, mu_t, S_t, _ = _random_mixture(C=3, D=5)
    K, U = np.r_[3, 0], np.r_[1, 2, 4]
    zK = np.random.default_rng(2).standard_normal((4, 2))
    log_resp, mean, L = condition_mixture(log_w, mu_t, S_t, torch.tensor(K), torch.tensor(U), torch.tensor(zK))
    lik = np.stack([w[c] * multivariate_normal(mu[c][K], S[c][np.ix_(K, K)]).pdf(zK) for c in range(3)], -1)
    np.testing.assert_allclose(log_resp.exp().numpy(), lik / lik.sum(-1, keepdims=True), rtol=1e-9)
    for c in range(3):
        G = np.linalg.solve(S[c][np.ix_(K, K)], S[c][np.ix_(K, U)])
        np.testing.assert_allclose(mean[:, c].numpy(), mu[c][U] + (zK - mu[c][K]) @ G, rtol=1e-9)
        cov = S[c][np.ix_(U, U)] - S[c][np.ix_(U, K)] @ G
        np.testing.assert_allclose((L[c] @ L[c].mT).numpy(), cov, rtol=1e-9, atol=1e-12)


def test_condition_on_noisy_observations_is_the_joint_gaussian_update():
    w, mu, S, log_w, mu_t, S_t, _ = _random_mixture(C=2, D=4, seed=3)
    K = np.r_[1, 3]
    rng = np.random.default_rng(4)
    y = rng.standard_normal((3, 2))
    nv = rng.uniform(0.1, 2.0, (3, 2))
    log_resp, mean, L = condition_mixture_on_noisy(log_w, mu_t, S_t, torch.tensor(K), torch.tensor(y),
                                                   torch.tensor(nv))
    for n in range(3):
        lik = np.array([w[c] * multivariate_normal(mu[c][K], S[c][np.ix_(K, K)] + np.diag(nv[n])).pdf(y[n])
                        for c in range(2)])
        np.testing.assert_allclose(log_resp[n].exp().numpy(), lik / lik.sum(), rtol=1e-9)
        for c in range(2):
            # posterior of z_K under prior N(m, P) and likelihood N(y; z_K, V): precision form
            P, V = S[c][np.ix_(K, K)], np.diag(nv[n])
            post_cov = np.linalg.inv(np.linalg.inv(P) + np.linalg.inv(V))
            post_mean = post_cov @ (np.linalg.solve(P, mu[c][K]) + np.linalg.solve(V, y[n]))
            np.testing.assert_allclose(mean[n, c].numpy(), post_mean, rtol=1e-8)
            np.testing.assert_allclose((L[n, c] @ L[n, c].mT).numpy(), post_cov, rtol=1e-8, atol=1e-12)


def _gaussian_batches(mus, Ss, size=50):
    return lambda: [(mus[s:s + size], Ss[s:s + size]) for s in range(0, len(mus), size)]


def test_em_with_one_component_is_the_moment_match():
    rng = np.random.default_rng(5)
    mus = torch.tensor(rng.standard_normal((120, 3)) + 30.0)  # offset latents: float64 keeps them exact
    A = torch.tensor(rng.standard_normal((120, 3, 3)))
    Ss = A @ A.mT / 3 + 0.1 * torch.eye(3, dtype=torch.float64)
    L0 = torch.eye(3, dtype=torch.float64)[None]
    _, m, L, _ = fit_mixture_to_gaussians(_gaussian_batches(mus, Ss), torch.zeros(1, dtype=torch.float64),
                                          torch.zeros(1, 3, dtype=torch.float64), L0, max_iter=1, reg=0.0)
    ref = Ss.mean(0).numpy() + np.cov(mus.numpy().T, bias=True)
    np.testing.assert_allclose(m[0].numpy(), mus.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose((L[0] @ L[0].T).numpy(), ref, rtol=1e-10)


def test_em_bound_increases_and_separated_clusters_are_recovered():
    rng = np.random.default_rng(6)
    centres = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, -3.0]])
    weights = np.array([0.5, 0.3, 0.2])
    lab = rng.choice(3, size=3000, p=weights)
    mus = torch.tensor(centres[lab] + 0.5 * rng.standard_normal((3000, 2)))
    Ss = torch.eye(2, dtype=torch.float64).expand(3000, 2, 2) * 0.25
    start = torch.tensor(rng.standard_normal((3, 2)))
    L0 = torch.eye(2, dtype=torch.float64).expand(3, 2, 2) * 4
    log_w, m, L, bounds = fit_mixture_to_gaussians(_gaussian_batches(mus, Ss, 500),
                                                   torch.zeros(3, dtype=torch.float64), start, L0)
    assert all(b2 >= b1 - 1e-9 for b1, b2 in zip(bounds, bounds[1:]))
    order = np.argsort(m[:, 0].numpy())  # clusters sorted by their first coordinate
    np.testing.assert_allclose(m.numpy()[order], centres, atol=0.1)
    np.testing.assert_allclose(log_w.exp().numpy()[order], weights, atol=0.03)
    # each cluster's covariance: spread of the means (0.25) plus the posterior's own (0.25)
    covs = (L @ L.mT).numpy()[order]
    np.testing.assert_allclose(covs, np.broadcast_to(0.5 * np.eye(2), (3, 2, 2)), atol=0.06)


def test_em_parks_a_component_that_explains_no_row():
    rng = np.random.default_rng(8)
    mus = torch.tensor(rng.standard_normal((500, 3)))
    Ss = torch.eye(3, dtype=torch.float64).expand(500, 3, 3) * 0.1
    start = torch.tensor([[0.0, 0.0, 0.0], [1e3, 1e3, 1e3]], dtype=torch.float64)  # the second sees nothing
    L0 = torch.eye(3, dtype=torch.float64).expand(2, 3, 3).clone()
    log_w, m, L, _ = fit_mixture_to_gaussians(_gaussian_batches(mus, Ss), torch.zeros(2, dtype=torch.float64),
                                              start, L0, max_iter=5)
    assert log_w.exp()[1] < 1e-6 and torch.isfinite(L).all()
    # parked at the aggregate's own moments: a valid, harmless component
    np.testing.assert_allclose(m[1].numpy(), mus.mean(0).numpy(), atol=1e-9)
    assert (torch.linalg.eigvalsh(L[1] @ L[1].T) > 0.05).all()


@pytest.fixture(scope="module")
def copula():
    X, _ = load_dataset("copula", n_samples=300, random_state=0)
    return X


@pytest.fixture(scope="module")
def mixture_fit(copula):
    return gmrf(prior_components=3, cond_weight=1.0).fit(copula)


def _set_known_mixture(module, seed=0):
    D = module.latent_size
    w, mu, S, log_w, mu_t, S_t, _ = _random_mixture(C=3, D=D, seed=seed)
    module.set_prior(mu_t.float(), S_t.float(), log_w.float())
    return w, mu, S


def _mixture_conditional_moments(w, mu, S, K, U, zK):
    """Mean and covariance of a Gaussian mixture's conditional, by NumPy (law of total covariance)."""
    lik = np.array([w[c] * multivariate_normal(mu[c][K], S[c][np.ix_(K, K)]).pdf(zK) for c in range(len(w))])
    r = lik / lik.sum()
    means, covs = [], []
    for c in range(len(w)):
        G = np.linalg.solve(S[c][np.ix_(K, K)], S[c][np.ix_(K, U)])
        means.append(mu[c][U] + (zK - mu[c][K]) @ G)
        covs.append(S[c][np.ix_(U, U)] - S[c][np.ix_(U, K)] @ G)
    m = sum(r[c] * means[c] for c in range(len(w)))
    cov = sum(r[c] * (covs[c] + np.outer(means[c] - m, means[c] - m)) for c in range(len(w)))
    return m, cov


def test_completion_draws_follow_the_mixture_conditional(mixture_fit):
    module = mixture_fit.module_
    with torch.no_grad():
        w, mu, S = _set_known_mixture(module)
        known = [1, 3]  # latent coordinates 2, 3, 6, 7
        K, U = np.r_[2, 3, 6, 7], np.r_[0, 1, 4, 5]
        zK = np.array([0.5, -1.0, 1.5, 0.2])
        mus_K = [torch.tensor(zK[:2], dtype=torch.float32)[None], torch.tensor(zK[2:], dtype=torch.float32)[None]]
        vs_K = [torch.full((1, 2), 1e-10), torch.full((1, 2), 1e-10)]  # z_K = mu_K exactly
        g = torch.Generator().manual_seed(0)
        z_U, unknown = module._complete_latent(mus_K, vs_K, known, 100_000, g)
    assert unknown == [0, 2]
    z = z_U[:, 0].double().numpy()
    m, cov = _mixture_conditional_moments(w, mu, S, K, U, zK)
    np.testing.assert_allclose(z.mean(0), m, atol=0.03)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.06)


def test_potential_inference_limits(mixture_fit):
    """With uninformative potentials the completion is the prior's marginal; with exact ones it is
    the prior's conditional at the encoders' means."""
    module = mixture_fit.module_  # the same trained module, in the other inference mode
    module.inference = "potential"
    try:
        with torch.no_grad():
            w, mu, S = _set_known_mixture(module, seed=1)
            known = [0, 2]
            K, U = np.r_[0, 1, 4, 5], np.r_[2, 3, 6, 7]
            y = np.array([1.0, -0.5, 0.3, 2.0])
            mus_K = [torch.tensor(y[:2], dtype=torch.float32)[None], torch.tensor(y[2:], dtype=torch.float32)[None]]
            g = torch.Generator().manual_seed(1)
            z_far, _ = module._complete_latent(mus_K, [torch.full((1, 2), 1e8)] * 2, known, 100_000, g)
            z_exact, _ = module._complete_latent(mus_K, [torch.full((1, 2), 1e-8)] * 2, known, 100_000, g)
    finally:
        module.inference = "sample"
    marg_mean = (w[:, None] * mu[:, U]).sum(0)
    marg_cov = sum(w[c] * (S[c][np.ix_(U, U)] + np.outer(mu[c][U] - marg_mean, mu[c][U] - marg_mean))
                   for c in range(3))
    z = z_far[:, 0].double().numpy()
    np.testing.assert_allclose(z.mean(0), marg_mean, atol=0.04)
    np.testing.assert_allclose(np.cov(z.T), marg_cov, atol=0.15)
    m, cov = _mixture_conditional_moments(w, mu, S, K, U, y)
    z = z_exact[:, 0].double().numpy()
    np.testing.assert_allclose(z.mean(0), m, atol=0.03)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.06)


def test_monte_carlo_kl_is_unbiased_for_a_degenerate_mixture(mixture_fit):
    """Three identical components are one Gaussian: the MC KL must average to the closed form."""
    module = mixture_fit.module_
    D = module.latent_size
    rng = np.random.default_rng(7)
    A = rng.standard_normal((D, D))
    P = torch.tensor(A @ A.T / D + 0.5 * np.eye(D), dtype=torch.float32)
    m = torch.tensor(rng.standard_normal(D), dtype=torch.float32)
    with torch.no_grad():
        module.set_prior(m.expand(3, D), P.expand(3, D, D), torch.log(torch.tensor([0.2, 0.3, 0.5])))
        B = 4
        Aq = torch.tensor(rng.standard_normal((B, D, D)), dtype=torch.float32)
        Lq = torch.linalg.cholesky(Aq @ Aq.mT / D + 0.2 * torch.eye(D))
        mu_q = torch.tensor(rng.standard_normal((B, D)), dtype=torch.float32)
        g = torch.Generator().manual_seed(0)
        u = torch.randn((20_000, B, D), generator=g)
        z = mu_q + (Lq @ u.unsqueeze(-1)).squeeze(-1)
        mc = module._kl(mu_q, Lq, z)
        exact = kl_mvn(mu_q, Lq, m, torch.linalg.cholesky(P))
    np.testing.assert_allclose(mc.numpy(), exact.numpy(), rtol=0.02, atol=0.05)


def test_conditional_term_uses_only_the_known_encoders(mixture_fit, copula):
    """A conditional term that peeked at the unknown components' encodings would turn NaN here."""
    module = mixture_fit.module_
    xs = [mixture_fit._to_tensor(a[:32], i) for i, a in enumerate(copula.arrays)]
    mus, vs, _ = module.encode_components(xs)
    torch.manual_seed(0)
    M = module.n_components
    k = int(torch.randint(1, M, ()))
    known = sorted(torch.randperm(M)[:k].tolist())
    mus_nan = [m if i in known else torch.full_like(m, float("nan")) for i, m in enumerate(mus)]
    vs_nan = [v if i in known else torch.full_like(v, float("nan")) for i, v in enumerate(vs)]
    torch.manual_seed(0)
    term = module._conditional_term(xs, mus_nan, vs_nan)
    assert term.shape == (32,) and torch.isfinite(term).all()
    # and it reaches the unknown components' decoders through the loss
    term.sum().backward()
    unknown = [i for i in range(M) if i not in known]
    grads = [p.grad for i in unknown for p in module.decoders[i].parameters()]
    assert any(gr is not None and gr.abs().sum() > 0 for gr in grads)
    module.zero_grad()


def test_mixture_estimator_end_to_end(mixture_fit, copula):
    est = mixture_fit
    assert est.module_.prior_mean.shape == (3, 8)
    w = est.module_.prior_logits.softmax(0).detach().numpy()
    assert np.isclose(w.sum(), 1.0) and (w > 0).all()
    parts = est.sample(50, random_state=0)
    assert [p.shape for p in parts] == [(50, 2)] * 4
    np.testing.assert_array_equal(parts[0], est.sample(50, random_state=0)[0])
    out = est.predict_missing([copula.arrays[0]], known=[0], n_samples=4, random_state=0)
    assert out[1].shape == (300, 4, 2) and np.isfinite(out[1]).all()
    s = est.score_samples(copula)
    assert np.isfinite(s).all()
    assert est.prior_covariance().shape == (8, 8)


@pytest.mark.parametrize("bad", [{"prior_components": 0}, {"prior_components": 2.5}, {"cond_weight": -1.0},
                                 {"inference": "mean"}, {"latent_dim": "big"}])
def test_bad_new_parameters_raise_before_training(copula, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        gmrf(**bad).fit(copula)


def test_auto_latent_and_standard_prior_with_the_mixture_default(copula):
    from mcgen import Components

    X = Components([copula.arrays[0], np.hstack([copula.arrays[1]] * 6), copula.arrays[2][:, :1]])
    est = gmrf(latent_dim="auto", prior="standard", max_epochs=1).fit(X)
    assert est.latent_dims_ == [2, 8, 1]  # at most 8, never more than the features
    assert est.module_.prior_mean.shape == (1, 11)  # N(0, I) has one component
    np.testing.assert_array_equal(est.prior_covariance(), np.eye(11))


def test_old_single_gaussian_state_dict_loads(copula):
    est = gmrf(max_epochs=1, prior_components=1).fit(copula)
    state = {k: v.clone() for k, v in est.module_.state_dict().items()}
    # the layout written before the mixture prior existed
    state["prior_mean"] = state["prior_mean"][0]
    state["prior_diag_raw"] = state["prior_diag_raw"][0]
    state["prior_offdiag"] = state["prior_offdiag"][0]
    del state["prior_logits"]
    fresh = gmrf(max_epochs=1, prior_components=1).fit(copula)
    fresh.module_.load_state_dict(state)
    np.testing.assert_array_equal(fresh.prior_covariance(), est.prior_covariance())


def test_straight_through_draw_is_an_exact_draw_and_trains_the_responsibilities():
    from mcgen.models.gmrf import GMRFModule

    torch.manual_seed(0)
    r = torch.tensor([0.2, 0.5, 0.3])
    log_resp = torch.log(r).expand(200_000, 3).clone().requires_grad_(True)
    means = torch.tensor([[-3.0, 0.0], [0.0, 2.0], [4.0, -1.0]])
    L_c = torch.stack([torch.eye(2) * 0.5, torch.tensor([[1.0, 0.0], [0.5, 0.3]]), torch.eye(2)])
    u = torch.randn(200_000, 2)
    z = GMRFModule._straight_through_draw(log_resp, means.expand(200_000, 3, 2), L_c, u)
    m = (r[:, None] * means).sum(0)
    S = L_c @ L_c.mT
    cov = sum(r[c] * (S[c] + torch.outer(means[c] - m, means[c] - m)) for c in range(3))
    zn = z.detach().double().numpy()
    np.testing.assert_allclose(zn.mean(0), m.numpy(), atol=0.03)
    np.testing.assert_allclose(np.cov(zn.T), cov.numpy(), atol=0.08)
    # the first coordinate separates the components: pushing it up must raise the weight of
    # component 2 (mean +4) and lower that of component 0 (mean -3)
    z[:, 0].mean().backward()
    g = log_resp.grad.sum(0)
    assert g[2] > 0 > g[0]


def test_em_regulariser_is_relative_to_each_variance():
    """Latent variances of 1e3 beside one of 1e-5 (a coordinate the data pin down): the refit
    prior keeps every variance to 1e-5 relative.  Catches a regulariser scaled by the mean
    diagonal (reg 1e-6 x 667 turned the 1e-5 variance into 6.8e-4)."""
    rng = np.random.default_rng(9)
    sd = np.array([30.0, 30.0, 1e-3])
    mus = torch.tensor(rng.standard_normal((400, 3)) * sd)
    Ss = torch.tensor(np.diag(sd ** 2 * 0.01)).expand(400, 3, 3)
    L0 = torch.eye(3, dtype=torch.float64)[None]
    _, m, L, _ = fit_mixture_to_gaussians(_gaussian_batches(mus, Ss), torch.zeros(1, dtype=torch.float64),
                                          torch.zeros(1, 3, dtype=torch.float64), L0, max_iter=1)
    ref = Ss.mean(0).numpy() + np.cov(mus.numpy().T, bias=True)
    np.testing.assert_allclose((L[0] @ L[0].T).numpy().diagonal(), ref.diagonal(), rtol=1e-5)


def test_mixture_moments_of_float32_offset_components_are_accurate():
    """Components with means near 1e5 and unit spread, in float32: the moments are accumulated in
    float64 (the covariance within 1e-5 of a float64 reference from the same rounded inputs).
    Catches float32 accumulation (planted: off by 4e-4 here; the centring keeps the error second
    order in the mean's rounding, so it shows at large offsets only)."""
    rng = np.random.default_rng(10)
    C, D = 4, 3
    mu = (1e5 + rng.standard_normal((C, D))).astype(np.float32)
    A = rng.standard_normal((C, D, D)).astype(np.float32)
    L = np.linalg.cholesky(A @ A.transpose(0, 2, 1) / D + 0.5 * np.eye(D)).astype(np.float32)
    w = rng.dirichlet(np.ones(C))
    m, cov = mixture_moments(torch.tensor(np.log(w), dtype=torch.float32), torch.tensor(mu), torch.tensor(L))
    assert cov.dtype == torch.float32
    mu64, L64 = mu.astype(np.float64), L.astype(np.float64)
    w64 = np.exp(np.log(w).astype(np.float32).astype(np.float64))
    w64 = w64 / w64.sum()
    m_ref = (w64[:, None] * mu64).sum(0)
    d = mu64 - m_ref
    ref = (w64[:, None, None] * (L64 @ L64.transpose(0, 2, 1) + d[:, :, None] * d[:, None, :])).sum(0)
    np.testing.assert_allclose(cov.double().numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.double().numpy(), m_ref, rtol=1e-7)


def test_condition_on_noisy_float32_inputs_is_computed_in_float64():
    """The unary-potential update of float32 inputs with offset means (~100) and tiny noise
    variances agrees with a float64 reference from the same rounded inputs.  Catches the update
    done in float32 (planted: the posterior covariance off by ~1e-3 of itself)."""
    rng = np.random.default_rng(11)
    C, D = 2, 4
    mu = (100.0 * rng.standard_normal((C, D))).astype(np.float32)
    A = rng.standard_normal((C, D, D))
    S = (A @ A.transpose(0, 2, 1) + 0.1 * np.eye(D)).astype(np.float32)
    K = np.r_[0, 2, 3]
    y = (mu[0, K] + rng.standard_normal((5, 3))).astype(np.float32)
    nv = rng.uniform(1e-4, 1e-3, (5, 3)).astype(np.float32)
    log_w = torch.zeros(C)
    log_resp, mean, L = condition_mixture_on_noisy(log_w, torch.tensor(mu), torch.tensor(S), torch.tensor(K),
                                                   torch.tensor(y), torch.tensor(nv))
    assert L.dtype == torch.float32
    got_cov = (L.double() @ L.double().mT).numpy()
    for n in range(5):
        for c in range(C):
            P, V = S[c][np.ix_(K, K)].astype(np.float64), np.diag(nv[n].astype(np.float64))
            post_cov = np.linalg.inv(np.linalg.inv(P) + np.linalg.inv(V))
            post_mean = post_cov @ (np.linalg.solve(P, mu[c][K].astype(np.float64)) + np.linalg.solve(V, y[n]))
            np.testing.assert_allclose(got_cov[n, c], post_cov, rtol=2e-5, atol=1e-12)
            np.testing.assert_allclose(mean[n, c].double().numpy(), post_mean, rtol=1e-6)
