"""Conditional evaluation: complete real rows with ``predict_missing`` and yield the completions.

Every conditional metric (``conditional_ssim``, ``conditional_fid``, ``conditional_coherence``,
``conditional_centre_of_mass_wasserstein`` and :func:`mcgen.metrics.conditional_metrics`) follows
the same protocol: for each observed subset ``known`` of components, the estimator generates the
other components of the held-out rows from the observed ones, and the completed rows are compared
with the real rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from mcgen.components import Components


def component_arrays(X, label: str = "X") -> list[np.ndarray]:
    """The component arrays of ``X`` (a ``Components``, a list/tuple of arrays or one array),
    with their shapes kept (unlike the flattening helpers of the distance metrics)."""
    if isinstance(X, Components):
        arrays = list(X.arrays)
    elif isinstance(X, (list, tuple)):
        arrays = [np.asarray(a) for a in X]
    else:
        arrays = [np.asarray(X)]
    if not arrays:
        raise ValueError(f"{label} holds no components")
    n = arrays[0].shape[0] if arrays[0].ndim else None
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise ValueError(f"{label}: component {i} is a scalar; expected one row per sample")
        if a.shape[0] != n:
            raise ValueError(f"{label}: component {i} has {a.shape[0]} rows, component 0 has {n}")
    return arrays


def known_subsets(n_components: int, which: str | Sequence = "single") -> list[list[int]]:
    """Observed subsets for conditional evaluation.

    Parameters
    ----------
    n_components : int
        Number of components M.
    which : {"single", "leave_one_out", "all"} or sequence
        ``"single"``: every single component (``[[0], [1], ...]``, the default of the
        conditional metrics); ``"leave_one_out"``: every component completed from all the others
        (``[[1, 2, ...], [0, 2, ...], ...]``, the default of the completion metrics); ``"all"``:
        every non-empty proper subset (``2**M - 2`` of them, the PolyMNIST coherence protocol); a
        sequence: explicit subsets (an int stands for ``[int]``).

    Returns
    -------
    list of list of int
    """
    M = int(n_components)
    if M < 2:
        raise ValueError(f"conditional evaluation needs at least 2 components, got {M}")
    if isinstance(which, str):
        if which == "single":
            return [[i] for i in range(M)]
        if which == "leave_one_out":
            return [[k for k in range(M) if k != i] for i in range(M)]
        if which == "all":
            return [list(s) for k in range(1, M) for s in itertools.combinations(range(M), k)]
        raise ValueError(f"known sets must be 'single', 'leave_one_out', 'all' or a list of subsets, "
                         f"got {which!r}")
    out = []
    for s in which:
        s = [int(s)] if np.isscalar(s) else [int(k) for k in s]
        if not s or len(s) >= M or len(set(s)) != len(s) or min(s) < 0 or max(s) >= M:
            raise ValueError(f"known set {s} is not a non-empty proper subset of components 0..{M - 1}")
        out.append(s)
    if not out:
        raise ValueError("no known sets given")
    return out


def complete_rows(estimator, X, known_sets: str | Sequence = "single", random_state=0
                  ) -> Iterator[tuple[list[int], list[np.ndarray], list[np.ndarray]]]:
    """Complete the rows of ``X`` from each observed subset.

    Parameters
    ----------
    estimator : fitted mcgen estimator
        Anything with ``predict_missing(X, known, random_state=...)``.
    X : Components or list of arrays
        Real held-out rows (all components).
    known_sets : {"single", "all"} or sequence
        See :func:`known_subsets`.
    random_state : int or None
        Seed passed to every ``predict_missing`` call.

    Yields
    ------
    known : list of int
        The observed components.
    completed : list of arrays
        All M components: the observed ones unchanged, the others generated.
    missing : list of int
        The generated components.
    """
    ref = component_arrays(X)
    for known in known_subsets(len(ref), known_sets):
        full = estimator.predict_missing([ref[k] for k in known], known=known, random_state=random_state)
        yield known, list(full), [i for i in range(len(ref)) if i not in known]
