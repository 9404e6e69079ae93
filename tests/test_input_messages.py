"""Precise messages for inputs mcgen cannot take, a correct hint when scikit-learn splits a
plain list, no numpy warning from a metric, and one output dtype (issue 13, item 7)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.model_selection import GridSearchCV, cross_val_score

import mcgen
from mcgen import Components, DataTypeError, load_dataset
from mcgen.metrics.structure import dependency_error, spearman_matrix
from mcgen.scoring import neg_dependency_error
from tests._factories import gmrf, mvae

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=120, random_state=0)[0]


@pytest.fixture(scope="module")
def fitted(X):
    return mvae(max_epochs=1).fit(X)


SPARSE = {
    "csr_matrix": lambda a: sparse.csr_matrix(a),
    "csr_array": lambda a: sparse.csr_array(a),
    "coo_matrix": lambda a: sparse.coo_matrix(a),
    "torch_coo": lambda a: torch.tensor(a).to_sparse(),
    "torch_csr": lambda a: torch.tensor(a).to_sparse_csr(),
    "object_rows": lambda a: np.array([sparse.csr_matrix(r) for r in a] + [None], dtype=object)[:-1],
}


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state:UserWarning")
@pytest.mark.parametrize("kind", sorted(SPARSE))
def test_sparse_input_says_densify_it(kind, X, fitted):
    arrays = list(X.arrays)
    arrays[1] = SPARSE[kind](arrays[1])
    with pytest.raises(DataTypeError, match=r"component 1 is .*; mcgen needs dense arrays: densify it"):
        gmrf().fit(arrays)
    with pytest.raises(DataTypeError, match="component 1 is .*densify it"):
        fitted.transform(arrays)
    if kind != "object_rows":
        with pytest.raises(DataTypeError, match="component 0 is .*densify it"):
            gmrf().fit(SPARSE[kind](X.arrays[0]))  # one array: a one-component model


class NAType:
    """Stands for pandas' ``pd.NA`` (pandas is not a dependency): ``float(NA)`` fails."""

    def __repr__(self):
        return "<NA>"

    def __float__(self):
        raise TypeError("float() argument must be a string or a real number, not 'NAType'")


def test_missing_values_say_missing_values_naming_the_component(X, fitted):
    col = X.arrays[2].astype(object)
    col[4, 0] = NAType()
    col[9, 1] = None
    arrays = [X.arrays[0], X.arrays[1], col, X.arrays[3]]
    for call in (lambda: gmrf().fit(arrays), lambda: fitted.transform(arrays),
                 lambda: fitted.predict_missing([col], known=[2])):
        with pytest.raises(ValueError, match=r"component 2 has 2 missing values \(pandas NA or None\); mcgen needs "
                                             "complete rows: drop or impute them"):
            call()
    nan = [a.copy() for a in X.arrays]
    nan[3][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"component 3 is NaN in part of row 0: a component is either observed in "
                                         r"full or missing \(NaN throughout\)"):
        gmrf().fit(nan)


def test_pandas_nullable_na_says_missing_values(X):
    import pandas as pd
    frame = pd.DataFrame(X.arrays[1], columns=["a", "b"]).astype("Float64")
    frame.iloc[3, 0] = pd.NA
    with pytest.raises(ValueError, match=r"component 1 has 1 missing value \(pandas NA or None\)"):
        gmrf().fit([X.arrays[0], frame, X.arrays[2]])


def test_one_array_is_a_one_component_model_and_that_is_documented(X):
    est = gmrf(max_epochs=1).fit(np.concatenate(X.arrays, 1))
    assert est.n_components_ == 1 and est.component_shapes_ == ((8,),)
    assert "``fit(A)`` with ``A`` of shape" in type(est).fit.__doc__


@pytest.mark.parametrize("n_components", [3, 4])
def test_grid_search_over_a_plain_list_gets_the_right_hint(X, n_components):
    arrays = list(X.arrays[:n_components])
    search = GridSearchCV(gmrf(max_epochs=1), {"beta": [0.1, 1.0]}, cv=2, error_score="raise")
    # before: 3 components ended in "... (pass a list or Components ...)", 4 trained silently on
    # pairs of components as if they were rows
    with pytest.raises(ValueError, match=r"a plain list of components reached the estimator inside scikit-learn's "
                                         r"cross-validation .* splits a list by its entries, i.e. by component, not by "
                                         r"row; wrap it: mcgen.Components\(\[...\]\)") as info:
        search.fit(arrays)
    assert "pass a list" not in str(info.value)
    with pytest.raises(ValueError, match="wrap it: mcgen.Components"):
        cross_val_score(gmrf(max_epochs=1), arrays, cv=2, error_score="raise")
    search.fit(Components(arrays))  # the right way works
    assert search.best_estimator_.n_components_ == n_components


def test_the_wrong_number_of_components_hint_does_not_say_pass_a_list(fitted, X):
    with pytest.raises(ValueError, match=r"X has 2 components but the estimator was fitted with 4 \(X must hold one "
                                         r"array per component .* wrap the list in mcgen.Components") as info:
        fitted.transform(list(X.arrays[:2]))
    assert "pass a list" not in str(info.value)


def test_dependency_error_on_a_constant_column_gives_no_warning_and_a_number(X, fitted):
    const = [a.copy() for a in X.arrays]
    const[0][:, 0] = 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = neg_dependency_error(fitted, Components(const))
        value = dependency_error(fitted.sample(120, random_state=0), const).value
    assert np.isfinite(score) and np.isfinite(value)
    S = spearman_matrix(const)
    assert S.shape == (8, 8) and S[0, 0] == 1 and (S[0, 1:] == 0).all() and (S[1:, 0] == 0).all()


def test_spearman_matrix_matches_scipy_without_constant_columns():
    from scipy import stats

    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 3))
    B = np.round(rng.standard_normal((40, 2)))  # ties
    np.testing.assert_allclose(spearman_matrix([A, B]), stats.spearmanr(np.hstack([A, B])).statistic, atol=1e-12)


def test_every_output_has_its_components_dtype(X):
    """One policy: each component's outputs have the floating dtype it was fitted with (float64
    data: float64; float32, integer data: float32), known components included."""
    mixed = [X.arrays[0].astype(np.float64), X.arrays[1].astype(np.float32), (X.arrays[2] * 100).astype(np.int64),
             X.arrays[3].astype(np.float64)]
    expected = [np.float64, np.float32, np.float32, np.float64]
    est = gmrf(max_epochs=1).fit(mixed)
    for out in (est.sample(3, random_state=0), est.predict_missing([mixed[1]], known=[1]),
                est.predict_missing([mixed[0].astype(np.float32)], known=[0], n_samples=2),
                est.predict_missing([mixed[2]], known=[2]), est.inverse_transform(est.transform(mixed)),
                est.reconstruct(mixed)):
        assert [o.dtype for o in out] == [np.dtype(d) for d in expected]
    assert est.transform(mixed).dtype == np.float32  # latents: float32 (preserves_dtype float32)
    np.testing.assert_array_equal(est.predict_missing([mixed[0]], known=[0])[0], mixed[0])  # exact for float64
    np.testing.assert_array_equal(est.predict_missing([mixed[2]], known=[2])[2], mixed[2].astype(np.float32))
    # and it survives saving
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        est.save(Path(d) / "m.mcgen")
        assert [a.dtype for a in mcgen.load(Path(d) / "m.mcgen").sample(2)] == [np.dtype(t) for t in expected]
