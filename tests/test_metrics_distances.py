"""Distribution metrics (marginal / joint / sliced Wasserstein, dependency error, noise floors)
against hand-computed values and SciPy / assignment-problem references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, spatial, stats

from mcgen import Components
from mcgen.datasets.copula import make_copula
from mcgen.metrics import (
    MetricResult,
    conditional_metrics,
    dependency_error,
    evaluate,
    joint_wasserstein,
    marginal_wasserstein,
    noise_floor,
    sliced_wasserstein,
    spearman_matrix,
    unconditional_metrics,
)


def _assignment_w1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two equal-size empirical measures = mean cost of the optimal assignment."""
    C = spatial.distance.cdist(a, b)
    r, c = optimize.linear_sum_assignment(C)
    return float(C[r, c].mean())


def test_marginal_wasserstein_hand_values():
    gen = [np.array([[0.0, 0.0], [1.0, 2.0]]), np.array([[5.0], [5.0]])]
    ref = [np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([[4.0], [6.0]])]
    res = marginal_wasserstein(gen, ref)
    # coordinate-wise W1: {0,1}->{1,2}: 1;  {0,2}->{0,0}: 1;  {5,5}->{4,6}: 1
    assert isinstance(res, MetricResult)
    assert float(res) == pytest.approx(1.0)
    np.testing.assert_allclose(res.details["per_component"], [1.0, 1.0])
    assert res.n_generated == 2 and res.n_reference == 2


def test_marginal_wasserstein_matches_scipy():
    rng = np.random.default_rng(0)
    gen = [rng.normal(size=(50, 3)), rng.exponential(size=(50, 3))]
    ref = [rng.normal(0.3, 1.2, size=(70, 3)), rng.exponential(2.0, size=(70, 3))]
    res = marginal_wasserstein(gen, ref)
    expected = np.array([[stats.wasserstein_distance(g[:, j], r[:, j]) for j in range(3)]
                         for g, r in zip(gen, ref)])
    np.testing.assert_allclose(res.details["per_coordinate"], expected, rtol=1e-10)
    assert float(res) == pytest.approx(expected.mean(), rel=1e-10)


def test_joint_wasserstein_all_matches_assignment_and_translation():
    rng = np.random.default_rng(1)
    A = [rng.normal(size=(40, 2)), rng.normal(size=(40, 1))]
    B = [rng.normal(size=(40, 2)) + 0.5, rng.normal(size=(40, 1))]
    res = joint_wasserstein(A, B, by="all")
    ref = _assignment_w1(np.concatenate(A, 1), np.concatenate(B, 1))
    assert float(res) == pytest.approx(ref, rel=1e-8)
    # A translation by v moves every point by |v|: W1 = |v| exactly.
    v = np.array([0.3, -0.4, 1.2])
    shifted = [A[0] + v[:2], A[1] + v[2:]]
    assert float(joint_wasserstein(A, shifted, by="all")) == pytest.approx(np.linalg.norm(v), rel=1e-8)


def test_joint_wasserstein_by_coordinate_is_mean_over_coordinates():
    rng = np.random.default_rng(2)
    A = [rng.normal(size=(30, 2)) for _ in range(3)]
    B = [rng.normal(size=(30, 2)) * 1.5 for _ in range(3)]
    res = joint_wasserstein(A, B)  # equal widths: 'auto' is 'coordinate'
    per = [_assignment_w1(np.stack([a[:, j] for a in A], 1), np.stack([b[:, j] for b in B], 1)) for j in range(2)]
    np.testing.assert_allclose(res.details["per_coordinate"], per, rtol=1e-8)
    assert float(res) == pytest.approx(np.mean(per), rel=1e-8)
    assert res.details["by"] == "coordinate"


def test_joint_wasserstein_subsamples_and_rejects_wide_input():
    rng = np.random.default_rng(3)
    A = [rng.normal(size=(500, 2))]
    res = joint_wasserstein(A, A, n=100, by="all", random_state=0)
    assert res.n_generated == 100 and res.n_reference == 100
    with pytest.raises(ValueError, match="sliced_wasserstein"):
        joint_wasserstein([rng.normal(size=(10, 17))], [rng.normal(size=(10, 17))], by="all")
    with pytest.raises(ValueError, match="by must be"):
        joint_wasserstein(A, A, by="rows")


def test_sliced_wasserstein_one_dimension_is_exact_w2():
    gen = [np.array([[0.0], [1.0], [2.0]])]
    ref = [np.array([[1.0], [2.0], [3.0]])]
    # In 1-D every projection is +-1, so SW2 = W2 = 1 (sorted pairs differ by 1).
    assert float(sliced_wasserstein(gen, ref, n_projections=20, standardize=False)) == pytest.approx(1.0)


def test_sliced_wasserstein_translation_and_standardisation():
    rng = np.random.default_rng(4)
    d = 4
    A = rng.normal(size=(200, d))
    v = np.array([1.0, -1.0, 0.5, 2.0])
    # For a translated copy each projection theta gives |theta . v|, so SW2^2 = E (theta . v)^2 = |v|^2 / d.
    val = float(sliced_wasserstein([A + v], [A], n_projections=4000, standardize=False, random_state=0))
    assert val == pytest.approx(np.linalg.norm(v) / np.sqrt(d), rel=0.04)
    # Standardisation by the reference's statistics makes the value scale-free.
    s1 = float(sliced_wasserstein([A + v], [A], random_state=0))
    s2 = float(sliced_wasserstein([10 * (A + v)], [10 * A], random_state=0))
    assert s1 == pytest.approx(s2, rel=1e-10)
    # deterministic given random_state
    assert s1 == float(sliced_wasserstein([A + v], [A], random_state=0))


def test_spearman_matrix_and_dependency_error_hand_values():
    t = np.arange(10.0)
    gen = [t[:, None], (2 * t)[:, None]]  # rho = +1
    ref = [t[:, None], (-t)[:, None]]  # rho = -1
    np.testing.assert_allclose(spearman_matrix(gen), [[1, 1], [1, 1]])
    res = dependency_error(gen, ref)
    assert float(res) == pytest.approx(2.0)
    assert res.details["cross_component"] == pytest.approx(2.0)


def test_dependency_error_matches_pairwise_scipy():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(80, 1))
    gen = [z + rng.normal(size=(80, 2)), z ** 3 + rng.normal(size=(80, 1))]
    ref = [rng.normal(size=(80, 2)), rng.normal(size=(80, 1))]
    G, R = np.concatenate(gen, 1), np.concatenate(ref, 1)
    comp = np.array([0, 0, 1])
    diffs, cross = [], []
    for i in range(3):
        for j in range(3):
            if i != j:
                d = abs(stats.spearmanr(G[:, i], G[:, j]).statistic - stats.spearmanr(R[:, i], R[:, j]).statistic)
                diffs.append(d)
                if comp[i] != comp[j]:
                    cross.append(d)
    res = dependency_error(gen, ref)
    assert float(res) == pytest.approx(np.mean(diffs), rel=1e-10)
    assert res.details["cross_component"] == pytest.approx(np.mean(cross), rel=1e-10)


def test_metrics_reject_bad_input():
    a = [np.zeros((5, 2)), np.zeros((5, 2))]
    with pytest.raises(ValueError, match="2 components, reference has 1"):
        marginal_wasserstein(a, a[:1])
    with pytest.raises(ValueError, match="component 1: generated has 2 features, reference 3"):
        sliced_wasserstein(a, [np.zeros((5, 2)), np.zeros((5, 3))])
    with pytest.raises(ValueError, match="component 0 contains NaN"):
        dependency_error([np.full((5, 2), np.nan), a[1]], a)
    with pytest.raises(ValueError, match="component 1 has 4 rows"):
        marginal_wasserstein([np.zeros((5, 2)), np.zeros((4, 2))], a)


def test_components_and_lists_give_the_same_values():
    X, _ = make_copula(300, random_state=0)
    Y, _ = make_copula(300, random_state=1)
    assert evaluate(X, Y) == evaluate(list(X.arrays), list(Y.arrays))


def test_noise_floor_shrinks_as_n_grows():
    metrics = ("marginal_wasserstein", "sliced_wasserstein", "dependency_error")
    floors = {}
    for n in (200, 3200):
        vals = [noise_floor(make_copula(n, random_state=2 * s)[0], make_copula(n, random_state=2 * s + 1)[0],
                            metrics=metrics, random_state=s) for s in range(3)]
        floors[n] = {m: np.mean([v[m] for v in vals]) for m in metrics}
    for m in metrics:  # the floors fall like n^-1/2: 16x the rows, about a quarter of the floor
        assert floors[3200][m] < 0.5 * floors[200][m], (m, floors)
    joint = {n: float(joint_wasserstein(make_copula(n, random_state=10)[0], make_copula(n, random_state=11)[0]))
             for n in (100, 800)}
    assert joint[800] < joint[100]


def test_noise_floor_is_evaluate_on_two_real_samples():
    A, _ = make_copula(400, random_state=0)
    B, _ = make_copula(400, random_state=1)
    assert noise_floor(A, B, random_state=3) == evaluate(A, B, random_state=3)
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(A, B, metrics=("nope",))


class _Oracle:
    """Samples the true distribution; completes rows with the truth."""

    def __init__(self, X: Components):
        self.X = X

    def sample(self, n, random_state=None):
        return list(make_copula(n, random_state=99)[0].arrays)

    def predict_missing(self, X, known, n_samples=1, random_state=None):
        return [np.array(a) for a in self.X.arrays]


def test_unconditional_and_conditional_metrics_protocol():
    X, _ = make_copula(300, random_state=0)
    est = _Oracle(X)
    unc = unconditional_metrics(est, X, random_state=0)
    assert unc == evaluate(make_copula(300, random_state=99)[0], X, random_state=0)
    cond = conditional_metrics(est, X, random_state=0)
    assert set(cond["per_subset"]) == {(0,), (1,), (2,), (3,)}
    # completing with the truth reproduces the rows: every distance is 0 (emd2 to its tolerance)
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in cond["mean"].values()), cond["mean"]
