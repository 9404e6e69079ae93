"""``wdbc``: scikit-learn's breast-cancer table as mean / se / worst components."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

import mcgen
from mcgen.cli import main as cli_main
from mcgen.plugins import get_registries

MEASUREMENTS = ["radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                "concave points", "symmetry", "fractal dimension"]


def test_three_views_of_ten_measurements():
    X, info = mcgen.load_dataset("wdbc")
    assert isinstance(X, mcgen.Components) and len(X) == 569 and X.n_components == 3
    assert list(X.names) == ["mean", "se", "worst"] == info["names"]
    assert info["kinds"] == ["vector"] * 3 and info["shapes"] == [(10,)] * 3
    for a in X.arrays:
        assert a.dtype == np.float64 and a.shape == (569, 10) and np.isfinite(a).all()
    assert info["measurements"] == MEASUREMENTS
    for key in ("description", "license", "source"):
        assert info[key]


def test_columns_are_scikit_learns():
    X, info = mcgen.load_dataset("wdbc")
    ref = load_breast_cancer()
    names = list(ref.feature_names)
    for j, m in enumerate(MEASUREMENTS):
        for k, col in enumerate((f"mean {m}", f"{m} error", f"worst {m}")):
            np.testing.assert_array_equal(X.arrays[k][:, j], ref.data[:, names.index(col)])
            assert info["columns"][X.names[k]][j] == col
    # the worst (mean of the three largest) is never below the mean
    assert (X.arrays[2] >= X.arrays[0]).all()


def test_labels():
    _, info = mcgen.load_dataset("wdbc")
    ref = load_breast_cancer()
    np.testing.assert_array_equal(info["labels"], ref.target)
    assert info["labels"].dtype == np.int64
    assert info["label_names"] == ["malignant", "benign"]
    assert np.bincount(info["labels"]).tolist() == [212, 357]


def test_subsets():
    a, ia = mcgen.load_dataset("wdbc", n_samples=100, random_state=3)
    b, ib = mcgen.load_dataset("wdbc", n_samples=100, random_state=3)
    full, info = mcgen.load_dataset("wdbc")
    assert len(a) == 100
    np.testing.assert_array_equal(a.arrays[1], b.arrays[1])
    # a subset is a set of the table's rows, labels aligned
    rows = [int(np.flatnonzero((full.arrays[0] == r).all(1))[0]) for r in a.arrays[0]]
    np.testing.assert_array_equal(info["labels"][rows], ia["labels"])
    np.testing.assert_array_equal(full.arrays[2][rows], a.arrays[2])
    for bad in (0, 1000, 2.5, True):
        with pytest.raises(ValueError, match="n_samples"):
            mcgen.load_dataset("wdbc", n_samples=bad)


def test_registered_as_a_builtin(capsys):
    entry = get_registries().datasets["wdbc"]
    assert entry.plugin == "mcgen.datasets.wdbc"
    assert entry.distribution == "mcgen" and entry.meta["description"]
    assert cli_main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["datasets"]["wdbc"]
    assert listed["plugin"] == "mcgen.datasets.wdbc"
