"""The hyper-parameter search on a Dask cluster through joblib (the ``[dask]`` extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dask.distributed import Client, LocalCluster, get_task_stream
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV

import mcgen
from mcgen import scoring
from mcgen.datasets.copula import make_copula

torch.set_num_threads(1)


def _search(n_jobs=None):
    est = mcgen.GMRFMultiComponentVAE(max_epochs=1, batch_size=32, encoder_kwargs={"hidden": (8,)},
                                      decoder_kwargs={"hidden": (8,)}, offdiag_hidden=8, random_state=0)
    return GridSearchCV(est, {"beta": [0.05, 1.0], "latent_dim": [1, 2]},
                        scoring={"elbo": scoring.elbo, "sw": scoring.neg_sliced_wasserstein(n_projections=50)},
                        refit="elbo", cv=2, n_jobs=n_jobs, error_score="raise")


@pytest.mark.slow
def test_grid_search_on_a_local_dask_cluster():
    """Two worker processes (about 30 s, mostly starting them and importing torch there)."""
    X = make_copula(80, random_state=0)[0]
    local = _search().fit(X)  # in this process, for comparison
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(torch.set_num_threads, 1)
        workers = set(client.scheduler_info()["workers"])
        with get_task_stream(client) as ts, parallel_config(backend="dask"):
            on_dask = _search(n_jobs=-1).fit(X)
    # the folds ran as tasks on the cluster's worker processes
    ran_on = {t["worker"] for t in ts.data}
    assert ts.data and ran_on <= workers
    # and gave the same search as the local run (same seeds; fits are deterministic on CPU)
    for key in ("mean_test_elbo", "mean_test_sw"):
        np.testing.assert_allclose(on_dask.cv_results_[key], local.cv_results_[key], rtol=1e-5)
    assert on_dask.best_params_ == local.best_params_
    assert on_dask.best_estimator_.score(X) == local.best_estimator_.score(X)
