"""Hyper-parameter search over beta and latent_dim for every estimator mcgen provides."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

import mcgen
from mcgen import Components, scoring
from mcgen.datasets.copula import make_copula

torch.set_num_threads(1)

ESTIMATOR_NAMES = ("GMRFMultiComponentVAE", "MVAE", "MMVAE", "MoPoEVAE", "MMVAEPlus")


def available_estimators() -> list[type]:
    """The estimator classes mcgen exports (all five once every baseline is in)."""
    return [getattr(mcgen, n) for n in ESTIMATOR_NAMES if hasattr(mcgen, n)]


def tiny(cls, **kw):
    params = dict(latent_dim=2, beta=0.1, max_epochs=1, batch_size=32, encoder_kwargs={"hidden": (8,)},
                  decoder_kwargs={"hidden": (8,)}, random_state=0)
    params.update(kw)
    return cls(**params)


GRID = {"beta": [0.05, 1.0], "latent_dim": [1, 2]}


@pytest.fixture(scope="module")
def X():
    return make_copula(96, random_state=0)[0]


def test_all_five_estimators_are_searched():
    assert [c.__name__ for c in available_estimators()] == list(ESTIMATOR_NAMES)


@pytest.mark.parametrize("cls", available_estimators(), ids=lambda c: c.__name__)
def test_grid_search_single_metric(cls, X):
    scorer = scoring.neg_sliced_wasserstein(n_projections=50)
    gs = GridSearchCV(tiny(cls), GRID, scoring=scorer, cv=2, error_score="raise").fit(X)
    res = gs.cv_results_
    assert len(res["params"]) == 4 and np.isfinite(res["mean_test_score"]).all()
    assert gs.best_index_ == int(np.argmax(res["mean_test_score"]))
    assert gs.best_score_ == res["mean_test_score"][gs.best_index_]
    best = gs.best_estimator_
    assert {k: best.get_params()[k] for k in GRID} == gs.best_params_
    assert best.n_components_ == 4 and best.history_[-1]["epoch"] == 1  # refit on all rows
    assert gs.score(X) == scorer(best, X)
    assert [a.shape for a in gs.best_estimator_.sample(3, random_state=0)] == [(3, 2)] * 4


@pytest.mark.parametrize("cls", available_estimators(), ids=lambda c: c.__name__)
def test_grid_search_multi_metric_with_refit(cls, X):
    scorers = {"elbo": scoring.elbo, "missing": scoring.neg_missing_error(known=[0]),
               "dependency": scoring.neg_dependency_error}
    gs = GridSearchCV(tiny(cls), GRID, scoring=scorers, refit="missing", cv=2, error_score="raise").fit(X)
    res = gs.cv_results_
    for name in scorers:
        assert np.isfinite(res[f"mean_test_{name}"]).all()
        assert res[f"rank_test_{name}"].min() == 1
    assert gs.best_index_ == int(np.argmax(res["mean_test_missing"]))
    assert gs.best_score_ == res["mean_test_missing"][gs.best_index_]
    assert hasattr(gs.best_estimator_, "net_")
    # default scoring is the estimator's own score: the held-out ELBO
    plain = GridSearchCV(tiny(cls), {"beta": [0.05, 1.0]}, cv=2, error_score="raise").fit(X)
    np.testing.assert_allclose(plain.cv_results_["mean_test_score"], res["mean_test_elbo"][[1, 3]])


@pytest.mark.parametrize("cls", available_estimators(), ids=lambda c: c.__name__)
def test_randomized_search(cls, X):
    dists = {"beta": stats.loguniform(1e-3, 1.0), "latent_dim": [1, 2, 3]}
    rs = RandomizedSearchCV(tiny(cls), dists, n_iter=2, cv=2, scoring=scoring.neg_marginal_wasserstein,
                            random_state=0, error_score="raise").fit(X)
    betas = [p["beta"] for p in rs.cv_results_["params"]]
    assert len(betas) == 2 and all(1e-3 <= b <= 1.0 for b in betas)
    assert np.isfinite(rs.cv_results_["mean_test_score"]).all()
    assert rs.best_estimator_.beta == rs.best_params_["beta"]


def test_grid_search_picks_the_right_beta():
    """Two components that are copies of each other (up to 5% noise).  With beta = 1000 the KL
    term forces every posterior onto the prior, so completions ignore the observed component
    (missing error about 1 or more); with beta = 0.01 the model learns the dependence (error about
    0.02-0.03).  The search must pick beta = 0.01, and the gap must be large.  20 epochs: the
    default conditional-generation term hurts in the first ~10 epochs of this tiny fit (errors
    0.1-0.4 at 10 epochs), then helps (0.02-0.03 against 0.05 without it)."""
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((300, 2))
    X = Components([x1, x1 + 0.05 * rng.standard_normal((300, 2))])
    est = mcgen.GMRFMultiComponentVAE(latent_dim=2, max_epochs=20, batch_size=32, lr=1e-2,
                                      encoder_kwargs={"hidden": (16,)}, decoder_kwargs={"hidden": (16,)},
                                      offdiag_hidden=16, random_state=0)
    gs = GridSearchCV(est, {"beta": [1000.0, 0.01]}, scoring=scoring.neg_missing_error, cv=2,
                      error_score="raise").fit(X)
    assert gs.best_params_ == {"beta": 0.01}
    collapsed, good = gs.cv_results_["mean_test_score"]
    assert good > -0.2 and collapsed < -0.8
