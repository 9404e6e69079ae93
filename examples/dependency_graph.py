"""
BIKED: which part groups of a bicycle depend on which
=====================================================

Fit the GMRF Multi-Component VAE on BIKED's parametric designs (five part groups: frame, wheels,
drivetrain, saddle, cockpit) and read the dependency graph off its prior: for every pair of part
groups, the largest partial canonical correlation between their latent blocks given the three
other groups (``est.dependency_graph()``; 0 = conditionally independent, 1 = one group determines
part of the other).  A second panel shows the same measure computed from the data alone, by a
linear Gaussian model of the standardised parameters (Ledoit-Wolf shrinkage covariance), as a
reference.

User story: an engineer wants to know which parts of a design must be chosen together (strongly
tied given everything else) and which can be chosen apart, before deciding, for instance, which
components to condition on, or which ``graph=`` to impose.

Defaults are CPU-sized (all 4,011 valid designs, 60 epochs, about three minutes on one core).
Run::

    MCGEN_DATA=../shared/data python examples/dependency_graph.py --out docs/img/biked_dependency_graph.png
    python examples/dependency_graph.py --graph star        # only frame-to-part edges allowed

The gallery page is built with ``--gallery`` (1,000 designs, 15 epochs); its run time is stated
at the bottom of the page.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

import mcgen
from mcgen.graph import partial_canonical_correlations
from mcgen.plotting import plot_dependency_graph


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The dependency graph of BIKED's part groups from a fitted GMRF VAE.")
    p.add_argument("--data-home", default=None, help="folder holding biked/ (default $MCGEN_DATA or ~/.mcgen_data)")
    p.add_argument("--n", type=int, default=0, help="designs used (0 = all valid designs)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--graph", default=None, choices=["chain", "star"],
                   help="restrict the pairs that may interact (default: all pairs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default="docs/img/biked_dependency_graph.png")
    p.add_argument("--json", default=None, help="also write the matrices here")
    p.add_argument("--smoke", action="store_true", help="tiny run for tests (1 epoch)")
    p.add_argument("--gallery", action="store_true", help="the documentation's setting (1,000 designs, 15 epochs)")
    args = p.parse_args(argv)
    if args.gallery:
        args.n, args.epochs = 1000, 15
    if args.smoke:
        args.epochs = 1
        args.n = min(args.n, 64) if args.n else 0  # 0 (all designs of a small fixture) stays 0
    return args


def data_dependency_graph(X) -> np.ndarray:
    """The same block measure from a linear Gaussian model of the data itself: the precision of
    the Ledoit-Wolf shrinkage covariance of all (standardised) parameters."""
    Z = np.concatenate(X.arrays, axis=1).astype(np.float64)
    Z = (Z - Z.mean(0)) / np.where(Z.std(0) > 0, Z.std(0), 1.0)
    cov = LedoitWolf().fit(Z).covariance_
    L = np.linalg.cholesky(cov)
    Linv = np.linalg.solve(L, np.eye(len(cov)))  # precision = L^-T L^-1
    return partial_canonical_correlations(Linv.T @ Linv, [a.shape[1] for a in X.arrays])


def figure(model: np.ndarray, data: np.ndarray, names: list[str], title: str, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4))
    plot_dependency_graph(model, names, ax=axes[0], threshold=0.02,
                          title=title)
    plot_dependency_graph(data, names, ax=axes[1], threshold=0.02,
                          title="the data, linear Gaussian model (Ledoit-Wolf)")
    fig.suptitle("BIKED part groups: largest partial canonical correlation given the other groups", fontsize=11)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet = args.smoke or args.gallery
    X, info = mcgen.load_dataset("biked_parametric", data_home=args.data_home, n_samples=args.n or None,
                                 random_state=args.seed, progress=not quiet)
    names = info["names"]
    est = mcgen.GMRFMultiComponentVAE(graph=args.graph, max_epochs=args.epochs, random_state=args.seed,
                                      verbose=int(not quiet))
    t0 = time.perf_counter()
    est.fit(X)
    fit_s = time.perf_counter() - t0
    G = est.dependency_graph()
    G_data = data_dependency_graph(X)
    what = f"GMRF VAE prior ({'all pairs' if args.graph is None else args.graph}, {len(X)} designs)"
    figure(G, G_data, names, what, args.out)
    print(f"{'':>11}" + "".join(f"{n:>11}" for n in names))
    for i, n in enumerate(names):
        print(f"{n:>11}" + "".join(f"{G[i, j]:11.2f}" if i != j else f"{'-':>11}" for j in range(len(names))))
    pairs = sorted(((G[i, j], names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))),
                   reverse=True)
    print("strongest ties: " + ", ".join(f"{a}-{b} {w:.2f}" for w, a, b in pairs[:4]))
    result = {"n_designs": len(X), "epochs": args.epochs, "graph": args.graph, "fit_seconds": round(fit_s, 1),
              "names": names, "model": np.round(G, 4).tolist(), "data_linear": np.round(G_data, 4).tolist(),
              "latent_dims": est.latent_dims_, "figure": args.out}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
