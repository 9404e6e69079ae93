"""Benchmark: the GMRF MCVAE on the Copula data (the paper's settings by default).

Trains on ``--n-train`` rows for ``--epochs`` epochs per seed, then compares unconditional samples
and conditional completions (from each single observed component) with held-out rows, next to
the noise floor (the same metric between two independent real samples).  Prints a table and
writes JSON.

    python benchmarks/copula_gmrf.py                       # paper: latent 2, 200 epochs, 3 seeds
    python benchmarks/copula_gmrf.py --epochs 2 --n-train 500 --seeds 0   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from mcgen import GMRFMultiComponentVAE, load_dataset
from mcgen.metrics import conditional_metrics, noise_floor, unconditional_metrics

METRICS = ("marginal_wasserstein", "joint_wasserstein", "sliced_wasserstein", "dependency_error")


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    X, _ = load_dataset("copula", n_samples=args.n_train, random_state=0)
    X_test, _ = load_dataset("copula", n_samples=args.n_test, random_state=1)
    X_ref, _ = load_dataset("copula", n_samples=args.n_test, random_state=2)
    floor = noise_floor(X_ref, X_test)
    runs = []
    for seed in args.seeds:
        est = GMRFMultiComponentVAE(latent_dim=args.latent_dim, beta=args.beta, max_epochs=args.epochs,
                                    covariance=args.covariance, prior=args.prior,
                                    refit_prior=not args.no_refit, random_state=seed,
                                    prior_components=args.prior_components, cond_weight=args.cond_weight,
                                    batch_size=args.batch_size, lr=args.lr)
        t0 = time.perf_counter()
        est.fit(X)
        secs = time.perf_counter() - t0
        unc = unconditional_metrics(est, X_test, random_state=seed)
        cond = conditional_metrics(est, X_test, random_state=seed)
        runs.append({"seed": seed, "seconds": secs, "seconds_per_epoch": secs / len(est.history_),
                     "epochs": len(est.history_), "unconditional": unc, "conditional": cond["mean"],
                     "conditional_per_subset": {str(k): v for k, v in cond["per_subset"].items()},
                     "final_train_loss": float(est.history_[-1, "train_loss"])})
        print(f"seed {seed}: {secs:.1f} s, uncond {unc}", flush=True)
    summary = {}
    for kind in ("unconditional", "conditional"):
        summary[kind] = {m: {"mean": float(np.mean([r[kind][m] for r in runs])),
                             "std": float(np.std([r[kind][m] for r in runs]))} for m in METRICS}
    summary["seconds_per_epoch"] = float(np.mean([r["seconds_per_epoch"] for r in runs]))
    return {"settings": vars(args), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": args.threads}, "noise_floor": floor, "runs": runs,
            "summary": summary}


def print_table(res: dict) -> None:
    floor, s = res["noise_floor"], res["summary"]
    print(f"\nGMRF MCVAE on copula ({res['settings']['epochs']} epochs, seeds {res['settings']['seeds']}, "
          f"{s['seconds_per_epoch']:.2f} s/epoch)")
    print(f"{'metric':22s} {'uncond (mean±sd)':>20s} {'x floor':>8s} {'cond (mean±sd)':>20s} {'x floor':>8s} "
          f"{'floor':>8s}")
    for m in METRICS:
        u, c = s["unconditional"][m], s["conditional"][m]
        print(f"{m:22s} {u['mean']:11.4f}±{u['std']:.4f} {u['mean'] / floor[m]:8.2f} "
              f"{c['mean']:11.4f}±{c['std']:.4f} {c['mean'] / floor[m]:8.2f} {floor[m]:8.4f}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--beta", type=float, default=GMRFMultiComponentVAE().beta)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--covariance", default="elementwise")
    p.add_argument("--prior", default="learned")
    p.add_argument("--no-refit", action="store_true", help="keep the trained prior (no closed-form refit)")
    p.add_argument("--prior-components", type=int, default=GMRFMultiComponentVAE().prior_components)
    p.add_argument("--cond-weight", type=float, default=GMRFMultiComponentVAE().cond_weight)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "copula_gmrf.json"))
    args = p.parse_args(argv)
    res = run(args)
    print_table(res)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, default=float)
        print(f"JSON written to {args.out}")
    return res


if __name__ == "__main__":
    main()
