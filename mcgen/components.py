"""``Components``: a sample-indexable container of M component arrays, and input validation.

scikit-learn reads a plain list of M arrays as M samples, so cross-validation needs a container
whose ``shape[0]`` and indexing are about rows.  ``Components`` is that container; every estimator
method also accepts a plain list and wraps it here once, at the door.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from mcgen.exceptions import DataTypeError

ArrayLike = Any

#: What to say when the number of components is off: the usual cause is scikit-learn splitting a
#: plain list by its entries (components) instead of by rows.
SPLIT_BY_ENTRIES_HINT = ("X must hold one array per component of the model; GridSearchCV, cross_val_score and "
                         "train_test_split split a plain list by its entries, i.e. by component: wrap the list in "
                         "mcgen.Components([...]) so that they split it by rows")

#: scikit-learn's functions that fit or score one cross-validation split.
_CV_FUNCTIONS = frozenset({"_fit_and_score", "_fit_and_predict", "_permutation_test_score",
                           "_incremental_fit_estimator"})


def in_cross_validation(max_depth: int = 60) -> bool:
    """Whether the caller runs inside one of scikit-learn's cross-validation helpers
    (``GridSearchCV``, ``cross_val_score``, ``cross_validate``, ``learning_curve``, ...): a plain
    list reaching an estimator there was split by its entries, not by rows."""
    import sys

    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return False
        if frame.f_code.co_name in _CV_FUNCTIONS and frame.f_globals.get("__name__", "").startswith(
                "sklearn.model_selection"):
            return True
        frame = frame.f_back
    return False


def check_not_split_by_component(X: Any) -> None:
    """Refuse a plain list or tuple that ``fit`` receives inside scikit-learn's cross-validation
    (see :func:`in_cross_validation`) with the hint to wrap it in :class:`Components`.

    Only for ``fit``/``partial_fit``: scikit-learn hands them the split of what the user passed,
    while scorers may legitimately call inference methods with lists they build themselves.
    """
    if isinstance(X, (list, tuple)) and in_cross_validation():
        raise ValueError("a plain list of components reached the estimator inside scikit-learn's cross-validation "
                         "(GridSearchCV, cross_val_score, ...), which splits a list by its entries, i.e. by "
                         f"component, not by row; wrap it: mcgen.Components({'[...]'}), which they split by rows")


def _component_label(i: int, names: Sequence[str] | None) -> str:
    if names is not None and i < len(names):
        return f"component {i} ({names[i]!r})"
    return f"component {i}"


def _sparse_message(label: str, kind: str) -> str:
    return (f"{label} is {kind}; mcgen needs dense arrays: densify it (.toarray() for SciPy, .to_dense() for "
            "torch or pandas sparse data) if it fits in memory")


def _is_missing(v: Any) -> bool:
    """pandas' ``NA``/``NaT`` or ``None`` (without importing pandas)."""
    return v is None or type(v).__name__ in ("NAType", "NaTType")


def _as_array(x: ArrayLike, label: str) -> np.ndarray:
    """Convert one component to a numeric ndarray without copying when it already is one.

    An object array of numbers (e.g. from a mixed pandas frame) is converted to float64; sparse
    matrices and tensors ("densify it"), missing values (pandas ``NA``, ``None``), complex and
    non-numeric data are refused with a message that says which.
    """
    if x is None:
        raise TypeError(f"{label} is None; pass an array (use `known=` for missing components)")
    if sparse.issparse(x):
        raise DataTypeError(_sparse_message(label, f"a sparse {type(x).__name__}"))
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        if getattr(x, "layout", None) is not None and str(x.layout) != "torch.strided":
            raise DataTypeError(_sparse_message(label, f"a torch tensor of layout {x.layout}"))
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{label} could not be read as an array: {exc}") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            flat = arr.reshape(-1)
            n_missing = sum(1 for v in flat if _is_missing(v))
            if n_missing:
                raise ValueError(f"{label} has {n_missing} missing value{'s' * (n_missing != 1)} (pandas NA or "
                                 "None); mcgen needs complete rows: drop or impute them (a whole missing component "
                                 "is what predict_missing is for)") from None
            if any(sparse.issparse(v) for v in flat[:1000]):
                raise DataTypeError(_sparse_message(label, "an object array of sparse rows")) from None
            raise DataTypeError(f"{label} has dtype object and its values are not all numbers "
                                f"(ragged rows or non-numeric values): {exc}") from None
    if np.iscomplexobj(arr):
        raise DataTypeError(f"{label} has complex dtype {arr.dtype}. Complex data not supported; pass real "
                            "numbers")
    if arr.dtype.kind not in "biuf":
        raise DataTypeError(f"{label} has non-numeric dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{label} is a scalar; expected an array with one row per sample")
    return arr


class Components:
    """A list of M component arrays with a common number of rows, indexable by rows.

    Parameters
    ----------
    arrays : sequence of array-like
        One array per component, each of shape ``(n_samples, *component_shape)``.
    names : sequence of str, optional
        A name per component, used in error messages and plots.

    Notes
    -----
    ``len(C)`` and ``C.shape[0]`` are the number of samples; ``C[idx]`` with an integer array,
    a slice or a boolean mask returns a new ``Components`` of those rows (views where NumPy gives
    views), so ``GridSearchCV``, ``cross_val_score``, ``train_test_split`` and joblib work.
    Iterating yields the component arrays; ``C.arrays`` is the tuple of arrays.
    Integer indexing is refused: a single row is not a ``Components``.

    Examples
    --------
    >>> import numpy as np
    >>> from mcgen import Components
    >>> C = Components([np.zeros((5, 2)), np.ones((5, 3))])
    >>> C.shape, C.n_components, C[1:3].shape
    ((5,), 2, (2,))
    """

    def __init__(self, arrays: Sequence[ArrayLike] | Components, names: Sequence[str] | None = None):
        if isinstance(arrays, Components):
            names = arrays.names if names is None else names
            arrays = arrays.arrays
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence) or isinstance(arrays, str):
            raise TypeError(
                "Components expects a list or tuple of arrays (one per component), got "
                f"{type(arrays).__name__}"
            )
        if len(arrays) == 0:
            raise ValueError("Components needs at least one component array; got an empty list")
        if names is not None:
            names = tuple(str(n) for n in names)
            if len(names) != len(arrays):
                raise ValueError(f"got {len(names)} names for {len(arrays)} components")
        converted = tuple(_as_array(a, _component_label(i, names)) for i, a in enumerate(arrays))
        n = converted[0].shape[0]
        for i, a in enumerate(converted):
            if a.shape[0] != n:
                rows = ", ".join(f"{j}: {b.shape[0]}" for j, b in enumerate(converted))
                raise ValueError(
                    f"{_component_label(i, names)} has {a.shape[0]} rows but component 0 has {n}; "
                    f"all components must have the same number of rows (rows per component: {rows})"
                )
        self.arrays: tuple[np.ndarray, ...] = converted
        self.names: tuple[str, ...] | None = names

    # --- sample axis -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int]:
        """``(n_samples,)``: what scikit-learn reads as the number of samples."""
        return (self.arrays[0].shape[0],)

    @property
    def n_samples(self) -> int:
        """Number of rows (samples)."""
        return self.arrays[0].shape[0]

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, key: Any) -> Components:
        if isinstance(key, tuple):  # sklearn's _safe_indexing passes (rows, Ellipsis)
            if len(key) == 2 and key[1] is Ellipsis:
                key = key[0]
            else:
                raise IndexError("Components supports only row indexing: C[rows] or C[rows, ...]")
        if isinstance(key, (int, np.integer)):
            raise TypeError(
                "Components cannot be indexed by a single integer; use C[[i]] for one row or "
                "C.arrays[i] for component i"
            )
        if not isinstance(key, slice):
            key = np.asarray(key)
            if key.dtype == bool:
                if key.shape != (self.n_samples,):
                    raise IndexError(
                        f"boolean mask of shape {key.shape} does not match {self.n_samples} rows"
                    )
            elif key.dtype.kind not in "iu":
                raise IndexError(f"row index must be integers, a slice or a boolean mask, got {key.dtype}")
        out = object.__new__(Components)
        out.arrays = tuple(a[key] for a in self.arrays)
        out.names = self.names
        return out

    # --- component axis ----------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """Number of components M."""
        return len(self.arrays)

    @property
    def component_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-component sample shape (without the row axis)."""
        return tuple(a.shape[1:] for a in self.arrays)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.arrays)

    def __array__(self, *args: Any, **kwargs: Any):
        raise TypeError(
            "Components holds several arrays of different shapes and cannot become one array; "
            "use C.arrays or np.concatenate([a.reshape(len(a), -1) for a in C], axis=1)"
        )

    def __repr__(self) -> str:
        shapes = ", ".join(str(s) for s in self.component_shapes)
        return f"Components(n_samples={self.n_samples}, component_shapes=[{shapes}])"

    def __eq__(self, other: object) -> bool:
        return NotImplemented

    __hash__ = None  # mutable container semantics, like a list


def is_single_array(X: Any) -> bool:
    """Whether ``X`` is one array-like (an ndarray, tensor, frame, sparse matrix or anything
    with ``__array__``), which stands for a single component, rather than a list of them."""
    if isinstance(X, (list, tuple, Components)):
        return False
    return isinstance(X, np.ndarray) or hasattr(X, "shape") or hasattr(X, "__array__") or sparse.issparse(X)


def as_components(X: Any, *, n_components: int | None = None, names: Sequence[str] | None = None,
                  allow_empty: bool = False) -> Components:
    """Wrap ``X`` (a list/tuple of arrays, a ``Components`` or one 2-D+ array for M=1).

    Raises ``ValueError``/``TypeError`` naming the component for malformed input.
    """
    if isinstance(X, Components):
        C = X
    elif is_single_array(X):
        C = Components([X], names=names)
    elif isinstance(X, (list, tuple)):
        C = Components(X, names=names)
    else:
        raise TypeError(
            f"expected a list of component arrays or a Components, got {type(X).__name__}"
        )
    if n_components is not None and C.n_components != n_components:
        raise ValueError(
            f"X has {C.n_components} components but the estimator was fitted with {n_components} "
            f"({SPLIT_BY_ENTRIES_HINT})"
        )
    if not allow_empty and C.n_samples == 0:
        raise ValueError("X has 0 rows; at least one sample is required")
    return C
