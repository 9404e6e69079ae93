"""scikit-learn citizenship of the GMRF estimator: search, CV, clone, persistence."""

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score

from mcgen import Components, load_dataset
from tests._factories import gmrf

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=120, random_state=0)[0]


def test_grid_search_two_jobs_over_beta_and_latent_dim(X):
    gs = GridSearchCV(gmrf(max_epochs=1), {"beta": [1e-3, 1e-2], "latent_dim": [1, 2]}, cv=3, n_jobs=2,
                      error_score="raise")
    gs.fit(X)
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    assert len(gs.cv_results_["params"]) == 4
    assert gs.best_estimator_.n_components_ == 4
    assert gs.best_estimator_.transform(X).shape[1] == 4 * gs.best_params_["latent_dim"]


def test_cross_val_score_on_components(X):
    scores = cross_val_score(gmrf(max_epochs=1), X, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_list_input_and_components_give_identical_models(X):
    a = gmrf().fit(list(X.arrays))
    b = gmrf().fit(X)
    np.testing.assert_array_equal(a.transform(list(X.arrays)), b.transform(X))
    for u, v in zip(a.sample(7, random_state=1), b.sample(7, random_state=1)):
        np.testing.assert_array_equal(u, v)


def test_clone_and_params(X):
    est = gmrf(beta=0.5)
    assert clone(est).get_params() == est.get_params()
    est.set_params(beta=0.25, latent_dim=[1, 1, 1, 1])
    assert est.beta == 0.25
    fitted = est.fit(X)
    c = clone(fitted)
    assert not hasattr(c, "net_") and c.latent_dim == [1, 1, 1, 1]
    assert "beta=0.25" in repr(est)


def test_joblib_round_trip_gives_identical_score_and_samples(X, tmp_path):
    est = gmrf().fit(X)
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    assert loaded.score(X) == est.score(X)
    for u, v in zip(loaded.sample(5, random_state=0), est.sample(5, random_state=0)):
        np.testing.assert_array_equal(u, v)
    # an unfitted estimator pickles too, and keeps training after loading
    joblib.dump(gmrf(), tmp_path / "u.joblib")
    assert joblib.load(tmp_path / "u.joblib").get_params() == gmrf().get_params()
    loaded.partial_fit(X)
    assert len(loaded.history_) == len(est.history_) + 1


def test_inputs_are_never_mutated_and_readonly_arrays_work(X):
    arrays = [a.copy() for a in X.arrays]
    for a in arrays:
        a.setflags(write=False)
    est = gmrf().fit(arrays)
    est.predict_missing([arrays[0]], known=[0])
    est.score(arrays)
    for a, b in zip(arrays, X.arrays):
        np.testing.assert_array_equal(a, b)


def test_predict_missing_input_forms_agree(X):
    est = gmrf().fit(X)
    a = est.predict_missing([X.arrays[1], X.arrays[3]], known=[1, 3], random_state=0)
    b = est.predict_missing([None, X.arrays[1], None, X.arrays[3]], known=[1, 3], random_state=0)
    c = est.predict_missing(Components(X.arrays), known=[1, 3], random_state=0)
    for u, v, w in zip(a, b, c):
        np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(u, w)
    np.testing.assert_array_equal(a[1], X.arrays[1])  # known components returned unchanged
    multi = est.predict_missing([X.arrays[0]], known=[0], n_samples=4, random_state=0)
    assert multi[2].shape == (120, 4, 2)
    np.testing.assert_array_equal(multi[0][:, 3], X.arrays[0])
    assert not np.allclose(multi[2][:, 0], multi[2][:, 1])  # distinct imputations


def test_transform_inverse_transform_reconstruct(X):
    est = gmrf().fit(X)
    Z = est.transform(X)
    assert Z.shape == (120, 8)
    rec = est.inverse_transform(Z)
    for r, q in zip(rec, est.reconstruct(X)):
        np.testing.assert_allclose(r, q)
    with pytest.raises(ValueError, match=r"Z must have shape \(n, 8\)"):
        est.inverse_transform(Z[:, :3])
