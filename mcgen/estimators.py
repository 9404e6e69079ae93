"""The public estimator classes: their parameters and which torch module each builds."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from mcgen.base import MultiComponentVAE
from mcgen.models.base import ComponentSpec
from mcgen.models.gmrf import INFERENCE_MODES, GMRFModule

_COMMON_DOC = """
    latent_dim : int or list of int, default={latent}
        Latent size, one for all components or one per component.
    beta : float, default={beta}
        Weight of the KL term of the training objective.
    encoder, decoder : str or list of str, default="auto"
        Registered architecture name(s); ``"auto"`` picks one from each component's shape
        (``mlp`` for vectors).
    encoder_kwargs, decoder_kwargs : dict or list of dict, optional
        Options for the architectures (e.g. ``{{"hidden": (128, 128)}}`` for ``mlp``).
    likelihood : str, dict or list, default="gaussian"
        ``"gaussian"`` (learned per-feature scale), ``"laplace"`` or ``"bernoulli"``, one for all
        components or one per component; a dict such as ``{{"name": "laplace", "scale": 0.75,
        "learn_scale": False}}`` fixes options.
    llik_scaling : float or list of float, optional
        Weight of each component's log-likelihood in the training loss (default 1).
    standardize : bool, default=True
        Standardise gaussian/laplace components internally (and undo it on every output), so
        data of any scale trains with the same defaults.
    max_epochs : int, default={epochs}
    batch_size : int, default=256
    lr : float, default=1e-3
    optimizer : str or torch optimizer class, default="adam"
    device : str, default="cpu"
        ``"cuda"`` trains and infers on the GPU.
    callbacks : list of skorch callbacks, optional
    valid_fraction : float, optional
        Hold out this fraction of rows for validation and stop early on the validation loss.
    patience : int, default=10
        Early-stopping patience (epochs), used with ``valid_fraction``.
    clip_grad_norm : float, optional
        Clip the gradient norm at this value.
    net_kwargs : dict, optional
        Extra keyword arguments passed to the skorch ``NeuralNet``.
    random_state : int, RandomState or None
        Seed for initialisation, batching and Monte Carlo noise; an int makes ``fit``
        reproducible.
    verbose : int, default=0
        Print a per-epoch table and a progress bar when positive.
    checkpoint_dir : str or path, optional
        Save a checkpoint after every epoch there (atomically); ``fit(X, resume=True)``
        continues an interrupted fit from it (see ``docs/reliability.md``).
"""


class GMRFMultiComponentVAE(MultiComponentVAE):
    __doc__ = """GMRF Multi-Component VAE: full-covariance Gaussian posterior and prior over the
    concatenated per-component latents, with closed-form conditional generation.

    Parameters
    ----------""" + _COMMON_DOC.format(latent='"auto"', beta=0.1, epochs=100).replace(
        "one for all components or one per component.",
        "one for all components or one per component; ``\"auto\"``: 8 per component, or the\n"
        "        component's number of features when it has fewer (measured best on real data).") + """
    covariance : {"elementwise", "blockwise"}, default="elementwise"
        SPD construction of the posterior covariance (see ``docs/mathematics.md``).
    epsilon : float, default=0.9
        Diagonal-dominance margin of the construction (0 < epsilon < 1).
    delta : float, default=1e-6
        Offset of the off-diagonal row sums.
    offdiag_hidden, offdiag_layers : int, default=128, 2
        Width and depth of the global encoder producing the off-diagonal blocks.
    prior : {"learned", "standard"}, default="learned"
        Learned full-covariance Gaussian prior or N(0, I) (ablation).
    refit_prior : bool, default=True
        After training, refit the learned prior to the aggregate posterior in closed form: the
        moment match for one component (the Gaussian minimising the average KL from the
        posteriors), EM for a mixture (warm-started from the prior learned during training).
    prior_components : int, default=10
        Number of full-covariance Gaussians in the learned prior (a mixture of GMRFs; 1 is the
        paper's single Gaussian; ignored with ``prior="standard"``). Completion stays closed form: a
        mixture of Gaussian conditionals weighted by each component's responsibility for the known
        latents.
    cond_weight : float, default=0.3
        Weight of the conditional-generation term: per batch, a random known subset is encoded as
        at prediction time and the others are generated from the prior's conditional and
        reconstructed (a lower bound on the log-likelihood of the model's own completions).
    inference : {"sample", "potential"}, default="sample"
        How ``predict_missing`` forms the known latents: draw each from its own encoder
        (``"sample"``), or combine the known encoders' outputs as Gaussian unary potentials with
        the prior in closed form (``"potential"``).

    Attributes
    ----------
    n_components_ : int
    component_shapes_ : tuple of tuple
    latent_dims_ : list of int
    net_ : skorch NeuralNet
    history_ : skorch History

    Examples
    --------
    >>> from mcgen import GMRFMultiComponentVAE, load_dataset
    >>> X, info = load_dataset("copula", n_samples=500)
    >>> est = GMRFMultiComponentVAE(max_epochs=2, random_state=0).fit(X)
    >>> [a.shape for a in est.sample(3, random_state=0)]
    [(3, 2), (3, 2), (3, 2), (3, 2)]
    """

    def __init__(self, latent_dim="auto", beta=0.1, *, encoder="auto", decoder="auto", encoder_kwargs=None,
                 decoder_kwargs=None, likelihood="gaussian", llik_scaling=None, standardize=True,
                 max_epochs=100, batch_size=256, lr=1e-3, optimizer="adam", device="cpu", callbacks=None,
                 valid_fraction=None, patience=10, clip_grad_norm=None, net_kwargs=None,
                 random_state=None, verbose=0, checkpoint_dir=None, covariance="elementwise", epsilon=0.9, delta=1e-6,
                 offdiag_hidden=128, offdiag_layers=2, prior="learned", refit_prior=True, prior_components=10,
                 cond_weight=0.3, inference="sample"):
        self.latent_dim = latent_dim
        self.beta = beta
        self.encoder = encoder
        self.decoder = decoder
        self.encoder_kwargs = encoder_kwargs
        self.decoder_kwargs = decoder_kwargs
        self.likelihood = likelihood
        self.llik_scaling = llik_scaling
        self.standardize = standardize
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.device = device
        self.callbacks = callbacks
        self.valid_fraction = valid_fraction
        self.patience = patience
        self.clip_grad_norm = clip_grad_norm
        self.net_kwargs = net_kwargs
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.covariance = covariance
        self.epsilon = epsilon
        self.delta = delta
        self.offdiag_hidden = offdiag_hidden
        self.offdiag_layers = offdiag_layers
        self.prior = prior
        self.refit_prior = refit_prior
        self.prior_components = prior_components
        self.cond_weight = cond_weight
        self.inference = inference

    def _build_module(self, specs: list[ComponentSpec]) -> GMRFModule:
        if self.covariance not in ("elementwise", "blockwise"):
            raise ValueError(f"covariance must be 'elementwise' or 'blockwise', got {self.covariance!r}")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon!r}")
        if not self.delta > 0:
            raise ValueError(f"delta must be positive, got {self.delta!r}")
        if self.prior not in ("learned", "standard"):
            raise ValueError(f"prior must be 'learned' or 'standard', got {self.prior!r}")
        C = self.prior_components
        if isinstance(C, bool) or not isinstance(C, numbers.Integral) or C < 1:
            raise ValueError(f"prior_components must be a positive integer, got {C!r}")
        w = self.cond_weight
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not (np.isfinite(w) and w >= 0):
            raise ValueError(f"cond_weight must be a non-negative number, got {w!r}")
        if self.inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {', '.join(map(repr, INFERENCE_MODES))}, "
                             f"got {self.inference!r}")
        return GMRFModule(specs, beta=self.beta, covariance=self.covariance, epsilon=self.epsilon,
                          delta=self.delta, offdiag_hidden=self.offdiag_hidden,
                          offdiag_layers=self.offdiag_layers, prior=self.prior, prior_components=int(C),
                          cond_weight=float(w), inference=self.inference)

    def _after_fit(self, dataset) -> None:
        if self.refit_prior and self.prior == "learned":
            self._refit_prior(dataset)

    def _refit_prior(self, dataset) -> None:
        """Refit the prior to the aggregate posterior over ``dataset`` in closed form (the moment
        match for one component, EM for a mixture)."""
        module = self.net_.module_
        dev = next(module.parameters()).device
        bs = 4096
        n = len(dataset)

        def posteriors():
            for s in range(0, n, bs):
                xs, _ = dataset[torch.arange(s, min(n, s + bs))]
                yield module.posterior([x.to(dev) for x in xs])

        was = module.training
        module.eval()
        try:
            with torch.no_grad():
                D = module.latent_size
                # EM passes over the posteriors many times: keep them when they fit in ~256 MB.
                if module.n_prior_components > 1 and n * D * (D + 1) <= 2**26:
                    cached = [(mu, S) for mu, S in posteriors()]
                    module.refit_prior(lambda: cached)
                else:
                    module.refit_prior(posteriors)
        finally:
            module.train(was)

    def prior_covariance(self):
        """The learned prior covariance over the concatenated latents, as a NumPy array."""
        return self.module_.prior_covariance().detach().cpu().numpy()
