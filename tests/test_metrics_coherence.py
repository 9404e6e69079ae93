"""Coherence metrics with an exact tiny digit classifier and stand-in estimators.

Digit d in {0, 1, 2, 3} is drawn as one bright pixel at column d of the first row of a 4x4
image; the classifier is a linear layer reading that row, so its prediction is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcgen.metrics import coherence, conditional_coherence, known_subsets, predict_labels, unconditional_coherence
from mcgen.plugins import get_metric

torch.set_num_threads(1)


def draw(digits, offset=0.0) -> np.ndarray:
    digits = np.asarray(digits)
    img = np.full((len(digits), 1, 4, 4), offset)
    img[np.arange(len(digits)), 0, 0, digits] = 1.0
    return img


def exact_classifier() -> torch.nn.Module:
    lin = torch.nn.Linear(16, 4)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[torch.arange(4), torch.arange(4)] = 1.0  # pixel (0, d) -> class d
    return torch.nn.Sequential(torch.nn.Flatten(), lin).eval()


def test_predict_labels_exact_and_batched():
    digits = np.array([3, 0, 2, 1, 1, 0, 3])
    clf = exact_classifier()
    clf.train()
    np.testing.assert_array_equal(predict_labels(clf, draw(digits), batch_size=3), digits)
    np.testing.assert_array_equal(predict_labels(clf, draw(digits)[:, 0]), digits)  # (n, H, W)
    assert clf.training  # mode restored
    with pytest.raises(TypeError, match="torch.nn.Module"):
        predict_labels(lambda x: x, draw(digits))


def test_unconditional_coherence_hand_value():
    a = draw([0, 1, 2, 3, 0])
    b = draw([0, 1, 3, 3, 1])
    c = draw([0, 2, 2, 3, 0])
    res = unconditional_coherence([a, b, c], exact_classifier())
    # rows where all three agree: 0 and 3
    assert float(res) == pytest.approx(2 / 5)
    np.testing.assert_array_equal(res.details["predicted"][1], [1, 1, 2])


def test_coherence_with_labels_and_with_reference():
    labels = np.array([0, 1, 2, 3])
    gen = [draw([0, 1, 2, 3]), draw([0, 0, 2, 2])]
    clfs = [exact_classifier(), exact_classifier()]
    res = coherence(gen, classifiers=clfs, labels=labels)
    assert res.details["per_component"] == {0: 1.0, 1: 0.5}
    assert float(res) == pytest.approx(0.75)
    assert float(coherence(gen, classifiers=clfs, labels=labels, components=[1])) == pytest.approx(0.5)
    # without labels the classifier's digit on the real image is the target
    ref = [draw([0, 1, 2, 3]), draw([0, 0, 2, 3])]
    assert coherence(gen, ref, classifiers=clfs).details["per_component"] == {0: 1.0, 1: 0.75}
    with pytest.raises(ValueError, match="needs labels or the reference"):
        coherence(gen, classifiers=clfs)
    with pytest.raises(ValueError, match="3 classifiers for 2 components"):
        coherence(gen, classifiers=clfs + clfs[:1], labels=labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        coherence(gen, classifiers=clfs, labels=labels[:3])
    assert get_metric("coherence") is coherence


class _DigitCompleter:
    """Completes every missing component with the digit of the first observed one, except that
    component ``wrong`` (when missing) gets the digit plus one."""

    def __init__(self, wrong=None):
        self.wrong, self.calls = wrong, []

    def predict_missing(self, X, known, n_samples=1, random_state=None):
        self.calls.append(list(known))
        d = predict_labels(exact_classifier(), X[0])
        M = 3
        out = []
        for i in range(M):
            if i in known:
                out.append(np.array(X[known.index(i)]))
            else:
                out.append(draw((d + 1) % 4 if i == self.wrong else d))
        return out


def test_conditional_coherence_protocol_and_hand_values():
    labels = np.array([0, 1, 2, 3, 1, 2])
    X = [draw(labels) for _ in range(3)]
    perfect = _DigitCompleter()
    res = conditional_coherence(perfect, X, labels, exact_classifier())
    assert perfect.calls == known_subsets(3, "all") == [[0], [1], [2], [0, 1], [0, 2], [1, 2]]
    assert float(res) == pytest.approx(1.0)
    est = _DigitCompleter(wrong=2)
    res = conditional_coherence(est, X, labels, [exact_classifier()] * 3)
    # target 2 is always wrong; per subset: {0}: (1 + 0)/2, {1}: 1/2, {2}: 1, {0,1}: 0, {0,2}: 1, {1,2}: 1
    expected = {(0,): 0.5, (1,): 0.5, (2,): 1.0, (0, 1): 0.0, (0, 2): 1.0, (1, 2): 1.0}
    assert res.details["per_subset"] == pytest.approx(expected)
    assert res.details["per_size"] == pytest.approx({1: 2 / 3, 2: 2 / 3})
    assert res.details["per_target"][((0,), 2)] == 0.0 and res.details["per_target"][((0,), 1)] == 1.0
    assert float(res) == pytest.approx(np.mean(list(expected.values())))
    single = conditional_coherence(est, X, labels, exact_classifier(), known_sets="single")
    assert set(single.details["per_subset"]) == {(0,), (1,), (2,)}
    with pytest.raises(ValueError, match="not a non-empty proper subset"):
        conditional_coherence(est, X, labels, exact_classifier(), known_sets=[[0, 1, 2]])
