"""The shared estimator API, run on every estimator in ``tests/_factories.FACTORIES``."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import mcgen
from mcgen import Components
from tests._factories import FACTORIES

# Tiny networks: one thread avoids oversubscription on a shared CPU.
torch.set_num_threads(1)

NAMES = sorted(FACTORIES)
#: Width of ``transform``'s output for the factory settings on the 4 x 2-D copula.
LATENT_WIDTH = {"gmrf": 8, "mvae": 3, "mmvae": 3, "mopoe": 3, "mmvaeplus": 3 + 4 * 1}


@pytest.fixture(scope="module")
def X():
    return mcgen.load_dataset("copula", n_samples=64, random_state=0)[0]


@pytest.fixture(scope="module")
def fitted(X):
    return {name: FACTORIES[name]().fit(X) for name in NAMES}


def _same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("name", NAMES)
def test_list_and_components_give_identical_models(name, X, fitted):
    est = FACTORIES[name]().fit(list(X.arrays))
    np.testing.assert_array_equal(est.transform(list(X.arrays)), fitted[name].transform(X))
    np.testing.assert_array_equal(est.score_samples(X), fitted[name].score_samples(list(X.arrays)))
    assert est.n_components_ == 4 and est.component_shapes_ == ((2,),) * 4


@pytest.mark.parametrize("name", NAMES)
def test_fit_and_sample_are_reproducible(name, X, fitted):
    est = fitted[name]
    _same(est.sample(7, random_state=3), est.sample(7, random_state=3))
    s = est.sample(7, random_state=3)
    assert [a.shape for a in s] == [(7, 2)] * 4 and all(np.isfinite(a).all() for a in s)
    assert not np.array_equal(s[0], est.sample(7, random_state=4)[0])
    again = FACTORIES[name]().fit(X)
    _same(again.sample(7, random_state=3), s)
    np.testing.assert_array_equal(again.score_samples(X), est.score_samples(X))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("known", [[2], [1, 3], [0, 1, 2]])
def test_predict_missing_forms_and_shapes(name, known, X, fitted):
    est = fitted[name]
    arrays = list(X.arrays)
    only = est.predict_missing([arrays[k] for k in known], known=known, random_state=0)
    with_none = est.predict_missing([a if i in known else None for i, a in enumerate(arrays)], known=known,
                                    random_state=0)
    _same(only, with_none)
    comp = est.predict_missing(Components([arrays[k] for k in known]), known=known, random_state=0)
    _same(only, comp)
    assert [a.shape for a in only] == [(64, 2)] * 4
    for k in known:
        np.testing.assert_array_equal(only[k], arrays[k])
    for i in set(range(4)) - set(known):
        assert np.isfinite(only[i]).all()
    multi = est.predict_missing([arrays[k] for k in known], known=known, n_samples=3, random_state=0)
    assert [a.shape for a in multi] == [(64, 3, 2)] * 4
    for k in known:
        np.testing.assert_array_equal(multi[k], np.repeat(arrays[k][:, None], 3, axis=1))
    unknown = min(set(range(4)) - set(known))
    assert not np.allclose(multi[unknown][:, 0], multi[unknown][:, 1])  # distinct imputations


@pytest.mark.parametrize("name", NAMES)
def test_transform_inverse_transform_reconstruct(name, X, fitted):
    est = fitted[name]
    Z = est.transform(X)
    assert Z.shape == (64, LATENT_WIDTH[name]) and np.isfinite(Z).all()
    back = est.inverse_transform(Z)
    assert [a.shape for a in back] == [(64, 2)] * 4
    _same(est.reconstruct(X), back)
    with pytest.raises(ValueError, match="Z must have shape"):
        est.inverse_transform(Z[:, :-1])


#: Settings under which every model is linear-Gaussian given its latent (closed-form log p(X)); the
#: fixed scale (data units, ~1.7 copula standard deviations) leaves a short fit close to log p.
LINEAR_GAUSSIAN = {"decoder_kwargs": {"hidden": ()},
                   "likelihood": {"name": "gaussian", "scale": 0.5, "learn_scale": False}}
LINEAR_GAUSSIAN_EXTRA = {"mmvae": {"posterior": "gaussian"}, "mmvaeplus": {"posterior": "gaussian"}}


@pytest.mark.parametrize("name", NAMES)
def test_score_samples_is_a_deterministic_per_row_bound(name, X, fitted):
    """Deterministic per-row scores whose mean is ``score``; and, refitted with affine decoders and
    a fixed-scale Gaussian likelihood (where ``log p(x)`` has a closed form), at most
    ``log p(x)`` in expectation (the mean excess over the rows within its noise: 8 Monte Carlo
    draws per score, whose spread, ~0.8 nats for the GMRF model, exceeds its gap to ``log p``).
    Catches a score above the evidence, e.g. a KL with the wrong sign (planted in MVAE: +1.7
    nats over ``log p`` on average).  The sharper cases (MMVAE+'s auxiliary-prior term, the
    Jacobian's sign, large-K tightness) are in tests/test_score_bound.py."""
    from tests.test_score_bound import log_marginal
    from tests.test_score_bound import log_scale_sum as _log_scale_sum

    est = fitted[name]
    s = est.score_samples(X)
    assert s.shape == (64,) and np.isfinite(s).all()
    np.testing.assert_array_equal(s, est.score_samples(X))
    assert est.score(X) == pytest.approx(s.mean())
    lin = FACTORIES[name](**LINEAR_GAUSSIAN, **LINEAR_GAUSSIAN_EXTRA.get(name, {})).fit(X)
    xs = [lin._to_tensor(a, i).double() for i, a in enumerate(X.arrays)]
    with torch.no_grad():
        log_p = log_marginal(lin.module_.double(), xs).numpy() - _log_scale_sum(lin)
    lin.module_.float()
    excess = lin.score_samples(X) - log_p  # <= 0 in expectation, row by row
    assert excess.mean() < 3 * excess.std() / np.sqrt(len(excess))


@pytest.mark.parametrize("name", NAMES)
def test_partial_fit_continues_training(name, X):
    est = FACTORIES[name](max_epochs=1)
    est.partial_fit(X)  # unfitted: fits from scratch for one epoch
    assert len(est.history_) == 1
    before = est.transform(X)
    est.partial_fit(X, epochs=2)
    assert len(est.history_) == 3
    assert not np.array_equal(before, est.transform(X))
    assert est.max_epochs == 1


@pytest.mark.parametrize("name", NAMES)
def test_persistence_gives_identical_results(name, X, fitted, tmp_path):
    est = fitted[name]
    path = tmp_path / "est.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    _same(loaded.sample(5, random_state=1), est.sample(5, random_state=1))
    _same(loaded.predict_missing([X.arrays[0]], known=[0], random_state=2),
          est.predict_missing([X.arrays[0]], known=[0], random_state=2))
    unpickled = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(unpickled.transform(X), est.transform(X))
    pickle.loads(pickle.dumps(FACTORIES[name]()))  # unfitted too


@pytest.mark.parametrize("name", NAMES)
def test_clone_get_params_set_params(name, fitted):
    est = fitted[name]
    params = est.get_params()
    c = clone(est)
    assert c.get_params() == params
    assert not hasattr(c, "net_")
    c.set_params(beta=0.5, max_epochs=1)
    assert c.beta == 0.5 and c.max_epochs == 1 and est.beta != 0.5
    assert type(c)(**c.get_params()).get_params() == c.get_params()


@pytest.mark.parametrize("name", NAMES)
def test_grid_search_over_beta_on_components(name, X):
    gs = GridSearchCV(FACTORIES[name](max_epochs=1), {"beta": [0.05, 1.0]}, cv=2, n_jobs=1, error_score="raise")
    gs.fit(X)
    assert gs.best_params_["beta"] in (0.05, 1.0)
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    assert [a.shape for a in gs.best_estimator_.sample(3, random_state=0)] == [(3, 2)] * 4
