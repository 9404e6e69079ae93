"""Per-feature standardisation of the components whose likelihood is a location-scale family.

The estimators train every gaussian/laplace component centred and scaled by its training
statistics and map every output back, so that one set of defaults works for data of any units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Features whose standard deviation is below this fraction of their magnitude are not scaled.
_CONSTANT_FEATURE_TOL = 1e-12


def output_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype of a component's outputs for training data of ``dtype``: float64 for float64
    (or wider) data, float32 for everything else (float32, float16, integers, booleans)."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float64) if dtype.kind == "f" and dtype.itemsize >= 8 else np.dtype(np.float32)


class Standardizer:
    """Centre and scale chosen components feature by feature, and undo it.

    Undoing it also gives every output its component's dtype (:func:`output_dtype` of the
    training data: float64 data get float64 outputs, anything else float32); the models
    compute in float32 either way.

    Parameters
    ----------
    mean, scale : list of (ndarray or None)
        Per component: the float32 mean and standard deviation of every feature (arrays of the
        component's sample shape), or ``None`` for a component left as it is.
    dtypes : list of dtype, optional
        Per component, the dtype of its outputs (default: float32 for every component).

    Examples
    --------
    >>> import numpy as np
    >>> s = Standardizer.fit([np.array([[0.0], [2.0]]), np.array([[5.0], [7.0]])], [True, False])
    >>> s.transform(np.array([[2.0]]), 0), s.transform(np.array([[2.0]]), 1)
    (array([[1.]], dtype=float32), array([[2.]], dtype=float32))
    """

    def __init__(self, mean: Sequence[np.ndarray | None], scale: Sequence[np.ndarray | None],
                 dtypes: Sequence[np.dtype | str] | None = None):
        if len(mean) != len(scale):
            raise ValueError(f"mean has {len(mean)} entries but scale has {len(scale)}")
        for i, (m, s) in enumerate(zip(mean, scale)):
            if (m is None) != (s is None):
                raise ValueError(f"component {i}: mean and scale must both be arrays or both None")
        if dtypes is not None and len(dtypes) != len(mean):
            raise ValueError(f"dtypes has {len(dtypes)} entries for {len(mean)} components")
        self.mean = [None if m is None else np.asarray(m, dtype=np.float32) for m in mean]
        self.scale = [None if s is None else np.asarray(s, dtype=np.float32) for s in scale]
        self.dtypes = [np.dtype(np.float32)] * len(mean) if dtypes is None else [output_dtype(d) for d in dtypes]

    @classmethod
    def fit(cls, arrays: Sequence[np.ndarray], which: Sequence[bool]) -> Standardizer:
        """Statistics of the components flagged in ``which`` (float64 sums, float32 results),
        and every component's output dtype (:func:`output_dtype` of its array).

        A feature that is constant (standard deviation below ``1e-12`` times its magnitude) is
        centred but not scaled.  Rows where a component is missing (NaN throughout) do not count
        in its statistics.
        """
        mean: list[np.ndarray | None] = []
        scale: list[np.ndarray | None] = []
        for a, on in zip(arrays, which):
            if not on:
                mean.append(None)
                scale.append(None)
                continue
            x = np.asarray(a).astype(np.float64, copy=False)
            if x.size and np.isnan(x).any():  # missing components (NaN rows): statistics of the observed rows
                x = x[~np.isnan(x.reshape(len(x), -1)[:, 0])]
            m = x.mean(0)
            s = x.std(0)
            s = np.where(s > _CONSTANT_FEATURE_TOL * np.maximum(1.0, np.abs(m)), s, 1.0)
            mean.append(m.astype(np.float32))
            scale.append(s.astype(np.float32))
        return cls(mean, scale, [np.asarray(a).dtype for a in arrays])

    @property
    def n_components(self) -> int:
        return len(self.mean)

    def transform(self, a: np.ndarray, i: int) -> np.ndarray:
        """Component ``i`` as a new float32 array in the standardised space.

        Always copies: the caller's array (possibly read-only or memory-mapped) is never touched.
        """
        x = np.array(a, dtype=np.float32, copy=True)
        if self.mean[i] is not None:
            x -= self.mean[i]
            x /= self.scale[i]
        return x

    def inverse_transform(self, x: np.ndarray, i: int) -> np.ndarray:
        """Map component ``i`` from the standardised space back to the data's units, in the
        component's output dtype."""
        x = np.asarray(x, dtype=np.float32)
        if self.mean[i] is not None:
            x = x * self.scale[i] + self.mean[i]
        return x.astype(self.dtypes[i], copy=False)

    def as_output(self, a: np.ndarray, i: int) -> np.ndarray:
        """A copy of data of component ``i`` (a known component returned by ``predict_missing``)
        in the component's output dtype."""
        return np.array(a, dtype=self.dtypes[i])

    def to_tensor(self, a: np.ndarray, i: int, device=None) -> torch.Tensor:
        """:meth:`transform`, as a tensor (on ``device`` when given)."""
        t = torch.from_numpy(self.transform(a, i))
        return t if device is None else t.to(device)

    def log_jacobian(self) -> np.ndarray:
        """Per component, ``sum log scale`` (0 for a component left as it is): subtracted from a
        log-density in the standardised space, it gives the density in the data's units.  A row
        lacking components subtracts only its observed components' terms.

        Returns
        -------
        ndarray of shape (M,), float64
        """
        return np.array([0.0 if s is None else float(np.log(s.astype(np.float64)).sum()) for s in self.scale])

    def get_state(self) -> dict:
        """The statistics as tensors (``None`` for untouched components), for safe persistence."""
        return {"standardize_mean": [None if m is None else torch.from_numpy(m.copy()) for m in self.mean],
                "standardize_scale": [None if s is None else torch.from_numpy(s.copy()) for s in self.scale],
                "output_dtypes": [d.name for d in self.dtypes]}

    @classmethod
    def from_state(cls, state: dict) -> Standardizer:
        """Inverse of :meth:`get_state` (a state written by mcgen 0.1, without output dtypes,
        gives float32 outputs, as 0.1 did for generated values)."""
        def arrays(key):
            return [None if t is None else np.asarray(t.numpy() if hasattr(t, "numpy") else t)
                    for t in state[key]]

        return cls(arrays("standardize_mean"), arrays("standardize_scale"), state.get("output_dtypes"))

    def __repr__(self) -> str:
        on = [i for i, m in enumerate(self.mean) if m is not None]
        return f"Standardizer(n_components={self.n_components}, standardized={on})"
