"""``digits`` quadrants and the registry entries of the built-in real datasets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import mcgen
from mcgen.plugins import get_registries


def test_quadrants_reassemble_the_digits():
    X, info = mcgen.load_dataset("digits")
    ref = load_digits()
    assert len(X) == 1797 and X.n_components == 4
    assert info["names"] == ["top_left", "top_right", "bottom_left", "bottom_right"]
    assert info["kinds"] == ["image"] * 4 and info["shapes"] == [(1, 4, 4)] * 4
    for a in X.arrays:
        assert a.dtype == np.float32 and a.shape == (1797, 1, 4, 4) and a.min() >= 0 and a.max() <= 1
    tl, tr, bl, br = (a[:, 0] for a in X.arrays)
    full = np.block([[tl, tr], [bl, br]])
    np.testing.assert_array_equal(full, (ref.images / 16.0).astype(np.float32))
    np.testing.assert_array_equal(info["labels"], ref.target)
    for key in ("description", "license", "source"):
        assert info[key]


def test_subsets_and_flatten():
    a, ia = mcgen.load_dataset("digits", n_samples=100, random_state=3)
    b, ib = mcgen.load_dataset("digits", n_samples=100, random_state=3)
    c, ic = mcgen.load_dataset("digits", n_samples=100, random_state=4)
    np.testing.assert_array_equal(a.arrays[0], b.arrays[0])
    assert not np.array_equal(ia["labels"], ic["labels"]) or not np.array_equal(a.arrays[0], c.arrays[0])
    full, info = mcgen.load_dataset("digits")
    f, fi = mcgen.load_dataset("digits", flatten=True)
    assert fi["kinds"] == ["vector"] * 4 and f.arrays[2].shape == (1797, 16)
    np.testing.assert_array_equal(f.arrays[2], full.arrays[2].reshape(1797, 16))
    with pytest.raises(ValueError, match="n_samples"):
        mcgen.load_dataset("digits", n_samples=5000)


def test_real_datasets_are_registered():
    table = get_registries().datasets
    for name in ("digits", "polymnist", "biked_parametric", "biked_images"):
        entry = table[name]
        assert entry.plugin.startswith("mcgen.datasets.")
        assert entry.meta["description"]
