"""Metrics for probabilistic completion: score m sampled completions of each row against the truth.

``est.predict_missing(X_known, known, n_samples=m)`` returns m completions per row, a sample from
the model's conditional distribution of the missing components given the observed ones.  The
functions here compare such samples with the real values:

- :func:`energy_score`: a proper scoring rule for the whole conditional distribution (lower is
  better; the true conditional minimises its expectation);
- :func:`completion_r2` and :func:`single_completion_r2`: R2 of the completion mean and of one
  completion (point accuracy);
- :func:`interval_coverage`: how often the truth falls in the central empirical intervals of the
  completions (calibration of the spread);
- :func:`completion_metrics`: all four for a fitted estimator on held-out rows, over observed
  subsets.

Array conventions: ``samples`` is ``(n_rows, m, d)`` and ``truth`` is ``(n_rows, d)``, with the
missing components flattened and concatenated along the last axis.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mcgen.metrics.conditional import component_arrays, known_subsets

__all__ = ["completion_metrics", "completion_r2", "energy_score", "interval_coverage", "single_completion_r2"]

#: Rows per block in :func:`energy_score` are chosen so that one block of pairwise differences
#: holds at most this many numbers (32 MiB of float64).
_BLOCK_ELEMENTS = 1 << 22


def _check_finite(a: np.ndarray, label: str) -> None:
    if not np.isfinite(a).all():
        raise ValueError(f"{label} contains NaN or infinite values")


def _as_float(a: Any, label: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label} could not be read as a numeric array: {exc}") from None
    return arr


def _check_samples(samples: Any, truth: Any, min_m: int, allow_point: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``samples`` ``(n, m, d)`` (or ``(n, d)`` when ``allow_point``) and ``truth`` ``(n, d)``."""
    s = _as_float(samples, "samples")
    t = _as_float(truth, "truth")
    if t.ndim != 2:
        raise ValueError(f"truth must have shape (n_rows, d), got {t.shape}")
    ok_dims = (2, 3) if allow_point else (3,)
    if s.ndim not in ok_dims:
        want = "(n_rows, m, d) or (n_rows, d)" if allow_point else "(n_rows, m, d)"
        raise ValueError(f"samples must have shape {want}, got {s.shape}")
    if s.shape[0] != t.shape[0] or s.shape[-1] != t.shape[1]:
        raise ValueError(f"samples {s.shape} do not match truth {t.shape}: expected "
                         f"({t.shape[0]}, m, {t.shape[1]})" + (f" or {t.shape}" if allow_point else ""))
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"truth {t.shape} is empty")
    if s.ndim == 3 and s.shape[1] < min_m:
        raise ValueError(f"need at least {min_m} completions per row (samples axis 1), got {s.shape[1]}")
    _check_finite(s, "samples")
    _check_finite(t, "truth")
    return s, t


def _scale(truth: np.ndarray, scale: Any) -> np.ndarray:
    """Per-coordinate divisor: the truth's standard deviation, or the given one (d,)."""
    if scale is None:
        sd = truth.std(axis=0)
    else:
        sd = np.broadcast_to(np.asarray(scale, dtype=np.float64), truth.shape[1:])
    return np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)


def energy_score(samples: Any, truth: Any, scale: Any = None) -> float:
    """Fair (unbiased) energy score of sampled completions, standardised and per coordinate.

    Each coordinate is divided by ``scale``: by default the standard deviation of ``truth`` over
    the rows (``ddof=0``; coordinates whose standard deviation is 0 or not finite are left as they
    are).  With
    ``X_1..X_m`` the standardised completions of a row and ``y`` its standardised truth::

        ES = mean_j ||X_j - y|| - 1 / (2 m (m - 1)) * sum_{j != k} ||X_j - X_k||

    The value is ``ES / sqrt(d)`` averaged over the rows.  Lower is better; 0 only for a point
    mass at the truth.  It is a proper scoring rule: its expectation is minimised by drawing the
    completions from the true conditional distribution, so it penalises a wrong mean, a wrong
    spread and wrong dependence between coordinates alike.

    Parameters
    ----------
    samples : array-like of shape (n_rows, m, d)
        ``m >= 2`` completions per row.
    truth : array-like of shape (n_rows, d)
        The real values.
    scale : array-like of shape (d,), optional
        Divisor of each coordinate instead of the truth's per-coordinate standard deviation (for
        images, one pooled standard deviation per component: see :func:`completion_metrics`).

    Returns
    -------
    float
        Mean standardised energy score per row, divided by ``sqrt(d)``.  For completions drawn
        from the marginal (no information used) of standard Gaussian coordinates it is about
        0.56 (d = 1) to 0.71 (large d); see ``docs/metrics.md``.

    Raises
    ------
    ValueError
        If the shapes do not match, ``m < 2`` or a value is not finite.
    """
    s, t = _check_samples(samples, truth, min_m=2)
    n, m, d = s.shape
    scale = _scale(t, scale)
    block = max(1, _BLOCK_ELEMENTS // (m * d))
    total = 0.0
    for start in range(0, n, block):
        xs = s[start:start + block] / scale  # (b, m, d)
        ys = t[start:start + block] / scale  # (b, d)
        diff = xs - ys[:, None, :]
        accuracy = np.sqrt(np.einsum("bmd,bmd->bm", diff, diff)).mean(axis=1)
        spread = np.zeros(len(xs))
        for j in range(m - 1):  # pairs j < k, each once
            pair = xs[:, j + 1:] - xs[:, j:j + 1]
            spread += np.sqrt(np.einsum("bkd,bkd->bk", pair, pair)).sum(axis=1)
        # sum over j != k counts every pair twice: 1/(2 m (m-1)) * 2 * sum_{j<k}
        total += float((accuracy - spread / (m * (m - 1))).sum())
    return float(total / n / np.sqrt(d))


def _r2(pred: np.ndarray, truth: np.ndarray, scale: Any = None) -> float:
    """R2 over the coordinates of ``truth`` that vary: the uniform average of the coordinates'
    R2 by default; with ``scale``, ``1 - sum_j SSE_j / s_j^2 / sum_j SST_j / s_j^2`` (which is the
    uniform average again when ``s_j`` is each coordinate's standard deviation)."""
    varies = ~np.all(truth == truth[:1], axis=0)
    if not varies.any():
        raise ValueError("every coordinate of truth is constant; R2 is undefined")
    t = truth[:, varies]
    p = pred[:, varies]
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    if scale is None:
        return float(np.mean(1.0 - ss_res / ss_tot))
    w = 1.0 / _scale(truth, scale)[varies] ** 2
    return float(1.0 - (w * ss_res).sum() / (w * ss_tot).sum())


def completion_r2(samples: Any, truth: Any, scale: Any = None) -> float:
    """R2 of the completion mean against the truth.

    Parameters
    ----------
    samples : array-like of shape (n_rows, m, d) or (n_rows, d)
        Completions; with three dimensions they are averaged over axis 1 (an estimate of the
        conditional mean), with two they are a point prediction.
    truth : array-like of shape (n_rows, d)
    scale : array-like of shape (d,), optional
        Weights the coordinates by ``1 / scale^2`` (see :func:`completion_metrics`): the R2 is
        then ``1 - sum_j SSE_j / scale_j^2 / sum_j SST_j / scale_j^2``.

    Returns
    -------
    float
        ``1 - sum_rows (y - yhat)^2 / sum_rows (y - mean(y))^2`` per coordinate, averaged
        uniformly over the coordinates whose truth varies (constant ones have no R2 and are left
        out; with ``scale``, the weighted form above).  1 is perfect, 0 is predicting the mean of
        the truth.  For ``m`` draws from the true conditional its expectation is
        ``1 - (1 + 1/m) Var(y|x) / Var(y)`` per coordinate.

    Raises
    ------
    ValueError
        If the shapes do not match, a value is not finite or no coordinate of truth varies.
    """
    s, t = _check_samples(samples, truth, min_m=1, allow_point=True)
    return _r2(s.mean(axis=1) if s.ndim == 3 else s, t, scale)


def single_completion_r2(samples: Any, truth: Any, scale: Any = None) -> float:
    """R2 of the first completion ``samples[:, 0]`` against the truth.

    Parameters
    ----------
    samples : array-like of shape (n_rows, m, d)
    truth : array-like of shape (n_rows, d)
    scale : array-like of shape (d,), optional
        As in :func:`completion_r2`.

    Returns
    -------
    float
        As :func:`completion_r2`, for one draw per row.  For draws from the true conditional its
        expectation is ``1 - 2 Var(y|x) / Var(y)`` per coordinate, so it can be negative for a
        perfect model when the observed components explain less than half of the variance.

    Raises
    ------
    ValueError
        If the shapes do not match, a value is not finite or no coordinate of truth varies.
    """
    s, t = _check_samples(samples, truth, min_m=1)
    return _r2(s[:, 0], t, scale)


def _check_levels(levels: Any) -> tuple[float, ...]:
    if np.isscalar(levels):
        levels = (levels,)
    out = tuple(float(v) for v in levels)
    if not out:
        raise ValueError("levels is empty")
    bad = [v for v in out if not 0.0 < v < 1.0]
    if bad:
        raise ValueError(f"interval levels must lie strictly between 0 and 1, got {bad}")
    return out


def interval_coverage(samples: Any, truth: Any, levels: Sequence[float] = (0.5, 0.9)) -> dict[float, float]:
    """Coverage of the central empirical intervals of the completions.

    Parameters
    ----------
    samples : array-like of shape (n_rows, m, d)
        ``m >= 2`` completions per row.
    truth : array-like of shape (n_rows, d)
    levels : sequence of float, default=(0.5, 0.9)
        Nominal levels, each in (0, 1).

    Returns
    -------
    dict
        ``{level: fraction}``: the fraction of (row, coordinate) pairs whose truth lies in
        ``[q_lo, q_hi]``, the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the m
        completions (``np.quantile``'s default, linear method).

    Notes
    -----
    With a finite number m of completions a perfectly calibrated model covers **less** than the
    nominal level: the expected coverage is close to ``level * (m - 1) / (m + 1)`` (exactly that
    where the quantile positions fall on order statistics, e.g. m = 21 for 0.5 and 0.9), so 0.41
    and 0.74 (Gaussian data: 0.41 and 0.76) for levels 0.5 and 0.9 at m = 10, and 0.48 and 0.87
    at m = 50.  Compare a coverage with that value, not with the level.

    Raises
    ------
    ValueError
        If the shapes do not match, ``m < 2``, a value is not finite or a level is outside (0, 1).
    """
    s, t = _check_samples(samples, truth, min_m=2)
    out: dict[float, float] = {}
    for level in _check_levels(levels):
        lo, hi = np.quantile(s, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=1)
        out[level] = float(((t >= lo) & (t <= hi)).mean())
    return out


def _coverage_key(level: float) -> str:
    return f"coverage_{int(round(100 * level))}"


#: Ways of scaling the coordinates in :func:`completion_metrics`.
SCALES = ("auto", "coordinate", "component")


def _component_scale(a: np.ndarray, how: str) -> np.ndarray | None:
    """Per-coordinate divisor of one component's flattened truth (None: its own per-coordinate sd)."""
    pooled = how == "component" or (how == "auto" and a.ndim > 2)
    if not pooled:
        return None
    flat = a.reshape(len(a), -1)
    return np.full(flat.shape[1], float(flat.std()))


def _completion_blocks(estimator: Any, X: Any, known: str | Sequence, n_completions: int, random_state: Any,
                       scale: str = "auto"
                       ) -> Iterator[tuple[list[int], np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yield ``(known, samples (n, m, d), truth (n, d), scale (d,) or None)`` for each subset."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if isinstance(n_completions, bool) or not isinstance(n_completions, (int, np.integer)):
        raise TypeError(f"n_completions must be an integer, got {type(n_completions).__name__}")
    m = int(n_completions)
    if m < 2:
        raise ValueError(f"n_completions must be at least 2 (the energy score and intervals need a spread), got {m}")
    ref = component_arrays(X)
    n = ref[0].shape[0]
    for ks in known_subsets(len(ref), known):
        full = estimator.predict_missing([ref[k] for k in ks], known=ks, n_samples=m, random_state=random_state)
        parts, truths, scales = [], [], []
        for i in range(len(ref)):
            if i in ks:
                continue
            a = np.asarray(full[i], dtype=np.float64)
            if a.ndim < 2 or a.shape[:2] != (n, m):
                raise ValueError(f"predict_missing returned component {i} with shape {a.shape}; expected "
                                 f"({n}, {m}, ...) for {n} rows and n_samples={m}")
            parts.append(a.reshape(n, m, -1))
            truth = np.asarray(ref[i], dtype=np.float64)
            truths.append(truth.reshape(n, -1))
            sc = _component_scale(truth, scale)
            scales.append(truths[-1].std(axis=0) if sc is None else sc)
        pooled = any(_component_scale(np.asarray(ref[i]), scale) is not None for i in range(len(ref)) if i not in ks)
        yield (list(ks), np.concatenate(parts, axis=-1), np.concatenate(truths, axis=-1),
               np.concatenate(scales) if pooled else None)


def completion_metrics(estimator: Any, X: Any, known: str | Sequence = "leave_one_out", n_completions: int = 10,
                       random_state: Any = 0, levels: Sequence[float] = (0.5, 0.9), scale: str = "auto"
                       ) -> dict[str, Any]:
    """Probabilistic-completion metrics of a fitted estimator on held-out rows.

    For each observed subset, the other components of the rows of ``X`` are completed
    ``n_completions`` times with one ``predict_missing`` call, the missing components are
    flattened and concatenated, and :func:`energy_score`, :func:`completion_r2`,
    :func:`single_completion_r2` and :func:`interval_coverage` compare them with the truth.

    Parameters
    ----------
    estimator : fitted mcgen estimator
        Anything with ``predict_missing(X, known, n_samples=..., random_state=...)`` returning
        the unknown components as ``(n_rows, n_samples, *shape)``.
    X : Components or list of arrays
        Real held-out rows with all components.
    known : {"leave_one_out", "single", "all"} or sequence, default="leave_one_out"
        Observed subsets (see :func:`mcgen.metrics.known_subsets`): ``"leave_one_out"`` completes
        each component from all the others, ``"single"`` observes one component and completes
        the rest, ``"all"`` takes every non-empty proper subset.
    n_completions : int, default=10
        Completions per row (at least 2).
    random_state : int, RandomState or None, default=0
        Passed to every ``predict_missing`` call.
    levels : sequence of float, default=(0.5, 0.9)
        Interval levels of the coverage.
    scale : {"auto", "coordinate", "component"}, default="auto"
        How coordinates are put on one scale for the energy score and the R2. ``"coordinate"``:
        each by its own standard deviation over the rows (the R2 is then the uniform average of
        the coordinates' R2). ``"component"``: each component by one pooled standard deviation
        (the R2 is then variance-weighted, so near-constant pixels, such as an image's always-dark
        border, neither dominate nor blow up). ``"auto"``: ``"component"`` for components with
        more than one feature axis (images), ``"coordinate"`` for vectors.

    Returns
    -------
    dict
        ``energy_score``, ``r2_mean``, ``r2_single`` and ``coverage_<round(100 * level)>`` (one per
        level), each the mean over the observed subsets, and ``per_known``: one dict per subset
        with ``known`` and the same keys.

    Raises
    ------
    ValueError
        If ``n_completions < 2``, the known sets or levels are invalid, or the completions have the
        wrong shape or non-finite values.
    """
    levels = _check_levels(levels)
    keys = [_coverage_key(v) for v in levels]
    if len(set(keys)) != len(keys):
        raise ValueError(f"levels {levels} give duplicate keys {keys}")
    per_known: list[dict[str, Any]] = []
    for ks, samples, truth, sc in _completion_blocks(estimator, X, known, n_completions, random_state, scale):
        row: dict[str, Any] = {"known": ks, "energy_score": energy_score(samples, truth, sc),
                               "r2_mean": completion_r2(samples, truth, sc),
                               "r2_single": single_completion_r2(samples, truth, sc)}
        cov = interval_coverage(samples, truth, levels)
        row.update({key: cov[v] for key, v in zip(keys, levels)})
        per_known.append(row)
    out: dict[str, Any] = {key: float(np.mean([r[key] for r in per_known]))
                           for key in ["energy_score", "r2_mean", "r2_single", *keys]}
    out["per_known"] = per_known
    return out
