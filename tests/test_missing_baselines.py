"""Training the four baselines with missing components (``mask`` of ``forward`` and ``elbo``).

Each row's objective must be the model's subset objective over its observed components only:
checked against the ``mask=None`` path (all observed), against made-up values in the missing
entries, through the gradients of a component missing everywhere, and against independent
computations (NumPy/SciPy products and mixtures, hand-assembled objectives, and DReG's
unbiasedness with missing experts).  Every docstring names the planted bug the test caught.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from mcgen.distributions import kl_diag_gaussian_std, standard_noise
from mcgen.models._multimodal import observed_inputs
from mcgen.models.base import ComponentSpec
from mcgen.models.experts import (
    mixture_log_prob,
    observed_subset_mask,
    positive_scale,
    subset_mask,
    subsets_meeting,
    subsets_within,
)
from mcgen.models.importance import iw_objective
from mcgen.models.mmvae import MMVAEModule
from mcgen.models.mmvaeplus import MMVAEPlusModule
from mcgen.models.mopoe import MoPoEModule
from mcgen.models.mvae import MVAEModule
from mcgen.plugins import get_architecture

torch.set_num_threads(1)

M, B, F, D = 3, 8, 2, 2
TINY = {"hidden": (8,)}
DT = torch.float64


def specs(n=M, shape=(F,), lik="gaussian"):
    mlp = get_architecture("mlp")
    return [ComponentSpec(shape=shape, latent_dim=D, encoder=mlp.encoder_factory, decoder=mlp.decoder_factory,
                          encoder_kwargs=TINY, decoder_kwargs=TINY, likelihood=lik) for _ in range(n)]


def batch(n=M, rows=B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, F, generator=g, dtype=DT) for _ in range(n)]


def mixed_mask(rows=B):
    """Every pattern with at least one observed component, rows cycling through them."""
    pats = [p for p in range(1, 2 ** M)]
    bits = torch.tensor([[(p >> m) & 1 for m in range(M)] for p in pats], dtype=torch.bool)
    return bits[torch.arange(rows) % len(pats)]


def zero_missing(xs, mask):
    return [torch.where(mask[:, i, None], x, 0.0) for i, x in enumerate(xs)]


MODELS = {
    "mvae": lambda: MVAEModule(specs(), beta=0.7, n_random_subsets=1),
    "mopoe_partition": lambda: MoPoEModule(specs(), beta=0.5),
    "mopoe_random_all": lambda: MoPoEModule(specs(), beta=0.5, mixture_sampling="random", prior_expert="all"),
    "mmvae_elbo": lambda: MMVAEModule(specs(), beta=0.8, objective="elbo", K=2),
    "mmvae_iwae_looser": lambda: MMVAEModule(specs(), objective="iwae", K=3),
    "mmvae_iwae_pooled": lambda: MMVAEModule(specs(), objective="iwae", K=3, looser=False, posterior="gaussian"),
    "mmvae_dreg_looser": lambda: MMVAEModule(specs(), beta=0.8, objective="dreg", K=3),
    "mmvae_dreg_pooled": lambda: MMVAEModule(specs(), objective="dreg", K=3, looser=False),
    "mmvaeplus_elbo": lambda: MMVAEPlusModule(specs(), private_dim=2, objective="elbo", K=2),
    "mmvaeplus_iwae": lambda: MMVAEPlusModule(specs(), private_dim=2, objective="iwae", K=2, posterior="gaussian"),
    "mmvaeplus_dreg": lambda: MMVAEPlusModule(specs(), private_dim=2, beta=0.7, objective="dreg", K=3),
}


def build(name, seed=0):
    torch.manual_seed(seed)
    return MODELS[name]().double()


def run(mod, xs, mask, seed=7, elbo=False):
    torch.manual_seed(seed)
    if elbo:
        return mod.elbo(xs, n_mc=2, generator=torch.Generator().manual_seed(seed + 1), mask=mask)
    return mod(xs, mask=mask)


def component_params(mod, d):
    """(name, parameter) of everything that belongs to component d alone."""
    out = []
    for n, p in mod.named_parameters():
        parts = n.split(".")
        if parts[0] in ("encoders", "heads", "decoders", "encoders_z", "encoders_w", "heads_z", "heads_w") \
                and parts[1] == str(d):
            out.append((n, p.grad))
        elif parts[0] == "aux_logits":
            out.append((n + f"[{d}]", None if p.grad is None else p.grad[d]))
    return out


# ----------------------------------------------------------------------------------------------
# (1) all observed == no mask
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_all_true_mask_equals_no_mask(name):
    """With every component observed, forward and elbo equal the ``mask=None`` results on the same
    seed.  Planted bug caught: MoPoE drawing the uniform re-assignment for every batch (also when no
    row needs it), which shifts the random stream and changes the loss of complete data."""
    mod = build(name)
    xs = batch()
    full = torch.ones(B, M, dtype=torch.bool)
    for elbo in (False, True):
        torch.testing.assert_close(run(mod, xs, full, elbo=elbo), run(mod, xs, None, elbo=elbo), rtol=1e-12,
                                   atol=1e-12)


# ----------------------------------------------------------------------------------------------
# (2) the made-up values of missing entries reach nothing
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_missing_entries_do_not_change_loss_elbo_or_gradients(name):
    """Replacing the zeros of missing entries by huge values, inf and nan leaves every row's loss,
    elbo and every gradient unchanged (and finite).  Planted bug caught: the missing inputs fed to
    the encoders unmasked (``observed_inputs`` returning ``xs`` as given): nan and inf then reach
    the values or the gradients of every model (e.g. MVAE/MoPoE's zero-precision expert multiplies
    nan by 0; MMVAE's left-out groups still pass nan to the encoders' backward)."""
    mod = build(name)
    mask = mixed_mask()
    xs = zero_missing(batch(), mask)
    g = torch.Generator().manual_seed(3)
    junk = [torch.where(mask[:, i, None], x, 1e6 * torch.randn(x.shape, generator=g, dtype=DT))
            for i, x in enumerate(xs)]
    junk[1][~mask[:, 1], 0] = float("nan")
    junk[2][~mask[:, 2], 1] = float("inf")
    for elbo in (False, True):
        ref, got = run(mod, xs, mask, elbo=elbo), run(mod, junk, mask, elbo=elbo)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    grads = []
    for data in (xs, junk):
        mod.zero_grad()
        run(mod, data, mask).sum().backward()
        grads.append({n: p.grad.clone() for n, p in mod.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert torch.isfinite(grads[1][n]).all(), n
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=0, atol=0, msg=n)


# ----------------------------------------------------------------------------------------------
# (3) a component missing in every row trains nothing of its own
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_component_missing_everywhere_gets_no_gradient(name):
    """Component 2 missing in every row (and component 0 in some): its encoder, head, decoder
    (and MMVAE+ auxiliary prior) get zero or no gradient, the observed components' do get one.
    Planted bug caught: reconstructing missing components (``decoded_log_liks`` without its
    ``torch.where``) trains their decoders on the zero fill."""
    mod = build(name)
    mask = mixed_mask()
    mask[:, 2] = False
    mask[~mask.any(1), 1] = True
    xs = zero_missing(batch(), mask)
    mod.zero_grad()
    run(mod, xs, mask).sum().backward()
    for n, grad in component_params(mod, 2):
        assert grad is None or not grad.any(), n
    for d in (0, 1):
        assert any(grad is not None and grad.any() for _, grad in component_params(mod, d)), d


# ----------------------------------------------------------------------------------------------
# (4) exact checks against independent computations
# ----------------------------------------------------------------------------------------------
def numpy_poe(mus, variances):
    prec = sum(1.0 / v for v in variances)
    return sum(m / v for m, v in zip(mus, variances)) / prec, 1.0 / prec


def test_mvae_masked_products_are_numpy_poes_over_observed_experts():
    """Every subset's product in a row is the NumPy PoE of the prior expert and the row's observed
    members of the subset.  Planted bug caught: ``observed_subset_mask`` ignoring the row mask (a
    missing component's expert, computed from the zero fill, joins the product)."""
    mod = build("mvae")
    mask = mixed_mask()
    xs, mask = observed_inputs(batch(), mask)
    subsets = [(0, 1, 2), (0,), (1,), (2,), (0, 2)]
    pm = observed_subset_mask(subset_mask(M, subsets, prior=True), mask)
    mu, lv = mod.subset_products(xs, pm)
    e_mu, e_lv = mod.encoder_outputs(xs)
    e_mu, e_var = e_mu.detach().numpy(), np.exp(e_lv.detach().numpy())
    for j, s in enumerate(subsets):
        for b in range(B):
            obs = [m for m in s if mask[b, m]]
            ref_mu, ref_var = numpy_poe([np.zeros(D)] + [e_mu[m, b] for m in obs],
                                        [np.ones(D)] + [e_var[m, b] for m in obs])
            np.testing.assert_allclose(mu[j, b].detach().numpy(), ref_mu, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(np.exp(lv[j, b].detach().numpy()), ref_var, rtol=1e-6)


def test_mvae_masked_loss_is_sum_of_observed_subset_elbos():
    """Row by row, the loss is ``sum_S L(S & O_b)`` over the training subsets with nonempty
    ``S & O_b`` (each from ``posterior`` on the observed members, the same noise), and elbo is
    ``-L(O_b)`` unscaled.  Planted bug caught: the reconstruction terms of a subset's missing
    members kept (scored against the zero fill)."""
    mod = build("mvae")
    mod.llik_scales = torch.tensor([1.0, 2.0, 0.5], dtype=DT)
    mask = mixed_mask()
    xs = zero_missing(batch(), mask)
    torch.manual_seed(5)
    loss = mod(xs, mask=mask)
    torch.manual_seed(5)
    subsets = mod.training_subsets()
    eps = torch.randn(len(subsets), B, D, dtype=DT)
    for b in range(B):
        ref = torch.zeros((), dtype=DT)
        row = [x[b:b + 1] for x in xs]
        for j, s in enumerate(subsets):
            obs = [m for m in s if mask[b, m]]
            if not obs:
                continue
            mu, lv = mod.posterior([row[m] for m in obs], obs)
            z = mu + (0.5 * lv).exp() * eps[j, b]
            ll = sum(mod.component_log_lik(m, mod.decode_component(m, z), row[m]) * mod.llik_scales[m] for m in obs)
            ref = ref - ll[0] + 0.7 * kl_diag_gaussian_std(mu, lv)[0]
        torch.testing.assert_close(loss[b], ref)
    g = torch.Generator().manual_seed(2)
    elbo = mod.elbo(xs, n_mc=1, generator=g, mask=mask)
    eps = torch.randn(B, D, generator=torch.Generator().manual_seed(2), dtype=DT)
    for b in range(B):
        obs = [m for m in range(M) if mask[b, m]]
        row = [xs[m][b:b + 1] for m in obs]
        mu, lv = mod.posterior(row, obs)
        z = mu + (0.5 * lv).exp() * eps[b]
        ll = sum(mod.component_log_lik(m, mod.decode_component(m, z), xs[m][b:b + 1]) for m in obs)
        torch.testing.assert_close(elbo[b], (ll - kl_diag_gaussian_std(mu, lv))[0])


@pytest.mark.parametrize("family", ["laplace", "gaussian"])
def test_mixture_log_prob_over_observed_experts_matches_scipy(family):
    """The masked mixture density is SciPy's ``log (1/|O_b|) sum_{e in O_b} pdf_e(z)``, whatever the
    missing experts' parameters (even nan).  Planted bug caught: normalising by all M experts
    instead of ``|O_b|``."""
    g = torch.Generator().manual_seed(0)
    mask = mixed_mask()
    loc = torch.randn(M, B, D, generator=g, dtype=DT)
    scale = torch.rand(M, B, D, generator=g, dtype=DT) + 0.3
    loc = torch.where(mask.T[..., None], loc, float("nan"))
    z = torch.randn(4, B, D, generator=g, dtype=DT)
    got = mixture_log_prob(family, z, loc, scale, mask).numpy()
    dist = stats.laplace if family == "laplace" else stats.norm
    for k in range(4):
        for b in range(B):
            obs = [e for e in range(M) if mask[b, e]]
            dens = [np.prod(dist.pdf(z[k, b].numpy(), loc[e, b].numpy(), scale[e, b].numpy())) for e in obs]
            np.testing.assert_allclose(got[k, b], np.log(np.mean(dens)), rtol=1e-10)


def test_masked_iw_objectives_match_numpy():
    """ELBO, stratified and pooled IWAE with a mask are the NumPy values over each row's observed
    groups only.  Planted bug caught: the pooled IWAE normalised by ``K M`` instead of ``K |O_b|``."""
    g = torch.Generator().manual_seed(1)
    K = 4
    mask = mixed_mask()
    lw = torch.randn(K, M, B, generator=g, dtype=DT)
    lw = torch.where(mask.T, lw, float("nan"))
    elbo, looser, pooled = (iw_objective(lw, "elbo", True, mask), iw_objective(lw, "iwae", True, mask),
                            iw_objective(lw, "iwae", False, mask))
    for b in range(B):
        a = lw[:, mask[b], b].numpy()  # (K, |O_b|)
        np.testing.assert_allclose(elbo[b], a.mean())
        np.testing.assert_allclose(looser[b], np.mean(np.log(np.mean(np.exp(a), 0))))
        np.testing.assert_allclose(pooled[b], np.log(np.mean(np.exp(a))))


def test_mmvae_masked_log_weights_match_torch_distributions():
    """For observed groups, ``lw = sum_{d in O} log p(x_d|z) + beta (log p(z) - log q_O(z))`` with
    ``q_O`` the mixture of the observed Laplace experts (torch.distributions).  Planted bug caught:
    ``log q`` over all M experts (the missing expert's density, from the zero fill, in the mixture)."""
    torch.manual_seed(0)
    K, beta = 3, 0.5
    mod = MMVAEModule(specs(), beta=beta, K=K).double()
    with torch.no_grad():
        mod.prior_logits.copy_(torch.tensor([0.3, -0.2]))
    mask = mixed_mask()
    xs, mask = observed_inputs(zero_missing(batch(), mask), mask)
    z, lw = mod.log_weights(xs, K, beta, scaled=True, detach_q=False, generator=torch.Generator().manual_seed(1),
                            mask=mask)
    loc, scale = mod.posteriors(xs)
    prior = torch.distributions.Laplace(torch.zeros(D, dtype=DT), torch.softmax(mod.prior_logits, 0) * D)
    for b in range(B):
        obs = [m for m in range(M) if mask[b, m]]
        qs = [torch.distributions.Laplace(loc[e, b], scale[e, b]) for e in obs]
        for k in range(K):
            for m in obs:
                zz = z[k, m, b]
                log_q = torch.logsumexp(torch.stack([q.log_prob(zz).sum() for q in qs]), 0) - math.log(len(obs))
                ll = sum(mod.likelihoods[d].log_prob(mod.decoders[d](zz[None]), xs[d][b:b + 1])[0] for d in obs)
                torch.testing.assert_close(lw[k, m, b], ll + beta * (prior.log_prob(zz).sum() - log_q))


def test_mopoe_masked_loss_matches_formula_and_assignment_keeps_valid_subsets():
    """Row b's loss is ``-sum_{d in O} llik_scale_d log p(x_d|z) + beta mean_{S within O} KL(q_S)``
    with z from its assigned subset, which is the partition's when that lies within O and else a
    subset within O.  Planted bug caught: the KL averaged over all 2^M - 1 subsets (weights not
    renormalised to the row's valid subsets)."""
    mod = build("mopoe_partition")
    mod.llik_scales = torch.tensor([1.0, 3.0, 1.0], dtype=DT)
    rows = 14
    mask = mixed_mask(rows)
    xs = zero_missing(batch(rows=rows), mask)
    torch.manual_seed(2)
    loss = mod(xs, mask=mask)
    torch.manual_seed(2)
    assign = mod.assignment(rows, "cpu", mask=mask)
    eps = torch.randn(rows, D, dtype=DT)
    partition = mod.assignment(rows, "cpu")
    mu_s, lv_s = mod.subset_posteriors(xs)
    for b in range(rows):
        obs = {m for m in range(M) if mask[b, m]}
        valid = [j for j, s in enumerate(mod.subsets) if set(s) <= obs]
        a = int(assign[b])
        assert a in valid
        if int(partition[b]) in valid:
            assert a == int(partition[b])
        z = mu_s[a, b] + (0.5 * lv_s[a, b]).exp() * eps[b]
        ll = sum(mod.component_log_lik(d, mod.decode_component(d, z[None]), xs[d][b:b + 1])[0] * mod.llik_scales[d]
                 for d in obs)
        kl = torch.stack([kl_diag_gaussian_std(mu_s[j, b], lv_s[j, b]) for j in valid]).mean()
        torch.testing.assert_close(loss[b], -ll + 0.5 * kl)


def test_mopoe_random_assignment_is_uniform_over_valid_subsets():
    """With ``mixture_sampling="random"``, a row observing {0, 2} uses each of its 3 subsets a third of
    the time and no other.  Planted bug caught: keeping the drawn subset when it holds a missing
    component (rows then decode from products of the zero fill)."""
    mod = MoPoEModule(specs(), mixture_sampling="random")
    mask = torch.tensor([[True, False, True]]).expand(30000, M)
    a = mod.assignment(30000, "cpu", torch.Generator().manual_seed(0), mask=mask)
    counts = torch.bincount(a, minlength=7)
    valid = [mod.subsets.index(s) for s in [(0,), (2,), (0, 2)]]
    assert counts.sum() == counts[valid].sum()
    assert stats.chisquare(counts[valid].numpy()).pvalue > 1e-3


def test_subset_validity_helpers():
    """``subsets_meeting`` / ``subsets_within`` against set arithmetic.  Planted bug caught:
    ``subsets_within`` testing intersection instead of inclusion."""
    subsets = [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    members = subset_mask(M, subsets)[1:]
    mask = mixed_mask()
    meet, within = subsets_meeting(members, mask), subsets_within(members, mask)
    for b in range(B):
        obs = {m for m in range(M) if mask[b, m]}
        for j, s in enumerate(subsets):
            assert bool(meet[j, b]) == bool(obs & set(s))
            assert bool(within[j, b]) == (set(s) <= obs)


def test_mmvaeplus_masked_log_weights_match_manual_computation():
    """MMVAE+ elbo-form log-weights with a mask, rebuilt from the same noise: shared z from observed
    experts' mixture, private ``w_m`` own density, cross-reconstruction (and the ``w~_d`` density
    ratio) only to observed ``d != m``.  Planted bug caught: the density ratio of ``w~_d`` kept for a
    missing d (a needless ``-KL(r_d || p)`` in the bound)."""
    torch.manual_seed(0)
    K, Dw = 2, 2
    mod = MMVAEPlusModule(specs(), private_dim=Dw, K=K).double()
    with torch.no_grad():
        mod.aux_logits.copy_(torch.tensor([[0.4, -0.4], [0.1, 0.2], [-0.3, 0.5]]))
    mask = mixed_mask()
    xs, mask = observed_inputs(zero_missing(batch(), mask), mask)
    _, _, lw = mod.log_weights(xs, K, 1.0, scaled=False, detach_q=False, generator=torch.Generator().manual_seed(4),
                               aux_density=True, mask=mask)
    # The same noise, in the order _sample_and_weigh draws it.
    g = torch.Generator().manual_seed(4)
    lz, sz, lw_, sw = mod.posteriors(xs)
    Lap = torch.distributions.Laplace
    z = lz + sz * standard_noise("laplace", (K, M, B, D), lz, g)
    w = lw_ + sw * standard_noise("laplace", (K, M, B, Dw), lz, g)
    aux = mod.aux_scale()
    w_aux = [aux[d] * standard_noise("laplace", (K, M, B, Dw), lz, g) for d in range(M)]
    std = Lap(torch.zeros((), dtype=DT), torch.ones((), dtype=DT))
    for b in range(B):
        obs = [m for m in range(M) if mask[b, m]]
        for k in range(K):
            for m in obs:
                zz, ww = z[k, m, b], w[k, m, b]
                log_qz = torch.logsumexp(torch.stack([Lap(lz[e, b], sz[e, b]).log_prob(zz).sum() for e in obs]), 0) \
                    - math.log(len(obs))
                log_q = log_qz + Lap(lw_[m, b], sw[m, b]).log_prob(ww).sum()
                log_p = std.log_prob(zz).sum() + std.log_prob(ww).sum()
                ll = 0.0
                for d in obs:
                    wd = ww if d == m else w_aux[d][k, m, b]
                    ll = ll + mod.likelihoods[d].log_prob(mod.decoders[d](torch.cat([wd, zz])[None]), xs[d][b:b + 1])[0]
                    if d != m:
                        r_d = Lap(torch.zeros(Dw, dtype=DT), aux[d])
                        log_p = log_p + std.log_prob(wd).sum() - r_d.log_prob(wd).sum()
                torch.testing.assert_close(lw[k, m, b], ll + log_p - log_q)


# ----------------------------------------------------------------------------------------------
# DReG with missing experts stays unbiased
# ----------------------------------------------------------------------------------------------
N_DRAWS = 20000
Z_MAX = 4.5


def _dreg_case(kind, seed):
    """A float64 module over one repeated row, posterior parameters as leaves (as
    tests/test_dreg_unbiased.py), with component 1 of 3 missing in every row."""
    torch.manual_seed(seed)
    lik = {"name": "gaussian", "scale": 1.0, "learn_scale": False}
    mlp = get_architecture("mlp")
    sp = [ComponentSpec(shape=(6,), latent_dim=2, encoder=mlp.encoder_factory, decoder=mlp.decoder_factory,
                        encoder_kwargs={"hidden": (4,)}, decoder_kwargs={"hidden": (6,)}, likelihood=lik)
          for _ in range(M)]
    g = torch.Generator().manual_seed(seed + 1)
    xs = [torch.randn(1, 6, generator=g, dtype=DT).expand(N_DRAWS, 6) for _ in range(M)]

    def leaf(v):
        return v.unsqueeze(1).repeat(1, N_DRAWS, 1).requires_grad_(True)

    loc = 0.5 * torch.randn(M, 2, generator=g, dtype=DT)
    loc[:, 0] += torch.linspace(-1, 1, M, dtype=DT)
    loc, raw = leaf(loc), leaf(0.3 * torch.randn(M, 2, generator=g, dtype=DT))
    if kind == "mmvaeplus":
        mod = MMVAEPlusModule(sp, private_dim=2, objective="dreg", K=3).double()
        lw_, rw = leaf(0.5 * torch.randn(M, 2, generator=g, dtype=DT)), leaf(0.3 * torch.randn(M, 2, generator=g,
                                                                                              dtype=DT))
        mod.posteriors = lambda xs, which=None: (loc, positive_scale(raw, mod.posterior_scale), lw_,
                                                 positive_scale(rw, mod.posterior_scale))
        leaves = (loc, raw, lw_, rw)
    else:
        mod = MMVAEModule(sp, objective="dreg", K=4, looser=kind == "looser").double()
        mod.posteriors = lambda xs, which=None: (loc, positive_scale(raw, mod.posterior_scale))
        leaves = (loc, raw)
    mask = torch.tensor([[True, False, True]]).expand(N_DRAWS, M)
    return mod, xs, leaves, mask


@pytest.mark.parametrize("kind", ["looser", "pooled", "mmvaeplus"])
def test_masked_dreg_encoder_gradient_is_unbiased(kind):
    """Paired DReG - IWAE encoder gradients have mean zero with a missing expert, and the missing
    expert's parameters get exactly zero.  Planted bug caught: the responsibilities of the score
    correction taken over all M experts (the missing one included) instead of the observed ones."""
    mod, xs, leaves, mask = _dreg_case(kind, seed=2)
    per_draw = []
    for objective in ("dreg", "iwae"):
        mod.objective = objective
        torch.manual_seed(123)
        loss = mod(xs, mask=mask)
        grads = torch.autograd.grad(loss.sum(), leaves)
        assert all(not gr[1].any() for gr in grads)  # expert 1: no gradient at all
        per_draw.append(torch.cat([gr[[0, 2]].transpose(0, 1).reshape(N_DRAWS, -1) for gr in grads], 1))
    diff = per_draw[0] - per_draw[1]
    zs = diff.mean(0) / (diff.std(0) / N_DRAWS ** 0.5).clamp_min(1e-300)
    assert torch.isfinite(zs).all()
    assert zs.abs().max() < Z_MAX, zs.tolist()


# ----------------------------------------------------------------------------------------------
# The masked bounds are bounds on log p(x_O)
# ----------------------------------------------------------------------------------------------
BOUND_MASK = torch.tensor([[True, False, True], [False, True, False], [True, True, False], [False, False, True]])


def observed_log_marginal(mod, xs, mask):
    """Closed-form ``log p(x_O)`` per row (affine decoders, fixed Gaussian noise): the Gaussian
    marginal of the observed components' features, from tests/test_score_bound.py's latent law."""
    from tests.test_score_bound import _latent_law, _noise_var

    log_w, mu, cov, A, b = _latent_law(mod)
    assert log_w.numel() == 1
    F_ = xs[0].shape[1]
    x, nv = torch.cat(xs, 1), _noise_var(mod).double()
    out = []
    for r in range(x.shape[0]):
        keep = mask[r].repeat_interleave(F_)
        A_o = A[keep]
        S = A_o @ cov[0] @ A_o.mT + torch.diag(nv[keep])
        out.append(torch.distributions.MultivariateNormal(mu[0] @ A_o.mT + b[keep], S).log_prob(x[r, keep]))
    return torch.stack(out)


def test_masked_pooled_iwae_approaches_log_marginal_of_observed_components():
    """MMVAE's pooled IWAE with a mask, observed experts near each row's exact posterior given x_O
    and the missing experts far away: K = 1 below ``log p(x_O)``, K = 2048 within 0.01 nats of it
    (checks ``observed_log_marginal`` as well).
    Planted bug caught: the missing experts kept in the mixture ``q`` (``mask`` not passed to
    ``mixture_log_prob``), which moves the large-K value off ``log p(x_O)`` (here above it)."""
    from tests.test_score_bound import _latent_law, _noise_var
    from tests.test_score_bound import _specs as bound_specs

    torch.manual_seed(0)
    Fb, R = 3, 20
    mod = MMVAEModule(bound_specs(M, D, Fb), posterior="gaussian", objective="iwae", looser=False).double().eval()
    rows = BOUND_MASK.shape[0]
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(rows, Fb, generator=g, dtype=DT) for _ in range(M)]
    _, _, cov, A, b = _latent_law(mod)
    nv = _noise_var(mod).double()
    loc = torch.full((M, rows, D), 4.0, dtype=DT)
    scale = torch.full((M, rows, D), 0.3, dtype=DT)
    x = torch.cat(xs, 1)
    for r in range(rows):
        keep = BOUND_MASK[r].repeat_interleave(Fb)
        A_o, Sn = A[keep], torch.diag(1 / nv[keep])
        post_cov = torch.linalg.inv(torch.linalg.inv(cov[0]) + A_o.mT @ Sn @ A_o)
        post_mean = (x[r, keep] - b[keep]) @ Sn @ A_o @ post_cov
        sd = post_cov.diagonal().sqrt()
        for j, m in enumerate(np.flatnonzero(BOUND_MASK[r].numpy())):
            loc[m, r] = post_mean + (0.2 if j % 2 == 0 else -0.2) * sd
            scale[m, r] = 1.4 * sd
    mod.posteriors = lambda xs, which=None: (loc.repeat(1, R, 1), scale.repeat(1, R, 1))
    rep, mask = [t.repeat(R, 1) for t in xs], BOUND_MASK.repeat(R, 1)
    lp = observed_log_marginal(mod, xs, BOUND_MASK)
    with torch.no_grad():
        for K, gap_max in ((1, math.inf), (2048, 0.01)):
            mod.K = K
            torch.manual_seed(3)
            v = -mod(rep, mask=mask)
            v = v.reshape(R, rows)
            mean, se = v.mean(0), v.std(0) / math.sqrt(R)
            assert (mean <= lp + 3 * se + 1e-9).all(), (K, mean - lp, se)
            assert ((lp - mean) < gap_max + 3 * se).all(), (K, lp - mean, se)


@pytest.mark.parametrize("name", ["mvae", "mopoe", "mmvae", "mmvaeplus"])
def test_masked_elbo_is_below_log_marginal_of_observed_components(name):
    """``elbo(mask)`` is at most ``log p(x_O)`` in expectation (random encoders, affine decoders),
    and finite with junk in the missing entries.  Planted bugs caught: a row's reconstructions
    dropped unless it is complete (``decoded_log_liks`` masking with ``mask.all(1)``: MMVAE and
    MoPoE 40 to 240 nats above ``log p(x_O)``), and MMVAE+ dropping the cross-reconstructions to
    observed components (up to 48 nats above).  Random encoders leave too much slack to catch
    small KL errors; the exact tests above do."""
    from tests.test_score_bound import _module

    torch.manual_seed(0)
    mod = _module(name, M=M).double().eval()
    rows, R = BOUND_MASK.shape[0], 400
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(rows, 3, generator=g, dtype=DT) for _ in range(M)]
    junk = [torch.where(BOUND_MASK[:, i, None], x, 1e3) for i, x in enumerate(xs)]
    with torch.no_grad():
        score = mod.elbo([x.repeat(R, 1) for x in junk], n_mc=1, generator=torch.Generator().manual_seed(2),
                         mask=BOUND_MASK.repeat(R, 1))
        v = score.reshape(R, rows)
        mean, se = v.mean(0), v.std(0) / math.sqrt(R)
        lp = observed_log_marginal(mod, xs, BOUND_MASK)
    assert torch.isfinite(mean).all()
    assert (mean <= lp + 3 * se).all(), (mean - lp) / se
