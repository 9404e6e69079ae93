"""The GMRF Multi-Component VAE module (DESIGN section 3).

Posterior ``q(z | X) = N(mu, Sigma)`` with a full covariance assembled from per-component
diagonal variances and off-diagonal blocks produced by a global encoder; a learned
full-covariance Gaussian prior; closed-form conditioning under the prior for missing components.

With a component ``graph`` (``docs/mathematics.md``, "A component graph") the global encoder
produces blocks only for the graph's edges, every prior component is a GMRF on the graph
(parameterised by the Cholesky factor of its precision over a chordal completion, so the
precision's blocks between non-adjacent components are zero), and the training step works on
blocks (:mod:`mcgen.gaussian_graph`), so its cost grows with the edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mcgen.gaussian import (
    assemble_blockwise,
    assemble_elementwise_entries,
    cholesky_with_jitter,
    count_jitter,
    kl_mvn,
    logdet_from_cholesky,
)
from mcgen.gaussian_graph import (
    BlockFactor,
    block_cholesky,
    covariance_selection,
    factor_product_blocks,
    graph_conditional,
)
from mcgen.gaussian_mixture import (
    condition_mixture,
    condition_mixture_on_noisy,
    fit_mixture_to_gaussians,
    mixture_log_prob,
    mixture_moments,
    mixture_sample,
)
from mcgen.graph import GRAPH_KINDS, graph_structure, partial_canonical_correlations, resolve_graph
from mcgen.models.base import ComponentSpec, MultiComponentModule, build_decoder, build_encoder

_SOFTPLUS_INV_ONE = math.log(math.e - 1.0)
_LOG_2PI = math.log(2.0 * math.pi)
#: How the known components' latents are formed at completion time.
INFERENCE_MODES = ("sample", "potential")
#: How ``dependency_graph`` combines the components of a mixture prior.
DEPENDENCY_MIXTURE_MODES = ("weighted", "moments")
__all__ = ["DEPENDENCY_MIXTURE_MODES", "GRAPH_KINDS", "INFERENCE_MODES", "GMRFModule"]


class GMRFModule(MultiComponentModule):
    """GMRF multi-component VAE.

    Parameters
    ----------
    specs : list of ComponentSpec
    beta : float
        Weight of the KL term in the training loss.
    covariance : {"elementwise", "blockwise"}
        SPD construction of the posterior covariance.
    epsilon, delta : float
        Dominance margin and row-sum offset of the construction.
    offdiag_hidden, offdiag_layers : int
        Width and depth of the global (off-diagonal) encoder.
    prior : {"learned", "standard"}
        Learned full-covariance Gaussian (mixture) or fixed N(0, I).
    var_floor : float
        Lower bound of the posterior variances.
    prior_components : int
        Number C of full-covariance Gaussians in the learned prior (1: the paper's GMRF).
    cond_weight : float
        Weight of the conditional-generation term (0: the paper's objective).
    inference : {"sample", "potential"}
        Completion: draw each known latent from its own encoder (``"sample"``), or combine the
        known encoders' outputs as Gaussian unary potentials with the prior (``"potential"``).
    graph : None, {"chain", "star"} or array-like (M, M) of bool
        Which pairs of components interact (:func:`mcgen.graph.resolve_graph`); ``None``: all
        pairs (the dense model).
    """

    def __init__(self, specs: list[ComponentSpec], beta: float = 1.0, covariance: str = "elementwise",
                 epsilon: float = 0.9, delta: float = 1e-6, offdiag_hidden: int = 128,
                 offdiag_layers: int = 2, prior: str = "learned", var_floor: float = 1e-5,
                 prior_components: int = 1, cond_weight: float = 0.0, inference: str = "sample", graph=None):
        super().__init__(specs)
        self.beta = float(beta)
        self.covariance = covariance
        self.epsilon = float(epsilon)
        self.delta = float(delta)
        self.var_floor = float(var_floor)
        self.prior_kind = prior
        dims = [s.latent_dim for s in specs]
        self.block_sizes = dims
        D = sum(dims)
        self.D = D
        offsets = [0]
        for d in dims:
            offsets.append(offsets[-1] + d)
        self.offsets = offsets

        adjacency = resolve_graph(graph, len(specs))
        #: The component graph with its elimination order (None: all pairs, the dense model).
        self.graph_structure = None if adjacency is None else graph_structure(adjacency)
        if self.graph_structure is None:
            self.edge_pairs = [(i, j) for i in range(len(dims)) for j in range(i + 1, len(dims))]
        else:
            self.edge_pairs = list(self.graph_structure.edges)

        self.encoders = nn.ModuleList([build_encoder(s) for s in specs])
        self.decoders = nn.ModuleList([build_decoder(s) for s in specs])
        # Heads: mean, raw variance and covariance embedding per component, in one Linear each.
        self.heads = nn.ModuleList([nn.Linear(enc.out_features, 3 * d) for enc, d in zip(self.encoders, dims)])

        # Global encoder producing the entries of every off-diagonal block the graph allows
        # (upper triangle, i < j; all pairs without a graph), block after block, row-major.
        rows, cols = [], []
        for i, j in self.edge_pairs:
            r = torch.arange(offsets[i], offsets[i + 1])
            c = torch.arange(offsets[j], offsets[j + 1])
            rr, cc = torch.meshgrid(r, c, indexing="ij")
            rows.append(rr.reshape(-1))
            cols.append(cc.reshape(-1))
        n_off = int(sum(len(r) for r in rows))
        self.n_off = n_off
        rows_t = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
        cols_t = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)
        self.register_buffer("offdiag_rows", rows_t, persistent=False)
        self.register_buffer("offdiag_cols", cols_t, persistent=False)
        self.register_buffer("offdiag_flat_idx", rows_t * D + cols_t, persistent=False)
        if n_off > 0:
            layers: list[nn.Module] = []
            width = D
            for _ in range(offdiag_layers):
                layers += [nn.Linear(width, offdiag_hidden), nn.ReLU()]
                width = offdiag_hidden
            layers.append(nn.Linear(width, n_off))
            self.offdiag_net = nn.Sequential(*layers)
        else:
            self.offdiag_net = None

        # Prior: a mixture of C full-covariance Gaussians sum_c w_c N(mu_c, L_c L_c^T), each L_c
        # lower triangular with softplus diagonal (C = 1: the paper's single Gaussian prior).
        # With a graph, each component is a GMRF on it: see _init_graph_prior.
        tril = torch.tril_indices(D, D, offset=-1)
        self.register_buffer("tril_flat_idx", tril[0] * D + tril[1], persistent=False)
        C = self.n_prior_components = int(prior_components)  # validated by the estimator
        if self.graph_structure is not None:
            self._init_graph_prior(prior, C)
        elif prior == "learned":
            # Distinct starting means break the symmetry between mixture components (all at 0
            # they would receive identical gradients forever); C = 1 starts at N(0, I).
            mean0 = torch.randn(C, D) if C > 1 else torch.zeros(1, D)
            self.prior_mean = nn.Parameter(mean0)
            self.prior_diag_raw = nn.Parameter(torch.full((C, D), _SOFTPLUS_INV_ONE))
            self.prior_offdiag = nn.Parameter(torch.zeros(C, tril.shape[1]))
            self.prior_logits = nn.Parameter(torch.zeros(C))
        elif prior == "standard":
            # N(0, I) has one component whatever prior_components says
            C = self.n_prior_components = 1
            self.register_buffer("prior_mean", torch.zeros(1, D))
            self.register_buffer("prior_diag_raw", torch.full((1, D), _SOFTPLUS_INV_ONE))
            self.register_buffer("prior_offdiag", torch.zeros(1, tril.shape[1]))
            self.register_buffer("prior_logits", torch.zeros(1))
        else:
            raise ValueError(f"prior must be 'learned' or 'standard', got {prior!r}")
        self.inference = inference
        self.cond_weight = float(cond_weight)
        # Count of posterior Cholesky factorisations that needed jitter (diagnostics).
        self.register_buffer("n_jitter", torch.zeros((), dtype=torch.long), persistent=False)

    def _init_graph_prior(self, prior: str, C: int) -> None:
        """Parameters of a prior whose components are GMRFs on the graph.

        Component c has precision ``L_c L_c^T`` with ``L_c`` block lower triangular in the
        graph's elimination order: diagonal blocks lower triangular with softplus diagonal
        (``prior_prec_diag_raw``, ``prior_prec_tril``), one free block ``(p, v)`` per edge of the
        graph (``prior_prec_offdiag``, p the later of the two), and the fill-in blocks of a
        non-chordal graph computed from the others so that the precision is zero there.  All
        zero: every component starts at unit precision.
        """
        s = self.graph_structure
        sizes = self.block_sizes
        D = self.D
        tril_idx, self._tril_slices, start = [], [], 0
        for d in sizes:
            t = torch.tril_indices(d, d, offset=-1)
            tril_idx.append(t[0] * d + t[1])
            self._tril_slices.append((start, start + t.shape[1]))
            start += t.shape[1]
        self.register_buffer("prec_tril_flat_idx", torch.cat(tril_idx), persistent=False)
        pos = s.position
        self._free_blocks: dict[tuple[int, int], tuple[int, int]] = {}
        n_free = 0
        for i, j in s.edges:
            p, v = (i, j) if pos[i] > pos[j] else (j, i)
            self._free_blocks[(p, v)] = (n_free, n_free + sizes[p] * sizes[v])
            n_free += sizes[p] * sizes[v]
        tensors = {"prior_prec_diag_raw": torch.full((C, D), _SOFTPLUS_INV_ONE),
                   "prior_prec_tril": torch.zeros(C, start), "prior_prec_offdiag": torch.zeros(C, n_free)}
        if prior == "learned":
            self.prior_mean = nn.Parameter(torch.randn(C, D) if C > 1 else torch.zeros(1, D))
            for name, t in tensors.items():
                setattr(self, name, nn.Parameter(t))
            self.prior_logits = nn.Parameter(torch.zeros(C))
        elif prior == "standard":
            self.n_prior_components = 1
            self.register_buffer("prior_mean", torch.zeros(1, D))
            for name, t in tensors.items():
                self.register_buffer(name, t[:1].clone())
            self.register_buffer("prior_logits", torch.zeros(1))
        else:
            raise ValueError(f"prior must be 'learned' or 'standard', got {prior!r}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files written before the mixture prior hold a single Gaussian: (D,) and (T,) tensors
        # without the component axis and no weights.
        for name in ("prior_mean", "prior_diag_raw", "prior_offdiag"):
            t = state_dict.get(prefix + name)
            if t is not None and t.dim() == 1:
                state_dict[prefix + name] = t.unsqueeze(0)
        if prefix + "prior_mean" in state_dict and prefix + "prior_logits" not in state_dict:
            state_dict[prefix + "prior_logits"] = torch.zeros(state_dict[prefix + "prior_mean"].shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        return self.D

    def prior_cholesky(self) -> Tensor:
        """Cholesky factors of the prior components' covariances, (C, D, D)."""
        if self.graph_structure is not None:
            return self._graph_prior_covariance_cholesky(self.prior_precision_factor())
        C, D = self.prior_mean.shape
        L = torch.zeros(C, D * D, dtype=self.prior_diag_raw.dtype, device=self.prior_diag_raw.device)
        L = L.index_copy(1, self.tril_flat_idx, self.prior_offdiag).reshape(C, D, D)
        return L + torch.diag_embed(F.softplus(self.prior_diag_raw))

    def prior_mixture(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(log_w (C,), mu (C, D), L (C, D, D))`` of the prior, L the Cholesky factors of the
        covariances (with a graph: computed from the precision factors)."""
        return self.prior_logits.log_softmax(0), self.prior_mean, self.prior_cholesky()

    # --- the prior on a graph ---------------------------------------------------------------------
    def prior_precision_factor(self) -> BlockFactor:
        """The prior components' precision factors (graph mode): blocks (C, d, d) of ``L_c`` with
        ``L_c L_c^T`` the precision of component c, in the graph's elimination order."""
        s = self.graph_structure
        if s is None:
            raise AttributeError("prior_precision_factor is defined for a model with a graph")
        C = self.prior_mean.shape[0]
        sizes, off = self.block_sizes, self.offsets
        diag_vals = F.softplus(self.prior_prec_diag_raw)
        fac = BlockFactor(s.order, s.parents, {}, {})
        for v in s.order:
            d = sizes[v]
            Lvv = torch.diag_embed(diag_vals[:, off[v]:off[v + 1]])
            a, b = self._tril_slices[v]
            if b > a:
                flat = torch.zeros(C, d * d, dtype=Lvv.dtype, device=Lvv.device)
                flat = flat.index_copy(1, self.prec_tril_flat_idx[a:b], self.prior_prec_tril[:, a:b])
                Lvv = Lvv + flat.reshape(C, d, d)
            fac.diag[v] = Lvv
        for v in s.order:
            Lvv = fac.diag[v]
            for p in s.parents[v]:
                if (p, v) in self._free_blocks:
                    a, b = self._free_blocks[(p, v)]
                    fac.off[(p, v)] = self.prior_prec_offdiag[:, a:b].reshape(C, sizes[p], sizes[v])
                else:
                    # fill-in: choose L_pv so that the precision's block (p, v) vanishes,
                    # sum_k L_pk L_vk^T + L_pv L_vv^T = 0 over the earlier columns k holding both
                    X = Lvv.new_zeros(C, sizes[p], sizes[v])
                    for k in fac.children[v]:
                        if (p, k) in fac.off:
                            X = X + fac.off[(p, k)] @ fac.off[(v, k)].mT
                    fac.off[(p, v)] = -torch.linalg.solve_triangular(Lvv, X.mT, upper=False).mT
        return fac

    def _graph_factor_covariance(self, fac: BlockFactor) -> Tensor:
        """Dense covariances ``(L L^T)^{-1}`` (C, D, D), float64, from precision factors: one
        triangular solve ``X = L^{-1}`` in elimination order, then ``X^T X``, un-permuted (the
        covariance is wanted as a matrix here: the dense completion paths and ``prior_covariance``)."""
        Lp, coords = fac.permuted_dense(self.block_sizes)
        Lp = Lp.double()
        eye = torch.eye(Lp.shape[-1], dtype=Lp.dtype, device=Lp.device)
        X = torch.linalg.solve_triangular(Lp, eye.expand_as(Lp), upper=False)
        S_perm = X.mT @ X
        coords = coords.to(Lp.device)
        S = torch.empty_like(S_perm)
        S[..., coords[:, None], coords[None, :]] = S_perm
        return 0.5 * (S + S.mT)

    def _graph_prior_covariance_cholesky(self, fac: BlockFactor) -> Tensor:
        with self._counting_jitter():
            L, _ = cholesky_with_jitter(self._graph_factor_covariance(fac))
        return L.to(self.prior_mean.dtype)

    def _blocks(self, x: Tensor) -> dict[int, Tensor]:
        """The per-component blocks of (..., D) as a dict."""
        return dict(enumerate(torch.split(x, self.block_sizes, dim=-1)))

    def _cat(self, blocks: dict[int, Tensor], which=None) -> Tensor:
        which = range(self.n_components) if which is None else which
        return torch.cat([blocks[v] for v in which], -1)

    def _graph_mixture_log_prob(self, z: Tensor, log_w: Tensor, mu: Tensor, fac: BlockFactor) -> Tensor:
        """``log sum_c w_c N(z; mu_c, (L_c L_c^T)^{-1})`` for z (..., D): ``-||L_c^T (z - mu_c)||^2 / 2
        + log|L_c| - D log(2 pi) / 2`` per component, a block matrix-vector product."""
        flat = z.reshape(-1, self.D)
        r = self._blocks(flat.unsqueeze(1) - mu)  # (N, C, d_v)
        y = fac.tmatvec(r)
        quad = sum((t * t).sum(-1) for t in y.values())  # (N, C)
        comp = -0.5 * (quad + self.D * _LOG_2PI) + fac.half_logdet()
        return torch.logsumexp(log_w.log_softmax(0) + comp, -1).reshape(z.shape[:-1])

    @torch.no_grad()
    def _set_prior_precision_factor(self, mean: Tensor, fac: BlockFactor, log_w: Tensor | None) -> None:
        """Write precision factors (only the free blocks: the fill-in follows from them)."""
        off = self.offsets
        C = mean.shape[0]
        dt = self.prior_mean.dtype
        diag = torch.empty(C, self.D, dtype=dt, device=mean.device)
        for v in range(self.n_components):
            Lvv = fac.diag[v].to(dt)
            diag[:, off[v]:off[v + 1]] = Lvv.diagonal(dim1=-2, dim2=-1)
            a, b = self._tril_slices[v]
            if b > a:
                self.prior_prec_tril[:, a:b] = Lvv.reshape(C, -1)[:, self.prec_tril_flat_idx[a:b]]
        for (p, v), (a, b) in self._free_blocks.items():
            self.prior_prec_offdiag[:, a:b] = fac.off[(p, v)].to(dt).reshape(C, -1)
        diag = diag.clamp_min(1e-6)
        self.prior_mean.copy_(mean)
        self.prior_prec_diag_raw.copy_(diag + torch.log(-torch.expm1(-diag)))
        self.prior_logits.copy_(torch.zeros_like(self.prior_logits) if log_w is None else log_w.log_softmax(0))

    def _graph_select(self, cov: Tensor) -> BlockFactor:
        """Covariance selection on the graph (the constrained M-step), float64."""
        with self._counting_jitter():
            return covariance_selection(cov.double(), self.graph_structure, self.block_sizes)

    def prior_precision(self) -> Tensor:
        """Precision matrices of the prior components, (C, D, D), float64.

        With a graph: ``L_c L_c^T`` from the factor, with the blocks between non-adjacent
        components set to exactly zero (for a non-chordal graph they are zero up to rounding by
        construction of the fill-in blocks).  Without: the inverse of each component's covariance
        (by a triangular solve against the identity)."""
        if self.graph_structure is None:
            L = self.prior_cholesky().double()
            eye = torch.eye(self.D, dtype=L.dtype, device=L.device)
            X = torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False)
            P = X.mT @ X
            return 0.5 * (P + P.mT)
        Ld = self.prior_precision_factor().to_dense(self.offsets).double()
        P = Ld @ Ld.mT
        return 0.5 * (P + P.mT) * self._block_mask().to(P.device)

    def _block_mask(self) -> Tensor:
        """(D, D) 0/1 mask of the blocks the graph allows (diagonal blocks and edges)."""
        A = np.eye(self.n_components, dtype=bool)
        if self.graph_structure is not None:
            A = A | self.graph_structure.adjacency
        else:
            A[:] = True
        reps = np.repeat(np.repeat(A, self.block_sizes, axis=0), self.block_sizes, axis=1)
        return torch.from_numpy(reps.astype(np.float64))

    @torch.no_grad()
    def dependency_graph(self, mixture: str = "weighted") -> np.ndarray:
        """Partial dependence between components read from the prior precision, (M, M).

        Entry (i, j) is the largest partial canonical correlation between the latent blocks of
        components i and j given all other blocks
        (:func:`mcgen.graph.partial_canonical_correlations`): 0 for conditionally independent
        components (exactly 0 for pairs that are not edges of the graph), near 1 when one
        block determines part of the other given the rest.  Zero diagonal.

        Parameters
        ----------
        mixture : {"weighted", "moments"}
            With a mixture prior: ``"weighted"`` (default) averages the per-component values with
            the mixture weights (after the refit these are the average responsibilities of the
            training rows), keeping the graph's zeros; ``"moments"`` reads the precision of the
            single Gaussian with the mixture's mean and covariance (dependence through the
            choice of component included; dense even with a graph).
        """
        if mixture not in DEPENDENCY_MIXTURE_MODES:
            raise ValueError(f"mixture must be one of {', '.join(map(repr, DEPENDENCY_MIXTURE_MODES))}, "
                             f"got {mixture!r}")
        w = self.prior_logits.double().softmax(0).cpu().numpy()
        if mixture == "weighted" or len(w) == 1:
            rho = partial_canonical_correlations(self.prior_precision().cpu().numpy(), self.block_sizes)
            out = np.einsum("c,cij->ij", w, rho)
        else:
            cov = self.prior_covariance().double()
            L, _ = cholesky_with_jitter(cov)
            eye = torch.eye(self.D, dtype=L.dtype, device=L.device)
            X = torch.linalg.solve_triangular(L, eye, upper=False)
            out = partial_canonical_correlations((X.mT @ X).cpu().numpy(), self.block_sizes)
        np.fill_diagonal(out, 0.0)
        return out

    def prior_covariance(self) -> Tensor:
        """Covariance of the prior over all latents, (D, D) (of the whole mixture when C > 1)."""
        log_w, mu, L = self.prior_mixture()
        if mu.shape[0] == 1:
            return L[0] @ L[0].mT
        return mixture_moments(log_w, mu, L)[1]

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """``log p(z)`` under the prior, for z of shape (..., D)."""
        if self.graph_structure is not None:
            return self._graph_mixture_log_prob(z, self.prior_logits, self.prior_mean, self.prior_precision_factor())
        return mixture_log_prob(z, *self.prior_mixture())

    @torch.no_grad()
    def set_prior(self, mean: Tensor, cov: Tensor, log_w: Tensor | None = None) -> None:
        """Set the prior to ``N(mean, cov)`` ((D,), (D, D)) or to the mixture
        ``sum_c w_c N(mean_c, cov_c)`` ((C, D), (C, D, D), ``log_w`` (C,)).

        With a graph, each ``cov`` is replaced by its covariance selection on the graph (the
        Gaussian on the graph closest to ``N(mean, cov)`` in KL; ``cov`` itself when its precision
        already has the graph's zeros)."""
        if mean.dim() == 1:
            mean, cov = mean.unsqueeze(0), cov.unsqueeze(0)
        if mean.shape[0] != self.prior_mean.shape[0]:
            raise ValueError(f"the prior has {self.prior_mean.shape[0]} components, got {mean.shape[0]}")
        if self.graph_structure is not None:
            self._set_prior_precision_factor(mean, self._graph_select(0.5 * (cov + cov.mT)), log_w)
            return
        with self._counting_jitter():
            L, _ = cholesky_with_jitter(0.5 * (cov + cov.mT).double())
        self.set_prior_cholesky(mean, L.to(cov.dtype), log_w)

    @torch.no_grad()
    def set_prior_cholesky(self, mean: Tensor, L: Tensor, log_w: Tensor | None = None) -> None:
        """Set the prior mixture from its means (C, D), Cholesky factors (C, D, D) and weights
        (with a graph: of the covariances' selections on the graph, see :meth:`set_prior`)."""
        if self.graph_structure is not None:
            S = L.double() @ L.double().mT
            self._set_prior_precision_factor(mean, self._graph_select(S), log_w)
            return
        diag = L.diagonal(dim1=-2, dim2=-1).clamp_min(1e-6)
        # softplus^-1(y) = y + log(-expm1(-y)), stable for small and large y.
        self.prior_mean.copy_(mean)
        self.prior_diag_raw.copy_(diag + torch.log(-torch.expm1(-diag)))
        self.prior_offdiag.copy_(L.reshape(L.shape[0], -1)[:, self.tril_flat_idx])
        self.prior_logits.copy_(torch.zeros_like(self.prior_logits) if log_w is None else log_w.log_softmax(0))

    # ------------------------------------------------------------------------------------------
    def encode_components(self, xs: list[Tensor], which: list[int] | None = None
                          ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-component ``mu_i``, variance ``v_i`` and embedding ``e_i``."""
        which = range(self.n_components) if which is None else which
        mus, vs, es = [], [], []
        for i, x in zip(which, xs):
            h = self.heads[i](self.encoders[i](x))
            mu, raw, e = h.chunk(3, dim=-1)
            mus.append(mu)
            vs.append(F.softplus(raw) + self.var_floor)
            es.append(e)
        return mus, vs, es

    def _assemble(self, mus: list[Tensor], vs: list[Tensor], es: list[Tensor],
                  coords: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior mean (B, D) and covariance (B, D, D).  ``coords`` (B, D) bool marks the
        latent coordinates of each row's observed components: the entries of W that touch a
        missing one are zero, so the observed block of the covariance is the construction on the
        observed components alone (its row sums and norms never see a missing component)."""
        mu = torch.cat(mus, -1)
        v = torch.cat(vs, -1)
        B, D = mu.shape
        if self.offdiag_net is None:
            return mu, torch.diag_embed(v)
        off = self.offdiag_net(torch.cat(es, -1))
        if self.covariance == "elementwise":
            # From the entries, never forming W (assemble_elementwise_entries: the same matrix)
            rows, cols = self.offdiag_rows, self.offdiag_cols
            if coords is not None:
                off = torch.where(coords[:, rows] & coords[:, cols], off, torch.zeros((), dtype=off.dtype,
                                                                                        device=off.device))
            return mu, assemble_elementwise_entries(v, off, rows, cols, self.epsilon, self.delta)
        W = torch.zeros(B, D * D, dtype=mu.dtype, device=mu.device).index_copy(1, self.offdiag_flat_idx, off)
        W = W.reshape(B, D, D)
        W = W + W.mT
        if coords is not None:
            W = torch.where(coords.unsqueeze(-1) & coords.unsqueeze(-2), W, torch.zeros((), dtype=W.dtype,
                                                                                          device=W.device))
        return mu, assemble_blockwise(v, W, self.block_sizes, self.epsilon, self.delta)

    def posterior(self, xs: list[Tensor], mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior mean (B, D) and covariance (B, D, D) (with a graph: zero blocks between
        non-adjacent components).

        With ``mask`` (B, M) (rows lacking components, as :meth:`forward`): the implied full
        posterior ``q(z_O | x_O) p(z_U | z_O)``, the missing blocks filled by the prior's
        conditional: the E-step of a Gaussian with missing coordinates, which the prior refit
        takes as each row's posterior.  For a mixture prior, the conditional of the component
        most responsible for the row's observed part (``log w_c + log N(mu_O; m_c,O, S_c,OO +
        Sigma_OO)``, a hard E-step), so a row keeps its cluster's shape."""
        if mask is None or bool(mask.all()):
            return self._assemble(*self.encode_components(xs))
        coords, mu, S = self._observed_posterior(*self.encode_components(xs), mask)
        return self._fill_missing_blocks(mu, S, coords)

    def _observed_posterior(self, mus: list[Tensor], vs: list[Tensor], es: list[Tensor], mask: Tensor
                            ) -> tuple[Tensor, Tensor, Tensor]:
        """The latent-coordinate mask (B, D) and the posterior built from the observed components
        alone (:meth:`_assemble` with zero embeddings for the absent ones); only its observed
        block is meaningful."""
        coords = self._coords(mask)
        mu, S = self._assemble(mus, vs, self._mask_embeddings(es, mask), coords)
        return coords, mu, S

    def _fill_missing_blocks(self, mu: Tensor, S: Tensor, coords: Tensor) -> tuple[Tensor, Tensor]:
        """The implied full posterior of :meth:`posterior` from the observed block of (mu, S)."""
        dtype = mu.dtype
        o, u = coords, ~coords
        mu, S = mu.double(), S.double()
        zero = torch.zeros((), dtype=torch.float64, device=mu.device)
        pair = lambda a, b: a.unsqueeze(-1) & b.unsqueeze(-2)  # noqa: E731
        pad = torch.diag_embed(u.double())
        log_w, m_c, L_c = (t.double() for t in self.prior_mixture())
        S_c = L_c @ L_c.mT
        if m_c.shape[0] == 1:
            m_p, S_p = m_c[0], S_c[0]
        else:  # the most responsible component for each row's observed part, on padded matrices
            P_c = torch.where(pair(o, o).unsqueeze(1), S_c + S.unsqueeze(1), zero) + pad.unsqueeze(1)  # (B, C, D, D)
            with self._counting_jitter():
                L_Pc, _ = cholesky_with_jitter(P_c)
            d_c = torch.where(o.unsqueeze(1), mu.unsqueeze(1) - m_c, zero).unsqueeze(-1)  # (B, C, D, 1)
            maha = torch.linalg.solve_triangular(L_Pc, d_c, upper=False).pow(2).sum((-2, -1))
            c = (log_w - 0.5 * maha - 0.5 * logdet_from_cholesky(L_Pc)).argmax(-1)
            m_p, S_p = m_c[c], S_c[c]  # (B, D), (B, D, D)
        P = torch.where(pair(o, o), S_p, zero) + pad  # the prior's observed block, padded
        X = torch.where(pair(u, o), S_p, zero)  # prior cross-covariance, missing rows x observed columns
        with self._counting_jitter():
            L_P, _ = cholesky_with_jitter(P)
        A = torch.cholesky_solve(X.mT, L_P).mT  # Sigma_UO Sigma_OO^{-1}, zero outside (U, O)
        d = torch.where(o, mu - m_p, zero)
        mean = torch.where(o, mu, m_p + (A @ d.unsqueeze(-1)).squeeze(-1))
        T = torch.diag_embed(o.double()) + A
        cov = T @ torch.where(pair(o, o), S, zero) @ T.mT + torch.where(pair(u, u), S_p, zero) - A @ X.mT
        return mean.to(dtype), (0.5 * (cov + cov.mT)).to(dtype)

    def _coords(self, mask: Tensor) -> Tensor:
        """Component mask (B, M) -> latent-coordinate mask (B, D)."""
        sizes = torch.tensor(self.block_sizes, device=mask.device)
        return mask.repeat_interleave(sizes, dim=1)

    @staticmethod
    def _mask_embeddings(es: list[Tensor], mask: Tensor) -> list[Tensor]:
        """Zero embeddings for missing components: the global encoder reads a fixed 'absent'
        code, never the encoder's output of a placeholder input."""
        return [torch.where(mask[:, i:i + 1], e, torch.zeros((), dtype=e.dtype, device=e.device))
                for i, e in enumerate(es)]

    def _masked_draw_and_kl(self, mus: list[Tensor], vs: list[Tensor], es: list[Tensor], mask: Tensor,
                            u: Tensor) -> tuple[Tensor, Tensor]:
        """Draws and ``KL(q(z_O | x_O) || p(z_O))`` per row for rows lacking components.

        Every row's Gaussians are padded to D dimensions: the missing coordinates become an
        independent N(0, 1) in both q and the prior (means zero, identity block, no cross terms),
        which adds exactly nothing to the KL, so one batched D x D computation serves every
        pattern of missing components.  The draws' observed coordinates are exact draws of
        q(z_O | x_O) (the Cholesky factor keeps the zero cross blocks); the missing ones are
        the padding and are never scored.  With a graph the same holds on the dense matrices."""
        coords, mu, S = self._observed_posterior(mus, vs, es, mask)
        zero = torch.zeros((), dtype=mu.dtype, device=mu.device)
        both = coords.unsqueeze(-1) & coords.unsqueeze(-2)
        pad = torch.diag_embed((~coords).to(mu.dtype))
        mu = torch.where(coords, mu, zero)
        L = self._cholesky(torch.where(both, S, zero) + pad)
        z = mu + (L @ u.unsqueeze(-1)).squeeze(-1)
        log_w, mu_p, L_p = self.prior_mixture()
        S_p = L_p @ L_p.mT  # (C, D, D)
        S_pb = torch.where(both.unsqueeze(1), S_p, zero) + pad.unsqueeze(1)  # (B, C, D, D)
        mu_pb = torch.where(coords.unsqueeze(1), mu_p, zero)  # (B, C, D)
        L_pb = self._cholesky(S_pb)
        if mu_p.shape[0] == 1:
            return z, kl_mvn(mu, L, mu_pb[:, 0], L_pb[:, 0])
        # the mixture: exact entropy minus the Monte Carlo cross-entropy; the padding's own terms
        # (entropy 1/2 (1 + log 2 pi) and log N(z_j; 0, 1) per missing coordinate) cancel exactly
        diff = (z.unsqueeze(-2) - mu_pb).unsqueeze(-1)  # (..., B, C, D, 1)
        sol = torch.linalg.solve_triangular(L_pb.expand(*diff.shape[:-2], self.D, self.D), diff, upper=False)
        comp = -0.5 * (sol.pow(2).sum((-2, -1)) + self.D * _LOG_2PI) - 0.5 * logdet_from_cholesky(L_pb)
        log_p = torch.logsumexp(log_w + comp, dim=-1)  # (..., B)
        entropy = 0.5 * (self.D * (1.0 + _LOG_2PI) + logdet_from_cholesky(L))
        padding = 0.5 * torch.where(coords, zero, 1.0 - z.pow(2)).sum(-1)
        return z, (-entropy - log_p + padding).reshape(-1, mu.shape[0]).mean(0)

    def _graph_posterior(self, mus: list[Tensor], vs: list[Tensor], es: list[Tensor]
                         ) -> tuple[Tensor, dict[tuple[int, int], Tensor], BlockFactor]:
        """The posterior on the graph as blocks: mean (B, D), the covariance's edge blocks
        ``{(i, j): (B, d_i, d_j)}`` and its block Cholesky factor (no dense D x D matrix).

        The same constructions as :meth:`_assemble` (whose W is zero off the edges), row sums
        and block norms taken over the edges only."""
        mu = torch.cat(mus, -1)
        sizes = self.block_sizes
        W: dict[tuple[int, int], Tensor] = {}
        if self.offdiag_net is not None:
            out = self.offdiag_net(torch.cat(es, -1))
            chunks = torch.split(out, [sizes[i] * sizes[j] for i, j in self.edge_pairs], dim=-1)
            for (i, j), c in zip(self.edge_pairs, chunks):
                W[(i, j)] = c.reshape(-1, sizes[i], sizes[j])
        S_off: dict[tuple[int, int], Tensor] = {}
        if self.covariance == "elementwise":
            rowsum = [torch.full_like(v, self.delta) for v in vs]
            for (i, j), w in W.items():
                a = w.abs()
                rowsum[i] = rowsum[i] + a.sum(-1)
                rowsum[j] = rowsum[j] + a.sum(-2)
            r = [torch.clamp(self.epsilon * v / s_, max=1.0).sqrt() for v, s_ in zip(vs, rowsum)]
            for (i, j), w in W.items():
                S_off[(i, j)] = r[i].unsqueeze(-1) * w * r[j].unsqueeze(-2)
        else:
            norms = [torch.full_like(v[..., 0], self.delta) for v in vs]
            block_norm = {}
            for (i, j), w in W.items():
                block_norm[(i, j)] = torch.linalg.matrix_norm(w, ord=2)
                norms[i] = norms[i] + block_norm[(i, j)]
                norms[j] = norms[j] + block_norm[(i, j)]
            alpha = [torch.clamp(self.epsilon * v.min(-1).values / n, max=1.0) for v, n in zip(vs, norms)]
            for (i, j), w in W.items():
                S_off[(i, j)] = (alpha[i] * alpha[j]).sqrt()[:, None, None] * w
        s = self.graph_structure
        with self._counting_jitter():
            fac = block_cholesky({v: torch.diag_embed(vs[v]) for v in range(self.n_components)}, S_off,
                                 s.order, s.parents)
        return mu, S_off, fac

    def _graph_kl(self, mu: Tensor, vs: list[Tensor], S_off: dict[tuple[int, int], Tensor], fac_q: BlockFactor,
                  z: Tensor) -> Tensor:
        """``KL(q || p)`` per row on the graph: closed form for one prior component,
        ``1/2 [tr(Λ_p Σ) + ||L_p^T (mu - mu_p)||^2 - D - log|Λ_p| - log|Σ|]`` with the trace
        summed over the blocks of the graph only (Λ_p and Σ both vanish elsewhere); for a mixture,
        the exact entropy of q minus the Monte Carlo cross-entropy at the draws ``z`` (..., B, D)."""
        fac_p = self.prior_precision_factor()
        logdet_q = 2.0 * fac_q.half_logdet()
        if self.prior_mean.shape[0] == 1:
            y = fac_p.tmatvec(self._blocks(mu - self.prior_mean[0]))
            maha = sum((t * t).sum(-1) for t in y.values())
            P_diag, P_off = factor_product_blocks(fac_p, list(S_off))
            trace = sum((P_diag[v].diagonal(dim1=-2, dim2=-1) * vs[v]).sum(-1) for v in range(self.n_components))
            for key, S_ij in S_off.items():
                trace = trace + 2.0 * (P_off[key] * S_ij).sum((-2, -1))
            logdet_prec = 2.0 * fac_p.half_logdet()
            return 0.5 * (trace + maha - self.D - logdet_prec - logdet_q)
        entropy = 0.5 * (self.D * (1.0 + _LOG_2PI) + logdet_q)
        log_p = self._graph_mixture_log_prob(z, self.prior_logits, self.prior_mean, fac_p)
        return -entropy - log_p.reshape(-1, mu.shape[0]).mean(0)

    def _draw_and_kl(self, mus: list[Tensor], vs: list[Tensor], es: list[Tensor], u: Tensor
                     ) -> tuple[Tensor, Tensor]:
        """Reparameterised draws ``z = mu + L u`` (u of shape (..., B, D)) and ``KL(q || p)`` (B,)."""
        if self.graph_structure is None:
            mu, S = self._assemble(mus, vs, es)
            L = self._cholesky(S)
            z = mu + (L @ u.unsqueeze(-1)).squeeze(-1)
            return z, self._kl(mu, L, z)
        mu, S_off, fac = self._graph_posterior(mus, vs, es)
        z = mu + self._cat(fac.matvec(self._blocks(u)))
        return z, self._graph_kl(mu, vs, S_off, fac, z)

    @contextmanager
    def _counting_jitter(self) -> Iterator[None]:
        """Add the Cholesky factorisations jittered inside the block (posterior, conditioning,
        prior refit, ``set_prior``) to ``n_jitter``, which the estimator records per epoch."""
        with count_jitter() as events:
            yield
        if events.n:
            self.n_jitter += events.n

    def _cholesky(self, S: Tensor) -> Tensor:
        with self._counting_jitter():
            L, _ = cholesky_with_jitter(S)
        return L

    def _posterior_cholesky(self, xs):
        mu, S = self.posterior(xs)
        return mu, self._cholesky(S)

    def _split(self, z: Tensor) -> list[Tensor]:
        return list(torch.split(z, self.block_sizes, dim=-1))

    def _decode_locs(self, z: Tensor) -> list[Tensor]:
        return [dec(zi) for dec, zi in zip(self.decoders, self._split(z))]

    def _kl(self, mu: Tensor, L: Tensor, z: Tensor) -> Tensor:
        """``KL(q || p)`` per row: closed form for one prior component; for a mixture, the exact
        entropy of q minus the Monte Carlo cross-entropy at the draws ``z`` (..., B, D)."""
        log_w, mu_p, L_p = self.prior_mixture()
        if mu_p.shape[0] == 1:
            return kl_mvn(mu, L, mu_p[0], L_p[0])
        entropy = 0.5 * (self.D * (1.0 + _LOG_2PI) + logdet_from_cholesky(L))
        return -entropy - mixture_log_prob(z, log_w, mu_p, L_p).reshape(-1, mu.shape[0]).mean(0)

    # ------------------------------------------------------------------------------------------
    def forward(self, xs: list[Tensor], mask: Tensor | None = None) -> Tensor:
        if mask is not None and bool(mask.all()):
            mask = None
        mus, vs, es = self.encode_components(xs)
        u = torch.randn((mus[0].shape[0], self.D), dtype=mus[0].dtype, device=mus[0].device)
        if mask is None:
            z, kl = self._draw_and_kl(mus, vs, es, u)
        else:  # the ELBO of each row's observed components, the missing blocks marginalised
            z, kl = self._masked_draw_and_kl(mus, vs, es, mask, u)
        ll = self.log_likelihoods(self._decode_locs(z), xs) * self.llik_scales
        if mask is not None:
            ll = torch.where(mask, ll, torch.zeros((), dtype=ll.dtype, device=ll.device))
        loss = -ll.sum(-1) + self.beta * kl
        if self.cond_weight > 0 and self.n_components > 1:
            loss = loss + self.cond_weight * self._conditional_term(xs, mus, vs, mask)
        return loss

    def _conditional_term(self, xs: list[Tensor], mus: list[Tensor], vs: list[Tensor],
                          mask: Tensor | None = None) -> Tensor:
        """Minus the conditional-generation bound for one random known subset K (per row):
        z_K from the known encoders as at prediction time, z_U from the prior's conditional,
        ``-sum_{i in U} lambda_i log p(x_i | z_i)`` (|U| <= M - 1 extra decoder passes).  With
        ``mask``, a row counts only when it holds all of K, and only its observed unknowns."""
        M = self.n_components
        k = int(torch.randint(1, M, ()))
        known = sorted(torch.randperm(M)[:k].tolist())
        z_U, unknown = self._complete_latent([mus[i] for i in known], [vs[i] for i in known], known, 1, None)
        z_U = z_U[0]
        parts = torch.split(z_U, [self.block_sizes[u] for u in unknown], dim=-1)
        ll = torch.stack([self.likelihoods[i].log_prob(self.decoders[i](zi), xs[i]) * self.llik_scales[i]
                          for i, zi in zip(unknown, parts)], -1)
        if mask is not None:
            use = mask[:, unknown] & mask[:, known].all(-1, keepdim=True)
            ll = torch.where(use, ll, torch.zeros((), dtype=ll.dtype, device=ll.device))
        return -ll.sum(-1)

    def elbo(self, xs: list[Tensor], n_mc: int = 1, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        if mask is not None and bool(mask.all()):
            mask = None
        mus, vs, es = self.encode_components(xs)
        B = mus[0].shape[0]
        u = torch.randn((n_mc, B, self.D), dtype=mus[0].dtype, device=mus[0].device, generator=generator)
        if mask is None:
            z, kl = self._draw_and_kl(mus, vs, es, u)  # z: (n_mc, B, D)
        else:
            z, kl = self._masked_draw_and_kl(mus, vs, es, mask, u)
        xs_rep = [x.repeat(n_mc, *([1] * (x.dim() - 1))) for x in xs]
        ll = self.log_likelihoods(self._decode_locs(z.reshape(-1, self.D)), xs_rep)
        if mask is not None:
            ll = torch.where(mask.repeat(n_mc, 1), ll, torch.zeros((), dtype=ll.dtype, device=ll.device))
        return ll.sum(-1).reshape(n_mc, -1).mean(0) - kl

    def encode(self, xs: list[Tensor]) -> Tensor:
        mus, _, _ = self.encode_components(xs)
        return torch.cat(mus, -1)

    def decode(self, z: Tensor) -> list[Tensor]:
        return self.means(self._decode_locs(z))

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws from the prior, (n, D)."""
        if self.graph_structure is None:
            return mixture_sample(n, *self.prior_mixture(), generator=generator)
        # a component by its weight, then z = mu_c + L_c^{-T} u (back substitution on the blocks)
        mu = self.prior_mean
        C = mu.shape[0]
        if C == 1:
            c = torch.zeros(n, dtype=torch.long, device=mu.device)
        else:
            c = torch.multinomial(self.prior_logits.softmax(0).expand(n, C), 1, generator=generator).squeeze(-1)
        u = torch.randn((n, self.D), dtype=mu.dtype, device=mu.device, generator=generator)
        x = self.prior_precision_factor().select(c).tsolve(self._blocks(u))
        return mu[c] + self._cat(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Tensor]:
        return self.decode(self.sample_latent(n, generator))

    def latent_indices(self, components: list[int]) -> Tensor:
        """Latent coordinates of the given components, concatenated in that order."""
        dev = self.prior_mean.device
        return torch.cat([torch.arange(self.offsets[k], self.offsets[k + 1], device=dev) for k in components])

    def conditional_latent(self, z_K: Tensor, known: list[int]) -> tuple[Tensor, Tensor, Tensor, list[int]]:
        """Prior conditional ``z_U | z_K`` for the components not in ``known``.

        Returns the log responsibilities of the prior components (..., C), each component's
        conditional mean (..., C, |U|), the Cholesky factors of the (row-independent)
        conditional covariances (C, |U|, |U|) and the list of unknown components.
        """
        unknown = [i for i in range(self.n_components) if i not in known]
        log_w, mu_p, L_p = self.prior_mixture()
        with self._counting_jitter():
            S_p = L_p.double() @ L_p.double().mT  # float64 from the factor on (conditioning cancels)
            log_resp, mean, L_c = condition_mixture(log_w, mu_p, S_p, self.latent_indices(known),
                                                    self.latent_indices(unknown), z_K)
        return log_resp, mean, L_c, unknown

    @staticmethod
    def _pick(log_resp: Tensor, generator: torch.Generator | None) -> Tensor:
        """One mixture component per row, drawn by its responsibility (N, C) -> (N,)."""
        if log_resp.shape[-1] == 1:
            return torch.zeros(log_resp.shape[0], dtype=torch.long, device=log_resp.device)
        return torch.multinomial(log_resp.detach().exp(), 1, generator=generator).squeeze(-1)

    def _complete_latent(self, mus_K: list[Tensor], vs_K: list[Tensor], known: list[int], n_samples: int,
                         generator: torch.Generator | None, use_mean: bool = False) -> tuple[Tensor, list[int]]:
        """Draw ``z_U`` (n_samples, B, |U|) given the known encoders' outputs (see ``inference``);
        ``use_mean`` conditions on the known encoders' means instead (either inference mode)."""
        mu_K = torch.cat(mus_K, -1)
        v_K = torch.cat(vs_K, -1)
        B, K = mu_K.shape
        n = n_samples * B
        n_mix = self.prior_mean.shape[0]
        if self.graph_structure is None or (self.inference == "potential" and not use_mean):
            log_w, mu_p, L_p = self.prior_mixture()
            S_p = L_p.double() @ L_p.double().mT  # float64 from the factor on (conditioning cancels)
        else:  # conditioning on the graph needs no dense covariance
            log_w, mu_p = self.prior_logits.log_softmax(0), self.prior_mean
        k_idx = self.latent_indices(known)
        rows = torch.arange(n, device=mu_K.device)
        if use_mean:
            z_K = mu_K.repeat(n_samples, 1)
        elif self.inference == "sample":
            # z_K ~ q(z_K | x_K), each known component from its own encoder.
            u = torch.randn((n_samples, B, K), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
            z_K = (mu_K + v_K.sqrt() * u).reshape(n, K)
        else:
            # z_K from the prior combined in closed form with the encoders' Gaussian unary
            # potentials N(mu_k; z_k, diag v_k): a mixture posterior over (c, z_K).
            with self._counting_jitter():
                log_r, m_post, L_post = condition_mixture_on_noisy(log_w, mu_p, S_p, k_idx, mu_K, v_K)
            c = self._pick(log_r.repeat(n_samples, 1), generator)
            b = rows % B
            u = torch.randn((n, K, 1), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
            z_K = m_post[b, c] + (L_post[b, c] @ u).squeeze(-1)
        unknown = [i for i in range(self.n_components) if i not in known]
        straight_through = self.inference == "sample" and n_mix > 1 and torch.is_grad_enabled() and self.training
        if self.graph_structure is not None:
            # Conditioning on the graph, in float64 as the dense path: blocks, no D x D matrix.
            fac = self.prior_precision_factor()
            fac64 = BlockFactor(fac.order, fac.parents, {v: t.double() for v, t in fac.diag.items()},
                                {k: t.double() for k, t in fac.off.items()})
            mu64 = self._blocks(mu_p.double())
            zK = dict(zip(known, torch.split(z_K.double().unsqueeze(1), [self.block_sizes[k] for k in known], -1)))
            with self._counting_jitter():
                log_marg, mean_b, fac_U = graph_conditional(fac64, self.graph_structure, mu64, known, zK)
            log_resp = torch.log_softmax(log_w.double() + log_marg, -1).to(mu_K.dtype)
            n_u = sum(self.block_sizes[i] for i in unknown)
            u = torch.randn((n, n_u), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
            ub = dict(zip(unknown, torch.split(u.double().unsqueeze(1), [self.block_sizes[i] for i in unknown], -1)))
            noise = fac_U.tsolve(ub)
            candidates = torch.cat([mean_b[i] + noise[i] for i in unknown], -1).to(mu_K.dtype)  # (n, C, |U|)
            if straight_through:
                z_U = self._straight_through_pick(log_resp, candidates)
            else:
                if use_mean or self.inference == "sample":
                    c = self._pick(log_resp, generator)
                z_U = candidates[rows, c]
            return z_U.reshape(n_samples, B, -1), unknown
        with self._counting_jitter():
            log_resp, mean, L_c = condition_mixture(log_w, mu_p, S_p, k_idx, self.latent_indices(unknown), z_K)
        u = torch.randn((n, mean.shape[-1]), dtype=mu_K.dtype, device=mu_K.device, generator=generator)
        if straight_through:
            z_U = self._straight_through_draw(log_resp, mean, L_c, u)
        else:
            if use_mean or self.inference == "sample":
                c = self._pick(log_resp, generator)
            z_U = mean[rows, c] + (L_c[c] @ u.unsqueeze(-1)).squeeze(-1)
        return z_U.reshape(n_samples, B, -1), unknown

    @staticmethod
    def _straight_through_draw(log_resp: Tensor, mean: Tensor, L_c: Tensor, u: Tensor, tau: float = 1.0) -> Tensor:
        """A draw from the mixture conditional whose gradient reaches the responsibilities.

        Forward: the exact draw (c = argmax(log r_c + Gumbel noise) is distributed as r, then
        ``mean_c + L_c u``).  Backward: straight through the Gumbel-softmax weights, so the
        conditional-generation term also trains which component the known latents select (a
        plain categorical draw would give the responsibilities no gradient at all)."""
        gumbel = -torch.log(-torch.log(torch.rand_like(log_resp).clamp(1e-20, 1.0)))
        candidates = mean + torch.einsum("cij,nj->nci", L_c, u)  # (N, C, |U|)
        return GMRFModule._straight_through_pick(log_resp, candidates, tau, gumbel)

    @staticmethod
    def _straight_through_pick(log_resp: Tensor, candidates: Tensor, tau: float = 1.0,
                               gumbel: Tensor | None = None) -> Tensor:
        """The straight-through choice among per-component candidates (N, C, |U|) (see
        :meth:`_straight_through_draw`)."""
        if gumbel is None:
            gumbel = -torch.log(-torch.log(torch.rand_like(log_resp).clamp(1e-20, 1.0)))
        soft = torch.softmax((log_resp + gumbel) / tau, dim=-1)
        hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
        weights = hard - soft.detach() + soft
        return (weights.unsqueeze(-1) * candidates).sum(1)

    def complete(self, xs_known: list[Tensor], known: list[int], n_samples: int = 1,
                 generator: torch.Generator | None = None, use_mean: bool = False) -> dict[int, Tensor]:
        mus, vs, _ = self.encode_components(xs_known, which=known)
        B = mus[0].shape[0]
        # Rows per chunk: bounds the per-row work (B x C x |K|^2 covariances for "potential",
        # n_samples x C candidate means per row) at about 2^24 numbers.
        K = sum(m.shape[-1] for m in mus)
        C = self.n_prior_components
        step = max(1, 2**24 // (C * K * K + n_samples * C * self.D))
        chunks = []
        for s in range(0, B, step):
            z_U, unknown = self._complete_latent([m[s:s + step] for m in mus], [v[s:s + step] for v in vs],
                                                 known, n_samples, generator, use_mean)
            chunks.append(z_U)
        z_U = torch.cat(chunks, 1).reshape(n_samples * B, -1)
        out: dict[int, Tensor] = {}
        for i, zi in zip(unknown, torch.split(z_U, [self.block_sizes[u_] for u_ in unknown], dim=-1)):
            x = self.likelihoods[i].mean(self.decoders[i](zi))
            out[i] = x.reshape(n_samples, B, *x.shape[1:])
        return out

    @torch.no_grad()
    def refit_prior(self, posteriors, max_iter: int = 200) -> list[float]:
        """Refit the prior to the aggregate posterior in closed form.

        One component: the moment match (one M-step).  A mixture: EM from the current prior
        (:func:`mcgen.gaussian_mixture.fit_mixture_to_gaussians`).  ``posteriors`` is a callable
        returning an iterable of ``(mu, Sigma)`` batches.  Returns the EM bound per iteration.
        With a graph every M-step is the covariance selection of the moments on the graph
        (:func:`mcgen.gaussian_graph.covariance_selection`), so every component's precision
        keeps the graph's zeros.
        """
        log_w, mu, L = self.prior_mixture()
        iters = 1 if mu.shape[0] == 1 else max_iter
        project = None
        if self.graph_structure is not None:
            # the M-step under the graph: covariance selection of each component's moments
            def project(P: Tensor) -> Tensor:
                return self._graph_factor_covariance(self._graph_select(P)).to(P.dtype)

        with self._counting_jitter():
            log_w, mu, L, bounds = fit_mixture_to_gaussians(posteriors, log_w, mu, L, max_iter=iters,
                                                            project=project)
        self.set_prior_cholesky(mu, L, log_w)
        return bounds
