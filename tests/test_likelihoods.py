"""Observation models: fixed scales in the data's units, finite Laplace samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import mcgen
from mcgen.likelihoods import LaplaceLikelihood, make_likelihood

torch.set_num_threads(1)

TINY = {"hidden": (8,)}


def _wide_scales(n=120, seed=0):
    """Two components whose features differ in spread by up to 10^4 (pixel-like near-constant
    features beside wide ones)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 3)) * np.array([0.01, 1.0, 50.0]) + np.array([0.5, -2.0, 10.0]),
            rng.standard_normal((n, 2)) * np.array([0.2, 5.0])]


@pytest.mark.parametrize("name", ["laplace", "gaussian"])
def test_fixed_scale_is_in_the_data_units_when_standardised(name):
    """With ``standardize=True`` a fixed scale of 0.75 must be 0.75 in the user's units: the
    model's log-likelihood of a row (standardised density minus ``sum log sd``) equals SciPy's
    density of the raw row at scale 0.75.  Catches the scale applied in per-feature
    standardised units (the released behaviour: 0.75 standard deviations, i.e. 0.0075 on the
    first feature and 37.5 on the third)."""
    X = _wide_scales()
    lik = {"name": name, "scale": 0.75, "learn_scale": False}
    est = mcgen.MVAE(latent_dim=2, max_epochs=1, encoder_kwargs=TINY, decoder_kwargs=TINY, likelihood=lik,
                     random_state=0).fit(X)
    assert est.standardize_scale_[0] is not None  # the components are standardised
    g = torch.Generator().manual_seed(0)
    for i, a in enumerate(X):
        module_lik = est.module_.likelihoods[i]
        x_std = est._to_tensor(a, i).double()
        loc_std = x_std + 0.5 * torch.randn(x_std.shape, generator=g, dtype=torch.float64)
        sd = np.asarray(est.standardize_scale_[i], dtype=np.float64)
        mean = np.asarray(est.standardize_mean_[i], dtype=np.float64)
        got = module_lik.double().log_prob(loc_std, x_std).numpy() - np.log(sd).sum()
        loc = loc_std.numpy() * sd + mean
        x = x_std.numpy() * sd + mean
        dist = stats.laplace if name == "laplace" else stats.norm
        np.testing.assert_allclose(got, dist.logpdf(x, loc, 0.75).sum(-1), rtol=1e-5, atol=1e-5)
        module_lik.float()


def test_fixed_scale_unchanged_without_standardisation_and_learned_scale_unaffected():
    """``standardize=False`` (the official code's setting) uses the fixed scale as given; a learned
    scale ignores the data scale (it lives in the model's units)."""
    X = _wide_scales()
    lik = {"name": "laplace", "scale": 0.75, "learn_scale": False}
    raw = mcgen.MVAE(latent_dim=2, max_epochs=1, encoder_kwargs=TINY, decoder_kwargs=TINY, likelihood=lik,
                     standardize=False, random_state=0).fit(X)
    torch.testing.assert_close(raw.module_.likelihoods[0].scale, torch.full((3,), 0.75))
    learned = LaplaceLikelihood((3,), scale=0.75, learn_scale=True)
    before = learned.scale.detach().clone()
    learned.set_data_scale(torch.tensor([0.01, 1.0, 50.0]))
    torch.testing.assert_close(learned.scale.detach(), before)


def test_data_scale_survives_persistence_and_old_state_dicts_load(tmp_path):
    """The per-feature data scale is part of the fitted state (save/load and pickling keep the
    likelihood in the data's units); a state dict written before it existed still loads."""
    X = _wide_scales()
    lik = {"name": "laplace", "scale": 0.75, "learn_scale": False}
    est = mcgen.MVAE(latent_dim=2, max_epochs=1, encoder_kwargs=TINY, decoder_kwargs=TINY, likelihood=lik,
                     random_state=0).fit(X)
    path = tmp_path / "m.mcgen"
    est.save(path)
    back = mcgen.load(path)
    for a, b in zip(est.module_.likelihoods, back.module_.likelihoods):
        torch.testing.assert_close(a.scale, b.scale)
    np.testing.assert_array_equal(est.score_samples(X), back.score_samples(X))
    fresh = make_likelihood(lik, (3,), 0)
    old = {k: v for k, v in est.module_.likelihoods[0].state_dict().items() if k != "data_scale"}
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.scale, torch.full((3,), 0.75))


def test_laplace_sample_is_finite_when_the_uniform_draw_is_zero(monkeypatch):
    """``torch.rand`` can return exactly 0; the inverse CDF must not turn it into -inf."""
    lik = LaplaceLikelihood((4,), scale=0.75, learn_scale=False)
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.zeros(*a[0], dtype=k.get("dtype")))
    out = lik.sample(torch.zeros(3, 4))
    assert torch.isfinite(out).all()


def test_laplace_sample_has_the_laplace_distribution():
    lik = LaplaceLikelihood((1,), scale=0.75, learn_scale=False)
    g = torch.Generator().manual_seed(0)
    x = lik.sample(torch.full((200_000, 1), 2.0, dtype=torch.float64), generator=g).numpy().ravel()
    assert stats.kstest(x, stats.laplace(2.0, 0.75).cdf).pvalue > 1e-3


def test_invalid_scale_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        make_likelihood({"name": "laplace", "scale": 0.0}, (2,), 0)
