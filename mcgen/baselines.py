"""The multimodal VAE baselines as estimators: MVAE, MMVAE, MoPoE-VAE and MMVAE+.

Each class stores its parameters and names the torch module it builds (``mcgen/models/``); the
shared :class:`~mcgen.base.MultiComponentVAE` does everything else.  See ``docs/baselines.md``
for the objectives, the departures of the official code from the papers, and the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from skorch.callbacks import Callback

from mcgen.base import MultiComponentVAE
from mcgen.components import Components
from mcgen.estimators import _COMMON_DOC
from mcgen.models.base import ComponentSpec
from mcgen.models.mmvae import MMVAEModule
from mcgen.models.mmvaeplus import MMVAEPlusModule
from mcgen.models.mopoe import MoPoEModule
from mcgen.models.mvae import MVAEModule

__all__ = ["MMVAE", "MVAE", "MMVAEPlus", "MoPoEVAE"]

_ATTRIBUTES_DOC = """
    Attributes
    ----------
    n_components_ : int
    component_shapes_ : tuple of tuple
    latent_dims_ : list of int
        The shared latent size, once per component.
    net_ : skorch NeuralNet
    history_ : skorch History
"""

_SHARED_LATENT_DOC = """
    Notes
    -----
    ``latent_dim`` is the size of the one latent shared by all components (a single integer;
    ``None`` gives ``2 M``, the total latent size of the GMRF model's default).  The Copula
    benchmark uses 3, the paper's setting.
"""


def _common_doc(beta: float) -> str:
    doc = _COMMON_DOC.format(latent="None", beta=beta, epochs=200)
    doc = doc.replace("latent_dim : int or list of int,", "latent_dim : int or None,")
    return doc.replace("Latent size, one for all components or one per component.",
                       "Size of the latent shared by all components (see Notes).")


def _store(obj, params: dict) -> None:
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(obj, name, value)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _SharedLatentVAE(MultiComponentVAE):
    """Resolves one latent size shared by every component."""

    def _shared_latent(self, M: int) -> int:
        d = self.latent_dim
        if d is None:
            return 2 * M
        if isinstance(d, (list, tuple)):
            if len(set(d)) != 1:
                raise ValueError(f"{type(self).__name__} has one latent shared by all components; latent_dim "
                                 f"must be a single integer, got {list(d)}")
            d = d[0]
        return _positive_int(d, "latent_dim")

    def _resolve_specs(self, C: Components | None, shapes=None) -> list[ComponentSpec]:
        D = self._shared_latent(C.n_components if C is not None else len(shapes))
        specs = super()._resolve_specs(C, shapes)
        return [dataclasses.replace(s, latent_dim=D) for s in specs]


# ----------------------------------------------------------------------------------------------
class KLAnnealing(Callback):
    """MVAE's KL annealing: the KL weight rises linearly per batch over the first
    ``epochs`` epochs, ``beta_t = beta (i + (e - 1) N + 1) / (A N)`` for epoch ``e < A``
    (1-based, batch ``i``, ``N`` batches per epoch), then ``beta``."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        self.batch_ = 0
        bs = net.batch_size if net.batch_size > 0 else len(dataset_train)
        self.n_batches_ = max(1, math.ceil(len(dataset_train) / bs))

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        e, N, A = len(net.history), self.n_batches_, self.epochs
        net.module_.kl_weight = min(1.0, (self.batch_ + (e - 1) * N + 1) / (A * N)) if e < A else 1.0

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if training:
            self.batch_ += 1


class MVAE(_SharedLatentVAE):
    __doc__ = """MVAE (Wu & Goodman, 2018): product-of-experts posterior with a N(0, I) prior expert.

    Trained with the sub-sampled objective: the ELBO terms of the full set, of every single
    component and of ``n_subsets`` random subsets of size 2..M-1 per batch, each scoring only the
    components of its subset.  Conditional generation samples the PoE of the observed experts
    and the prior expert.  ``score_samples`` is the joint ELBO with the PoE of all experts.

    Parameters
    ----------""" + _common_doc(0.1) + """
    n_subsets : int, default=1
        Random subsets per batch (``--approx-m`` of the official code; 0 gives the objective of
        the MNIST scripts: joint + unimodal terms only).
    kl_annealing : int, default=0
        Epochs over which the KL weight rises linearly from 0 to ``beta`` (0: no annealing;
        the official MNIST script uses 200 of 500 epochs).
""" + _SHARED_LATENT_DOC + _ATTRIBUTES_DOC + """
    Examples
    --------
    >>> from mcgen import MVAE, load_dataset
    >>> X, info = load_dataset("copula", n_samples=500)
    >>> est = MVAE(latent_dim=3, max_epochs=2, random_state=0).fit(X)
    >>> [a.shape for a in est.predict_missing([X.arrays[0]], known=[0])]
    [(500, 2), (500, 2), (500, 2), (500, 2)]
    """

    def __init__(self, latent_dim=None, beta=0.1, *, encoder="auto", decoder="auto", encoder_kwargs=None,
                 decoder_kwargs=None, likelihood="gaussian", llik_scaling=None, standardize=True,
                 max_epochs=200, batch_size=256, lr=1e-3, optimizer="adam", device="cpu", callbacks=None,
                 valid_fraction=None, patience=10, clip_grad_norm=None, net_kwargs=None,
                 random_state=None, verbose=0, checkpoint_dir=None, n_subsets=1, kl_annealing=0):
        _store(self, locals())

    def _build_module(self, specs: list[ComponentSpec]) -> MVAEModule:
        if isinstance(self.n_subsets, bool) or not isinstance(self.n_subsets, numbers.Integral) \
                or self.n_subsets < 0:
            raise ValueError(f"n_subsets must be a non-negative integer, got {self.n_subsets!r}")
        if isinstance(self.kl_annealing, bool) or not isinstance(self.kl_annealing, numbers.Integral) \
                or self.kl_annealing < 0:
            raise ValueError(f"kl_annealing must be a non-negative number of epochs, got {self.kl_annealing!r}")
        return MVAEModule(specs, beta=self.beta, n_subsets=int(self.n_subsets))

    def _make_net(self, module, seed):
        net = super()._make_net(module, seed)
        if self.kl_annealing:
            net.callbacks = [*net.callbacks, ("kl_annealing", KLAnnealing(int(self.kl_annealing)))]
        return net


class MMVAE(_SharedLatentVAE):
    __doc__ = """MMVAE (Shi et al., 2019): mixture-of-experts posterior with stratified sampling.

    Laplace unimodal posteriors and prior as in the original (Gaussian as an option), K
    importance samples per component, each decoded by every decoder.  Conditional generation
    samples the mixture of the observed components' unimodal posteriors.  ``score_samples`` is
    the stratified estimate of the mixture-posterior ELBO.

    Parameters
    ----------""" + _common_doc(1.0) + """
    objective : {"elbo", "iwae", "dreg"}, default="dreg"
        Stratified ELBO, stratified IWAE, or IWAE with doubly-reparameterised gradients
        (implemented correctly: importance weights squared on the path derivative).
    K : int, default=1
        Importance samples per component.  The paper's MNIST-SVHN run uses 30; every sample is
        decoded by all M decoders, so the cost of a step grows as M^2 K (with K = 1, ``"dreg"``
        is the path-derivative "sticking the landing" ELBO gradient).
    looser : bool, default=True
        IWAE/DReG with the log-mean-exp per component (the paper's stratified bound) or over all
        ``M K`` samples.
    posterior : {"laplace", "gaussian"}, default="laplace"
    posterior_scale : {"softmax", "softplus"}, default="softmax"
        ``"softmax"``: the original's ``softmax(a) D + 1e-6`` (a posterior's scales sum to D);
        ``"softplus"``: each scale free.
    learn_prior : bool, default=True
        Learn the prior's scale ``softmax(theta) D`` (``--learn-prior`` of the paper's runs).
""" + _SHARED_LATENT_DOC + _ATTRIBUTES_DOC

    def __init__(self, latent_dim=None, beta=1.0, *, encoder="auto", decoder="auto", encoder_kwargs=None,
                 decoder_kwargs=None, likelihood="gaussian", llik_scaling=None, standardize=True,
                 max_epochs=200, batch_size=256, lr=1e-3, optimizer="adam", device="cpu", callbacks=None,
                 valid_fraction=None, patience=10, clip_grad_norm=None, net_kwargs=None,
                 random_state=None, verbose=0, checkpoint_dir=None,
                 objective="dreg", K=1, looser=True, posterior="laplace",
                 posterior_scale="softmax", learn_prior=True):
        _store(self, locals())

    def _build_module(self, specs: list[ComponentSpec]) -> MMVAEModule:
        return MMVAEModule(specs, beta=self.beta, objective=self.objective, K=_positive_int(self.K, "K"),
                           looser=self.looser, posterior=self.posterior, posterior_scale=self.posterior_scale,
                           learn_prior=self.learn_prior)


class MoPoEVAE(_SharedLatentVAE):
    __doc__ = """MoPoE-VAE (Sutter et al., 2021): mixture over all non-empty subsets of products of
    experts.

    Conditional generation samples the product of the observed experts.  ``score_samples`` is
    the method's bound: the mixture's expected log-likelihood minus the weighted subset KLs.

    Parameters
    ----------""" + _common_doc(1.0) + """
    prior_expert : {"full", "all", "none"}, default="full"
        Which subsets' products include the N(0, I) prior expert: only the full set (the
        official code), every subset, or none.
    mixture_sampling : {"partition", "random"}, default="partition"
        How a training batch draws from the mixture: contiguous blocks of ``floor(B / (2^M - 1))``
        rows per subset, the full set taking the remainder (the official code; relies on shuffled
        batches), or an independent uniform subset per row.
""" + _SHARED_LATENT_DOC + _ATTRIBUTES_DOC

    def __init__(self, latent_dim=None, beta=1.0, *, encoder="auto", decoder="auto", encoder_kwargs=None,
                 decoder_kwargs=None, likelihood="gaussian", llik_scaling=None, standardize=True,
                 max_epochs=200, batch_size=256, lr=1e-3, optimizer="adam", device="cpu", callbacks=None,
                 valid_fraction=None, patience=10, clip_grad_norm=None, net_kwargs=None,
                 random_state=None, verbose=0, checkpoint_dir=None, prior_expert="full", mixture_sampling="partition"):
        _store(self, locals())

    def _build_module(self, specs: list[ComponentSpec]) -> MoPoEModule:
        return MoPoEModule(specs, beta=self.beta, prior_expert=self.prior_expert,
                           mixture_sampling=self.mixture_sampling)


class MMVAEPlus(_SharedLatentVAE):
    __doc__ = """MMVAE+ (Palumbo et al., 2023): shared and component-specific latents, auxiliary
    priors for cross-reconstruction.

    Conditional generation samples the shared latent from the mixture of the observed
    components' posteriors and the specific latents of the missing components from the prior.
    ``transform`` returns ``[shared ; w_1 ; ... ; w_M]`` (width ``latent_dim + M private_dim``).
    ``score_samples`` is the method's objective in its ELBO form.

    Parameters
    ----------""" + _common_doc(0.1) + """
    private_dim : int, default=2
        Size of every component-specific latent ``w_m``.
    objective : {"elbo", "iwae", "dreg"}, default="elbo"
        As MMVAE's (per-component stratified IWAE; ``"iwae"`` is what the official code calls
        ``m_elbo``).  The official PolyMNIST script trains ``elbo`` with K = 1.
    K : int, default=1
    posterior : {"laplace", "gaussian"}, default="laplace"
    posterior_scale : {"softmax", "softplus"}, default="softmax"
""" + _SHARED_LATENT_DOC.replace("shared by all components", "shared by all components (Dz)") \
        + _ATTRIBUTES_DOC

    def __init__(self, latent_dim=None, beta=0.1, *, encoder="auto", decoder="auto", encoder_kwargs=None,
                 decoder_kwargs=None, likelihood="gaussian", llik_scaling=None, standardize=True,
                 max_epochs=200, batch_size=256, lr=1e-3, optimizer="adam", device="cpu", callbacks=None,
                 valid_fraction=None, patience=10, clip_grad_norm=None, net_kwargs=None,
                 random_state=None, verbose=0, checkpoint_dir=None,
                 private_dim=2, objective="elbo", K=1, posterior="laplace",
                 posterior_scale="softmax"):
        _store(self, locals())

    def _build_module(self, specs: list[ComponentSpec]) -> MMVAEPlusModule:
        return MMVAEPlusModule(specs, private_dim=_positive_int(self.private_dim, "private_dim"), beta=self.beta,
                               objective=self.objective, K=_positive_int(self.K, "K"), posterior=self.posterior,
                               posterior_scale=self.posterior_scale)
