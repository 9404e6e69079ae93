"""Scorers for ``GridSearchCV``, ``RandomizedSearchCV`` and ``cross_val_score``.

A scorer is a callable ``scorer(estimator, X, y=None) -> float`` where **higher is better**
(distances and errors are negated, as scikit-learn's ``neg_*`` scorers are).
``sklearn.metrics.make_scorer`` cannot express these unsupervised generative scores (it needs
``y_true`` and a ``predict``-like method), so they are plain callables.

Every scorer here is a ready-to-use object, and calling it with keyword arguments only returns a
re-configured copy::

    from sklearn.model_selection import GridSearchCV
    from mcgen import GMRFMultiComponentVAE, scoring

    search = GridSearchCV(GMRFMultiComponentVAE(), {"beta": [0.01, 0.1], "latent_dim": [1, 2]},
                          scoring={"elbo": scoring.elbo,
                                   "sw": scoring.neg_sliced_wasserstein(n_projections=200),
                                   "missing": scoring.neg_missing_error(known=[0])},
                          refit="elbo")

======================================  ========================================================
name                                    rewards
======================================  ========================================================
``elbo``                                held-out evidence lower bound (beta = 1), nats per row
``neg_sliced_wasserstein``              samples whose joint distribution matches the rows
``neg_marginal_wasserstein``            samples with the right marginal of every coordinate
``neg_joint_wasserstein``               exact OT match of joint low-dimensional vectors
``neg_dependency_error``                samples with the right Spearman correlations
``neg_missing_error``                   accurate completions of held-out components
``conditional_coherence``               completed digits that match the labels (needs
                                        ``classifiers=`` and labels as ``y``)
``neg_energy_score``                    sampled completions distributed as the true conditional
                                        (a proper score of the whole completion distribution)
``completion_r2``                       a completion mean close to the truth (R2)
``single_completion_r2``                single completions close to the truth (R2)
``neg_coverage_error``                  calibrated completion intervals (coverage as expected)
======================================  ========================================================

The four completion scorers complete every held-out component from the others
(``known="leave_one_out"``) ``n_completions=10`` times; see :mod:`mcgen.metrics.completion`.

Every metric in the metric registry (mcgen's own and those plugins register with
``mcgen_register_metrics``) is also a scorer by name: ``neg_<metric>`` when lower values are
better, ``<metric>`` when higher ones are (its ``greater_is_better``), comparing
``estimator.sample(n)`` with the held-out rows (see :class:`MetricScorer`).  So
``GridSearchCV(est, grid, scoring=get_scorer("neg_my_metric"))`` works for a plugin's metric.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from mcgen.metrics.coherence import conditional_coherence as _conditional_coherence
from mcgen.metrics.completion import _check_levels, _completion_blocks, energy_score, interval_coverage
from mcgen.metrics.completion import completion_r2 as _completion_r2
from mcgen.metrics.completion import single_completion_r2 as _single_completion_r2
from mcgen.metrics.conditional import complete_rows, component_arrays, known_subsets
from mcgen.metrics.evaluate import compute_metric
from mcgen.metrics.structure import dependency_error
from mcgen.metrics.wasserstein import joint_wasserstein, marginal_wasserstein, sliced_wasserstein
from mcgen.plugins import get_registries

__all__ = [
    "CompletionR2Scorer",
    "CompletionScorer",
    "ConditionalCoherenceScorer",
    "CoverageErrorScorer",
    "ELBOScorer",
    "EnergyScoreScorer",
    "MetricScorer",
    "MissingErrorScorer",
    "Scorer",
    "SingleCompletionR2Scorer",
    "completion_r2",
    "conditional_coherence",
    "elbo",
    "get_scorer",
    "get_scorer_names",
    "neg_coverage_error",
    "neg_dependency_error",
    "neg_energy_score",
    "neg_joint_wasserstein",
    "neg_marginal_wasserstein",
    "neg_missing_error",
    "neg_sliced_wasserstein",
    "single_completion_r2",
]


class Scorer:
    """Base class: ``scorer(estimator, X, y=None) -> float``, higher is better.

    Calling a scorer with keyword arguments only (no estimator) returns a copy with those
    parameters changed, so ``scorer`` and ``scorer(random_state=1)`` both work as ``scoring=``.
    """

    #: Parameter names and defaults of the scorer (subclasses set them).
    _defaults: dict[str, Any] = {}
    name = "scorer"

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self._defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown parameters {sorted(unknown)}; "
                            f"valid: {', '.join(self._defaults) or '(none)'}")
        self.params = {**self._defaults, **params}

    def __call__(self, estimator=None, X=None, y=None, **params: Any):
        if estimator is None and X is None and y is None:
            new = copy.copy(self)
            new.__init__(**{**self.params, **params})
            return new
        if params:
            raise TypeError(f"{self.name}(estimator, X, y) takes no keyword arguments; "
                            f"configure it first: {self.name}({', '.join(f'{k}=...' for k in params)})")
        if estimator is None or X is None:
            raise TypeError(f"{self.name} is called as scorer(estimator, X, y=None)")
        return float(self._score(estimator, X, y))

    def _score(self, estimator, X, y) -> float:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items()
                         if v is not self._defaults.get(k) and k not in ("metric", "name"))
        return f"{self.name}({args})"


class ELBOScorer(Scorer):
    """Mean held-out ELBO per row (``estimator.score(X)``), in nats in the data's units.

    Rewards models that assign the held-out rows high likelihood (a lower bound on it), with the
    KL term at weight 1 whatever ``beta`` the model was trained with, so candidates with
    different ``beta`` are compared on one objective.  It does not look at samples.
    """

    name = "elbo"
    _defaults: dict[str, Any] = {}

    def _score(self, estimator, X, y) -> float:
        return estimator.score(X)


def _normalise_known(known, M: int) -> list[list[int]]:
    if known is None:
        return known_subsets(M, "single")
    if isinstance(known, str):
        return known_subsets(M, known)
    if np.isscalar(known):
        return known_subsets(M, [[int(known)]])
    known = list(known)
    if known and all(np.isscalar(k) for k in known):  # one subset
        return known_subsets(M, [known])
    return known_subsets(M, known)


class MetricScorer(Scorer):
    """Scorer from a metric ``metric(generated, reference) -> float``: generated samples are
    compared with the held-out rows; the sign makes higher better.

    Parameters
    ----------
    metric : callable
        ``metric(generated, reference, **metric_kwargs)`` returning a number or a
        :class:`~mcgen.metrics.MetricResult`.
    greater_is_better : bool, default=False
        Whether larger metric values are better (distances: False, so the score is negated).
    conditional : bool, default=False
        False: compare ``estimator.sample(n_samples)`` with the rows.  True: complete the rows
        with ``predict_missing`` from each subset in ``known`` and compare the completed rows
        with the real ones (mean over subsets).
    known : None, int, list of int or list of lists
        Observed subsets for ``conditional=True`` (default: every single component).
    n_samples : int, optional
        Unconditional samples drawn (default: as many as rows in X).
    random_state : int, default=0
        Seed of the sampling and of the metric (fixed, so a score is reproducible).
    metric_kwargs : dict, optional
        Extra arguments of the metric; any other keyword argument of the scorer is added here
        (``neg_sliced_wasserstein(n_projections=200)``).
    name : str, optional
    """

    _defaults: dict[str, Any] = {"metric": None, "greater_is_better": False, "conditional": False,
                                 "known": None, "n_samples": None, "random_state": 0, "metric_kwargs": None,
                                 "name": None}

    def __init__(self, **params: Any) -> None:
        extra = {k: params.pop(k) for k in list(params) if k not in self._defaults}
        super().__init__(**params)
        fn = self.params["metric"]
        if not callable(fn):
            raise TypeError(f"MetricScorer needs a callable metric, got {fn!r}")
        if extra:  # other keywords configure the metric itself (e.g. n_projections=200)
            names = _arg_names(fn)
            bad = sorted(k for k in extra if k not in names)
            if bad:
                raise TypeError(f"{getattr(fn, '__name__', 'metric')} has no parameters {bad}; scorer "
                                f"parameters: {', '.join(self._defaults)}")
            self.params["metric_kwargs"] = {**(self.params["metric_kwargs"] or {}), **extra}
        self.name = self.params["name"] or getattr(self.params["metric"], "__name__", "metric")

    def _compare(self, gen, ref) -> float:
        return compute_metric(self.params["metric"], gen, ref, self.params["random_state"],
                              **(self.params["metric_kwargs"] or {}))

    def _score(self, estimator, X, y) -> float:
        ref = component_arrays(X)
        rs = self.params["random_state"]
        if self.params["conditional"]:
            sets = _normalise_known(self.params["known"], len(ref))
            value = float(np.mean([self._compare(full, ref)
                                   for _, full, _ in complete_rows(estimator, ref, sets, rs)]))
        else:
            n = self.params["n_samples"] or len(ref[0])
            value = self._compare(estimator.sample(n, random_state=rs), ref)
        return value if self.params["greater_is_better"] else -value


def _arg_names(fn: Callable) -> tuple[str, ...]:
    import inspect

    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


class MissingErrorScorer(Scorer):
    """Negative error of ``predict_missing`` against the held-out truth.

    For each observed subset K in ``known``, the other components of the held-out rows are
    generated from the observed ones and compared with the real values: the squared error of
    every feature divided by that feature's variance in X, averaged over rows, features, missing
    components and subsets.  0 is a perfect completion; predicting each feature's mean scores about
    -1, and an independent draw from the marginal about -2.

    Rewards models whose conditional generation uses the observed components, i.e. that learned
    the dependence between components.  With ``n_samples > 1`` the completions of a row are
    averaged (an estimate of the conditional mean, the squared-error-optimal prediction).

    Parameters
    ----------
    known : None, int, list of int, list of lists or "all"
        Observed subsets (default: every single component).
    n_samples : int, default=1
    random_state : int, default=0
    """

    name = "neg_missing_error"
    _defaults: dict[str, Any] = {"known": None, "n_samples": 1, "random_state": 0}

    def _score(self, estimator, X, y) -> float:
        ref = [np.asarray(a, dtype=np.float64) for a in component_arrays(X)]
        sets = _normalise_known(self.params["known"], len(ref))
        ns = int(self.params["n_samples"])
        rs = self.params["random_state"]
        var = []
        for a in ref:
            v = a.reshape(len(a), -1).var(0)
            var.append(np.where(v > 0, v, 1.0))
        errors = []
        for known in sets:
            full = estimator.predict_missing([ref[k] for k in known], known=known, n_samples=ns, random_state=rs)
            for i in range(len(ref)):
                if i in known:
                    continue
                pred = np.asarray(full[i], dtype=np.float64)
                if ns > 1:
                    pred = pred.mean(1)
                sq = (pred.reshape(len(pred), -1) - ref[i].reshape(len(ref[i]), -1)) ** 2
                errors.append(float((sq / var[i]).mean()))
        return -float(np.mean(errors))


class ConditionalCoherenceScorer(Scorer):
    """Conditional coherence (:func:`mcgen.metrics.conditional_coherence`) of completions.

    Rewards models whose conditional generations show the row's digit in every generated
    component.  The labels come as ``y``: ``GridSearchCV(...).fit(X, y=labels)`` passes each
    test fold's labels to the scorer (the estimators ignore ``y`` in ``fit``).

    Parameters
    ----------
    classifiers : torch.nn.Module or list of them (required)
        One digit classifier per component, in eval mode.
    known : "all", "single" or list of subsets, default="all"
    random_state : int, default=0
    """

    name = "conditional_coherence"
    _defaults: dict[str, Any] = {"classifiers": None, "known": "all", "random_state": 0}

    def _score(self, estimator, X, y) -> float:
        if self.params["classifiers"] is None:
            raise ValueError("conditional_coherence needs classifiers: scoring.conditional_coherence("
                             "classifiers=[clf_0, ..., clf_M-1])")
        if y is None:
            raise ValueError("conditional_coherence needs the digit labels as y: pass them to the search, "
                             "e.g. GridSearchCV(...).fit(X, y=labels)")
        return _conditional_coherence(estimator, X, y, self.params["classifiers"], self.params["known"],
                                      self.params["random_state"]).value


class CompletionScorer(Scorer):
    """Base of the probabilistic-completion scorers (:mod:`mcgen.metrics.completion`).

    For each observed subset in ``known``, the other components of the held-out rows are
    completed ``n_completions`` times with one ``predict_missing`` call; the missing components
    are flattened and concatenated, :meth:`_metric` scores them against the truth, and the score
    is the mean over the subsets, signed so that higher is better.

    Parameters
    ----------
    known : "leave_one_out", "single", "all", int, list of int or list of lists, default="leave_one_out"
        Observed subsets (a flat list of ints is one subset).
    n_completions : int, default=10
        Completions per row (at least 2).
    random_state : int, default=0
        Seed of every ``predict_missing`` call.
    """

    _defaults: dict[str, Any] = {"known": "leave_one_out", "n_completions": 10, "random_state": 0}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        m = self.params["n_completions"]
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2:
            raise ValueError(f"{self.name}: n_completions must be an integer of at least 2, got {m!r}")

    def _metric(self, samples: np.ndarray, truth: np.ndarray, scale: np.ndarray | None) -> float:  # pragma: no cover
        raise NotImplementedError

    def _score(self, estimator, X, y) -> float:
        ref = component_arrays(X)
        sets = _normalise_known(self.params["known"], len(ref))
        values = [self._metric(samples, truth, scale) for _, samples, truth, scale in
                  _completion_blocks(estimator, ref, sets, self.params["n_completions"], self.params["random_state"])]
        return float(np.mean(values))


class EnergyScoreScorer(CompletionScorer):
    """Negative energy score (:func:`mcgen.metrics.energy_score`) of sampled completions.

    Rewards models whose conditional distribution of the missing components matches the true
    one: the energy score is a proper scoring rule, so a wrong mean, spread or dependence all
    cost.  Parameters as :class:`CompletionScorer`.
    """

    name = "neg_energy_score"

    def _metric(self, samples, truth, scale) -> float:
        return -energy_score(samples, truth, scale)


class CompletionR2Scorer(CompletionScorer):
    """R2 of the mean of the sampled completions (:func:`mcgen.metrics.completion_r2`).

    Rewards accurate conditional means (point predictions); blind to the spread.  Parameters as
    :class:`CompletionScorer`.
    """

    name = "completion_r2"

    def _metric(self, samples, truth, scale) -> float:
        return _completion_r2(samples, truth, scale)


class SingleCompletionR2Scorer(CompletionScorer):
    """R2 of one sampled completion per row (:func:`mcgen.metrics.single_completion_r2`).

    Rewards single completions close to the truth: accurate means and little conditional
    spread, so it favours under-dispersed models; read it with ``neg_energy_score``.  Parameters
    as :class:`CompletionScorer`.
    """

    name = "single_completion_r2"

    def _metric(self, samples, truth, scale) -> float:
        return _single_completion_r2(samples, truth, scale)


class CoverageErrorScorer(CompletionScorer):
    """Negative coverage error of the central intervals of sampled completions.

    The score is ``-mean_levels |coverage - target|`` with the coverage of
    :func:`mcgen.metrics.interval_coverage`.  With ``target="calibrated"`` (the default) the
    target of a level is ``level * (m - 1) / (m + 1)`` for ``m = n_completions``: the coverage a
    perfectly calibrated model gets from m draws (0.41 and 0.74 for 0.5 and 0.9 at m = 10).
    With ``target="nominal"`` it is the level itself, which at small m rewards over-dispersed
    models (at m = 10, twice the true spread scores better than the true conditional).

    Rewards completions whose spread is calibrated: too narrow under-covers, too wide
    over-covers.  It ignores accuracy; read it with ``neg_energy_score``.

    Parameters
    ----------
    known, n_completions, random_state
        As :class:`CompletionScorer`.
    levels : sequence of float, default=(0.5, 0.9)
        Interval levels.
    target : {"calibrated", "nominal"}, default="calibrated"
    """

    name = "neg_coverage_error"
    _defaults: dict[str, Any] = {**CompletionScorer._defaults, "levels": (0.5, 0.9), "target": "calibrated"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        _check_levels(self.params["levels"])
        if self.params["target"] not in ("calibrated", "nominal"):
            raise ValueError(f"target must be 'calibrated' or 'nominal', got {self.params['target']!r}")

    def _metric(self, samples, truth, scale) -> float:
        levels = _check_levels(self.params["levels"])
        target = self.params["target"]
        m = samples.shape[1]
        cov = interval_coverage(samples, truth, levels)
        goal = {v: v * (m - 1) / (m + 1) if target == "calibrated" else v for v in levels}
        return -float(np.mean([abs(cov[v] - goal[v]) for v in levels]))


#: Held-out ELBO (higher is better).
elbo = ELBOScorer()
#: Negative sliced Wasserstein-2 distance between samples and held-out rows.
neg_sliced_wasserstein = MetricScorer(metric=sliced_wasserstein, name="neg_sliced_wasserstein")
#: Negative mean marginal Wasserstein-1 distance between samples and held-out rows.
neg_marginal_wasserstein = MetricScorer(metric=marginal_wasserstein, name="neg_marginal_wasserstein")
#: Negative exact joint Wasserstein-1 distance (low-dimensional components only).
neg_joint_wasserstein = MetricScorer(metric=joint_wasserstein, name="neg_joint_wasserstein")
#: Negative Spearman dependency error between samples and held-out rows.
neg_dependency_error = MetricScorer(metric=dependency_error, name="neg_dependency_error")
#: Negative normalised error of ``predict_missing`` against the held-out truth.
neg_missing_error = MissingErrorScorer()
#: Conditional coherence (configure ``classifiers=``; labels as ``y``).
conditional_coherence = ConditionalCoherenceScorer()
#: Negative energy score of sampled completions (a proper score of the completion distribution).
neg_energy_score = EnergyScoreScorer()
#: R2 of the mean of sampled completions.
completion_r2 = CompletionR2Scorer()
#: R2 of one sampled completion per row.
single_completion_r2 = SingleCompletionR2Scorer()
#: Negative error of the coverage of the completions' central intervals.
neg_coverage_error = CoverageErrorScorer()

#: The scorers that are not a comparison of samples by one registered metric.
_SCORERS: dict[str, Scorer] = {
    "elbo": elbo,
    "neg_missing_error": neg_missing_error,
    "conditional_coherence": conditional_coherence,
    "neg_energy_score": neg_energy_score,
    "completion_r2": completion_r2,
    "single_completion_r2": single_completion_r2,
    "neg_coverage_error": neg_coverage_error,
}


def _metric_scorer_names() -> dict[str, str]:
    """``{scorer name: metric name}`` for every registered metric (``neg_`` when lower is better)."""
    names = {}
    for metric, entry in get_registries().metrics.items():
        names[metric if entry.obj.greater_is_better else f"neg_{metric}"] = metric
    return names


def get_scorer_names() -> list[str]:
    """Names accepted by :func:`get_scorer`: mcgen's scorers and one per registered metric."""
    return sorted(set(_SCORERS) | set(_metric_scorer_names()))


def get_scorer(scoring: str | Callable, **params: Any) -> Callable:
    """A scorer by name (or a callable, returned unchanged).

    Parameters
    ----------
    scoring : str or callable
        One of :func:`get_scorer_names`, or a ``scorer(estimator, X, y=None)`` callable.
    **params
        Configure the named scorer (e.g. ``get_scorer("neg_missing_error", known=[0])``).

    Returns
    -------
    callable ``scorer(estimator, X, y=None) -> float`` (higher is better).
    """
    if callable(scoring) and not isinstance(scoring, str):
        if params:
            if isinstance(scoring, Scorer):
                return scoring(**params)
            raise TypeError("parameters can only be given with a scorer name or an mcgen Scorer")
        return scoring
    if not isinstance(scoring, str):
        raise TypeError(f"scoring must be a name or a callable, got {type(scoring).__name__}")
    if scoring in _SCORERS:
        base = _SCORERS[scoring]
        return base(**params) if params else base
    from_metrics = _metric_scorer_names()
    if scoring in from_metrics:
        metric = from_metrics[scoring]
        info = get_registries().metrics[metric].obj
        return MetricScorer(metric=info.function, greater_is_better=info.greater_is_better, name=scoring, **params)
    raise ValueError(f"unknown scorer {scoring!r}; valid: {', '.join(sorted(_SCORERS))}; from the metric "
                     f"registry: {', '.join(sorted(from_metrics))}")
