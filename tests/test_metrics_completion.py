"""Probabilistic-completion metrics and scorers: a loop reference for the energy score, closed
forms on Gaussian data (the true conditional beats shifted and mis-dispersed ones, R2 and
coverage at their theoretical values), input errors, ``completion_metrics`` end to end and the
completion scorers (signs, names, ``GridSearchCV``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV

import mcgen
from mcgen import Components, scoring
from mcgen.metrics import completion as completion_module
from mcgen.metrics import (
    completion_metrics,
    completion_r2,
    energy_score,
    interval_coverage,
    known_subsets,
    single_completion_r2,
)

torch.set_num_threads(1)

KEYS = {"energy_score", "r2_mean", "r2_single", "coverage_50", "coverage_90", "per_known"}


# ----------------------------------------------------------------------------- Gaussian set-up
def gaussian_covariance(D: int = 5, seed: int = 3) -> np.ndarray:
    """A fixed correlated covariance (unit diagonal scale varies by coordinate)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(D, D)) + 1.5 * np.eye(D)
    S = A @ A.T
    scales = np.linspace(0.5, 3.0, D)  # coordinates on different scales: tests the standardisation
    return S * np.outer(scales, scales)


def conditional(S: np.ndarray, obs: np.ndarray, mis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regression matrix B (mean = x_obs @ B.T) and covariance of x_mis given x_obs (zero mean)."""
    B = np.linalg.solve(S[np.ix_(obs, obs)], S[np.ix_(obs, mis)]).T
    C = S[np.ix_(mis, mis)] - B @ S[np.ix_(obs, mis)]
    return B, C


class GaussianCompleter:
    """Stand-in estimator for zero-mean Gaussian rows split into components of the given shapes.

    ``predict_missing`` draws the unknown coordinates from the conditional Gaussian, with its mean
    moved by ``shift`` conditional standard deviations and its spread multiplied by ``scale``
    (``shift=0, scale=1``: the true conditional).
    """

    def __init__(self, S, shapes, shift=0.0, scale=1.0):
        self.S, self.shapes, self.shift, self.scale = S, [tuple(s) for s in shapes], shift, scale
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.slices = np.split(np.arange(sum(sizes)), np.cumsum(sizes)[:-1])

    def predict_missing(self, X, known, n_samples=1, random_state=None):
        known = list(known)
        n = len(X[0])
        obs = np.concatenate([self.slices[k] for k in known])
        mis_comps = [i for i in range(len(self.shapes)) if i not in known]
        mis = np.concatenate([self.slices[i] for i in mis_comps])
        x_obs = np.concatenate([np.asarray(a).reshape(n, -1) for a in X], axis=1)
        B, C = conditional(self.S, obs, mis)
        mean = x_obs @ B.T + self.shift * np.sqrt(np.diag(C))
        z = np.random.default_rng(random_state).standard_normal((n, n_samples, len(mis)))
        draws = mean[:, None, :] + self.scale * z @ np.linalg.cholesky(C).T  # (n, m, d_mis)
        out, at = [], 0
        for i, shape in enumerate(self.shapes):
            if i in known:
                a = np.asarray(X[known.index(i)])
                out.append(np.repeat(a[:, None], n_samples, axis=1) if n_samples > 1 else a)
            else:
                size = int(np.prod(shape))
                part = draws[:, :, at:at + size].reshape(n, n_samples, *shape)
                out.append(part if n_samples > 1 else part[:, 0])
                at += size
        return out


def gaussian_rows(S, shapes, n, seed):
    x = np.random.default_rng(seed).multivariate_normal(np.zeros(len(S)), S, size=n)
    parts, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        parts.append(x[:, at:at + size].reshape(n, *shape))
        at += size
    return Components(parts)


def y_given_x(n, m, seed=0, shift=0.0, scale=1.0):
    """Truth y (3-D) and m completions of y given x (2-D) from a (mis-specified) conditional, plus the
    theoretical per-coordinate ratio Var(y_j | x) / Var(y_j)."""
    S = gaussian_covariance()
    X = gaussian_rows(S, [(2,), (3,)], n, seed)
    est = GaussianCompleter(S, [(2,), (3,)], shift=shift, scale=scale)
    samples = est.predict_missing([X.arrays[0]], known=[0], n_samples=m, random_state=seed + 1)[1]
    _, C = conditional(S, np.arange(2), np.arange(2, 5))
    return samples, X.arrays[1], np.diag(C) / np.diag(S)[2:]


# ----------------------------------------------------------------------------- energy score
def energy_score_loop(samples, truth):
    """Direct reference: standardise, then a plain double loop per row."""
    n, m, d = samples.shape
    sd = truth.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    total = 0.0
    for r in range(n):
        X = samples[r] / sd
        y = truth[r] / sd
        first = sum(np.sqrt(np.sum((X[j] - y) ** 2)) for j in range(m)) / m
        second = 0.0
        for j in range(m):
            for k in range(m):
                if j != k:
                    second += np.sqrt(np.sum((X[j] - X[k]) ** 2))
        total += (first - second / (2 * m * (m - 1))) / np.sqrt(d)
    return total / n


@pytest.mark.parametrize("m", [2, 3, 7])
def test_energy_score_matches_a_double_loop(m):
    rng = np.random.default_rng(m)
    n, d = 6, 4
    truth = rng.normal(size=(n, d)) * [1.0, 10.0, 0.1, 1.0]
    truth[:, 3] = 2.5  # constant coordinate: not rescaled
    samples = truth[:, None, :] + rng.normal(size=(n, m, d)) * [0.5, 4.0, 0.3, 1.0]
    ref = energy_score_loop(samples, truth)
    np.testing.assert_allclose(energy_score(samples, truth), ref, rtol=1e-12)
    # lists and float32 are read as arrays
    np.testing.assert_allclose(energy_score(samples.astype(np.float32).tolist(), truth.tolist()), ref, rtol=1e-5)


def test_energy_score_blocks_of_rows_give_the_same_value(monkeypatch):
    rng = np.random.default_rng(0)
    samples, truth = rng.normal(size=(37, 5, 6)), rng.normal(size=(37, 6))
    whole = energy_score(samples, truth)
    monkeypatch.setattr(completion_module, "_BLOCK_ELEMENTS", 5 * 6 * 4)  # 4 rows per block, the last one short
    np.testing.assert_allclose(energy_score(samples, truth), whole, rtol=1e-12)
    np.testing.assert_allclose(whole, energy_score_loop(samples, truth), rtol=1e-12)


def test_energy_score_point_mass():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(20, 3)) * [1.0, 5.0, 0.2]
    at_truth = np.repeat(truth[:, None], 4, axis=1)
    assert energy_score(at_truth, truth) == 0.0
    # a point mass elsewhere: no spread term, only the mean standardised distance over sqrt(d)
    guess = truth + rng.normal(size=truth.shape)
    dist = np.linalg.norm((guess - truth) / truth.std(0), axis=1).mean() / np.sqrt(3)
    np.testing.assert_allclose(energy_score(np.repeat(guess[:, None], 5, axis=1), truth), dist, rtol=1e-12)


@pytest.mark.parametrize("d, expected", [(1, 1 / np.sqrt(np.pi)), (3, 0.65147)])
def test_energy_score_of_the_marginal_reference_value(d, expected):
    """docs/metrics.md: completions drawn from the marginal of independent standard Gaussian
    coordinates score E||Z_d|| / sqrt(2 d), 1/sqrt(pi) = 0.564 for d = 1 and 0.651 for d = 3."""
    rng = np.random.default_rng(d)
    truth, samples = rng.normal(size=(20000, d)), rng.normal(size=(20000, 10, d))
    assert energy_score(samples, truth) == pytest.approx(expected, abs=0.01)


def test_true_conditional_has_the_lowest_energy_score():
    n, m = 2000, 10
    true = energy_score(*y_given_x(n, m)[:2])
    for kind in [dict(shift=0.5), dict(scale=2.0), dict(scale=0.5)]:
        wrong = energy_score(*y_given_x(n, m, **kind)[:2])
        assert true < wrong - 0.01, (kind, true, wrong)


def test_energy_score_is_fair_for_small_m():
    """The unbiased spread term makes the expected score the same for every m; the biased
    (m^2 denominator) estimator would be clearly worse at m = 2."""
    values = [energy_score(*y_given_x(4000, m, seed=5)[:2]) for m in (2, 30)]
    assert values[0] == pytest.approx(values[1], abs=0.015)


# ----------------------------------------------------------------------------- R2
def test_completion_r2_of_the_true_conditional_matches_theory():
    m = 50
    samples, truth, ratio = y_given_x(4000, m, seed=2)
    assert ratio.min() > 0.1 and ratio.max() < 0.9  # the observed x explains part of every y_j
    r2 = completion_r2(samples, truth)
    assert r2 == pytest.approx(np.mean(1 - ratio), abs=0.03)  # the conditional mean's R2
    assert r2 == pytest.approx(np.mean(1 - (1 + 1 / m) * ratio), abs=0.02)  # exact for m draws
    assert single_completion_r2(samples, truth) == pytest.approx(np.mean(1 - 2 * ratio), abs=0.03)
    # a point prediction (n, d) is scored as it is
    assert completion_r2(samples.mean(1), truth) == r2
    assert completion_r2(samples[:, 0], truth) == single_completion_r2(samples, truth)


def test_completion_r2_against_sklearn_and_constant_coordinates():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(3)
    truth = rng.normal(size=(50, 3))
    samples = truth[:, None] + rng.normal(size=(50, 4, 3))
    np.testing.assert_allclose(completion_r2(samples, truth), r2_score(truth, samples.mean(1)), rtol=1e-12)
    np.testing.assert_allclose(single_completion_r2(samples, truth), r2_score(truth, samples[:, 0]), rtol=1e-12)
    # a constant truth coordinate has no R2 and does not count, however wrong its prediction is
    truth_c = np.column_stack([truth, np.full(50, 0.1)])
    samples_c = np.concatenate([samples, rng.normal(size=(50, 4, 1)) * 100], axis=2)
    assert completion_r2(samples_c, truth_c) == pytest.approx(completion_r2(samples, truth), rel=1e-12)
    assert single_completion_r2(samples_c, truth_c) == pytest.approx(single_completion_r2(samples, truth), rel=1e-12)
    with pytest.raises(ValueError, match="every coordinate of truth is constant"):
        completion_r2(samples_c[:, :, 3:], truth_c[:, 3:])


# ----------------------------------------------------------------------------- coverage
def test_interval_coverage_matches_the_empirical_quantiles():
    rng = np.random.default_rng(4)
    samples, truth = rng.normal(size=(30, 7, 2)), rng.normal(size=(30, 2))
    cov = interval_coverage(samples, truth, levels=(0.5, 0.8))
    assert list(cov) == [0.5, 0.8]
    for level in (0.5, 0.8):
        inside = [np.quantile(samples[r, :, j], (1 - level) / 2) <= truth[r, j]
                  <= np.quantile(samples[r, :, j], (1 + level) / 2) for r in range(30) for j in range(2)]
        assert cov[level] == np.mean(inside)


@pytest.mark.parametrize("m", [10, 50])
def test_coverage_of_the_true_conditional_and_of_misdispersed_ones(m):
    """A calibrated model's m-draw interval covers about level * (m - 1) / (m + 1), below the
    nominal level (0.41/0.74-0.76 at m = 10, 0.48/0.865 at m = 50)."""
    n = 2000
    true = interval_coverage(*y_given_x(n, m, seed=6)[:2])
    under = interval_coverage(*y_given_x(n, m, seed=6, scale=0.5)[:2])
    over = interval_coverage(*y_given_x(n, m, seed=6, scale=2.0)[:2])
    for level in (0.5, 0.9):
        assert true[level] == pytest.approx(level * (m - 1) / (m + 1), abs=0.03), (level, true)
        assert under[level] < true[level] - 0.1
        assert over[level] > true[level] + 0.1
    if m == 50:
        assert true[0.9] == pytest.approx(0.865, abs=0.02)  # not 0.9: 50 draws under-cover


# ----------------------------------------------------------------------------- errors
def test_input_errors():
    rng = np.random.default_rng(5)
    samples, truth = rng.normal(size=(10, 3, 2)), rng.normal(size=(10, 2))
    for fn in (energy_score, interval_coverage, single_completion_r2):
        with pytest.raises(ValueError, match=r"samples must have shape \(n_rows, m, d\)"):
            fn(samples[:, 0], truth)
    with pytest.raises(ValueError, match="do not match truth"):
        energy_score(samples[:9], truth)
    with pytest.raises(ValueError, match="do not match truth"):
        completion_r2(samples[:, :, :1], truth)
    with pytest.raises(ValueError, match="do not match truth"):
        completion_r2(samples[:, 0, :1], truth)
    with pytest.raises(ValueError, match=r"truth must have shape \(n_rows, d\)"):
        energy_score(samples, truth[:, 0])
    for fn in (energy_score, interval_coverage):
        with pytest.raises(ValueError, match="at least 2 completions"):
            fn(samples[:, :1], truth)
    bad = samples.copy()
    bad[3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="samples contains NaN or infinite"):
        energy_score(bad, truth)
    with pytest.raises(ValueError, match="truth contains NaN or infinite"):
        completion_r2(samples, np.where(truth > 1, np.inf, truth))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        interval_coverage(samples, truth, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match="empty"):
        energy_score(samples[:0], truth[:0])


# ----------------------------------------------------------------------------- completion_metrics
@pytest.fixture(scope="module")
def two_gaussian():
    S = gaussian_covariance()
    shapes = [(2,), (3,)]
    return S, shapes, gaussian_rows(S, shapes, 1500, seed=7)


def test_known_subsets_leave_one_out():
    assert known_subsets(3, "leave_one_out") == [[1, 2], [0, 2], [0, 1]]
    assert known_subsets(2, "leave_one_out") == [[1], [0]]
    with pytest.raises(ValueError, match="'leave_one_out'"):
        known_subsets(3, "leave-one-out")


def test_completion_metrics_true_conditional_wins(two_gaussian):
    S, shapes, X = two_gaussian
    true = completion_metrics(GaussianCompleter(S, shapes), X)
    assert set(true) == KEYS
    assert [r["known"] for r in true["per_known"]] == [[1], [0]]
    for r in true["per_known"]:
        assert set(r) == KEYS - {"per_known"} | {"known"}
    for key in KEYS - {"per_known"}:
        assert true[key] == pytest.approx(np.mean([r[key] for r in true["per_known"]]), rel=1e-12)
    # at m = 10 a calibrated model covers about 0.41 and 0.74-0.76
    assert true["coverage_50"] == pytest.approx(0.41, abs=0.04)
    assert true["coverage_90"] == pytest.approx(0.75, abs=0.04)
    for wrong in (GaussianCompleter(S, shapes, shift=0.5), GaussianCompleter(S, shapes, scale=2.0),
                  GaussianCompleter(S, shapes, scale=0.5)):
        res = completion_metrics(wrong, X)
        assert res["energy_score"] > true["energy_score"] + 0.01
    shifted = completion_metrics(GaussianCompleter(S, shapes, shift=0.5), X)
    assert shifted["r2_mean"] < true["r2_mean"] - 0.02
    assert [r["known"] for r in completion_metrics(GaussianCompleter(S, shapes), X, known="single")["per_known"]] \
        == [[0], [1]]


def test_completion_metrics_flattens_and_concatenates_the_unknown_components():
    """Three components, one of them an image-like (2, 2) array: with component 0 observed, the
    metrics are those of the flattened components 1 and 2 side by side."""
    S = gaussian_covariance(D=8, seed=11)
    shapes = [(3,), (2, 2), (1,)]
    X = gaussian_rows(S, shapes, 300, seed=12)
    est = GaussianCompleter(S, shapes, scale=1.3)
    res = completion_metrics(est, list(X.arrays), known=[[0], [1, 2]], n_completions=6, random_state=3,
                             levels=(0.5, 0.8, 0.95), scale="coordinate")
    assert set(res) == {"energy_score", "r2_mean", "r2_single", "coverage_50", "coverage_80", "coverage_95",
                        "per_known"}
    full = est.predict_missing([X.arrays[0]], known=[0], n_samples=6, random_state=3)
    samples = np.concatenate([full[1].reshape(300, 6, 4), full[2].reshape(300, 6, 1)], axis=2)
    truth = np.concatenate([X.arrays[1].reshape(300, 4), X.arrays[2]], axis=1)
    first = res["per_known"][0]
    assert first["known"] == [0]
    assert first["energy_score"] == energy_score(samples, truth)
    assert first["r2_mean"] == completion_r2(samples, truth)
    assert first["r2_single"] == single_completion_r2(samples, truth)
    cov = interval_coverage(samples, truth, (0.5, 0.8, 0.95))
    assert (first["coverage_50"], first["coverage_80"], first["coverage_95"]) == (cov[0.5], cov[0.8], cov[0.95])
    assert res["per_known"][1]["known"] == [1, 2]


def test_scale_by_coordinate_sd_is_the_default_standardisation():
    rng = np.random.default_rng(21)
    truth = rng.standard_normal((200, 4)) * [1.0, 10.0, 0.1, 3.0]
    samples = truth[:, None] + rng.standard_normal((200, 5, 4)) * [0.5, 2.0, 0.1, 1.0]
    sd = truth.std(0)
    assert np.isclose(energy_score(samples, truth, sd), energy_score(samples, truth), rtol=1e-12)
    # the weighted R2 with per-coordinate sds is the uniform average of the coordinates' R2
    assert np.isclose(completion_r2(samples, truth, sd), completion_r2(samples, truth), rtol=1e-12)
    # and with one pooled scale it is sklearn's variance-weighted R2
    pooled = np.full(4, truth.std())
    ref = r2_score(truth, samples.mean(1), multioutput="variance_weighted")
    assert np.isclose(completion_r2(samples, truth, pooled), ref, rtol=1e-12)


def test_images_are_scaled_per_component_not_per_pixel():
    """A nearly constant pixel (an image's dark border) must not dominate the image's scores."""
    rng = np.random.default_rng(22)
    img = rng.uniform(0, 1, (400, 1, 3, 3))
    img[:, 0, 0, 0] = 1e-4 * rng.standard_normal(400)  # almost always dark
    vec = img.reshape(400, -1)[:, 4:5] + 0.1 * rng.standard_normal((400, 1))

    class Noisy:  # completes the image as truth + noise of sd 0.1 everywhere
        def predict_missing(self, X, known, n_samples=1, random_state=None):
            noise = np.random.default_rng(0).normal(0, 0.1, (400, n_samples, 1, 3, 3))
            return [img[:, None] + noise, np.repeat(X[0][:, None], n_samples, 1)]

    auto = completion_metrics(Noisy(), [img, vec], known=[[1]], n_completions=4)
    per_pixel = completion_metrics(Noisy(), [img, vec], known=[[1]], n_completions=4, scale="coordinate")
    assert auto["r2_mean"] > 0.8  # noise variance 0.01/4 against pixel variance ~1/12
    assert per_pixel["r2_mean"] < -100  # the dark pixel's R2 is about -1e6 / 9
    assert auto["energy_score"] < 0.3 < per_pixel["energy_score"]
    with pytest.raises(ValueError, match="scale must be one of"):
        completion_metrics(Noisy(), [img, vec], known=[[1]], scale="pixel")


def test_completion_metrics_errors(two_gaussian):
    S, shapes, X = two_gaussian
    est = GaussianCompleter(S, shapes)
    with pytest.raises(ValueError, match="n_completions must be at least 2"):
        completion_metrics(est, X, n_completions=1)
    with pytest.raises(ValueError, match="known sets must be"):
        completion_metrics(est, X, known="pairs")
    with pytest.raises(ValueError, match="duplicate keys"):
        completion_metrics(est, X, levels=(0.5, 0.501))

    class Flat(GaussianCompleter):  # forgets the samples axis
        def predict_missing(self, X, known, n_samples=1, random_state=None):
            return [a[:, 0] for a in super().predict_missing(X, known, n_samples, random_state)]

    with pytest.raises(ValueError, match=r"expected \(1500, 10, \.\.\.\)"):
        completion_metrics(Flat(S, shapes), X)


@pytest.fixture(scope="module")
def copula_fit():
    X, _ = mcgen.load_dataset("copula", n_samples=300)
    return mcgen.GMRFMultiComponentVAE(max_epochs=2, random_state=0).fit(X), X


def test_completion_metrics_runs_on_a_real_model(copula_fit):
    est, X = copula_fit
    res = completion_metrics(est, X, n_completions=5)
    assert set(res) == KEYS
    assert [r["known"] for r in res["per_known"]] == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    assert all(np.isfinite(res[k]) for k in KEYS - {"per_known"})
    assert res["energy_score"] > 0 and 0 <= res["coverage_50"] <= res["coverage_90"] <= 1
    assert completion_metrics(est, X, n_completions=5) == res  # fixed random_state: reproducible


# ----------------------------------------------------------------------------- scorers
COMPLETION_SCORERS = ["neg_energy_score", "completion_r2", "single_completion_r2", "neg_coverage_error"]


def test_completion_scorers_are_registered_and_configurable():
    assert set(COMPLETION_SCORERS) <= set(scoring.get_scorer_names())
    for name in COMPLETION_SCORERS:
        s = scoring.get_scorer(name)
        assert s is getattr(scoring, name) and s.name == name
        assert s.params["known"] == "leave_one_out" and s.params["n_completions"] == 10
        assert s.params["random_state"] == 0
    assert scoring.neg_coverage_error.params["levels"] == (0.5, 0.9)
    assert scoring.get_scorer("neg_energy_score", n_completions=4).params["n_completions"] == 4
    with pytest.raises(ValueError, match="n_completions must be an integer of at least 2"):
        scoring.neg_energy_score(n_completions=1)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        scoring.neg_coverage_error(levels=(2.0,))
    with pytest.raises(TypeError, match="unknown parameters"):
        scoring.completion_r2(levels=(0.5,))


def test_completion_scorers_signs_and_values(two_gaussian):
    S, shapes, X = two_gaussian
    true, shifted = GaussianCompleter(S, shapes), GaussianCompleter(S, shapes, shift=0.5)
    res = completion_metrics(true, X)
    assert scoring.neg_energy_score(true, X) == pytest.approx(-res["energy_score"], rel=1e-12)
    assert scoring.completion_r2(true, X) == pytest.approx(res["r2_mean"], rel=1e-12)
    assert scoring.single_completion_r2(true, X) == pytest.approx(res["r2_single"], rel=1e-12)
    for name in COMPLETION_SCORERS:
        scorer = scoring.get_scorer(name)
        assert scorer(true, X) > scorer(shifted, X), name
    # flat list = one subset (as for the other scorers)
    one = scoring.neg_energy_score(known=[1])(true, X)
    assert one == pytest.approx(-completion_metrics(true, X, known=[[1]])["energy_score"], rel=1e-12)


def test_coverage_error_scorer_rewards_calibration_not_width(two_gaussian):
    """With m = 10 the nominal target would prefer a 30% too wide model to the true one; the
    calibrated target (level * (m - 1) / (m + 1)) prefers the true one."""
    S, shapes, X = two_gaussian
    true, wide = GaussianCompleter(S, shapes), GaussianCompleter(S, shapes, scale=1.3)
    narrow = GaussianCompleter(S, shapes, scale=0.8)
    calibrated = scoring.neg_coverage_error
    assert calibrated(true, X) > max(calibrated(wide, X), calibrated(narrow, X))
    nominal = scoring.neg_coverage_error(target="nominal")
    assert nominal(wide, X) > nominal(true, X)
    res = completion_metrics(true, X)
    expected = -np.mean([abs(res["coverage_50"] - 0.5 * 9 / 11), abs(res["coverage_90"] - 0.9 * 9 / 11)])
    assert calibrated(true, X) == pytest.approx(expected, rel=1e-12)


def test_completion_scorers_in_grid_search():
    X, _ = mcgen.load_dataset("copula", n_samples=200)
    est = mcgen.GMRFMultiComponentVAE(max_epochs=1, batch_size=64, random_state=0)
    scorers = {"es": scoring.neg_energy_score(n_completions=4), "r2": scoring.completion_r2,
               "cov": scoring.neg_coverage_error(n_completions=4)}
    gs = GridSearchCV(est, {"beta": [0.1, 1.0]}, scoring=scorers, refit="es", cv=2, error_score="raise")
    gs.fit(Components(list(X.arrays)))
    for name in scorers:
        assert np.isfinite(gs.cv_results_[f"mean_test_{name}"]).all()
    assert (gs.cv_results_["mean_test_es"] < 0).all() and (gs.cv_results_["mean_test_cov"] <= 0).all()
    assert gs.best_index_ == int(np.argmax(gs.cv_results_["mean_test_es"]))
