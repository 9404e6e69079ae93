"""Image metrics: SSIM vs scikit-image per pair, Fréchet distance vs closed forms, classifier
features, the InceptionV3 loader's errors, centres of mass and their Wasserstein distance."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy import optimize, spatial
from skimage.metrics import structural_similarity

from mcgen.metrics import (
    ClassifierFeatures,
    InceptionV3Features,
    centre_of_mass_wasserstein,
    centres_of_mass,
    conditional_centre_of_mass_wasserstein,
    conditional_fid,
    conditional_ssim,
    fid,
    frechet_distance,
    load_inception_v3,
    ssim,
)
from mcgen.metrics.images import assemble, ssim_pairs
from mcgen.plugins import get_metric

torch.set_num_threads(1)


def _images(seed, n=6, c=3, h=12, w=12):
    return np.random.default_rng(seed).uniform(size=(n, c, h, w))


# ---------------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
                                    {"win_size": 5}])
def test_ssim_pairs_matches_scikit_image_per_pair(kwargs):
    a = _images(0)
    b = np.clip(a + 0.2 * np.random.default_rng(1).normal(size=a.shape), 0, 1)
    got = ssim_pairs(a, b, data_range=1.0, **kwargs)
    expected = [structural_similarity(a[k], b[k], data_range=1.0, channel_axis=0, **kwargs) for k in range(len(a))]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_ssim_grayscale_layout_and_identity():
    a = _images(2, c=1)[:, 0]  # (n, H, W)
    b = _images(3, c=1)[:, 0]
    expected = np.mean([structural_similarity(a[k], b[k], data_range=1.0) for k in range(len(a))])
    assert float(ssim(a, b)) == pytest.approx(expected, rel=1e-10)
    assert float(ssim([a], [a])) == pytest.approx(1.0)


def test_ssim_constant_images_hand_value():
    # For constant images only the luminance term remains: (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 L)^2.
    a = np.full((2, 1, 8, 8), 0.2)
    b = np.full((2, 1, 8, 8), 0.6)
    C1 = 0.01 ** 2
    assert float(ssim(a, b, data_range=1.0)) == pytest.approx((2 * 0.2 * 0.6 + C1) / (0.04 + 0.36 + C1))
    # data_range enters C1: with L = 2, C1 = 4e-4
    C1 = (0.01 * 2) ** 2
    assert float(ssim(a, b, data_range=2.0)) == pytest.approx((2 * 0.2 * 0.6 + C1) / (0.04 + 0.36 + C1))


def test_ssim_components_and_max_assembly():
    g = [_images(4, c=1), _images(5, c=1)]
    r = [_images(6, c=1), _images(7, c=1)]
    res = ssim(g, r, components=[1], assembly="max")
    assert float(res) == pytest.approx(ssim_pairs(g[1], r[1]).mean())
    assert list(res.details["per_component"]) == [1]
    asm = ssim_pairs(np.maximum(g[0], g[1]), np.maximum(r[0], r[1])).mean()
    assert res.details["assembly"] == pytest.approx(asm)
    np.testing.assert_array_equal(assemble(g, lambda parts: parts[0] + parts[1]), g[0] + g[1])


def test_ssim_rejects_bad_input():
    a = _images(0)
    with pytest.raises(ValueError, match="same rows"):
        ssim(a, a[:3])
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        ssim(a.reshape(6, -1), a.reshape(6, -1))
    with pytest.raises(ValueError, match="data_range"):
        ssim(a, a, data_range=0)
    with pytest.raises(ValueError, match="one shape"):
        assemble([a, a[:, :1]])


# ---------------------------------------------------------------------------------------------
# Fréchet distance and FID
# ---------------------------------------------------------------------------------------------
def test_frechet_distance_one_dimension_closed_form():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    b = np.array([1.0, 5.0, 3.0])
    # 1-D Gaussians: (m_a - m_b)^2 + (s_a - s_b)^2 with unbiased standard deviations
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert float(frechet_distance(a, b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_eigenvalue_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))
    b = rng.normal(size=(150, 4)) @ rng.normal(size=(4, 4)) + 0.5
    Sa, Sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr (Sa Sb)^(1/2) = sum of square roots of the (real, non-negative) eigenvalues of Sa Sb
    tr_sqrt = np.sqrt(np.linalg.eigvals(Sa @ Sb).real.clip(0)).sum()
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(Sa) + np.trace(Sb) - 2 * tr_sqrt
    res = frechet_distance(a, b)
    assert float(res) == pytest.approx(expected, rel=1e-8)
    assert res.details["offset"] == 0.0
    assert float(frechet_distance(a, a)) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_singular_covariances_stay_finite():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 6))  # rank-2 covariance in 6-D
    b = rng.normal(size=(3, 6))
    res = frechet_distance(a, b)
    Sa, Sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tr_sqrt = np.sqrt(np.linalg.eigvals(Sa @ Sb).real.clip(0)).sum()
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(Sa) + np.trace(Sb) - 2 * tr_sqrt
    assert np.isfinite(float(res)) and float(res) >= 0
    assert float(res) == pytest.approx(expected, rel=1e-3, abs=1e-4)
    # a constant feature set: S_a = 0, so S_a S_b is singular and the offset retry is used;
    # the exact value is |mu_a - mu_b|^2 + Tr S_b
    const = np.ones((5, 6))
    res = frechet_distance(const, b)
    assert res.details["offset"] > 0
    assert float(res) == pytest.approx(np.sum((1 - b.mean(0)) ** 2) + np.trace(Sb), rel=1e-2)


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="widths differ"):
        frechet_distance(np.zeros((4, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((4, 3), np.nan), np.zeros((5, 3)))


def _tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def test_classifier_features_are_the_penultimate_layer():
    clf = _tiny_classifier()
    clf.train()
    x = np.random.default_rng(0).uniform(size=(7, 1, 4, 4))
    lin = clf[1]
    with torch.no_grad():
        h = lin(torch.as_tensor(x, dtype=torch.float32).flatten(1))
    feats = ClassifierFeatures(clf, batch_size=3)(x)  # batches of 3: 3 + 3 + 1 rows
    np.testing.assert_allclose(feats, torch.relu(h).numpy(), rtol=1e-6)
    np.testing.assert_allclose(ClassifierFeatures(clf, layer="1")(x), h.numpy(), rtol=1e-6)
    assert clf.training  # mode restored
    assert not clf[3]._forward_pre_hooks and not clf[1]._forward_hooks  # hooks removed
    with pytest.raises(ValueError, match="no module named 'fc'"):
        ClassifierFeatures(clf, layer="fc")
    with pytest.raises(ValueError, match="no nn.Linear"):
        ClassifierFeatures(torch.nn.Flatten())


def test_fid_with_extractors_per_component():
    g = [_images(0, c=1, h=4, w=4, n=20), _images(1, c=1, h=4, w=4, n=20)]
    r = [_images(2, c=1, h=4, w=4, n=30) * 0.5, _images(3, c=1, h=4, w=4, n=30)]

    def first_two(imgs):
        return imgs.reshape(len(imgs), -1)[:, :2]

    res = fid(g, r, extractor=first_two)
    per = [float(frechet_distance(first_two(a), first_two(b))) for a, b in zip(g, r)]
    assert res.details["per_component"] == pytest.approx(dict(enumerate(per)))
    assert float(res) == pytest.approx(np.mean(per))
    assert res.details["extractor"] == "first_two"
    clf = _tiny_classifier()
    res = fid(g, r, extractor=[clf, ClassifierFeatures(clf)], components=[0])  # a module is wrapped
    feats = ClassifierFeatures(clf)
    assert float(res) == pytest.approx(float(frechet_distance(feats(g[0]), feats(r[0]))))
    assert res.details["extractor"].startswith("classifier:")
    with pytest.raises(ValueError, match="3 feature extractors for 2 components"):
        fid(g, r, extractor=[first_two] * 3)


def test_inception_loader_errors(tmp_path, monkeypatch):
    missing = tmp_path / "pt_inception.pth"
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
        load_inception_v3(missing)
    with pytest.raises(FileNotFoundError):
        InceptionV3Features(missing)
    missing.write_bytes(b"not really weights")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    monkeypatch.setitem(sys.modules, "torchvision.models.inception", None)
    with pytest.raises(ImportError, match="pip install torchvision"):
        load_inception_v3(missing)


# ---------------------------------------------------------------------------------------------
# centre of mass
# ---------------------------------------------------------------------------------------------
def test_centres_of_mass_hand_values():
    img = np.zeros((3, 8, 10))
    img[0, 2, 5] = 1.0  # one pixel at row 2, column 5
    img[1, 0, 0] = 1.0
    img[1, 7, 9] = 3.0  # weights 1 and 3: x = 27/4, y = 21/4
    c, empty = centres_of_mass(img)
    np.testing.assert_allclose(c[0], [5 / 9, 2 / 7])
    np.testing.assert_allclose(c[1], [(9 * 3 / 4) / 9, (7 * 3 / 4) / 7])
    np.testing.assert_allclose(c[2], [0.5, 0.5])  # empty image: the centre
    np.testing.assert_array_equal(empty, [False, False, True])
    c_px, _ = centres_of_mass(img[:, None].repeat(3, 1), normalize=False)  # channels are summed
    np.testing.assert_allclose(c_px[1], [27 / 4, 21 / 4])


def test_centre_of_mass_wasserstein_translation_and_assignment():
    rng = np.random.default_rng(0)
    n, H, W = 12, 6, 11
    cols_g = rng.integers(0, W - 3, size=(2, n))
    rows = rng.integers(0, H, size=(2, n))
    g = [np.zeros((n, H, W)) for _ in range(2)]
    r = [np.zeros((n, H, W)) for _ in range(2)]
    for m in range(2):
        g[m][np.arange(n), rows[m], cols_g[m]] = 1.0
        r[m][np.arange(n), rows[m], cols_g[m] + 3] = 1.0  # the reference parts sit 3 pixels to the right
    res = centre_of_mass_wasserstein(g, r)
    shift = 3 / (W - 1)
    np.testing.assert_allclose(res.details["per_component"], [shift, shift], rtol=1e-8)
    assert float(res) == pytest.approx(np.sqrt(2) * shift, rel=1e-8)  # joint 4-vector moves by (s, 0, s, 0)
    # against the assignment-problem reference on unrelated clouds
    r2 = [_images(9, n=n, c=1, h=H, w=W), _images(10, n=n, c=1, h=H, w=W)]
    res = centre_of_mass_wasserstein(g, r2)
    cg = np.concatenate([centres_of_mass(a)[0] for a in g], 1)
    cr = np.concatenate([centres_of_mass(a)[0] for a in r2], 1)
    C = spatial.distance.cdist(cg, cr)
    i, j = optimize.linear_sum_assignment(C)
    assert float(res) == pytest.approx(C[i, j].mean(), rel=1e-8)


# ---------------------------------------------------------------------------------------------
# conditional variants (protocol, with stand-in estimators)
# ---------------------------------------------------------------------------------------------
class _Completer:
    """predict_missing returns the truth (``oracle``) or blank images for missing components."""

    def __init__(self, truth, oracle=True):
        self.truth, self.oracle, self.calls = truth, oracle, []

    def predict_missing(self, X, known, n_samples=1, random_state=None):
        self.calls.append(list(known))
        for x, k in zip(X, known):
            np.testing.assert_array_equal(x, self.truth[k])  # receives the observed components
        return [np.array(t) if (self.oracle or i in known) else np.zeros_like(t) for i, t in enumerate(self.truth)]


def test_conditional_image_metrics():
    truth = [_images(s, n=8, c=1, h=8, w=8) for s in range(3)]
    good, bad = _Completer(truth), _Completer(truth, oracle=False)
    res = conditional_ssim(good, truth, assembly="max")
    assert good.calls == [[0], [1], [2]]
    assert float(res) == pytest.approx(1.0) and res.details["assembly"] == pytest.approx(1.0)
    res_bad = conditional_ssim(bad, truth, known_sets=[[0, 1]])
    assert bad.calls == [[0, 1]]
    assert float(res_bad) == pytest.approx(ssim_pairs(np.zeros_like(truth[2]), truth[2]).mean())

    def ext(imgs):
        return imgs.reshape(len(imgs), -1)[:, :3]

    assert float(conditional_fid(good, truth, ext)) == pytest.approx(0.0, abs=1e-8)
    assert float(conditional_fid(bad, truth, ext)) > 0.1
    assert float(conditional_centre_of_mass_wasserstein(good, truth)) == pytest.approx(0.0, abs=1e-6)
    assert float(conditional_centre_of_mass_wasserstein(bad, truth)) > 0.01


def test_image_metrics_are_registered():
    assert get_metric("ssim") is ssim
    assert get_metric("fid") is fid
    assert get_metric("centre_of_mass_wasserstein") is centre_of_mass_wasserstein
