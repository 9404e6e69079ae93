"""One metric registry: a metric a plugin registers is usable by name in ``evaluate``, in the
scorers (``get_scorer`` for ``GridSearchCV``) and in ``mcgen demo --metrics``; its
``greater_is_better`` decides the scorer's sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

import mcgen
from mcgen.cli import main as cli_main
from mcgen.metrics import evaluate, noise_floor
from mcgen.plugins import DISABLE_AUTOLOAD_ENV, hookimpl, register_plugin, reset_plugins
from tests._factories import gmrf

torch.set_num_threads(1)

CALLS: list[int] = []


def mean_gap(generated, reference, random_state=0):
    """Sum over components of the distance between the generated and the reference means."""
    CALLS.append(random_state)
    return float(sum(np.abs(np.mean(g, 0) - np.mean(r, 0)).sum() for g, r in zip(generated, reference)))


def agreement(generated, reference):
    """Higher is better: minus the mean gap."""
    return -mean_gap(generated, reference)


class MetricPlugin:
    @hookimpl
    def mcgen_register_metrics(self, register):
        register("mean_gap", mean_gap, greater_is_better=False, description="distance between the means")
        register("agreement", agreement, greater_is_better=True)


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    reset_plugins()
    register_plugin(MetricPlugin(), name="metric-plugin")
    CALLS.clear()
    yield
    reset_plugins()


@pytest.fixture(scope="module")
def X():
    return mcgen.load_dataset("copula", n_samples=90, random_state=0)[0]


def test_a_plugin_metric_is_used_by_name_in_evaluate(plugin, X):
    Y = mcgen.load_dataset("copula", n_samples=90, random_state=1)[0]
    out = evaluate(X, Y, metrics=("mean_gap", "dependency_error"), random_state=7)
    assert out["mean_gap"] == pytest.approx(mean_gap(X.arrays, Y.arrays)) and out["mean_gap"] > 0
    assert CALLS[0] == 7  # the seed reaches a metric that takes one
    assert noise_floor(X, X, metrics=("mean_gap",)) == {"mean_gap": 0.0}
    with pytest.raises(ValueError, match=r"unknown metrics \['nope'\]; registered metrics: .*mean_gap"):
        evaluate(X, Y, metrics=("nope",))


def test_a_plugin_metric_is_a_scorer_signed_by_greater_is_better(plugin, X):
    assert {"neg_mean_gap", "agreement"} <= set(mcgen.scoring.get_scorer_names())
    est = gmrf(max_epochs=1).fit(X)
    neg = mcgen.get_scorer("neg_mean_gap")
    value = mean_gap(est.sample(90, random_state=0), X.arrays)
    assert neg(est, X) == pytest.approx(-value)
    assert mcgen.get_scorer("agreement")(est, X) == pytest.approx(-value)  # greater is better: not negated
    with pytest.raises(ValueError, match="from the metric registry: .*neg_mean_gap"):
        mcgen.get_scorer("mean_gap")  # lower is better: only the negated name is a scorer


def test_a_plugin_metric_drives_a_grid_search(plugin, X):
    search = GridSearchCV(gmrf(max_epochs=1), {"beta": [0.01, 1.0]}, cv=2, error_score="raise",
                          scoring={"gap": mcgen.get_scorer("neg_mean_gap"), "elbo": mcgen.get_scorer("elbo")},
                          refit="gap")
    search.fit(X)
    scores = search.cv_results_["mean_test_gap"]
    assert np.isfinite(scores).all() and (scores <= 0).all()
    assert search.best_params_["beta"] == search.cv_results_["params"][int(np.argmax(scores))]["beta"]
    assert len(CALLS) >= 4  # two candidates x two folds


def test_a_plugin_metric_is_reported_by_mcgen_demo(plugin, capsys):
    rc = cli_main(["demo", "--epochs", "1", "--n-samples", "200", "--n-test", "100", "--plot", "",
                   "--metrics", "mean_gap,dependency_error"])
    out = capsys.readouterr().out
    assert rc == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert set(rows) == {"mean_gap", "dependency_error"}
    assert all(np.isfinite(float(v)) for v in rows["mean_gap"][:3])
    assert cli_main(["demo", "--metrics", "nope"]) == 2
    assert "unknown metrics ['nope']; registered metrics:" in capsys.readouterr().err
