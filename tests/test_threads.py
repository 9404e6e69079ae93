"""Torch threads are limited inside parallel workers and set by ``n_threads`` (issue 13, item 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from joblib import Parallel, delayed, parallel_config
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback

from mcgen import Components, load_dataset
from mcgen.exceptions import InvalidParameterError
from mcgen.training import in_parallel_worker, resolve_n_threads
from tests._factories import gmrf, mvae


class Threads(Callback):
    """Records the torch thread count seen during training."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("torch_threads", torch.get_num_threads())


@pytest.fixture(scope="module")
def X():
    return load_dataset("copula", n_samples=80, random_state=0)[0]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _fit_threads(X, **params):
    est = mvae(max_epochs=1, callbacks=[Threads()], **params).fit(X)
    return est.history_[-1, "torch_threads"], torch.get_num_threads()


def test_auto_uses_one_thread_in_joblib_worker_threads(X, two_threads):
    # before: every worker thread trained with the process's setting (2 here, one per core)
    out = Parallel(n_jobs=2, backend="threading")(delayed(_fit_threads)(X) for _ in range(2))
    assert [inside for inside, _ in out] == [1, 1]
    assert [after for _, after in out] == [2, 2]  # restored in the worker
    assert torch.get_num_threads() == 2
    # outside a worker, and in joblib's sequential runs, "auto" keeps torch's setting
    assert _fit_threads(X)[0] == 2
    assert Parallel(n_jobs=1)(delayed(_fit_threads)(X) for _ in range(1))[0][0] == 2


def test_none_keeps_torchs_setting_and_an_int_is_applied_and_restored(X, two_threads):
    out = Parallel(n_jobs=2, backend="threading")(delayed(_fit_threads)(X, n_threads=None) for _ in range(2))
    assert [inside for inside, _ in out] == [2, 2]
    torch.set_num_threads(1)
    assert _fit_threads(X, n_threads=2) == (2, 1)
    est = gmrf(max_epochs=1, n_threads=2).fit(X)
    seen = []
    sample = est.module_.sample

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return sample(*args, **kwargs)

    est.module_.sample = spy
    est.sample(3, random_state=0)
    assert seen == [2] and torch.get_num_threads() == 1


def test_grid_search_workers_use_one_torch_thread_each(X):
    search = GridSearchCV(mvae(max_epochs=1, callbacks=[Threads()]), {"beta": [0.1, 1.0]}, cv=2, n_jobs=2, refit=False,
                          scoring={"elbo": lambda e, X, y=None: e.score(X),
                                   "threads": lambda e, X, y=None: float(e.history_[-1, "torch_threads"])})
    with parallel_config(backend="loky"):
        search.fit(Components(X.arrays))
    assert set(search.cv_results_["mean_test_threads"]) == {1.0}


def test_in_parallel_worker():
    assert not in_parallel_worker()
    assert Parallel(n_jobs=2, backend="threading")(delayed(in_parallel_worker)() for _ in range(2)) == [True, True]
    assert Parallel(n_jobs=1)(delayed(in_parallel_worker)() for _ in range(2)) == [False, False]
    assert resolve_n_threads("auto") is None and resolve_n_threads(None) is None and resolve_n_threads(3) == 3


@pytest.mark.parametrize("value", [0, -1, "many", 1.5])
def test_n_threads_is_validated(value, X):
    with pytest.raises(InvalidParameterError, match="'n_threads' parameter"):
        gmrf(n_threads=value).fit(X)


def test_results_do_not_depend_on_the_thread_setting_argument_being_auto_or_one(X):
    a = gmrf(max_epochs=2, n_threads=1).fit(X).transform(X)
    b = gmrf(max_epochs=2, n_threads="auto").fit(X).transform(X)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
