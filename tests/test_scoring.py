"""Scorers: signs (a better model scores higher), exact values on stand-in estimators, names,
configuration and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import mcgen
from mcgen import Components, scoring
from mcgen.datasets.copula import make_copula
from mcgen.metrics import conditional_coherence as coherence_metric
from mcgen.metrics import dependency_error, marginal_wasserstein, sliced_wasserstein
from tests.test_metrics_coherence import _DigitCompleter, draw, exact_classifier

torch.set_num_threads(1)

DISTRIBUTION_SCORERS = ["neg_sliced_wasserstein", "neg_marginal_wasserstein", "neg_joint_wasserstein",
                        "neg_dependency_error"]


class _Sampler:
    """Stand-in estimator: ``sample`` draws Copula rows, optionally shifted or with the rows of
    every component shuffled independently (right marginals, no dependence)."""

    def __init__(self, shift=0.0, independent=False):
        self.shift, self.independent = shift, independent

    def sample(self, n, random_state=None):
        X, _ = make_copula(n, random_state=1000 + (random_state or 0))
        rng = np.random.default_rng(0)
        out = [a + self.shift for a in X.arrays]
        return [a[rng.permutation(n)] for a in out] if self.independent else out

    def predict_missing(self, X, known, n_samples=1, random_state=None):
        raise AssertionError("not used")


@pytest.fixture(scope="module")
def copula():
    return make_copula(400, random_state=0)[0]


@pytest.mark.parametrize("name", DISTRIBUTION_SCORERS)
def test_distribution_scorers_prefer_the_true_distribution(name, copula):
    scorer = scoring.get_scorer(name)
    true, shifted, indep = _Sampler(), _Sampler(shift=0.3), _Sampler(independent=True)
    s_true = scorer(true, copula)
    assert s_true <= 0  # a negated distance
    if name != "neg_dependency_error":  # a shift leaves the ranks, so the Spearman error, unchanged
        assert s_true > scorer(shifted, copula)
    if name != "neg_marginal_wasserstein":  # shuffling leaves every marginal unchanged
        assert s_true > scorer(indep, copula)


def test_distribution_scorers_are_negated_metrics(copula):
    est = _Sampler(shift=0.1)
    gen = est.sample(len(copula), random_state=0)
    assert scoring.neg_sliced_wasserstein(est, copula) == -float(sliced_wasserstein(gen, copula, random_state=0))
    assert scoring.neg_marginal_wasserstein(est, copula) == -float(marginal_wasserstein(gen, copula))
    assert scoring.neg_dependency_error(est, copula) == -float(dependency_error(gen, copula))
    s = scoring.neg_sliced_wasserstein(n_projections=50, n_samples=100, random_state=3)
    gen = est.sample(100, random_state=3)
    assert s(est, copula) == -float(sliced_wasserstein(gen, copula, n_projections=50, random_state=3))


class _Completer:
    """Stand-in estimator completing rows from a lookup of the true rows."""

    def __init__(self, truth: Components, mode: str):
        self.truth, self.mode = [np.asarray(a, dtype=np.float64) for a in truth.arrays], mode

    def predict_missing(self, X, known, n_samples=1, random_state=None):
        n = len(X[0])
        np.testing.assert_array_equal(X[0], self.truth[known[0]][:n])
        out = []
        for i, t in enumerate(self.truth):
            t = t[:n]
            if i in known or self.mode == "oracle":
                pred = t.copy()
            elif self.mode == "mean":
                pred = np.broadcast_to(t.mean(0), t.shape).copy()
            else:  # "plusminus": draws truth + 1 and truth - 1
                pred = t + 1.0 if n_samples == 1 else np.stack([t + 1.0, t - 1.0], 1)
            if n_samples > 1 and pred.ndim == t.ndim:
                pred = np.repeat(pred[:, None], n_samples, 1)
            out.append(pred)
        return out

    def sample(self, n, random_state=None):
        return [t[:n].copy() for t in self.truth]


def test_missing_error_exact_values(copula):
    assert scoring.neg_missing_error(_Completer(copula, "oracle"), copula) == 0.0
    # predicting every feature's mean: squared error / variance = 1 exactly
    assert scoring.neg_missing_error(_Completer(copula, "mean"), copula) == pytest.approx(-1.0, rel=1e-12)
    pm = _Completer(copula, "plusminus")
    var = np.concatenate([a.var(0) for a in copula.arrays])
    assert scoring.neg_missing_error(pm, copula) == pytest.approx(-np.mean(1.0 / var), rel=1e-12)
    # two draws truth +- 1 average to the truth
    assert scoring.neg_missing_error(n_samples=2)(pm, copula) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("known, expected", [(None, [[0], [1], [2], [3]]), (2, [[2]]), ([0, 1], [[0, 1]]),
                                             ([[0], [1, 2]], [[0], [1, 2]]), ("all", None)])
def test_missing_error_known_sets(known, expected, copula):
    calls = []

    class Recorder(_Completer):
        def predict_missing(self, X, known, n_samples=1, random_state=None):
            calls.append(list(known))
            return super().predict_missing(X, known, n_samples, random_state)

    scoring.neg_missing_error(known=known)(Recorder(copula, "oracle"), copula)
    assert calls == (expected if expected is not None else mcgen.metrics.known_subsets(4, "all"))
    with pytest.raises(ValueError, match="proper subset"):
        scoring.neg_missing_error(known=[0, 1, 2, 3])(Recorder(copula, "oracle"), copula)


def test_conditional_metric_scorer_with_oracle(copula):
    s = scoring.neg_sliced_wasserstein(conditional=True, known=[[0], [2, 3]])
    assert s(_Completer(copula, "oracle"), copula) == pytest.approx(0.0, abs=1e-12)
    assert s(_Completer(copula, "mean"), copula) < -0.1


def test_conditional_coherence_scorer():
    labels = np.array([0, 1, 2, 3, 1, 2])
    X = Components([draw(labels) for _ in range(3)])
    est = _DigitCompleter(wrong=2)
    scorer = scoring.conditional_coherence(classifiers=exact_classifier())
    assert scorer(est, X, labels) == pytest.approx(float(coherence_metric(est, X, labels, exact_classifier())))
    assert scorer(_DigitCompleter(), X, labels) > scorer(est, X, labels)
    with pytest.raises(ValueError, match="labels as y"):
        scorer(est, X)
    with pytest.raises(ValueError, match="needs classifiers"):
        scoring.conditional_coherence(est, X, labels)


def _gmrf(**kw):
    params = dict(latent_dim=2, beta=0.01, batch_size=32, lr=1e-2, encoder_kwargs={"hidden": (16,)},
                  decoder_kwargs={"hidden": (16,)}, offdiag_hidden=16, random_state=0)
    params.update(kw)
    return mcgen.GMRFMultiComponentVAE(**params)


def _dependent_data(n, seed):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((n, 2))
    return Components([x1, x1 + 0.05 * rng.standard_normal((n, 2))])


def test_a_better_model_scores_higher():
    X, X_test = _dependent_data(300, 0), _dependent_data(300, 1)
    trained = _gmrf(max_epochs=15, beta=0.1).fit(X)
    barely = _gmrf(max_epochs=1, lr=1e-4).fit(X)
    assert scoring.elbo(trained, X_test) == trained.score(X_test)
    for name in ("elbo", "neg_missing_error", "neg_dependency_error", "neg_sliced_wasserstein"):
        scorer = scoring.get_scorer(name)
        assert scorer(trained, X_test) > scorer(barely, X_test), name
    # the trained model completes x2 from x1 to within a few percent of its variance
    assert scoring.neg_missing_error(trained, X_test) > -0.2


def test_get_scorer_names_and_passthrough():
    # mcgen's scorers, and one per registered metric (lower-is-better metrics negated)
    assert set(scoring.get_scorer_names()) == {"elbo", "neg_sliced_wasserstein", "neg_marginal_wasserstein",
                                               "neg_joint_wasserstein", "neg_dependency_error",
                                               "neg_missing_error", "conditional_coherence", "neg_energy_score",
                                               "completion_r2", "single_completion_r2", "neg_coverage_error",
                                               "ssim", "neg_fid", "neg_centre_of_mass_wasserstein", "coherence"}
    assert mcgen.get_scorer("elbo") is scoring.elbo

    def mine(est, X, y=None):
        return 1.0

    assert scoring.get_scorer(mine) is mine
    configured = scoring.get_scorer("neg_missing_error", known=[1])
    assert configured.params["known"] == [1] and scoring.neg_missing_error.params["known"] is None
    with pytest.raises(ValueError, match="unknown scorer 'accuracy'; valid: completion_r2, conditional_coherence"):
        scoring.get_scorer("accuracy")
    with pytest.raises(TypeError, match="scoring must be a name or a callable"):
        scoring.get_scorer(3)
    with pytest.raises(TypeError, match="only be given with a scorer name"):
        scoring.get_scorer(mine, known=[0])


def test_scorer_configuration_errors_and_pickling(copula):
    with pytest.raises(TypeError, match="unknown parameters"):
        scoring.neg_missing_error(nope=1)
    with pytest.raises(TypeError, match="sliced_wasserstein has no parameters"):
        scoring.neg_sliced_wasserstein(nope=1)
    with pytest.raises(TypeError, match="takes no keyword arguments"):
        scoring.elbo(_Sampler(), copula, known=[0])
    s = scoring.neg_sliced_wasserstein(n_projections=30)
    assert "n_projections" in repr(s) and scoring.neg_sliced_wasserstein.params["metric_kwargs"] is None
    s2 = pickle.loads(pickle.dumps(s))
    assert s2(_Sampler(), copula) == s(_Sampler(), copula)
    mine = scoring.MetricScorer(metric=lambda g, r: 0.5, greater_is_better=True, name="half")
    assert mine(_Sampler(), copula) == 0.5 and mine.name == "half"
