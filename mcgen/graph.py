"""Component graphs of the GMRF model: which pairs of components may interact.

A graph over the M components is an M x M boolean adjacency (symmetric; the diagonal is
ignored).  :func:`resolve_graph` turns the estimator's ``graph=`` parameter into one (or ``None``
for all pairs, the dense model), :func:`graph_structure` computes the elimination order the block
Cholesky factors use (a perfect elimination order of a chordal completion of the graph, see
``docs/mathematics.md``), and :func:`partial_canonical_correlations` reads the partial
dependence between blocks from a precision matrix (what ``dependency_graph()`` reports).

Everything here is NumPy / SciPy and independent of the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg as sla

__all__ = [
    "GRAPH_KINDS",
    "GraphStructure",
    "graph_structure",
    "partial_canonical_correlations",
    "resolve_graph",
]

#: The named graphs ``graph=`` accepts besides ``None`` and an adjacency matrix.
GRAPH_KINDS = ("chain", "star")


def resolve_graph(graph, n_components: int) -> np.ndarray | None:
    """The adjacency of the component graph that ``graph=`` describes, or ``None`` for all pairs.

    Parameters
    ----------
    graph : None, {"chain", "star"} or array-like of shape (M, M)
        ``None``: every pair of components interacts (the dense model).  ``"chain"``: component
        ``i`` with ``i - 1`` and ``i + 1``.  ``"star"``: component 0 with every other one (and no
        other pair).  An array: a symmetric boolean (or 0/1) adjacency; its diagonal is ignored.
    n_components : int
        The number M of components.

    Returns
    -------
    adjacency : ndarray of bool, shape (M, M), or None
        Symmetric with a ``False`` diagonal; ``None`` when every pair is adjacent (the dense model
        is that GMRF already).

    Raises
    ------
    ValueError
        An unknown name, a shape other than (M, M), entries that are not boolean or 0/1, NaN, or an
        asymmetric matrix (naming the first mismatched pair).
    """
    M = int(n_components)
    if graph is None:
        return None
    if isinstance(graph, str):
        if graph == "chain":
            A = np.zeros((M, M), dtype=bool)
            idx = np.arange(M - 1)
            A[idx, idx + 1] = A[idx + 1, idx] = True
        elif graph == "star":
            A = np.zeros((M, M), dtype=bool)
            A[0, 1:] = A[1:, 0] = True
        else:
            raise ValueError(f"graph must be None, one of {', '.join(map(repr, GRAPH_KINDS))} or an M x M boolean "
                             f"adjacency matrix, got {graph!r}")
    else:
        try:
            raw = np.asarray(graph)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"graph must be an M x M boolean adjacency matrix (M = {M} components): {exc}") from None
        if raw.ndim != 2 or raw.shape != (M, M):
            raise ValueError(f"graph must be an M x M adjacency matrix for the M = {M} components, got an array of "
                             f"shape {raw.shape}")
        if raw.dtype == bool:
            A = raw.copy()
        elif np.issubdtype(raw.dtype, np.number) and raw.size and np.all(np.isin(raw, (0, 1))):
            A = raw.astype(bool)
        elif raw.size == 0:
            A = np.zeros((M, M), dtype=bool)
        else:
            raise ValueError(f"graph entries must be booleans or 0/1, got dtype {raw.dtype} with values "
                             f"{np.unique(raw)[:5].tolist()}")
        bad = np.argwhere(A != A.T)
        if len(bad):
            i, j = (int(v) for v in bad[0])
            raise ValueError(f"graph must be symmetric: entry ({i}, {j}) is {bool(A[i, j])} but ({j}, {i}) is "
                             f"{bool(A[j, i])}")
    np.fill_diagonal(A, False)
    if M <= 1 or A.sum() == M * (M - 1):
        return None
    return A


@dataclass(frozen=True)
class GraphStructure:
    """A component graph with the elimination order its block Cholesky factors use.

    Attributes
    ----------
    adjacency : ndarray of bool (M, M)
        The graph G (symmetric, ``False`` diagonal).
    order : tuple of int
        The elimination order: a perfect elimination order of ``filled`` (each vertex's later
        neighbours form a clique), found by greedy minimum fill-in (no fill at all when G is
        chordal).  For a chain it is the natural order.
    parents : tuple of tuple of int
        ``parents[v]``: the neighbours of ``v`` in ``filled`` that come later in ``order`` (sorted
        by their position in it).  A block lower-triangular factor in this order has its non-zero
        blocks at ``(p, v)`` for ``p`` in ``parents[v]`` and on the diagonal.
    filled : ndarray of bool (M, M)
        The chordal completion H of G (G plus the fill-in edges).
    edges : tuple of (int, int)
        The edges ``(i, j)``, ``i < j``, of G, in lexicographic order.
    """

    adjacency: np.ndarray
    order: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]
    filled: np.ndarray
    edges: tuple[tuple[int, int], ...]

    @property
    def n_components(self) -> int:
        return len(self.order)

    @property
    def position(self) -> tuple[int, ...]:
        """``position[v]``: where ``v`` comes in ``order``."""
        pos = [0] * len(self.order)
        for t, v in enumerate(self.order):
            pos[v] = t
        return tuple(pos)

    @property
    def fill_edges(self) -> tuple[tuple[int, int], ...]:
        """The edges ``(i, j)``, ``i < j``, of H that are not edges of G."""
        extra = self.filled & ~self.adjacency
        return tuple((int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(extra, 1))))

    @property
    def is_chordal(self) -> bool:
        return not self.fill_edges

    @property
    def children(self) -> tuple[tuple[int, ...], ...]:
        """``children[p]``: the vertices that have ``p`` among their parents (earlier in ``order``)."""
        out: list[list[int]] = [[] for _ in self.order]
        for v in self.order:
            for p in self.parents[v]:
                out[p].append(v)
        return tuple(tuple(c) for c in out)

    def restrict(self, keep: Sequence[int]) -> tuple[tuple[int, ...], dict[int, tuple[int, ...]]]:
        """Order and parents of the induced subgraph ``H[keep]``.

        The order restricted to ``keep`` is a perfect elimination order of ``H[keep]`` (an
        induced subgraph of a chordal graph is chordal, and a subset of a clique is a clique), so a
        matrix with the pattern of ``G[keep]`` has a Cholesky factor within these parents.
        """
        ks = set(int(k) for k in keep)
        order = tuple(v for v in self.order if v in ks)
        return order, {v: tuple(p for p in self.parents[v] if p in ks) for v in order}


def graph_structure(adjacency: np.ndarray) -> GraphStructure:
    """Elimination order, parents and chordal completion of a component graph.

    Greedy minimum fill-in: repeatedly eliminate the vertex whose remaining neighbours need the
    fewest extra edges to form a clique (ties: fewer neighbours, then the lower index), joining
    its neighbours.  A chordal graph always has a vertex needing none, so the order found is a
    perfect elimination order and H = G; otherwise H is a chordal supergraph of G.

    Parameters
    ----------
    adjacency : ndarray of bool (M, M)
        Symmetric, ``False`` diagonal (as :func:`resolve_graph` returns).
    """
    A = np.asarray(adjacency, dtype=bool)
    M = A.shape[0]
    nbrs = [set(map(int, np.nonzero(A[v])[0])) for v in range(M)]
    remaining = set(range(M))
    order: list[int] = []
    parents: dict[int, tuple[int, ...]] = {}
    filled = A.copy()
    while remaining:
        def cost(v: int) -> tuple[int, int, int]:
            nb = sorted(nbrs[v])
            fill = sum(1 for a in range(len(nb)) for b in range(a + 1, len(nb)) if nb[b] not in nbrs[nb[a]])
            return fill, len(nb), v

        v = min(remaining, key=cost)
        nb = sorted(nbrs[v])
        for a in nb:
            for b in nb:
                if a != b and b not in nbrs[a]:
                    nbrs[a].add(b)
                    filled[a, b] = True
        for a in nb:
            nbrs[a].discard(v)
        parents[v] = tuple(nb)
        order.append(v)
        remaining.discard(v)
    pos = {v: t for t, v in enumerate(order)}
    parents_t = tuple(tuple(sorted(parents[v], key=pos.__getitem__)) for v in range(M))
    edges = tuple((int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(A, 1))))
    return GraphStructure(adjacency=A.copy(), order=tuple(order), parents=parents_t, filled=filled, edges=edges)


def _offsets(block_sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(block_sizes)]).astype(int)


def partial_canonical_correlations(precision: np.ndarray, block_sizes: Sequence[int]) -> np.ndarray:
    """Largest partial canonical correlation between every pair of blocks, given all other blocks.

    For a Gaussian with precision Λ, the conditional law of blocks ``i`` and ``j`` given all the
    others has precision ``[[Λ_ii, Λ_ij], [Λ_ji, Λ_jj]]``; its canonical correlations are the
    singular values of ``Λ_ii^{-1/2} Λ_ij Λ_jj^{-1/2}``, computed here as those of
    ``R_i^{-1} Λ_ij R_j^{-T}`` with ``R_i R_i^T = Λ_ii`` (Cholesky; the two matrices differ by
    orthogonal factors).  The result is in [0, 1], invariant to any invertible linear map within a
    block, exactly 0 when ``Λ_ij = 0``, and for blocks of size one it is the absolute partial
    correlation ``|Λ_ij| / sqrt(Λ_ii Λ_jj)``.

    Parameters
    ----------
    precision : array-like (..., D, D)
        Symmetric positive-definite precision matrices (a leading batch is allowed).
    block_sizes : sequence of int
        Sizes of the M blocks (summing to D).

    Returns
    -------
    ndarray (..., M, M)
        Symmetric, zero diagonal.
    """
    P = np.asarray(precision, dtype=np.float64)
    off = _offsets(block_sizes)
    M = len(block_sizes)
    if P.shape[-1] != off[-1] or P.shape[-2] != off[-1]:
        raise ValueError(f"precision must be (..., {off[-1]}, {off[-1]}) for blocks {list(block_sizes)}, "
                         f"got {P.shape}")
    batch = P.shape[:-2]
    flat = P.reshape(-1, off[-1], off[-1])
    out = np.zeros((flat.shape[0], M, M))
    for b, Pb in enumerate(flat):
        R = [sla.cholesky(Pb[off[i]:off[i + 1], off[i]:off[i + 1]], lower=True) for i in range(M)]
        for i in range(M):
            for j in range(i + 1, M):
                X = sla.solve_triangular(R[i], Pb[off[i]:off[i + 1], off[j]:off[j + 1]], lower=True)
                K = sla.solve_triangular(R[j], X.T, lower=True)  # (R_i^-1 Λ_ij R_j^-T)^T
                out[b, i, j] = out[b, j, i] = min(1.0, float(np.linalg.svd(K, compute_uv=False).max()))
    return out.reshape(*batch, M, M)
