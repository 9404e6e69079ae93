"""``GMRFMultiComponentVAE``: the GMRF Multi-Component VAE estimator (its parameters and the
torch module it builds)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from mcgen.base import MultiComponentVAE
from mcgen.models.base import ComponentSpec
from mcgen.models.gmrf import DEPENDENCY_MIXTURE_MODES, GRAPH_KINDS, INFERENCE_MODES, GMRFModule
from mcgen.training import PriorRefit, refit_prior

__all__ = ["GMRFMultiComponentVAE"]


class GMRFMultiComponentVAE(MultiComponentVAE):
    """GMRF Multi-Component VAE: full-covariance Gaussian posterior and prior over the
    concatenated per-component latents, with closed-form conditional generation.

    Parameters
    ----------
    [shared parameters]
    covariance : {"elementwise", "blockwise"}, default="elementwise"
        SPD construction of the posterior covariance (see ``docs/mathematics.md``).
    epsilon : float, default=0.9
        Diagonal-dominance margin of the construction (0 < epsilon < 1).
    delta : float, default=1e-6
        Offset of the off-diagonal row sums.
    offdiag_hidden : int, default=128
        Width of the global encoder producing the off-diagonal blocks.
    offdiag_layers : int, default=2
        Hidden layers of the global encoder.
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
    graph : None, {"chain", "star"} or array-like of shape (M, M), default=None
        Which pairs of components may interact.  ``None``: every pair (the paper's model).
        ``"chain"``: component i with i - 1 and i + 1; ``"star"``: component 0 with every other;
        or a symmetric boolean adjacency matrix (diagonal ignored; checked when ``fit`` starts).
        Each prior component is then a GMRF on the graph (its precision is exactly zero between
        non-adjacent components), the global encoder produces only the edges' blocks, and a
        training step costs in proportion to the edges (``docs/mathematics.md``, "A component
        graph"; ``docs/guide.md``).  Pass a nested list rather than a NumPy array if the
        estimator will be saved with ``save`` (parameters are stored as JSON).

    Attributes
    ----------
    n_components_ : int
        Number of components M seen in ``fit``.
    component_shapes_ : tuple of tuple
        Sample shape of every component.
    n_features_in_ : int
        Total number of features over the components (a single 2-D array: its columns).
    latent_dims_ : list of int
        Latent size of every component.
    standardizer_ : Standardizer
        The per-feature standardisation of the location-scale components.
    net_ : skorch NeuralNet
        The trained net (``net_.module_`` is the torch module).
    history_ : skorch History

    Examples
    --------
    >>> from mcgen import GMRFMultiComponentVAE, load_dataset
    >>> X, info = load_dataset("copula", n_samples=500)
    >>> est = GMRFMultiComponentVAE(max_epochs=2, random_state=0).fit(X)
    >>> [a.shape for a in est.sample(3, random_state=0)]
    [(3, 2), (3, 2), (3, 2), (3, 2)]
    """

    _parameter_constraints: dict = {
        **MultiComponentVAE._parameter_constraints,
        "covariance": [StrOptions({"elementwise", "blockwise"})],
        "epsilon": [Interval(Real, 0, 1, closed="neither")],
        "delta": [Interval(Real, 0, None, closed="neither")],
        "offdiag_hidden": [Interval(Integral, 1, None, closed="left")],
        "offdiag_layers": [Interval(Integral, 0, None, closed="left")],
        "prior": [StrOptions({"learned", "standard"})],
        "refit_prior": ["boolean"],
        "prior_components": [Interval(Integral, 1, None, closed="left")],
        "cond_weight": [Interval(Real, 0, None, closed="left")],
        "inference": [StrOptions(set(INFERENCE_MODES))],
        "graph": [StrOptions(set(GRAPH_KINDS)), "array-like", None],
    }

    def __init__(self, latent_dim="auto", beta=0.1, *, covariance="elementwise", epsilon=0.9, delta=1e-6,
                 offdiag_hidden=128, offdiag_layers=2, prior="learned", refit_prior=True, prior_components=10,
                 cond_weight=0.3, inference="sample", graph=None, **shared):
        super().__init__(latent_dim, beta, **shared)
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
        self.graph = graph

    def _build_module(self, specs: list[ComponentSpec]) -> GMRFModule:
        return GMRFModule(specs, beta=self.beta, covariance=self.covariance, epsilon=self.epsilon,
                          delta=self.delta, offdiag_hidden=self.offdiag_hidden,
                          offdiag_layers=self.offdiag_layers, prior=self.prior,
                          prior_components=int(self.prior_components), cond_weight=float(self.cond_weight),
                          inference=self.inference, graph=self.graph)

    def _callbacks(self) -> list:
        callbacks = super()._callbacks()
        if self.refit_prior and self.prior == "learned":
            callbacks.append(("prior_refit", PriorRefit()))
        return callbacks

    def _refit_prior(self, dataset) -> None:
        """Refit the fitted module's prior to the aggregate posterior over ``dataset`` (a
        ``mcgen.training.ComponentsDataset``, e.g. ``est._dataset(X.arrays)``)."""
        refit_prior(self.module_, dataset)

    def prior_covariance(self) -> np.ndarray:
        """The learned prior covariance over the concatenated latents, as a NumPy array."""
        return self.module_.prior_covariance().detach().cpu().numpy()

    def prior_precision(self) -> np.ndarray:
        """The precision matrix of every prior component, ``(C, D, D)`` over the concatenated
        latents (with a graph: exactly zero between non-adjacent components)."""
        return self.module_.prior_precision().detach().cpu().numpy()

    def dependency_graph(self, mixture: str = "weighted") -> np.ndarray:
        """Partial dependence between the components, read from the prior precision.

        Entry (i, j) is the largest partial canonical correlation between the latent blocks of
        components i and j given all other components (0: conditionally independent; exactly 0
        for pairs outside ``graph``; near 1: strongly tied).  See ``docs/mathematics.md``,
        "The dependency graph", and :func:`mcgen.plotting.plot_dependency_graph` to draw it.

        Parameters
        ----------
        mixture : {"weighted", "moments"}, default="weighted"
            How a mixture prior's components are combined: the mixture-weighted average of the
            per-component values (keeps the graph's zeros), or the value for the single Gaussian
            with the mixture's mean and covariance.

        Returns
        -------
        ndarray of shape (M, M)
            Symmetric, in [0, 1], zero diagonal.
        """
        if mixture not in DEPENDENCY_MIXTURE_MODES:
            raise ValueError(f"mixture must be one of {', '.join(map(repr, DEPENDENCY_MIXTURE_MODES))}, "
                             f"got {mixture!r}")
        return self.module_.dependency_graph(mixture)
