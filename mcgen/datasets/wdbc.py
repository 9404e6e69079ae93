"""``wdbc``: the Wisconsin Diagnostic Breast Cancer table as three views of the same cell nuclei.

scikit-learn ships the table (:func:`sklearn.datasets.load_breast_cancer`: 569 fine-needle
aspirates, 30 features, malignant/benign).  Its 30 features are ten measurements of the cell
nuclei in an image (radius, texture, perimeter, area, smoothness, compactness, concavity,
concave points, symmetry, fractal dimension), each summarised three ways over the nuclei of the
image: the mean, the standard error and the "worst" value (the mean of the three largest).
Each summary is one component, so the data are a small, offline, real multi-view table whose
components are strongly but not linearly dependent.  No files are needed.
"""

from __future__ import annotations

import numpy as np

from mcgen.components import Components
from mcgen.plugins.hookspecs import hookimpl

#: The three components (views), in the order of scikit-learn's columns.
VIEWS = ("mean", "se", "worst")
#: The ten nucleus measurements, in the order of scikit-learn's columns within each view.
MEASUREMENTS = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                "concave points", "symmetry", "fractal dimension")
#: scikit-learn's column names per view (``"mean radius"``, ``"radius error"``, ``"worst radius"``, ...).
COLUMNS: dict[str, tuple[str, ...]] = {
    "mean": tuple(f"mean {m}" for m in MEASUREMENTS),
    "se": tuple(f"{m} error" for m in MEASUREMENTS),
    "worst": tuple(f"worst {m}" for m in MEASUREMENTS),
}


def load_wdbc(*, n_samples: int | None = None, data_home=None, random_state=0) -> tuple[Components, dict]:
    """Load the breast-cancer table split into its mean, standard-error and worst views.

    Parameters
    ----------
    n_samples : int, optional
        Keep a random subset of this many rows (drawn with ``random_state``, kept in table
        order); all 569 by default.
    data_home : ignored
        Accepted for the uniform loader signature (the data ship with scikit-learn).
    random_state : int or None
        Seed of the subset drawn when ``n_samples`` is given.

    Returns
    -------
    X : Components
        Three float64 arrays ``(n, 10)`` in the table's units (not standardised; the
        estimators standardise their inputs): ``mean``, ``se``, ``worst``.  Column ``j`` of
        every component is measurement ``MEASUREMENTS[j]``.
    info : dict
        ``names``, ``kinds``, ``shapes``, ``labels`` (0 = malignant, 1 = benign, as
        scikit-learn codes them), ``label_names``, ``columns`` (scikit-learn's column names per
        component), ``measurements``, ``description``, ``license``, ``source``.

    Raises
    ------
    ValueError
        If ``n_samples`` is not a positive integer or exceeds the 569 rows.
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    data = np.asarray(bunch.data, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    feature_names = [str(f) for f in bunch.feature_names]
    if n_samples is not None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if n_samples > len(data):
            raise ValueError(f"n_samples={n_samples} exceeds the {len(data)} rows available")
        idx = np.sort(np.random.default_rng(random_state).permutation(len(data))[:n_samples])
        data, labels = data[idx], labels[idx]
    arrays = []
    for view in VIEWS:
        cols = [feature_names.index(c) for c in COLUMNS[view]]  # by name, not by position
        arrays.append(np.ascontiguousarray(data[:, cols]))
    names = list(VIEWS)
    info = {
        "name": "wdbc",
        "names": names,
        "kinds": ["vector"] * len(names),
        "shapes": [(len(MEASUREMENTS),)] * len(names),
        "labels": labels,
        "label_names": [str(t) for t in bunch.target_names],
        "columns": {view: list(COLUMNS[view]) for view in VIEWS},
        "measurements": list(MEASUREMENTS),
        "description": "Wisconsin Diagnostic Breast Cancer (569 fine-needle aspirates, malignant/benign): ten "
                       "cell-nucleus measurements as three components, their mean, standard error and worst "
                       "(mean of the three largest) over the nuclei of each image",
        "license": "CC BY 4.0 (UCI Machine Learning Repository), bundled with scikit-learn (BSD-3-Clause)",
        "source": "sklearn.datasets.load_breast_cancer (Street, Wolberg & Mangasarian 1993; UCI Breast "
                  "Cancer Wisconsin (Diagnostic))",
    }
    return Components(arrays, names=names), info


@hookimpl
def mcgen_register_datasets(register):
    register("wdbc", load_wdbc,
             description="breast-cancer table (scikit-learn), mean / se / worst views of 10 measurements (offline)")
