"""The GMRF Multi-Component VAE: module mathematics and estimator behaviour."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from mcgen import Components, GMRFMultiComponentVAE, load_dataset
from mcgen.models.gmrf import _SOFTPLUS_INV_ONE
from mcgen.training import TrainingDivergedError
from tests._factories import gmrf

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def copula():
    X, _ = load_dataset("copula", n_samples=300, random_state=0)
    return X


@pytest.fixture(scope="module")
def fitted(copula):
    return gmrf(prior_components=1).fit(copula)  # the single-Gaussian algebra


def test_prior_sample_moments_match_the_set_prior(fitted):
    module = fitted.module_
    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 8))
    cov = A @ A.T / 8 + 0.2 * np.eye(8)
    mean = rng.standard_normal(8)
    module.set_prior(torch.tensor(mean, dtype=torch.float32), torch.tensor(cov, dtype=torch.float32))
    np.testing.assert_allclose(module.prior_covariance().detach().numpy(), cov, rtol=1e-4, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    z = module.sample_latent(40_000, generator=g).detach().double().numpy()
    # Monte Carlo error of a mean is sd/sqrt(n) ~ 0.005 here; of a covariance entry ~ 0.01
    np.testing.assert_allclose(z.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.05)


def _strongly_correlated_prior(module, seed=0):
    """Give the module a single-Gaussian prior with strong correlations (so the conditional
    differs from the marginal by a lot) and return its float64 mean and covariance."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((8, 3))
    cov = A @ A.T + 0.05 * np.eye(8)
    mean = rng.standard_normal(8)
    module.set_prior(torch.tensor(mean, dtype=torch.float32), torch.tensor(cov, dtype=torch.float32))
    L = module.prior_cholesky()[0].detach().double().numpy()
    return module.prior_mean[0].detach().double().numpy(), L @ L.T


def test_conditional_latent_matches_numpy_and_any_subset_works(fitted, copula):
    """The prior conditional z_U | z_K against NumPy's closed form, mean and covariance, under a
    strongly correlated prior (rank 3 plus 0.05 I: the conditional variances are 3 to 60 times
    below the marginal ones).  Catches the covariance without the Schur complement term
    ``- S_UK S_KK^-1 S_KU`` and a wrong regression coefficient (both planted), which a weakly
    correlated fitted prior would hide inside the tolerance."""
    module = fitted.module_
    mu, S = _strongly_correlated_prior(module)
    known = [2, 0]
    zK = torch.randn(5, 4)
    log_resp, mean, L, unknown = module.conditional_latent(zK, known)
    K = np.r_[4, 5, 0, 1]
    U = np.r_[2, 3, 6, 7]
    ref = mu[U] + (zK.double().numpy() - mu[K]) @ np.linalg.solve(S[np.ix_(K, K)], S[np.ix_(U, K)].T)
    ref_cov = S[np.ix_(U, U)] - S[np.ix_(U, K)] @ np.linalg.solve(S[np.ix_(K, K)], S[np.ix_(K, U)])
    assert np.diag(ref_cov).max() < 0.5 * np.diag(S[np.ix_(U, U)]).min()  # the conditioning matters
    assert log_resp.shape == (5, 1) and torch.all(log_resp == 0)
    np.testing.assert_allclose(mean[:, 0].detach().numpy(), ref, rtol=1e-4, atol=1e-4)
    L = L[0].detach().double().numpy()
    np.testing.assert_allclose(L @ L.T, ref_cov, rtol=1e-4, atol=1e-5)
    assert unknown == [1, 3]
    for known in ([0], [3], [1, 2], [0, 1, 3]):
        out = fitted.predict_missing([copula.arrays[k] for k in known], known=known)
        assert [a.shape for a in out] == [(300, 2)] * 4


def test_jitter_in_set_prior_and_conditioning_is_counted(fitted):
    """``set_prior`` with a singular covariance, and conditioning on two known latents that the
    prior makes identical, each need jitter, and each event reaches ``n_jitter`` (the per-epoch
    history reads it).  Catches the counts of both paths being discarded."""
    module = fitted.module_
    before = int(module.n_jitter)
    module.set_prior(torch.zeros(8), torch.ones(8, 8))  # rank one
    assert int(module.n_jitter) == before + 1
    with torch.no_grad():
        # L = I except latent 1 = latent 0 (+ 1e-35 of its own): S_KK singular for component 0
        module.prior_mean.zero_()
        module.prior_offdiag.zero_()
        module.prior_diag_raw.fill_(_SOFTPLUS_INV_ONE)
        module.prior_diag_raw[0, 1] = -80.0
        module.prior_offdiag[0, 0] = 1.0  # (row 1, column 0) is the first strictly-lower entry
    before = int(module.n_jitter)
    module.conditional_latent(torch.zeros(3, 2), [0])
    assert int(module.n_jitter) == before + 1


def test_refit_prior_is_the_moment_match_of_the_aggregate_posterior(fitted, copula):
    module = fitted.module_
    xs = [fitted._to_tensor(a, i) for i, a in enumerate(copula.arrays)]
    with torch.no_grad():
        mu, S = module.posterior(xs)
        batches = [module.posterior([x[:100] for x in xs]), module.posterior([x[100:] for x in xs])]
        module.refit_prior(lambda: batches)  # one component: one M-step, the moment match
        m, cov = module.prior_mean[0].detach(), module.prior_covariance().detach()
    mu, S = mu.double().numpy(), S.double().numpy()
    ref_cov = S.mean(0) + np.cov(mu.T, bias=True)
    np.testing.assert_allclose(m.numpy(), mu.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cov.numpy(), ref_cov, rtol=1e-3, atol=1e-5)
    # and fit(refit_prior=True) leaves exactly that prior behind
    est = gmrf(refit_prior=True, prior_components=1).fit(copula)
    xs = [est._to_tensor(a, i) for i, a in enumerate(copula.arrays)]
    with torch.no_grad():
        mu, S = (t.double().numpy() for t in est.module_.posterior(xs))
    cov = S.mean(0) + np.cov(mu.T, bias=True)
    np.testing.assert_allclose(est.prior_covariance(), cov, rtol=1e-3, atol=1e-5)


def test_estimator_refit_of_offset_latents_is_the_float64_moment_match(copula):
    """The estimator's refit (the one ``fit(refit_prior=True)`` runs) on latents whose posterior
    means sit near 100 (E[mu mu^T] ~ 1e4 against a covariance ~ 1): the prior's mean and
    covariance equal the float64 moment match of the same float32 posteriors.  Catches
    accumulating E[mu mu^T] - m m^T in float32 (planted: covariance entries off by up to 300 %
    here) and a refit that leaves the mean behind."""
    est = gmrf(refit_prior=True, prior_components=1).fit(copula)
    module = est.module_
    with torch.no_grad():
        for head, d in zip(module.heads, module.block_sizes):
            head.bias[:d] += 100.0  # the first d outputs of a head are the posterior mean
    est._refit_prior(est._dataset(copula.arrays))
    xs = [est._to_tensor(a, i) for i, a in enumerate(copula.arrays)]
    with torch.no_grad():
        mu, S = (t.double().numpy() for t in module.posterior(xs))
    assert mu.mean() > 90
    ref_cov = S.mean(0) + np.cov(mu.T, bias=True)
    np.testing.assert_allclose(module.prior_mean[0].detach().double().numpy(), mu.mean(0), rtol=1e-6)
    np.testing.assert_allclose(est.prior_covariance(), ref_cov, rtol=1e-4, atol=1e-5)


def test_posterior_covariance_is_spd_even_with_huge_offdiagonal_weights(fitted, copula):
    module = fitted.module_
    with torch.no_grad():
        for p in module.offdiag_net.parameters():
            p.mul_(1e4)
        xs = [fitted._to_tensor(a, i) for i, a in enumerate(copula.arrays)]
        mu, S = module.posterior(xs)
    assert (torch.linalg.cholesky_ex(S.double()).info == 0).all()


def test_samples_reproducible_and_on_the_data_scale():
    """Reproducible samples in the data's units, per component and feature (each with its own
    scale, 1 to 3000, and offset).  Catches samples left in the standardised units, undone with
    the scale but not the mean or the other way round, or with another component's statistics
    (planted; the last passed the old check of one pooled mean, ``0 < mean < 1100``, on data
    whose components all shared one scale)."""
    X, _ = load_dataset("copula", n_samples=300, random_state=0)
    # every component and feature with its own scale and offset
    big = Components([a * s * np.array([1.0, 3.0]) + o for a, s, o in
                      zip(X.arrays, (1.0, 10.0, 100.0, 1000.0), (-5.0, 50.0, -500.0, 5000.0))])
    est = gmrf(max_epochs=3).fit(big)
    s1 = est.sample(500, random_state=3)
    s2 = est.sample(500, random_state=3)
    for a, b in zip(s1, s2):
        np.testing.assert_array_equal(a, b)
    # Standardisation is undone on output: every feature's sample mean within one data standard
    # deviation of the data's mean, and its spread of the data's order (3 epochs of a tiny model
    # give 0.08 to 0.3 of it).
    for a, ref in zip(s1, big.arrays):
        m, sd = ref.mean(0), ref.std(0)
        assert (np.abs(a.mean(0) - m) < sd).all(), (a.mean(0), m, sd)
        assert ((a.std(0) > 0.02 * sd) & (a.std(0) < 2 * sd)).all(), (a.std(0), sd)


def test_fit_is_reproducible_with_random_state(copula):
    a = gmrf().fit(copula)
    b = gmrf().fit(copula)
    np.testing.assert_array_equal(a.transform(copula), b.transform(copula))
    np.testing.assert_array_equal(a.history_[:, "train_loss"], b.history_[:, "train_loss"])
    c = gmrf(random_state=1).fit(copula)
    assert not np.array_equal(a.transform(copula), c.transform(copula))


def test_blockwise_standard_prior_and_unequal_latents(copula):
    est = gmrf(covariance="blockwise", latent_dim=[1, 2, 3, 2], prior="standard").fit(copula)
    assert est.transform(copula).shape == (300, 8)
    np.testing.assert_array_equal(est.prior_covariance(), np.eye(8))
    out = est.predict_missing([copula.arrays[1]], known=[1], n_samples=2)
    assert [a.shape for a in out] == [(300, 2, 2)] * 4


def test_training_learns_the_cross_component_dependence():
    """A real (small) training run: the prior must pick up the copula's correlation signs."""
    X, _ = load_dataset("copula", n_samples=2000, random_state=0)
    est = GMRFMultiComponentVAE(max_epochs=15, random_state=0, encoder_kwargs={"hidden": (64, 64)},
                                decoder_kwargs={"hidden": (64, 64)}).fit(X)
    from mcgen.metrics import dependency_error, spearman_matrix

    gen = est.sample(2000, random_state=0)
    err = float(dependency_error(gen, X))
    assert err < 0.15, err
    # coordinate 0 of components 0 and 1 is negatively correlated (-0.9 latent), coordinate 1 positive
    S = spearman_matrix(gen)
    assert S[0, 2] < -0.5 and S[1, 3] > 0.5
    # conditional generation carries information: completions correlate with the truth
    full = est.predict_missing([X.arrays[0]], known=[0], random_state=0)
    r = np.corrcoef(full[1][:, 1], X.arrays[1][:, 1])[0, 1]
    assert r > 0.5, r
    # the independent ablation (standard prior) cannot do that
    ind = GMRFMultiComponentVAE(max_epochs=3, prior="standard", random_state=0).fit(X)
    full = ind.predict_missing([X.arrays[0]], known=[0], random_state=0)
    assert abs(np.corrcoef(full[1][:, 1], X.arrays[1][:, 1])[0, 1]) < 0.15


def test_divergence_stops_with_clear_error(copula):
    bad = Components([a * 1e30 for a in copula.arrays])
    est = gmrf(standardize=False, lr=1.0)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch \d+.*smaller learning rate"):
        est.fit(bad)


def test_validation_fraction_early_stopping(copula):
    est = gmrf(max_epochs=50, validation_fraction=0.3, n_iter_no_change=2, lr=0.05).fit(copula)
    assert "valid_loss" in est.history_[-1]
    assert len(est.history_) < 50


def test_partial_fit_continues_training(copula):
    est = gmrf(max_epochs=1).fit(copula)
    w = est.module_.prior_mean.detach().clone()
    est.partial_fit(copula)
    assert len(est.history_) == 2
    est.partial_fit(copula, epochs=2)
    assert len(est.history_) == 4
    assert not torch.equal(w, est.module_.prior_mean.detach())
    fresh = clone(est).partial_fit(copula)
    assert len(fresh.history_) == 1 and fresh.max_epochs == est.max_epochs


def test_score_is_elbo_in_data_units(copula):
    est = gmrf(max_epochs=3).fit(copula)
    s = est.score_samples(copula)
    assert s.shape == (300,) and np.isfinite(s).all()
    np.testing.assert_array_equal(s, est.score_samples(copula))  # deterministic
    scaled = Components([a * 10.0 for a in copula.arrays])
    est2 = gmrf(max_epochs=3).fit(scaled)
    # identical model in standardised space: densities differ by the Jacobian, 8 columns * log 10
    np.testing.assert_allclose(est2.score(scaled), est.score(copula) - 8 * np.log(10.0), rtol=1e-4)


def test_device_parameter(copula):
    if torch.cuda.is_available():  # the GPU path: train, infer and come back as NumPy
        est = gmrf(device="cuda").fit(copula)
        assert next(est.module_.parameters()).is_cuda
        assert [a.shape for a in est.predict_missing([copula.arrays[0]], known=[0])] == [(300, 2)] * 4
        assert isinstance(est.sample(3, random_state=0)[0], np.ndarray)
    else:
        with pytest.raises(ValueError, match="device='cuda' was requested but torch reports no CUDA device"):
            gmrf(device="cuda").fit(copula)
    est = gmrf(device=torch.device("cpu")).fit(copula)
    assert est.transform(copula).shape == (300, 8)


def test_verbose_prints_an_epoch_table_and_quiet_prints_nothing(copula, capsys):
    gmrf(max_epochs=2).fit(copula)
    assert capsys.readouterr().out == ""
    gmrf(max_epochs=2, verbose=1, validation_fraction=0.2).fit(copula)
    out = capsys.readouterr().out
    assert "train_loss" in out and "valid_loss" in out and out.count("\n") >= 4
