"""Every documented input error: clear message naming the component, before any training."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from mcgen import GMRFMultiComponentVAE, load_dataset
from tests._factories import gmrf


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=60, random_state=0)[0]


@pytest.fixture(scope="module")
def fitted(X):
    return gmrf(max_epochs=1).fit(X)


@pytest.mark.parametrize("method,args", [
    ("sample", (3,)), ("transform", None), ("score", None), ("score_samples", None), ("reconstruct", None),
])
def test_not_fitted(method, args, X):
    est = GMRFMultiComponentVAE()
    with pytest.raises(NotFittedError):
        getattr(est, method)(*(args if args is not None else (X,)))
    with pytest.raises(NotFittedError):
        est.predict_missing([X.arrays[0]], known=[0])


def test_fit_errors(X):
    a = list(X.arrays)
    cases = [
        ([a[0], a[1][:50]], ValueError, "component 1 has 50 rows but component 0 has 60"),
        ([a[0], np.where(np.arange(60)[:, None] == 3, [[np.nan, 0.0]], a[1])], ValueError,
         "component 1 is NaN in part of row 3"),
        ([a[0], np.full((60, 2), np.nan)], ValueError, r"component 1 is missing \(NaN\) in every row"),
        ([a[0], np.full((60, 2), np.inf)], ValueError, "component 1 contains 120 infinite values"),
        ([a[0], a[1][:, 0]], ValueError, r"component 1 has shape \(60,\)"),
        ([a[0], a[1].astype(complex)], TypeError, "component 1 has complex dtype"),
        ([a[0][:0], a[1][:0]], ValueError, "0 rows"),
        ("not arrays", TypeError, "list of component arrays"),
    ]
    for data, exc, match in cases:
        with pytest.raises(exc, match=match):
            gmrf().fit(data)


@pytest.mark.parametrize("params,match", [
    ({"latent_dim": 0}, "The 'latent_dim' parameter of GMRFMultiComponentVAE must be an int in the range "
                        r"\[1, inf\)"),
    ({"latent_dim": [2, 0, 2, 2]}, "latent_dim for component 1 must be a positive integer"),
    ({"latent_dim": [2, 2]}, "latent_dim has 2 entries but there are 4 components"),
    ({"encoder": "nope"}, "unknown architecture 'nope'; registered architectures: .*mlp"),
    ({"likelihood": ["gaussian", "poisson", "gaussian", "gaussian"]}, "unknown likelihood 'poisson' for component 1"),
    ({"likelihood": "bernoulli"}, None),  # valid on data in [0,1] (the copula is)
    ({"max_epochs": 0}, r"'max_epochs' parameter of GMRFMultiComponentVAE must be an int in the range \[1, inf\)"),
    ({"lr": -1.0}, r"'lr' parameter of GMRFMultiComponentVAE must be a float in the range \(0.0, inf\)"),
    ({"covariance": "full"}, "'covariance' parameter of GMRFMultiComponentVAE must be a str among"),
    ({"epsilon": 1.5}, r"'epsilon' parameter of GMRFMultiComponentVAE must be a float in the range \(0.0, 1.0\)"),
    ({"validation_fraction": 1.5}, r"'validation_fraction' parameter of GMRFMultiComponentVAE must be a float in "
                                   r"the range \(0.0, 1.0\)"),
    ({"optimizer": "adamax2"}, "'optimizer' parameter of GMRFMultiComponentVAE must be a str among"),
])
def test_parameter_errors(params, match, X):
    est = gmrf(max_epochs=1).set_params(**params) if "max_epochs" not in params else gmrf(**params)
    if match is None:
        est.fit(X)
        return
    with pytest.raises((ValueError, TypeError), match=match):
        est.fit(X)


def test_bernoulli_needs_unit_interval(X):
    with pytest.raises(ValueError, match=r"component 2 has values outside \[0, 1\]"):
        gmrf(likelihood="bernoulli").fit([X.arrays[0], X.arrays[1], X.arrays[2] * 3, X.arrays[3]])


def test_inference_errors(fitted, X):
    a = list(X.arrays)
    with pytest.raises(ValueError, match="X has 3 components but the estimator was fitted with 4"):
        fitted.transform(a[:3])
    with pytest.raises(ValueError, match=r"component 2 has sample shape \(3,\) but the estimator was fitted on \(2,\)"):
        fitted.score([a[0], a[1], np.zeros((60, 3)), a[3]])
    with pytest.raises(ValueError, match=r"component 0 is missing \(NaN\) in rows 0, 1, 2, 3, 4 and 55 more; this "
                                         r"method needs the component observed in every row"):
        fitted.transform([np.full((60, 2), np.nan), a[1], a[2], a[3]])
    bad_known = [
        ([], ValueError, "known is empty"),
        ([4], ValueError, "component 4, out of range for 4 components"),
        ([-1], ValueError, "out of range"),
        ([1, 1], ValueError, "duplicated"),
        ([0, 1, 2, 3], ValueError, "covers every component"),
        (["a"], TypeError, "integer component indices"),
    ]
    for known, exc, match in bad_known:
        with pytest.raises(exc, match=match):
            fitted.predict_missing(a, known=known)
    with pytest.raises(ValueError, match="pass either the 2 known components"):
        fitted.predict_missing(a[:3], known=[0, 1])
    with pytest.raises(ValueError, match=r"component 1 has sample shape \(5,\)"):
        fitted.predict_missing([np.zeros((4, 5))], known=[1])
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        fitted.sample(0)
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        fitted.predict_missing([a[0]], known=[0], n_samples=0)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        fitted.sample(2.5)
