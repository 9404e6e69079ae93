"""Missing components: a row's component given as NaN throughout.

The estimators train on such rows (the models' objectives over each row's observed components),
``predict_missing(X)`` completes them and ``score_samples`` bounds ``log p`` of the observed part.
These helpers find the missing components, check that every row keeps one, and group rows by
their pattern of observed components, so each group goes through the models batched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["check_observed", "format_rows", "observed_mask", "observed_patterns"]


def format_rows(rows: np.ndarray, k: int = 5) -> str:
    """Row indices for an error message: ``"3, 8, 11"`` or ``"3, 8, 11, 12, 20 and 7 more"``.

    Parameters
    ----------
    rows : array of int
        The row indices.
    k : int, default=5
        How many are written out.

    Returns
    -------
    str
    """
    shown = ", ".join(str(int(r)) for r in rows[:k])
    return shown if len(rows) <= k else f"{shown} and {len(rows) - k} more"


def observed_mask(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """Which components each row holds.

    A component is missing from a row when the row is NaN throughout that component (the
    estimators' validation has refused rows NaN in part of a component, so the first feature
    decides).

    Parameters
    ----------
    arrays : sequence of M arrays
        The components, all with the same number of rows ``n``.

    Returns
    -------
    ndarray of shape (n, M), bool, or None
        True where row ``b`` holds component ``i``; ``None`` when nothing is missing.
    """
    cols = []
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.size and np.isnan(a.reshape(len(a), -1)[:, 0]).any():
            cols.append(~np.isnan(a.reshape(len(a), -1)[:, 0]))
        else:
            cols.append(np.ones(len(a), dtype=bool))
    mask = np.stack(cols, 1)
    return None if mask.all() else mask


def check_observed(mask: np.ndarray | None, components: Sequence[int] | None = None,
                   need_every_component: bool = True) -> None:
    """Refuse rows without any observed component, and a component missing from every row.

    Parameters
    ----------
    mask : ndarray of shape (n, M), bool, or None
        :func:`observed_mask`'s result (``None``: nothing to check).
    components : sequence of int, optional
        The component index of each column, for the messages (default ``0..M-1``).
    need_every_component : bool, default=True
        Refuse a component missing from every row (fitting: nothing would train its networks
        or its statistics).

    Raises
    ------
    ValueError
        Naming the rows or the component.
    """
    if mask is None:
        return
    comps = list(range(mask.shape[1])) if components is None else list(components)
    empty = np.flatnonzero(~mask.any(1))
    if empty.size:
        raise ValueError(f"row{'s' * (empty.size != 1)} {format_rows(empty)} {'have' if empty.size != 1 else 'has'} "
                         "no observed component (every component NaN); drop such rows")
    if need_every_component:
        never = [comps[j] for j in np.flatnonzero(~mask.any(0))]
        if never:
            raise ValueError(f"component {never[0]} is missing (NaN) in every row; at least one row must hold it")


def observed_patterns(mask: np.ndarray) -> Iterator[tuple[list[int], np.ndarray]]:
    """The distinct patterns of observed components, in order of first appearance.

    Parameters
    ----------
    mask : ndarray of shape (n, M), bool
        :func:`observed_mask`'s result.

    Yields
    ------
    observed : list of int
        The components the rows of this pattern hold (all M for the complete rows).
    rows : ndarray of int
        The rows with this pattern.
    """
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    first = [int(np.flatnonzero(inverse == k)[0]) for k in range(len(patterns))]
    for k in np.argsort(first):
        yield [int(j) for j in np.flatnonzero(patterns[k])], np.flatnonzero(inverse == k)
