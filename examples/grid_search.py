"""
Choosing beta and latent_dim by cross-validated search
======================================================

Pick ``beta`` and ``latent_dim`` of the GMRF MCVAE by cross-validated search on the Copula data.

Three scorers are computed for every candidate (higher is better for all of them):
the held-out ELBO, the negative sliced Wasserstein distance of unconditional samples and the
negative error of conditional completions; the model is refit on the sliced Wasserstein
distance.  The best model's metrics are then printed next to the noise floor (two independent
real samples of the same size), and ``docs/img/grid_search.png`` shows every score on the grid.

Run::

    python examples/grid_search.py            # 2.5-5 min on 2 shared CPU cores; 24 fits of 25 epochs
    python examples/grid_search.py --dask     # the same search on a local Dask cluster
    python examples/grid_search.py --gallery  # the documentation's setting: 500 rows, 5 epochs

The gallery page is built with ``--gallery`` (500 training rows, 5 epochs per fit), so its
numbers are far from converged; its run time is stated at the bottom of the page.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV

from mcgen import GMRFMultiComponentVAE, load_dataset, scoring
from mcgen.metrics import conditional_metrics, noise_floor, unconditional_metrics

METRICS = ("marginal_wasserstein", "sliced_wasserstein", "dependency_error")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Pick beta and latent_dim of the GMRF MCVAE by cross-validated search on the Copula data.")
    parser.add_argument("--n", type=int, default=2000, help="training rows")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--dask", action="store_true", help="run the folds on a 2-worker LocalCluster")
    parser.add_argument("--gallery", action="store_true", help="the documentation's small setting (500 rows, "
                                                               "5 epochs)")
    parser.add_argument("--out", default=os.path.join("docs", "img", "grid_search.png"),
                        help="figure path (relative to the working directory)")
    args = parser.parse_args()
    if args.gallery:
        args.n, args.epochs = 500, 5
    torch.set_num_threads(1)

    X, _ = load_dataset("copula", n_samples=args.n, random_state=0)
    X_test, _ = load_dataset("copula", n_samples=args.n, random_state=1)
    X_other, _ = load_dataset("copula", n_samples=args.n, random_state=2)  # for the noise floor

    grid = {"beta": [0.001, 0.01, 0.1, 1.0], "latent_dim": [1, 2]}
    scorers = {"elbo": scoring.elbo,
               "sliced_w": scoring.neg_sliced_wasserstein(n_projections=200),
               "missing": scoring.neg_missing_error}
    est = GMRFMultiComponentVAE(max_epochs=args.epochs, lr=3e-3, random_state=0)
    search = GridSearchCV(est, grid, scoring=scorers, refit="sliced_w", cv=3, n_jobs=-1 if args.dask else None,
                          error_score="raise")

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.dask:
            from dask.distributed import Client, LocalCluster
            from joblib import parallel_config

            cluster = stack.enter_context(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
            client = stack.enter_context(Client(cluster))
            client.run(torch.set_num_threads, 1)
            stack.enter_context(parallel_config(backend="dask"))
        search.fit(X)
    print(f"search: {len(search.cv_results_['params'])} candidates x 3 folds in {time.perf_counter() - t0:.0f} s")

    res = search.cv_results_
    print(f"{'beta':>7} {'latent':>6} | {'ELBO':>8} {'-SW':>8} {'-miss.err':>9}")
    for i, p in enumerate(res["params"]):
        print(f"{p['beta']:7g} {p['latent_dim']:6d} | {res['mean_test_elbo'][i]:8.3f} "
              f"{res['mean_test_sliced_w'][i]:8.4f} {res['mean_test_missing'][i]:9.4f}")
    print("best (refit on sliced Wasserstein):", search.best_params_)

    best = search.best_estimator_
    floor = noise_floor(X_test, X_other, metrics=METRICS)
    unc = unconditional_metrics(best, X_test, metrics=METRICS)
    cond = conditional_metrics(best, X_test, metrics=METRICS)["mean"]
    print(f"\n{'metric':22} {'uncond.':>9} {'cond.':>9} {'floor':>9}   (held-out rows, n={args.n}, seed 0)")
    for m in METRICS:
        print(f"{m:22} {unc[m]:9.4f} {cond[m]:9.4f} {floor[m]:9.4f}")
    print(f"marginal W x 1000 (the paper's Table I unit): unconditional {1000 * unc['marginal_wasserstein']:.2f}, "
          f"conditional {1000 * cond['marginal_wasserstein']:.2f}, floor {1000 * floor['marginal_wasserstein']:.2f}")

    plot(search, grid, args.out)
    print("wrote", os.path.normpath(args.out))


def plot(search, grid, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = search.cv_results_
    betas, dims = grid["beta"], grid["latent_dim"]
    titles = {"elbo": "held-out ELBO (nats/row)", "sliced_w": "−sliced Wasserstein",
              "missing": "−missing-component error"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    for ax, (key, title) in zip(axes, titles.items()):
        mean, std = res[f"mean_test_{key}"], res[f"std_test_{key}"]
        for d, marker in zip(dims, "os^"):
            idx = [i for i, p in enumerate(res["params"]) if p["latent_dim"] == d]
            idx.sort(key=lambda i: res["params"][i]["beta"])
            ax.errorbar([res["params"][i]["beta"] for i in idx], mean[idx], yerr=std[idx], marker=marker,
                        capsize=3, label=f"latent_dim={d}")
        b = search.cv_results_["params"][int(np.argmax(mean))]
        ax.axvline(b["beta"], color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xticks(betas, [f"{x:g}" for x in betas])
        ax.set_xlabel("beta")
        ax.set_title(title + "  (higher is better)", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"GridSearchCV on the Copula data (3-fold CV, mean ± sd); refit on sliced W: "
                 f"{search.best_params_}", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
