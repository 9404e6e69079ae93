"""Components: the row-indexable container that makes sklearn's CV tools work."""

import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.model_selection import KFold, train_test_split
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _num_samples

from mcgen import Components


def _data(n=10):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, 2)), rng.standard_normal((n, 3)), rng.standard_normal((n, 1, 4, 4))]


def test_shape_len_and_row_indexing():
    arrays = _data()
    C = Components(arrays, names=["a", "b", "c"])
    assert C.shape == (10,) and len(C) == 10 and _num_samples(C) == 10
    assert C.n_components == 3 and C.component_shapes == ((2,), (3,), (1, 4, 4))
    idx = np.array([7, 1, 3])
    sub = C[idx]
    for a, s in zip(arrays, sub):
        np.testing.assert_array_equal(s, a[idx])
    mask = np.zeros(10, bool)
    mask[[2, 5]] = True
    assert C[mask].shape == (2,)
    np.testing.assert_array_equal(C[2:4].arrays[1], arrays[1][2:4])
    # sklearn's _safe_indexing passes (rows, Ellipsis)
    np.testing.assert_array_equal(_safe_indexing(C, [0, 9]).arrays[2], arrays[2][[0, 9]])
    assert sub.names == ("a", "b", "c")


def test_slices_are_views_not_copies():
    arrays = _data()
    C = Components(arrays)
    assert C.arrays[0] is arrays[0]  # no copy on construction
    assert np.shares_memory(C[1:5].arrays[0], arrays[0])


def test_iteration_yields_components_and_terminates():
    C = Components(_data())
    assert len(list(C)) == 3


def test_train_test_split_and_kfold():
    C = Components(_data(20))
    tr, te = train_test_split(C, test_size=0.25, random_state=0)
    assert isinstance(tr, Components) and tr.shape == (15,) and te.shape == (5,)
    folds = list(KFold(4).split(C))
    assert all(len(test) == 5 for _, test in folds)


def test_joblib_workers_receive_components():
    C = Components(_data(50))
    sums = Parallel(n_jobs=2)(delayed(lambda c: float(c.arrays[1].sum()))(C[i::2]) for i in range(2))
    np.testing.assert_allclose(sum(sums), C.arrays[1].sum())


@pytest.mark.parametrize("bad,match", [
    ([np.zeros((5, 2)), np.zeros((4, 2))], "component 1 has 4 rows but component 0 has 5"),
    ([], "at least one component"),
    ([np.zeros((3, 2)), [[1, 2], [3]]], "component 1"),
    ([np.zeros((3, 2)), np.array(["a", "b", "c"])], "component 1 has non-numeric dtype"),
    ([np.zeros((3, 2), complex)], "component 0 has complex dtype"),
    ([np.float64(3.0)], "component 0 is a scalar"),
])
def test_clear_errors_for_malformed_input(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Components(bad)


def test_refuses_int_index_array_conversion_and_bare_arrays():
    C = Components(_data())
    with pytest.raises(TypeError, match="single integer"):
        C[0]
    with pytest.raises(TypeError, match="cannot become one array"):
        np.asarray(C)
    with pytest.raises(TypeError, match="list or tuple"):
        Components(np.zeros((3, 2)))
    with pytest.raises(IndexError, match="boolean mask"):
        C[np.ones(3, bool)]
