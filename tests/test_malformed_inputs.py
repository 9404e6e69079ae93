"""Property-based tests: malformed input always gives a ValueError/TypeError naming the
component, before any computation, and never a crash deep in torch."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mcgen
from tests._factories import gmrf

torch.set_num_threads(1)
SHAPES = [(2,), (3,), (1, 2, 2)]
N = 12


def _valid(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((n, *s)) for s in SHAPES]


@pytest.fixture(scope="module")
def fitted():
    return gmrf(max_epochs=1, batch_size=8).fit(_valid(40))


MUTATIONS = ["rows", "feature_shape", "nan", "inf", "complex", "string", "ragged", "flat", "none", "ndim"]


def _mutate(arrays, kind, k, rng):
    arrays = list(arrays)
    a = arrays[k]
    if kind == "rows":
        arrays[k] = a[: max(1, len(a) - 1 - int(rng.integers(0, 3)))]
    elif kind == "feature_shape":
        arrays[k] = np.zeros((len(a), *[d + 1 for d in a.shape[1:]]))
    elif kind in ("nan", "inf"):
        b = a.copy()
        b.reshape(len(b), -1)[int(rng.integers(len(b))), 0] = np.nan if kind == "nan" else -np.inf
        arrays[k] = b
    elif kind == "complex":
        arrays[k] = a.astype(complex)
    elif kind == "string":
        arrays[k] = a.astype(str)
    elif kind == "ragged":
        arrays[k] = [list(r.ravel()) for r in a[:-1]] + [[1.0]]
    elif kind == "flat":
        arrays[k] = a.reshape(len(a), -1)[:, 0]
    elif kind == "none":
        arrays[k] = None
    elif kind == "ndim":
        arrays[k] = a[..., None]
    return arrays


def _check(exc, k):
    msg = str(exc)
    assert f"component {k}" in msg, msg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(MUTATIONS), k=st.integers(0, len(SHAPES) - 1), seed=st.integers(0, 1000),
       method=st.sampled_from(["transform", "score_samples", "score", "reconstruct", "predict_missing", "fit"]))
def test_malformed_component_is_named(fitted, kind, k, seed, method):
    rng = np.random.default_rng(seed)
    # a new fit accepts any per-component shape: those two mutations are malformed only after fitting
    assume(not (method == "fit" and kind in ("feature_shape", "ndim")))
    if kind == "rows" and k == 0:
        k = 1  # the row count is compared against component 0
    X = _mutate(_valid(), kind, k, rng)
    before = copy.deepcopy(X)
    with pytest.raises((ValueError, TypeError)) as info:
        if method == "fit":
            gmrf(max_epochs=1).fit(X)
        elif method == "predict_missing":
            # the malformed component is an observed one (with a second one for a row mismatch)
            fitted.predict_missing(X, known=sorted({k, (k + 1) % 3}) if kind == "rows" else [k])
        else:
            getattr(fitted, method)(X)
    _check(info.value, k)
    for a, b in zip(X, before):  # nothing the user passed is mutated
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(known=st.lists(st.integers(-3, 6), max_size=5))
def test_bad_known_sets(fitted, known):
    valid = len(known) > 0 and len(set(known)) == len(known) and all(0 <= k < 3 for k in known) and len(known) < 3
    X = _valid()
    if valid:
        out = fitted.predict_missing(X, known=known)
        assert [a.shape[1:] for a in out] == SHAPES
    else:
        with pytest.raises(ValueError, match="known"):
            fitted.predict_missing(X, known=known)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 6).filter(lambda m: m != 3))
def test_wrong_number_of_components(fitted, m):
    X = [np.zeros((5, 2))] * m
    with pytest.raises(ValueError, match=f"X has {m} components but the estimator was fitted with 3"):
        fitted.transform(X)


def test_memmap_and_readonly_inputs(fitted, tmp_path):
    arrays = _valid()
    mm = []
    for i, a in enumerate(arrays):
        m = np.lib.format.open_memmap(tmp_path / f"{i}.npy", mode="w+", dtype=a.dtype, shape=a.shape)
        m[:] = a
        m.flush()
        mm.append(np.load(tmp_path / f"{i}.npy", mmap_mode="r"))
    np.testing.assert_array_equal(fitted.transform(mm), fitted.transform(arrays))
    gmrf(max_epochs=1).fit(mm)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; registered datasets: .*copula"):
        mcgen.load_dataset("nope")
    with pytest.raises(ValueError, match="valid: gaussian, laplace, bernoulli"):
        gmrf(likelihood="poisson").fit(_valid())
    with pytest.raises(ValueError, match="registered architectures: .*mlp"):
        gmrf(decoder=["mlp", "mlp", "transformerXL"]).fit(_valid())
