"""Coherence of generated multimodal digits (PolyMNIST protocol).

A generation is *coherent* when every component shows the digit it should: one classifier per
component (modality), in eval mode, predicts the digit of each generated image.

- :func:`coherence`: accuracy of the generated components' predicted digits against labels
  (paired rows, e.g. completions of labelled real rows).
- :func:`conditional_coherence`: for each non-empty proper subset of observed components,
  complete the others with ``predict_missing`` and measure that accuracy; reported per subset,
  per subset size and overall.
- :func:`unconditional_coherence`: the fraction of unconditional samples whose M predicted
  digits all agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mcgen.metrics._common import MetricResult
from mcgen.metrics.conditional import complete_rows, component_arrays, known_subsets
from mcgen.plugins.hookspecs import hookimpl


def predict_labels(classifier: torch.nn.Module, images, batch_size: int = 256) -> np.ndarray:
    """Predicted class (argmax of the logits) of every image.

    Parameters
    ----------
    classifier : torch.nn.Module
        ``(B, C, H, W) -> (B, n_classes)`` logits (or log-probabilities).  Run in eval mode
        without gradients; its previous mode is restored.
    images : array ``(n, C, H, W)`` or ``(n, H, W)``
    batch_size : int

    Returns
    -------
    ndarray of int64 ``(n,)``
    """
    if not isinstance(classifier, torch.nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images have shape {x.shape}; expected (n, C, H, W) or (n, H, W)")
    params = list(classifier.parameters())
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params else torch.float32
    was_training = classifier.training
    classifier.eval()
    out = []
    try:
        with torch.no_grad():
            for s in range(0, x.shape[0], batch_size):
                logits = classifier(torch.as_tensor(x[s:s + batch_size], dtype=dtype, device=device))
                if logits.ndim != 2:
                    raise ValueError(f"classifier returned shape {tuple(logits.shape)}; expected (B, n_classes)")
                out.append(logits.argmax(1).cpu().numpy())
    finally:
        classifier.train(was_training)
    return np.concatenate(out, 0).astype(np.int64) if out else np.zeros(0, np.int64)


def _classifiers(classifiers, M: int) -> list[torch.nn.Module]:
    if isinstance(classifiers, torch.nn.Module):
        return [classifiers] * M
    if not isinstance(classifiers, (list, tuple)):
        raise TypeError("classifiers must be a torch.nn.Module or a list with one per component, got "
                        f"{type(classifiers).__name__}")
    if len(classifiers) != M:
        raise ValueError(f"got {len(classifiers)} classifiers for {M} components")
    return list(classifiers)


def _labels(labels, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    return y


def coherence(generated, reference=None, *, classifiers, labels=None,
              components: Sequence[int] | None = None) -> MetricResult:
    """Accuracy of the predicted digits of generated components against the rows' labels.

    Parameters
    ----------
    generated : list of image arrays or Components
        Row k is a generation for labelled row k (e.g. a completion of real row k).
    reference : list of image arrays or Components, optional
        The real rows; used only when ``labels`` is None: each component's label is then its
        classifier's prediction on the real image (digit preservation).
    classifiers : torch.nn.Module or list of them
        One per component (or one shared).
    labels : array ``(n,)``, optional
        True digit of every row.
    components : list of int, optional
        Components to score (default all).

    Returns
    -------
    MetricResult
        ``value``: mean accuracy over the selected components (higher is better);
        ``details["per_component"]``.
    """
    g = component_arrays(generated, "generated")
    M, n = len(g), g[0].shape[0]
    clfs = _classifiers(classifiers, M)
    comps = list(range(M)) if components is None else [int(c) for c in components]
    if not comps or min(comps) < 0 or max(comps) >= M:
        raise ValueError(f"components {components} out of range for {M} components")
    if labels is None:
        if reference is None:
            raise ValueError("coherence needs labels or the reference rows")
        r = component_arrays(reference, "reference")
        if len(r) != M or r[0].shape[0] != n:
            raise ValueError("reference must hold the same components and rows as generated")
        targets = {i: predict_labels(clfs[i], r[i]) for i in comps}
    else:
        y = _labels(labels, n)
        targets = dict.fromkeys(comps, y)
    per = {i: float(np.mean(predict_labels(clfs[i], g[i]) == targets[i])) for i in comps}
    return MetricResult("coherence", float(np.mean(list(per.values()))), {"per_component": per}, n,
                        0 if reference is None else n)


def conditional_coherence(estimator, X, labels, classifiers, known_sets="all", random_state=0
                          ) -> MetricResult:
    """Conditional coherence: accuracy of completed components' digits against the true labels.

    For each observed subset S (default every non-empty proper subset), the estimator completes
    the other components of the rows of ``X`` with ``predict_missing``; each generated component's
    predicted digit is compared with the row's label.

    Parameters
    ----------
    estimator : fitted mcgen estimator
    X : Components or list of image arrays
        Labelled real (held-out) rows.
    labels : array ``(n,)``
        The digit of every row.
    classifiers : torch.nn.Module or list of them
        One per component, in eval mode.
    known_sets : {"all", "single"} or list of subsets
        See :func:`mcgen.metrics.conditional.known_subsets`.
    random_state : int or None

    Returns
    -------
    MetricResult
        ``value``: mean over subsets of the accuracy averaged over each subset's missing targets
        (higher is better); ``details["per_subset"]`` (``{S: value}``), ``details["per_size"]``
        (``{|S|: mean over subsets of that size}``) and ``details["per_target"]``
        (``{(S, m): accuracy}``).
    """
    ref = component_arrays(X)
    M, n = len(ref), ref[0].shape[0]
    y = _labels(labels, n)
    clfs = _classifiers(classifiers, M)
    known_subsets(M, known_sets)  # validate before any prediction
    per_subset, per_target = {}, {}
    for known, full, missing in complete_rows(estimator, ref, known_sets, random_state):
        res = coherence(full, classifiers=clfs, labels=y, components=missing)
        per_subset[tuple(known)] = res.value
        for m, acc in res.details["per_component"].items():
            per_target[(tuple(known), m)] = acc
    sizes = sorted({len(s) for s in per_subset})
    per_size = {k: float(np.mean([v for s, v in per_subset.items() if len(s) == k])) for k in sizes}
    return MetricResult("conditional_coherence", float(np.mean(list(per_subset.values()))),
                        {"per_subset": per_subset, "per_size": per_size, "per_target": per_target},
                        n, n, random_state)


def unconditional_coherence(generated, classifiers) -> MetricResult:
    """Fraction of generated rows whose M predicted digits all agree.

    Parameters
    ----------
    generated : list of image arrays or Components
        Unconditional samples, e.g. ``estimator.sample(10_000, random_state=0)``.
    classifiers : torch.nn.Module or list of them
        One per component.

    Returns
    -------
    MetricResult
        ``value`` in [0, 1] (higher is better); ``details["predicted"]`` is the ``(n, M)`` array
        of predicted digits.
    """
    g = component_arrays(generated, "generated")
    M = len(g)
    if M < 2:
        raise ValueError("unconditional coherence needs at least 2 components")
    clfs = _classifiers(classifiers, M)
    pred = np.stack([predict_labels(c, a) for c, a in zip(clfs, g)], 1)
    agree = (pred == pred[:, :1]).all(1)
    return MetricResult("unconditional_coherence", float(agree.mean()), {"predicted": pred}, len(pred), 0)


@hookimpl
def mcgen_register_metrics(register):
    register("coherence", coherence, greater_is_better=True,
             description="accuracy of generated components' predicted digits (needs classifiers=, labels=)")
