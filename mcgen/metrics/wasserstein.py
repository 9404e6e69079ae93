"""Wasserstein distances between generated and real multi-component samples (POT)."""

from __future__ import annotations

import numpy as np
import ot

from mcgen.metrics._common import MetricResult, check_pair
from mcgen.plugins.hookspecs import hookimpl


def marginal_wasserstein(gen, ref) -> MetricResult:
    """Mean over components and coordinates of the 1-D Wasserstein-1 distance.

    ``details["per_coordinate"]`` is an ``(M, d)`` array when all components have the same
    width (the paper's Table I reports its column means times 1000), else a list per component.
    Dependencies between components are ignored by construction.
    """
    g, r = check_pair(gen, ref)
    per = [np.array([ot.wasserstein_1d(a[:, j], b[:, j], p=1) for j in range(a.shape[1])])
           for a, b in zip(g, r)]
    value = float(np.mean(np.concatenate(per)))
    widths = {len(p) for p in per}
    table = np.stack(per) if len(widths) == 1 else per
    return MetricResult("marginal_wasserstein", value, {"per_coordinate": table,
                        "per_component": np.array([p.mean() for p in per])},
                        g[0].shape[0], r[0].shape[0])


def _subsample(a: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return a if a.shape[0] <= n else a[rng.choice(a.shape[0], n, replace=False)]


def _emd(a: np.ndarray, b: np.ndarray) -> float:
    M = ot.dist(a, b, metric="euclidean")
    return float(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), M, numItermax=10_000_000))


def joint_wasserstein(gen, ref, n: int = 2000, by: str = "auto", random_state=0) -> MetricResult:
    """Exact Wasserstein-1 (``ot.emd2``, Euclidean cost) between subsamples of joint vectors.

    Parameters
    ----------
    n : int
        Subsample size of each side (exact OT is cubic in n).
    by : {"auto", "coordinate", "all"}
        ``"coordinate"``: for every coordinate j, the M-dimensional vector of the j-th
        coordinate of every component (the paper's Copula protocol; needs equal widths) and the
        mean over j.  ``"all"``: the concatenation of every component (total width <= 16).
        ``"auto"`` is ``"coordinate"`` when all components have the same width.
    """
    g, r = check_pair(gen, ref)
    rng = np.random.default_rng(random_state)
    widths = {a.shape[1] for a in g}
    if by == "auto":
        by = "coordinate" if len(widths) == 1 else "all"
    if by == "coordinate":
        if len(widths) != 1:
            raise ValueError("by='coordinate' needs components of equal width")
        gi = _subsample(np.arange(g[0].shape[0])[:, None], n, rng)[:, 0]
        ri = _subsample(np.arange(r[0].shape[0])[:, None], n, rng)[:, 0]
        vals = np.array([_emd(np.stack([a[gi, j] for a in g], 1), np.stack([b[ri, j] for b in r], 1))
                         for j in range(widths.pop())])
        return MetricResult("joint_wasserstein", float(vals.mean()), {"per_coordinate": vals, "by": by},
                            len(gi), len(ri), random_state)
    if by != "all":
        raise ValueError(f"by must be 'auto', 'coordinate' or 'all', got {by!r}")
    G, R = np.concatenate(g, 1), np.concatenate(r, 1)
    if G.shape[1] > 16:
        raise ValueError(f"joint_wasserstein is for total width <= 16 (got {G.shape[1]}); "
                         "use sliced_wasserstein")
    val = _emd(_subsample(G, n, rng), _subsample(R, n, rng))
    return MetricResult("joint_wasserstein", val, {"by": by}, min(n, len(G)), min(n, len(R)), random_state)


def sliced_wasserstein(gen, ref, n_projections: int = 500, standardize: bool = True,
                       random_state=0) -> MetricResult:
    """Sliced Wasserstein-2 distance on concatenated (flattened) components.

    With ``standardize`` every column is centred and scaled by the reference's statistics, so
    components of different scales weigh alike.
    """
    g, r = check_pair(gen, ref)
    G, R = np.concatenate(g, 1), np.concatenate(r, 1)
    if standardize:
        mu, sd = R.mean(0), R.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        G, R = (G - mu) / sd, (R - mu) / sd
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    val = float(ot.sliced_wasserstein_distance(G, R, n_projections=n_projections, p=2, seed=seed))
    return MetricResult("sliced_wasserstein", val, {"n_projections": n_projections},
                        len(G), len(R), random_state)


@hookimpl
def mcgen_register_metrics(register):
    from mcgen.metrics.structure import dependency_error

    register("marginal_wasserstein", marginal_wasserstein, greater_is_better=False,
             description="mean 1-D Wasserstein-1 over every coordinate")
    register("joint_wasserstein", joint_wasserstein, greater_is_better=False,
             description="exact OT between joint low-dimensional vectors")
    register("sliced_wasserstein", sliced_wasserstein, greater_is_better=False,
             description="sliced Wasserstein-2 on standardised concatenated components")
    register("dependency_error", dependency_error, greater_is_better=False,
             description="mean absolute Spearman-correlation error across all scalar columns")
