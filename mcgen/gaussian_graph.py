"""Batched Gaussian algebra on a component graph: block-sparse Cholesky factors.

The GMRF model with ``graph=`` (``docs/mathematics.md``, "A component graph") keeps every matrix
over the latents as blocks indexed by components: a symmetric matrix with the pattern of the
graph G holds its diagonal blocks and one block per edge; a lower-triangular factor in the
elimination order of :class:`mcgen.graph.GraphStructure` (a perfect elimination order of the
chordal completion H) holds its diagonal blocks and one block ``(p, v)`` per parent ``p`` of
``v``.  Every operation loops over blocks and edges, never over rows, so its cost grows with the
number of edges (plus the fill-in of a non-chordal graph), not with M^2; every block is batched
over any leading dimensions (rows, mixture components).

Nothing here forms an inverse: factorisations are Cholesky (with jitter only where it fails,
:func:`mcgen.gaussian.cholesky_with_jitter`), solves are triangular.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mcgen.gaussian import cholesky_with_jitter
from mcgen.graph import GraphStructure

__all__ = [
    "BlockFactor",
    "block_cholesky",
    "block_inverse_covariance_selection",
    "covariance_selection",
    "factor_product_blocks",
    "graph_conditional",
]


def _mv(A: Tensor, x: Tensor) -> Tensor:
    """``A @ x`` for a batch of matrices (..., m, n) and vectors (..., n), batch shapes
    broadcasting (einsum groups a broadcast batch into one matrix product, several times faster
    than a broadcast ``matmul`` of tiny matrices, backward included)."""
    return torch.einsum("...ij,...j->...i", A, x)


def _mtv(A: Tensor, x: Tensor) -> Tensor:
    """``A^T @ x``."""
    return torch.einsum("...ji,...j->...i", A, x)


def _tri_solve(A: Tensor, b: Tensor, upper: bool, transpose: bool = False) -> Tensor:
    """``A^{-1} b`` (or ``A^{-T} b``) for triangular A (..., n, n) and vectors b (..., n).

    When A's batch shape is a proper suffix of b's (one factor per mixture component, many
    rows), the rows become right-hand sides of one solve per factor instead of a broadcast copy
    of A per row."""
    M = A.mT if transpose else A
    up = upper != transpose
    nb = A.dim() - 2
    lead = b.dim() - 1 - nb
    if lead > 0 and tuple(b.shape[lead:-1]) == tuple(A.shape[:-2]):
        lead_shape = b.shape[:lead]
        rhs = b.reshape(-1, *b.shape[lead:]).movedim(0, -1)  # (*A batch, n, L)
        x = torch.linalg.solve_triangular(M, rhs, upper=up)
        return x.movedim(-1, 0).reshape(*lead_shape, *b.shape[lead:])
    return torch.linalg.solve_triangular(M, b.unsqueeze(-1), upper=up).squeeze(-1)


class BlockFactor:
    """A block lower-triangular matrix L in an elimination order (the Cholesky factor of a
    covariance or of a precision over the graph's chordal completion).

    Parameters
    ----------
    order : sequence of int
        The components in elimination order (a subset of all components is allowed, for the
        factor of a sub-matrix).
    parents : dict or sequence
        ``parents[v]``: the components after ``v`` in ``order`` with a non-zero block ``(p, v)``.
    diag : dict int -> Tensor (..., d_v, d_v)
        Lower-triangular diagonal blocks with positive diagonals.
    off : dict (p, v) -> Tensor (..., d_p, d_v)
        The blocks below the diagonal, for every ``p`` in ``parents[v]``.
    """

    def __init__(self, order: Sequence[int], parents, diag: dict[int, Tensor], off: dict[tuple[int, int], Tensor]):
        self.order = tuple(order)
        self.parents = {v: tuple(parents[v]) for v in self.order}
        children: dict[int, list[int]] = {v: [] for v in self.order}
        for v in self.order:
            for p in self.parents[v]:
                children[p].append(v)
        self.children = {v: tuple(c) for v, c in children.items()}
        self.diag = diag
        self.off = off

    # --- products and solves (vectors given as dicts of blocks (..., d_v)) ----------------------
    def matvec(self, x: dict[int, Tensor]) -> dict[int, Tensor]:
        """``L x``."""
        out = {}
        for v in self.order:
            y = _mv(self.diag[v], x[v])
            for k in self.children[v]:
                y = y + _mv(self.off[(v, k)], x[k])
            out[v] = y
        return out

    def tmatvec(self, x: dict[int, Tensor]) -> dict[int, Tensor]:
        """``L^T x``; blocks of ``x`` that are missing count as zero (a result block with no
        contribution is left out)."""
        out = {}
        for v in self.order:
            y = _mtv(self.diag[v], x[v]) if v in x else None
            for p in self.parents[v]:
                if p in x:
                    t = _mtv(self.off[(p, v)], x[p])
                    y = t if y is None else y + t
            if y is not None:
                out[v] = y
        return out

    def solve(self, b: dict[int, Tensor]) -> dict[int, Tensor]:
        """``L^{-1} b`` (forward substitution in elimination order)."""
        x: dict[int, Tensor] = {}
        for v in self.order:
            r = b[v]
            for k in self.children[v]:
                r = r - _mv(self.off[(v, k)], x[k])
            x[v] = _tri_solve(self.diag[v], r, upper=False)
        return x

    def tsolve(self, b: dict[int, Tensor]) -> dict[int, Tensor]:
        """``L^{-T} b`` (back substitution in reverse elimination order)."""
        x: dict[int, Tensor] = {}
        for v in reversed(self.order):
            r = b[v]
            for p in self.parents[v]:
                r = r - _mtv(self.off[(p, v)], x[p])
            x[v] = _tri_solve(self.diag[v], r, upper=False, transpose=True)
        return x

    def half_logdet(self) -> Tensor:
        """``log|L| = (1/2) log|L L^T|``, shape (...)."""
        return sum(torch.log(self.diag[v].diagonal(dim1=-2, dim2=-1)).sum(-1) for v in self.order)

    def select(self, index: Tensor, dim: int = 0) -> BlockFactor:
        """The factor with every block indexed along batch dimension ``dim`` (e.g. one mixture
        component per row)."""
        return BlockFactor(self.order, self.parents, {v: t.index_select(dim, index) for v, t in self.diag.items()},
                           {k: t.index_select(dim, index) for k, t in self.off.items()})

    def to_dense(self, offsets: Sequence[int]) -> Tensor:
        """L as a dense (..., D, D) matrix in the original coordinate order (rows and columns of
        component v at ``offsets[v]:offsets[v + 1]``; it is lower triangular after permuting to
        the elimination order, and ``to_dense() @ to_dense().mT`` is ``L L^T`` in the original order)."""
        any_block = self.diag[self.order[0]]
        D = int(offsets[-1])
        out = any_block.new_zeros(*any_block.shape[:-2], D, D)
        for v in self.order:
            out[..., offsets[v]:offsets[v + 1], offsets[v]:offsets[v + 1]] = self.diag[v]
            for p in self.parents[v]:
                out[..., offsets[p]:offsets[p + 1], offsets[v]:offsets[v + 1]] = self.off[(p, v)]
        return out

    def permuted_dense(self, sizes: Sequence[int]) -> tuple[Tensor, Tensor]:
        """L as a dense lower-triangular (..., D', D') matrix in elimination order, and the
        original coordinates of its rows (D' = the coordinates of the factor's components)."""
        start, pos = 0, {}
        for v in self.order:
            pos[v] = start
            start += sizes[v]
        any_block = self.diag[self.order[0]]
        out = any_block.new_zeros(*any_block.shape[:-2], start, start)
        for v in self.order:
            a = pos[v]
            out[..., a:a + sizes[v], a:a + sizes[v]] = self.diag[v]
            for p in self.parents[v]:
                b = pos[p]
                out[..., b:b + sizes[p], a:a + sizes[v]] = self.off[(p, v)]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        coords = torch.cat([torch.arange(offsets[v], offsets[v] + sizes[v], device=out.device) for v in self.order])
        return out, coords


def _get_sym(off: dict[tuple[int, int], Tensor], a: int, b: int) -> Tensor | None:
    """Block (a, b) of a symmetric matrix stored as one block per unordered pair."""
    if (a, b) in off:
        return off[(a, b)]
    if (b, a) in off:
        return off[(b, a)].mT
    return None


def block_cholesky(diag: dict[int, Tensor], off: dict[tuple[int, int], Tensor], order: Sequence[int],
                   parents) -> BlockFactor:
    """Cholesky factor of a symmetric positive-definite block matrix whose pattern lies within a
    chordal graph, in a perfect elimination order of that graph (so the factor has no fill
    outside ``parents``).

    Parameters
    ----------
    diag : dict int -> Tensor (..., d_v, d_v)
        Diagonal blocks.
    off : dict (a, b) -> Tensor (..., d_a, d_b)
        One block per non-zero unordered pair (either orientation); missing pairs are zero.
    order, parents
        As in :class:`BlockFactor`; every non-zero pair must be ``(p, v)`` with ``p`` in
        ``parents[v]`` or the reverse.

    Returns
    -------
    BlockFactor
        Left-looking block Cholesky: ``L_vv = chol(A_vv - sum_k L_vk L_vk^T)``,
        ``L_pv = (A_pv - sum_k L_pk L_vk^T) L_vv^{-T}``, the sums over the earlier columns k having
        both blocks.  A diagonal block that fails is jittered relative to its own diagonal
        (counted by :func:`mcgen.gaussian.count_jitter`).
    """
    fac = BlockFactor(order, parents, {}, {})
    for v in fac.order:
        kids = fac.children[v]
        S = diag[v]
        for k in kids:
            Lvk = fac.off[(v, k)]
            S = S - Lvk @ Lvk.mT
        Lvv, _ = cholesky_with_jitter(0.5 * (S + S.mT))
        fac.diag[v] = Lvv
        for p in fac.parents[v]:
            X = _get_sym(off, p, v)
            for k in kids:
                if (p, k) in fac.off:
                    t = fac.off[(p, k)] @ fac.off[(v, k)].mT
                    X = -t if X is None else X - t
            if X is None:
                X = S.new_zeros(*S.shape[:-2], diag[p].shape[-1], S.shape[-1])
            # L_pv = X L_vv^{-T}  <=>  L_vv L_pv^T = X^T
            fac.off[(p, v)] = torch.linalg.solve_triangular(Lvv, X.mT, upper=False).mT
    return fac


def factor_product_blocks(fac: BlockFactor, pairs: Sequence[tuple[int, int]],
                          keep: Sequence[int] | None = None) -> tuple[dict[int, Tensor], dict[tuple[int, int], Tensor]]:
    """Blocks of ``L L^T`` (e.g. the precision from its factor).

    Parameters
    ----------
    fac : BlockFactor
    pairs : sequence of (a, b)
        The off-diagonal blocks wanted (a != b); a pair that shares no column of L is zero and
        comes back as ``None``.
    keep : sequence of int, optional
        Diagonal blocks wanted (default: all components of ``fac``).

    Returns
    -------
    diag : dict v -> (..., d_v, d_v)
    off : dict (a, b) -> (..., d_a, d_b)
    """
    keep = fac.order if keep is None else tuple(keep)
    # column k of L has the blocks {k} U parents[k]
    col: dict[tuple[int, int], Tensor] = {}
    for k in fac.order:
        col[(k, k)] = fac.diag[k]
        for p in fac.parents[k]:
            col[(p, k)] = fac.off[(p, k)]
    rows_of = {k: (k, *fac.parents[k]) for k in fac.order}
    cols_with: dict[int, list[int]] = {v: [] for v in fac.order}
    for k in fac.order:
        for r in rows_of[k]:
            cols_with[r].append(k)
    diag = {}
    for v in keep:
        acc = None
        for k in cols_with[v]:
            t = col[(v, k)] @ col[(v, k)].mT
            acc = t if acc is None else acc + t
        diag[v] = acc
    off = {}
    for a, b in pairs:
        acc = None
        for k in set(cols_with[a]) & set(cols_with[b]):
            t = col[(a, k)] @ col[(b, k)].mT
            acc = t if acc is None else acc + t
        off[(a, b)] = acc
    return diag, off


def graph_conditional(fac: BlockFactor, structure: GraphStructure, mu: dict[int, Tensor], known: Sequence[int],
                      z_known: dict[int, Tensor]) -> tuple[Tensor, dict[int, Tensor], BlockFactor]:
    """Conditional of a GMRF ``N(mu, (L L^T)^{-1})`` for the unknown components given the known.

    With precision Λ = L L^T, residual ``r = z_K - mu_K`` and U the other components:
    ``z_U | z_K ~ N(mu_U - Λ_UU^{-1} Λ_UK r, Λ_UU^{-1})``, and the known components' marginal
    log density is ``-(1/2)(||L^T r||^2 - ||L_U^{-1} Λ_UK r||^2) + log|L| - log|L_U| -
    (|K|/2) log 2π`` with ``L_U L_U^T = Λ_UU`` (a Schur complement, so no marginal covariance is
    ever formed).  Λ_UU has the pattern of the induced subgraph, so ``L_U`` is a block Cholesky in
    the restricted elimination order with no fill beyond H; everything loops over edges.

    Parameters
    ----------
    fac : BlockFactor
        The precision factor, blocks (..., d, d) (e.g. (C, d, d) for C mixture components).
    structure : GraphStructure
    mu : dict v -> (..., d_v)
        Means.
    known : sequence of int
        Known components (non-empty, not all).
    z_known : dict v -> (N, ..., d_v)
        Their values (the batch broadcasts against the factor's, e.g. (N, 1, d) against (C, ...)).

    Returns
    -------
    log_marginal : Tensor (N, ...)
        ``log p(z_K)``.
    mean : dict u -> (N, ..., d_u)
        Conditional means of the unknown components.
    fac_U : BlockFactor
        Cholesky factor of Λ_UU (batch of ``fac``); a draw is ``mean + fac_U.tsolve(u)``.
    """
    known = tuple(known)
    U = [v for v in structure.order if v not in known]
    r = {k: z_known[k] - mu[k] for k in known}
    y = fac.tmatvec(r)  # L^T r with r zero on U: columns touching K only
    quad = sum((t * t).sum(-1) for t in y.values())
    # h = Λ_UK r = (L y)_U
    h = {}
    for a in U:
        acc = _mv(fac.diag[a], y[a]) if a in y else None
        for k in fac.children[a]:
            if k in y:
                t = _mv(fac.off[(a, k)], y[k])
                acc = t if acc is None else acc + t
        h[a] = acc
    order_U, parents_U = structure.restrict(U)
    pairs = [(p, v) for v in order_U for p in parents_U[v]]
    dU, oU = factor_product_blocks(fac, pairs, keep=order_U)
    fac_U = block_cholesky(dU, {k: t for k, t in oU.items() if t is not None}, order_U, parents_U)
    ref = next(iter(r.values()))
    for a in U:
        if h[a] is None:
            h[a] = ref.new_zeros(*torch.broadcast_shapes(ref.shape[:-1], fac.diag[a].shape[:-2]),
                                 fac.diag[a].shape[-1])
    w = fac_U.solve(h)
    shift = fac_U.tsolve(w)
    mean = {a: mu[a] - shift[a] for a in U}
    quad_w = sum((t * t).sum(-1) for t in w.values())
    n_known = sum(z_known[k].shape[-1] for k in known)
    log_marginal = (-0.5 * (quad - quad_w) + fac.half_logdet() - fac_U.half_logdet()
                    - 0.5 * n_known * math.log(2 * math.pi))
    return log_marginal, mean, fac_U


def covariance_selection(S: Tensor, structure: GraphStructure, sizes: Sequence[int], max_iter: int = 500,
                         tol: float = 1e-10) -> BlockFactor:
    """The precision factor of the Gaussian on the graph closest to a covariance ``S``.

    Maximises ``log|Λ| - tr(Λ S)`` over precisions whose blocks between non-adjacent components
    are zero (Dempster's covariance selection; with S the M-step's weighted second moments this is
    the EM M-step under the graph, and it minimises ``KL(N(0, S) || N(0, Λ^{-1}))``).

    For a chordal graph the maximiser is in closed form (the cliques-and-separators formula of a
    decomposable model, written vertex by vertex): in the perfect elimination order, the block
    column v of the precision's Cholesky factor is the first block column of the Cholesky factor
    of ``(S_FF)^{-1}``, F = v and its parents (the regression of ``z_v`` on its parents).  That
    column is read off a reverse-order Cholesky ``S_FF = U U^T`` (U upper) as ``U^{-T} E_v`` by one
    triangular solve.  For a non-chordal graph, :func:`block_inverse_covariance_selection` first
    finds the fitted covariance W (iterative, exact zeros of ``W^{-1}`` outside the graph), whose
    precision factor then follows from the same formula on the chordal completion.

    Parameters
    ----------
    S : Tensor (..., D, D)
        Symmetric positive-definite (computed in float64, returned in ``S``'s dtype).
    structure : GraphStructure
    sizes : sequence of int
        Block sizes.
    max_iter, tol
        For the non-chordal iteration.

    Returns
    -------
    BlockFactor
        Blocks (..., d, d) of the precision's Cholesky factor in the structure's order.
    """
    dtype = S.dtype
    W = S.double()
    W = 0.5 * (W + W.mT)
    if not structure.is_chordal:
        W = block_inverse_covariance_selection(W, structure.adjacency, sizes, max_iter=max_iter, tol=tol)
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    fac = BlockFactor(structure.order, structure.parents, {}, {})
    for v in structure.order:
        fam = (v, *structure.parents[v])
        idx = torch.cat([torch.arange(offsets[a], offsets[a + 1], device=W.device) for a in fam])
        S_FF = W[..., idx[:, None], idx[None, :]]
        rev = torch.arange(idx.numel() - 1, -1, -1, device=W.device)
        R, _ = cholesky_with_jitter(S_FF[..., rev[:, None], rev[None, :]])
        Uf = R[..., rev[:, None], rev[None, :]]  # upper triangular, Uf Uf^T = S_FF
        d = sizes[v]
        E = torch.zeros(idx.numel(), d, dtype=W.dtype, device=W.device)
        E[:d] = torch.eye(d, dtype=W.dtype, device=W.device)
        col = torch.linalg.solve_triangular(Uf.mT, E.expand(*Uf.shape[:-2], idx.numel(), d), upper=False)
        fac.diag[v] = col[..., :d, :].to(dtype)
        start = d
        for p in structure.parents[v]:
            fac.off[(p, v)] = col[..., start:start + sizes[p], :].to(dtype)
            start += sizes[p]
    return fac


def block_inverse_covariance_selection(S: Tensor, adjacency, sizes: Sequence[int], max_iter: int = 500,
                                       tol: float = 1e-10) -> Tensor:
    """Fitted covariance W of covariance selection on any graph (block-wise, iterative).

    The block version of the regression algorithm for a Gaussian graphical model with known
    zeros (Hastie, Tibshirani & Friedman, *Elements of Statistical Learning*, Algorithm 17.1):
    for each component j in turn, with N its neighbours and R all other components, solve
    ``W_NN beta = S_Nj`` (Cholesky) and set ``W_Rj = W_RN beta``; this makes ``W_Nj = S_Nj`` and
    the precision's block column j zero outside N, the two optimality conditions for block j.
    Sweeps repeat until W changes by less than ``tol`` (relative).  W keeps ``W_jj = S_jj``.

    Parameters
    ----------
    S : Tensor (..., D, D), float64
    adjacency : ndarray of bool (M, M)
    sizes : sequence of int

    Returns
    -------
    W : Tensor (..., D, D)
        ``W = S`` on the diagonal blocks and the edges; ``W^{-1}`` zero on the other blocks.
    """
    A = np.asarray(adjacency, dtype=bool)
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    coords = [torch.arange(offsets[j], offsets[j + 1], device=S.device) for j in range(len(sizes))]
    W = S.clone()
    for _ in range(max_iter):
        W_old = W.clone()
        for j in range(len(sizes)):
            nb = [int(k) for k in np.nonzero(A[j])[0]]
            rest = torch.cat([coords[k] for k in range(len(sizes)) if k != j])
            cj = coords[j]
            if not nb:
                W[..., rest[:, None], cj[None, :]] = 0.0
                W[..., cj[:, None], rest[None, :]] = 0.0
                continue
            n_idx = torch.cat([coords[k] for k in nb])
            L, _ = cholesky_with_jitter(W[..., n_idx[:, None], n_idx[None, :]])
            beta = torch.cholesky_solve(S[..., n_idx[:, None], cj[None, :]], L)
            col = W[..., rest[:, None], n_idx[None, :]] @ beta
            W[..., rest[:, None], cj[None, :]] = col
            W[..., cj[:, None], rest[None, :]] = col.mT
        if float((W - W_old).abs().max()) <= tol * float(W_old.abs().max()):
            break
    return W
