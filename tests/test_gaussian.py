"""Exact algebra of mcgen.gaussian against NumPy/SciPy and torch.distributions."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mcgen.gaussian import (
    assemble_blockwise,
    assemble_elementwise,
    assemble_elementwise_entries,
    cholesky_with_jitter,
    condition_gaussian,
    count_jitter,
    kl_mvn,
    mvn_log_prob,
    product_of_experts,
)


def _offdiag(B, sizes, scale, rng):
    """Random symmetric W with zero diagonal blocks."""
    D = sum(sizes)
    W = rng.standard_normal((B, D, D)) * scale
    W = W + W.transpose(0, 2, 1)
    o = np.cumsum([0, *sizes])
    for i in range(len(sizes)):
        W[:, o[i]:o[i + 1], o[i]:o[i + 1]] = 0
    return torch.tensor(W)


def _assert_spd(S):
    S = S.double()
    assert torch.allclose(S, S.mT)
    eig = torch.linalg.eigvalsh(S)
    assert (eig > 0).all(), eig.min()
    assert (torch.linalg.cholesky_ex(S).info == 0).all()


@pytest.mark.parametrize("M,d", [(2, 1), (4, 2), (8, 8), (3, 5)])
@pytest.mark.parametrize("w_scale,v_scale", [(1.0, 1.0), (1e6, 1e-8), (1e3, 1e-4), (1e-6, 1e3)])
def test_both_constructions_spd_on_adversarial_inputs(M, d, w_scale, v_scale):
    rng = np.random.default_rng(M * 100 + d)
    sizes = [d] * M
    W = _offdiag(16, sizes, w_scale, rng)
    v = torch.tensor(rng.uniform(0.5, 2.0, (16, M * d)) * v_scale)
    v[0, 0] = v_scale * 1e-4  # one extremely small variance
    for S in (assemble_elementwise(v, W, 0.9, 1e-6), assemble_blockwise(v, W, sizes, 0.9, 1e-6)):
        _assert_spd(S)
        # Diagonal blocks are exactly diag(v): each Sigma_ii depends on encoder i alone.
        assert torch.equal(S.diagonal(dim1=-2, dim2=-1), v)


@settings(max_examples=40, deadline=None)
@given(M=st.integers(2, 6), d=st.integers(1, 4), log_w=st.floats(-6, 8), log_v=st.floats(-8, 4),
       seed=st.integers(0, 10_000))
def test_elementwise_spd_property(M, d, log_w, log_v, seed):
    rng = np.random.default_rng(seed)
    sizes = [d] * M
    W = _offdiag(4, sizes, 10**log_w, rng)
    v = torch.tensor(rng.uniform(0.1, 1.0, (4, M * d)) * 10**log_v)
    _assert_spd(assemble_elementwise(v, W, 0.9, 1e-6))
    _assert_spd(assemble_blockwise(v, W, sizes, 0.9, 1e-6))


def test_elementwise_matches_numpy_formula():
    rng = np.random.default_rng(0)
    sizes = [2, 3, 1]
    W = _offdiag(3, sizes, 2.0, rng)
    v = torch.tensor(rng.uniform(0.1, 1.0, (3, 6)))
    S = assemble_elementwise(v, W, 0.8, 1e-3).numpy()
    Wn, vn = W.numpy(), v.numpy()
    for b in range(3):
        s = np.abs(Wn[b]).sum(1) + 1e-3
        a = np.minimum(1, 0.8 * vn[b] / s)
        ref = np.diag(vn[b]) + np.sqrt(np.outer(a, a)) * Wn[b]
        np.testing.assert_allclose(S[b], ref, rtol=1e-12)


def test_elementwise_from_entries_is_the_dense_construction_and_its_gradients():
    """The GMRF builds its covariance from the global encoder's entries without forming W; it
    must be the NumPy formula's matrix, and give the same gradients for v and the entries as the
    dense route, for a W that only some pairs reach (a graph) and for entries on shrunk and
    unshrunk rows.  Fails if a row sum misses the entries where its coordinate is the column, if
    the lower triangle is not written, or if the diagonal lands off the diagonal."""
    rng = np.random.default_rng(2)
    B, D = 3, 6
    pairs = [(0, 2), (0, 5), (1, 2), (1, 3), (3, 4), (2, 5)]  # i < j, not every pair
    rows = torch.tensor([i for i, _ in pairs])
    cols = torch.tensor([j for _, j in pairs])
    off = torch.tensor(rng.standard_normal((B, len(pairs))) * 2.0, requires_grad=True)
    v = torch.tensor(rng.uniform(0.1, 1.0, (B, D)), requires_grad=True)
    S = assemble_elementwise_entries(v, off, rows, cols, 0.8, 1e-3)
    W = torch.zeros(B, D, D, dtype=torch.float64)
    W[:, rows, cols] = off
    W = W + W.mT
    dense = assemble_elementwise(v, W, 0.8, 1e-3)
    Wn, vn = W.detach().numpy(), v.detach().numpy()
    for b in range(B):
        a = np.minimum(1, 0.8 * vn[b] / (np.abs(Wn[b]).sum(1) + 1e-3))
        np.testing.assert_allclose(S[b].detach().numpy(), np.diag(vn[b]) + np.sqrt(np.outer(a, a)) * Wn[b],
                                   rtol=1e-12)
    g = torch.tensor(rng.standard_normal((B, D, D)))
    for x, y in zip(torch.autograd.grad((S * g).sum(), [v, off]), torch.autograd.grad((dense * g).sum(), [v, off])):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_blockwise_matches_numpy_formula_with_unequal_blocks():
    rng = np.random.default_rng(1)
    sizes = [2, 3, 1]
    o = np.cumsum([0, *sizes])
    W = _offdiag(2, sizes, 3.0, rng)
    v = torch.tensor(rng.uniform(0.1, 1.0, (2, 6)))
    S = assemble_blockwise(v, W, sizes, 0.7, 1e-3).numpy()
    Wn, vn = W.numpy(), v.numpy()
    for b in range(2):
        s = np.array([sum(np.linalg.norm(Wn[b, o[i]:o[i + 1], o[j]:o[j + 1]], 2) for j in range(3) if j != i)
                      for i in range(3)]) + 1e-3
        lam = np.array([vn[b, o[i]:o[i + 1]].min() for i in range(3)])
        a = np.minimum(1, 0.7 * lam / s)
        r = np.repeat(np.sqrt(a), sizes)
        ref = np.diag(vn[b]) + np.outer(r, r) * Wn[b]
        np.testing.assert_allclose(S[b], ref, rtol=1e-10)
    _assert_spd(torch.tensor(S))


def test_no_shrinkage_when_already_dominant():
    W = _offdiag(1, [1, 1], 1e-3, np.random.default_rng(0))
    v = torch.ones(1, 2, dtype=torch.float64)
    S = assemble_elementwise(v, W, 0.9, 1e-6)
    torch.testing.assert_close(S, torch.diag_embed(v) + W)


def _random_spd(D, rng, batch=()):
    A = rng.standard_normal((*batch, D, D))
    return torch.tensor(A @ np.swapaxes(A, -1, -2) + 0.5 * np.eye(D))


def test_kl_equals_torch_distributions():
    rng = np.random.default_rng(0)
    D, B = 6, 5
    Sq, Sp = _random_spd(D, rng, (B,)), _random_spd(D, rng)
    mq, mp = torch.tensor(rng.standard_normal((B, D))), torch.tensor(rng.standard_normal(D))
    ours = kl_mvn(mq, torch.linalg.cholesky(Sq), mp, torch.linalg.cholesky(Sp))
    ref = torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(mq, Sq),
                                            torch.distributions.MultivariateNormal(mp, Sp))
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9)
    # KL of a distribution with itself is zero
    torch.testing.assert_close(kl_mvn(mp[None], torch.linalg.cholesky(Sp)[None], mp, torch.linalg.cholesky(Sp)),
                               torch.zeros(1, dtype=torch.float64), atol=1e-10, rtol=0)


def test_kl_with_one_prior_factor_equals_the_batched_factor_path_and_its_gradients():
    """A prior factor (D, D) shared by the batch takes one triangular solve against all the
    right-hand sides side by side; a batched factor (B, D, D) takes the batched solves.  Both
    must give torch.distributions' KL and the same gradients for every input, the prior's
    included.  Fails if the side-by-side layout mixes up rows and columns of different rows,
    drops the Mahalanobis column, or sums over the wrong axis."""
    rng = np.random.default_rng(5)
    D, B = 5, 7
    Sq = _random_spd(D, rng, (B,)).requires_grad_()
    Sp = _random_spd(D, rng).requires_grad_()
    mq = torch.tensor(rng.standard_normal((B, D)), requires_grad=True)
    mp = torch.tensor(rng.standard_normal(D), requires_grad=True)
    inputs = [mq, Sq, mp, Sp]
    shared = kl_mvn(mq, torch.linalg.cholesky(Sq), mp, torch.linalg.cholesky(Sp))
    batched = kl_mvn(mq, torch.linalg.cholesky(Sq), mp.expand(B, D), torch.linalg.cholesky(Sp).expand(B, D, D))
    ref = torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(mq, Sq),
                                            torch.distributions.MultivariateNormal(mp, Sp))
    torch.testing.assert_close(shared, ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(batched, ref, rtol=1e-9, atol=1e-9)
    w = torch.tensor(rng.standard_normal(B))  # a weighted sum: each row's gradient must be its own
    for a, b in zip(torch.autograd.grad((shared * w).sum(), inputs), torch.autograd.grad((ref * w).sum(), inputs)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_kl_gradients_are_finite_and_match_autograd_reference():
    rng = np.random.default_rng(3)
    D = 4
    Sq = _random_spd(D, rng, (2,)).requires_grad_()
    mq = torch.tensor(rng.standard_normal((2, D)), requires_grad=True)
    Sp = _random_spd(D, rng)
    mp = torch.zeros(D, dtype=torch.float64)
    ours = kl_mvn(mq, torch.linalg.cholesky(Sq), mp, torch.linalg.cholesky(Sp)).sum()
    g1 = torch.autograd.grad(ours, [mq, Sq])
    ref = torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(mq, Sq),
                                            torch.distributions.MultivariateNormal(mp, Sp)).sum()
    g2 = torch.autograd.grad(ref, [mq, Sq])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_conditioning_equals_numpy_closed_form():
    rng = np.random.default_rng(0)
    D = 7
    S = _random_spd(D, rng)
    mu = torch.tensor(rng.standard_normal(D))
    K = torch.tensor([5, 0, 3])
    U = torch.tensor([1, 2, 4, 6])
    zK = torch.tensor(rng.standard_normal((3, 2, 3)))  # any batch shape
    mean, L = condition_gaussian(mu, S, K, U, zK)
    Sn, mn = S.numpy(), mu.numpy()
    SKK, SUK, SUU = Sn[np.ix_(K, K)], Sn[np.ix_(U, K)], Sn[np.ix_(U, U)]
    ref_mean = mn[U] + (zK.numpy() - mn[K]) @ np.linalg.solve(SKK, SUK.T)
    ref_cov = SUU - SUK @ np.linalg.solve(SKK, SUK.T)
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-10)
    np.testing.assert_allclose((L @ L.mT).numpy(), ref_cov, rtol=1e-9, atol=1e-12)


def test_mvn_log_prob_matches_scipy():
    rng = np.random.default_rng(2)
    S = _random_spd(3, rng)
    mu = torch.tensor(rng.standard_normal(3))
    z = torch.tensor(rng.standard_normal((10, 3)))
    ours = mvn_log_prob(z, mu, torch.linalg.cholesky(S))
    ref = stats.multivariate_normal(mu.numpy(), S.numpy()).logpdf(z.numpy())
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)


def test_product_of_experts_closed_form():
    rng = np.random.default_rng(0)
    mus = torch.tensor(rng.standard_normal((3, 5, 2)))
    logvars = torch.tensor(rng.standard_normal((3, 5, 2)))
    mu, logvar = product_of_experts(mus, logvars, eps=0.0)
    prec = np.exp(-logvars.numpy()).sum(0)
    np.testing.assert_allclose(logvar.numpy(), -np.log(prec), rtol=1e-12)
    np.testing.assert_allclose(mu.numpy(), (np.exp(-logvars.numpy()) * mus.numpy()).sum(0) / prec, rtol=1e-12)
    # masking an expert out equals leaving it out
    mu2, lv2 = product_of_experts(mus, logvars, mask=torch.tensor([True, False, True]), eps=0.0)
    mu3, lv3 = product_of_experts(mus[[0, 2]], logvars[[0, 2]], eps=0.0)
    torch.testing.assert_close(mu2, mu3)
    torch.testing.assert_close(lv2, lv3)


def test_cholesky_jitter_only_where_needed():
    good = torch.eye(3)
    bad = torch.ones(3, 3)  # rank one, PSD but singular
    L, n = cholesky_with_jitter(torch.stack([good, bad]))
    assert n == 1
    torch.testing.assert_close(L[0], torch.eye(3))  # untouched
    assert torch.isfinite(L).all()
    L2, n2 = cholesky_with_jitter(good[None])
    assert n2 == 0
    with pytest.raises(torch.linalg.LinAlgError):
        cholesky_with_jitter(-torch.eye(2)[None], max_tries=2)


def _scaled_correlation(variances, rho):
    """``D^1/2 C D^1/2`` with C = I except the (0, last) correlation ``rho``."""
    C = np.eye(len(variances))
    C[0, -1] = C[-1, 0] = rho
    sd = np.sqrt(variances)
    return C * sd[:, None] * sd[None, :]


def test_cholesky_jitter_is_relative_to_each_diagonal_entry():
    """A 1e-5 variance beside variances of 1e3, in a matrix that fails (a correlation of
    1 + 1e-7): the jittered matrix must keep every variance to 1e-5 relative.  Catches jitter
    scaled by the mean diagonal (the 1e-5 variance became 6.8e-4, 68 times too large)."""
    S = torch.tensor(_scaled_correlation(np.array([1e3, 1e3, 1e-5]), 1 + 1e-7))
    assert torch.linalg.cholesky_ex(S).info > 0
    L, n = cholesky_with_jitter(S[None])
    assert n == 1
    got = (L[0] @ L[0].mT).diagonal().numpy()
    np.testing.assert_allclose(got, S.diagonal().numpy(), rtol=1e-5)
    # a zero row (a latent that never varies) still gets a usable, tiny jitter
    Z = torch.diag(torch.tensor([1e3, 0.0, 1.0], dtype=torch.float64))
    L, n = cholesky_with_jitter(Z[None])
    assert n == 1 and torch.isfinite(L).all() and 0 < float((L @ L.mT)[0, 1, 1]) < 1e-15


def test_count_jitter_counts_nested_calls_once():
    """Every jittered matrix inside a count_jitter block is counted, also from deep inside other
    functions (conditioning), once, by the innermost block."""
    bad = torch.ones(2, 3, 3, dtype=torch.float64)
    with count_jitter() as outer:
        cholesky_with_jitter(bad)
        with count_jitter() as inner:
            mu = torch.zeros(3, dtype=torch.float64)
            condition_gaussian(mu, bad[0], torch.tensor([0, 1]), torch.tensor([2]), torch.zeros(4, 2))
        cholesky_with_jitter(torch.eye(3)[None])
    assert outer.n == 2 and inner.n >= 1
    L, n = cholesky_with_jitter(bad)  # outside any block: only the return value counts
    assert n == 2


def test_conditioning_of_float32_inputs_is_accurate():
    """A nearly low-rank covariance (rank 3 plus 1e-4 of its diagonal, 8 latents, means ~100) in
    float32: the conditional covariance S_UU - S_UK S_KK^-1 S_KU cancels to ~1e-4 of S_UU.
    Computed in float64 it matches the float64 reference (from the same float32-rounded inputs)
    to 1e-7 of the conditional variances; float32 arithmetic is off by 5e-4 (planted).  Catches
    conditioning done in the inputs' float32."""
    rng = np.random.default_rng(0)
    D, r = 8, 3
    A = rng.standard_normal((D, r)) * np.exp(rng.uniform(-1, 2, (D, 1)))
    S64 = A @ A.T + 1e-4 * np.diag(np.diag(A @ A.T))
    mu64 = 100.0 * rng.standard_normal(D)
    K, U = np.arange(5), np.arange(5, D)
    zK = (mu64[K] + (A[K] @ rng.standard_normal((r, 3))).T).astype(np.float32)
    mean, L = condition_gaussian(torch.tensor(mu64, dtype=torch.float32), torch.tensor(S64, dtype=torch.float32),
                                 torch.tensor(K), torch.tensor(U), torch.tensor(zK))
    assert mean.dtype == torch.float32 and L.dtype == torch.float32
    S32 = S64.astype(np.float32).astype(np.float64)
    mu32 = mu64.astype(np.float32).astype(np.float64)
    ref_mean = mu32[U] + (zK - mu32[K]) @ np.linalg.solve(S32[np.ix_(K, K)], S32[np.ix_(U, K)].T)
    ref_cov = S32[np.ix_(U, U)] - S32[np.ix_(U, K)] @ np.linalg.solve(S32[np.ix_(K, K)], S32[np.ix_(K, U)])
    sd = np.sqrt(np.diag(ref_cov))
    got = (L.double() @ L.double().mT).numpy()
    assert np.abs((got - ref_cov) / np.outer(sd, sd)).max() < 1e-5
    assert np.abs(mean.double().numpy() - ref_mean).max() < 0.01 * sd.min()
