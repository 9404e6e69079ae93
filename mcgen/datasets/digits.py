"""``digits``: scikit-learn's bundled 8 x 8 handwritten digits as four quadrant components.

Every image of :func:`sklearn.datasets.load_digits` (1,797 images, grey levels 0..16) is scaled to
[0, 1] and cut into its four 4 x 4 quadrants: top-left, top-right, bottom-left, bottom-right.
Each quadrant is one component, so the task "draw the rest of the digit from one corner" is a
small, offline, image-like multi-component problem.  No files are needed.
"""

from __future__ import annotations

import numpy as np

from mcgen.components import Components
from mcgen.plugins.hookspecs import hookimpl

QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")


def load_digits_quadrants(*, n_samples: int | None = None, flatten: bool = False, data_home=None,
                          random_state=0) -> tuple[Components, dict]:
    """Load scikit-learn's digits split into four quadrant components.

    Parameters
    ----------
    n_samples : int, optional
        Keep a random subset of this many images (drawn with ``random_state``); all 1,797 by
        default, in scikit-learn's order.
    flatten : bool, default=False
        Return each quadrant as a 16-vector instead of a ``(1, 4, 4)`` image.
    data_home : ignored
        Accepted for the uniform loader signature (the data ship with scikit-learn).
    random_state : int or None
        Seed of the subset drawn when ``n_samples`` is given.

    Returns
    -------
    X : Components
        Four float32 arrays in [0, 1], each ``(n, 1, 4, 4)`` (or ``(n, 16)`` when ``flatten``).
    info : dict
        ``names``, ``kinds``, ``shapes``, ``labels`` (the digit of each row), ``description``,
        ``license``, ``source``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / np.float32(16.0)
    labels = bunch.target.astype(np.int64)
    if n_samples is not None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if n_samples > len(images):
            raise ValueError(f"n_samples={n_samples} exceeds the {len(images)} digits available")
        idx = np.sort(np.random.default_rng(random_state).permutation(len(images))[:n_samples])
        images, labels = images[idx], labels[idx]
    quads = [images[:, :4, :4], images[:, :4, 4:], images[:, 4:, :4], images[:, 4:, 4:]]
    if flatten:
        arrays = [np.ascontiguousarray(q.reshape(len(q), 16)) for q in quads]
        shapes, kinds = [(16,)] * 4, ["vector"] * 4
    else:
        arrays = [np.ascontiguousarray(q[:, None]) for q in quads]
        shapes, kinds = [(1, 4, 4)] * 4, ["image"] * 4
    info = {
        "name": "digits",
        "names": list(QUADRANTS),
        "kinds": kinds,
        "shapes": shapes,
        "labels": labels,
        "description": "scikit-learn's 8x8 digits (UCI optical recognition of handwritten digits), "
                       "grey levels scaled to [0, 1], split into four 4x4 quadrant components",
        "license": "CC BY 4.0 (UCI Machine Learning Repository), bundled with scikit-learn (BSD-3-Clause)",
        "source": "sklearn.datasets.load_digits",
    }
    return Components(arrays, names=list(QUADRANTS)), info


@hookimpl
def mcgen_register_datasets(register):
    register("digits", load_digits_quadrants,
             description="scikit-learn digits, four 4x4 quadrant components (offline, small)")
