"""Benchmark: all five estimators side by side on the Copula data (the paper's Table I setting).

Every model uses the paper's networks (encoders 2 -> 256 -> 256 -> heads, decoders
latent -> 256 -> 256 -> 2), latent size 2 per component for the GMRF model and 3 (shared) for the
baselines (MMVAE+: shared 3, component-specific 1), batch 256, Adam 1e-3.  Each model is trained
on ``--n-train`` rows for ``--epochs`` epochs per seed; unconditional samples and conditional
completions from every single observed component are compared with held-out rows by the metrics
of the GMRF benchmark (marginal, joint and sliced Wasserstein, dependency error; the conditional
ones on full rows, as :func:`mcgen.metrics.conditional_metrics`), next to the noise floor, plus
the paper's Table I columns: marginal W1 x 1000 per coordinate ("Dim 1", "Dim 2"), averaged over
components (conditional: over the generated components only), and seconds per epoch.

``--beta-search`` first trains every model once (first seed) for each beta of ``--grid`` (the
paper's {2.5, 1, 0.1, 0.05, 0.001}) and keeps, per model, the beta with the smallest mean of the
unconditional and conditional joint Wasserstein distances on a separate validation set (both
divided by their noise floor).

    python benchmarks/copula.py                                    # paper settings, default betas
    python benchmarks/copula.py --beta-search --epochs 20 --n-train 5000 --seeds 0
    python benchmarks/copula.py --epochs 1 --n-train 200 --seeds 0 --out /tmp/c.json   # smoke run
    python benchmarks/copula.py --merge a.json b.json --out benchmarks/results/copula.json
    python benchmarks/copula.py --paper        # Table I in full: 7 configurations, beta search, 3 seeds, 200 epochs

``--paper`` runs the paper's whole protocol in parallel single-thread processes
(``benchmarks/copula_paper.py`` describes it) and writes ``results/copula_paper.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

import mcgen
from mcgen import load_dataset
from mcgen.metrics import conditional_metrics, noise_floor, unconditional_metrics
from mcgen.reproduce import PAPER, copula_columns

# copula_paper's jobs run in spawned worker processes, which import it by name: benchmarks/ must be
# on the path (the workers inherit it) whether this file runs as a script or is loaded by the tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import copula_paper  # noqa: E402

METRICS = ("marginal_wasserstein", "joint_wasserstein", "sliced_wasserstein", "dependency_error")
MODELS = ("gmrf", "mvae", "mmvae", "mopoe", "mmvaeplus")
LABELS = {"gmrf": "GMRF MCVAE", "mvae": "MVAE", "mmvae": "MMVAE", "mopoe": "MoPoE-VAE", "mmvaeplus": "MMVAE+"}
PAPER_GRID = (2.5, 1.0, 0.1, 0.05, 0.001)
#: The paper's Table I (marginal W x 1000, mean of both coordinates), for the record (kept in mcgen.reproduce).
PAPER_TABLE_I = PAPER["table1"]


def make_estimator(name: str, beta: float, seed: int, args: argparse.Namespace):
    """The estimator ``name`` with the paper's Copula settings."""
    common = dict(beta=beta, max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, random_state=seed)
    if name == "gmrf":
        return mcgen.GMRFMultiComponentVAE(latent_dim=2, **common)
    if name == "mvae":
        return mcgen.MVAE(latent_dim=3, **common)
    if name == "mmvae":
        return mcgen.MMVAE(latent_dim=3, objective=args.mmvae_objective, K=args.mmvae_k, **common)
    if name == "mopoe":
        return mcgen.MoPoEVAE(latent_dim=3, **common)
    if name == "mmvaeplus":
        return mcgen.MMVAEPlus(latent_dim=3, private_dim=1, **common)
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")


def default_beta(name: str) -> float:
    cls = {"gmrf": mcgen.GMRFMultiComponentVAE, "mvae": mcgen.MVAE, "mmvae": mcgen.MMVAE,
           "mopoe": mcgen.MoPoEVAE, "mmvaeplus": mcgen.MMVAEPlus}[name]
    return float(cls().beta)


def table1_columns(est, X_test, seed: int) -> dict:
    """Marginal W1 x 1000 per coordinate, unconditional and conditional (generated components);
    the computation of ``mcgen reproduce table1``."""
    return copula_columns(est, X_test, seed)


def train_and_evaluate(name: str, beta: float, seed: int, X, X_eval, args) -> dict:
    est = make_estimator(name, beta, seed, args)
    t0 = time.perf_counter()
    est.fit(X)
    secs = time.perf_counter() - t0
    unc = unconditional_metrics(est, X_eval, random_state=seed)
    cond = conditional_metrics(est, X_eval, random_state=seed)
    return {"model": name, "beta": beta, "seed": seed, "seconds": secs,
            "seconds_per_epoch": secs / len(est.history_), "epochs": len(est.history_),
            "unconditional": unc, "conditional": cond["mean"],
            "conditional_per_subset": {str(k): v for k, v in cond["per_subset"].items()},
            "table1": table1_columns(est, X_eval, seed),
            "final_train_loss": float(est.history_[-1, "train_loss"])}


def beta_search(models, X, args, log) -> dict:
    X_val, _ = load_dataset("copula", n_samples=args.n_test, random_state=3)
    X_val_ref, _ = load_dataset("copula", n_samples=args.n_test, random_state=4)
    floor = noise_floor(X_val_ref, X_val)
    trials = []
    chosen = {}
    for name in models:
        scores = {}
        for beta in args.grid:
            r = train_and_evaluate(name, beta, args.seeds[0], X, X_val, args)
            crit = 0.5 * (r["unconditional"]["joint_wasserstein"] + r["conditional"]["joint_wasserstein"]) \
                / floor["joint_wasserstein"]
            r["criterion"] = crit
            trials.append(r)
            scores[beta] = crit
            log(f"search {name} beta={beta:g}: criterion {crit:.2f} ({r['seconds_per_epoch']:.2f} s/epoch)")
        chosen[name] = min(scores, key=scores.get)
        log(f"search {name}: chose beta={chosen[name]:g}")
    return {"criterion": "mean of unconditional and conditional joint Wasserstein / noise floor, validation set",
            "grid": list(args.grid), "chosen": chosen, "noise_floor": floor, "trials": trials}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for name in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == name]
        s = {"beta": rs[0]["beta"], "seeds": [r["seed"] for r in rs],
             "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in rs]))}
        for kind in ("unconditional", "conditional"):
            s[kind] = {m: {"mean": float(np.mean([r[kind][m] for r in rs])),
                           "std": float(np.std([r[kind][m] for r in rs]))} for m in METRICS}
            t = np.array([r["table1"][kind] for r in rs])  # (seeds, coords)
            s["table1_" + kind] = {"per_coordinate_mean": t.mean(0).tolist(), "per_coordinate_std": t.std(0).tolist(),
                                   "mean": float(t.mean())}
        out[name] = s
    return out


def print_table(res: dict) -> None:
    s, floor = res["summary"], res["noise_floor"]
    st = res["settings"]
    print(f"\nCopula, {st['epochs']} epochs, {st['n_train']} training rows, seeds {st['seeds']} "
          f"(mean over seeds; W x 1000)")
    print(f"{'model':11s} {'beta':>6s} | {'uncond D1':>9s} {'D2':>6s} {'mean':>6s} | {'cond D1':>7s} {'D2':>6s} "
          f"{'mean':>6s} | {'s/epoch':>7s}")
    for name, r in s.items():
        u, c = r["table1_unconditional"], r["table1_conditional"]
        (u1, u2), (c1, c2) = u["per_coordinate_mean"], c["per_coordinate_mean"]
        print(f"{LABELS[name]:11s} {r['beta']:6g} | {u1:9.2f} {u2:6.2f} {u['mean']:6.2f} | {c1:7.2f} {c2:6.2f} "
              f"{c['mean']:6.2f} | {r['seconds_per_epoch']:7.2f}")
    print("\nGMRF-benchmark metrics, ratio to the noise floor (unconditional / conditional):")
    print(f"{'model':11s} " + " ".join(f"{m:>24s}" for m in METRICS))
    for name, r in s.items():
        cells = [f"{r['unconditional'][m]['mean'] / floor[m]:10.2f} / {r['conditional'][m]['mean'] / floor[m]:<10.2f}"
                 for m in METRICS]
        print(f"{LABELS[name]:11s} " + " ".join(f"{c:>24s}" for c in cells))
    print("noise floor: " + ", ".join(f"{m} {floor[m]:.4g}" for m in METRICS))


def write(res: dict, path: str | None) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(res, f, indent=1, default=float)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    models = list(args.models)
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"unknown model {m!r}; valid: {', '.join(MODELS)}")
    X, _ = load_dataset("copula", n_samples=args.n_train, random_state=0)
    X_test, _ = load_dataset("copula", n_samples=args.n_test, random_state=1)
    X_ref, _ = load_dataset("copula", n_samples=args.n_test, random_state=2)
    res = {"settings": vars(args), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "threads": args.threads},
           "noise_floor": noise_floor(X_ref, X_test), "paper_table_I": PAPER_TABLE_I, "runs": []}

    def log(msg):
        print(msg, flush=True)

    betas = {m: default_beta(m) for m in models}
    for item in args.beta or []:
        name, _, value = item.partition("=")
        betas[name] = float(value)
    if args.beta_search:
        res["beta_search"] = beta_search(models, X, args, log)
        betas.update(res["beta_search"]["chosen"])
        write(res, args.out)
        if args.search_only:
            return res
    for name in models:
        for seed in args.seeds:
            r = train_and_evaluate(name, betas[name], seed, X, X_test, args)
            res["runs"].append(r)
            res["summary"] = summarise(res["runs"])
            write(res, args.out)  # after every run, so a long job leaves partial results
            log(f"{name} seed {seed} beta {betas[name]:g}: {r['seconds_per_epoch']:.2f} s/epoch, "
                f"table1 {r['table1']}")
    return res


def merge(paths: list[str]) -> dict:
    """Combine the runs of several result files of the same settings (e.g. models run in parallel)."""
    parts = []
    for path in paths:
        with open(path) as f:
            parts.append(json.load(f))
    res = dict(parts[0])
    res["runs"] = [r for p in parts for r in p["runs"]]
    res["merged_from"] = [{"file": os.path.basename(path), "settings": p["settings"]} for path, p in zip(paths, parts)]
    searches = [p["beta_search"] for p in parts if "beta_search" in p]
    if searches:
        res["beta_search"] = searches[0]
    res["summary"] = summarise(res["runs"])
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=None, help="evaluation rows (default 2,000; 10,000 with --paper)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", default=list(MODELS), help=f"subset of {', '.join(MODELS)}")
    p.add_argument("--beta", action="append", metavar="MODEL=BETA",
                   help="fix a model's beta (default: the class default), e.g. --beta mvae=0.1")
    p.add_argument("--beta-search", action="store_true", help="choose each model's beta on a validation set")
    p.add_argument("--search-only", action="store_true", help="stop after the beta search")
    p.add_argument("--grid", type=float, nargs="+", default=list(PAPER_GRID))
    p.add_argument("--mmvae-objective", default="dreg", choices=("elbo", "iwae", "dreg"))
    p.add_argument("--mmvae-k", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "copula.json"))
    p.add_argument("--merge", nargs="+", metavar="JSON", help="merge result files instead of running")
    p.add_argument("--paper", action="store_true", help="the paper's full Table I protocol (copula_paper.py)")
    copula_paper.add_arguments(p)
    args = p.parse_args(argv)
    if args.paper:
        args.n_test = args.n_test or 10_000
        if args.out == p.get_default("out"):
            args.out = os.path.join(os.path.dirname(__file__), "results", "copula_paper.json")
        res = copula_paper.run(args)
        copula_paper.print_table(res)
        print(f"JSON written to {args.out}")
        return res
    args.n_test = args.n_test or 2000
    if args.merge:
        res = merge(args.merge)
        write(res, args.out)
    else:
        res = run(args)
    if res["runs"]:
        print_table(res)
    if args.out:
        print(f"JSON written to {args.out}")
    return res


if __name__ == "__main__":
    main()
