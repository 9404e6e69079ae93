"""The paper's Table I protocol in full, as parallel single-thread processes (``copula.py --paper``).

Protocol (the paper's where it states it, ``docs/results.md`` where it does not):

- data: 10,000 Copula training rows (``random_state=0``); Table I's columns on 10,000 held-out rows
  (``random_state=1``), the GMRF benchmark's metrics on their first 2,000; a validation set of 2,000
  rows (``random_state=3``) for the beta choice;
- models: the paper's networks, latent sizes and batch 256, Adam 1e-3 (``mcgen.reproduce``'s paper
  protocol: the GMRF MCVAE is the paper's model, one Gaussian prior and no conditional term);
  MMVAE and MMVAE+ in both latent families the paper's baselines come in (Laplace, their
  originals'; Gaussian, the other models');
- beta: the paper's grid {2.5, 1, 0.1, 0.05, 0.001}, searched per configuration on seed 0 for
  ``--search-epochs`` epochs (criterion: mean of the unconditional and conditional joint
  Wasserstein distances on the validation set, divided by their noise floor); then 3 seeds at
  the chosen beta for ``--epochs`` (200) epochs.

Jobs run in ``--workers`` processes with one torch thread each; the JSON is rewritten after every
job, and ``--resume`` skips the jobs a previous (interrupted) run already wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

import numpy as np

#: configuration -> (model, extra constructor parameters)
CONFIGS = {
    "gmrf": ("gmrf", {}),
    "mvae": ("mvae", {}),
    "mmvae": ("mmvae", {}),
    "mmvae-gaussian": ("mmvae", {"posterior": "gaussian"}),
    "mopoe": ("mopoe", {}),
    "mmvaeplus": ("mmvaeplus", {}),
    "mmvaeplus-gaussian": ("mmvaeplus", {"posterior": "gaussian"}),
}
LABELS = {"gmrf": "GMRF MCVAE", "mvae": "MVAE", "mmvae": "MMVAE (Laplace)", "mmvae-gaussian": "MMVAE (Gaussian)",
          "mopoe": "MoPoE-VAE", "mmvaeplus": "MMVAE+ (Laplace)", "mmvaeplus-gaussian": "MMVAE+ (Gaussian)"}
#: the slowest first, so that the two workers finish together
ORDER = ("mmvaeplus", "mmvaeplus-gaussian", "mmvae", "mmvae-gaussian", "gmrf", "mvae", "mopoe")
PAPER_GRID = (2.5, 1.0, 0.1, 0.05, 0.001)

_DATA: dict = {}


def _data(n_train: int, n_test: int, n_val: int) -> dict:
    """The data sets, built once per worker process."""
    key = (n_train, n_test, n_val)
    if key not in _DATA:
        from mcgen import Components, load_dataset
        from mcgen.metrics import noise_floor

        X, _ = load_dataset("copula", n_samples=n_train, random_state=0)
        Xt, _ = load_dataset("copula", n_samples=n_test, random_state=1)
        Xv, _ = load_dataset("copula", n_samples=n_val, random_state=3)
        Xv_ref, _ = load_dataset("copula", n_samples=n_val, random_state=4)
        Xr, _ = load_dataset("copula", n_samples=min(n_test, 2000), random_state=2)
        small = Components([a[:2000] for a in Xt.arrays])
        _DATA[key] = {"train": X, "test": Xt, "test_small": small, "val": Xv,
                      "val_floor": noise_floor(Xv_ref, Xv), "floor": noise_floor(Xr, small)}
    return _DATA[key]


def params_of(config: str, beta: float, seed: int, epochs: int) -> dict:
    """Constructor parameters of ``config`` (``mcgen.reproduce``'s paper protocol)."""
    from mcgen.reproduce import PROTOCOLS, estimator_params

    model, extra = CONFIGS[config]
    params = estimator_params(model, "copula", PROTOCOLS["copula"]["paper"], 4, seed)
    params.update(extra, beta=float(beta), max_epochs=int(epochs))
    return params


def run_job(job: dict) -> dict:
    """Fit one configuration and evaluate it (runs in a worker process)."""
    import torch
    from allocator import keep_freed_memory

    from mcgen.metrics import conditional_metrics, unconditional_metrics
    from mcgen.reproduce import copula_columns, make_estimator

    torch.set_num_threads(1)
    keep_freed_memory()  # glibc keeps the activations' memory between steps (allocator.py)
    d = _data(job["n_train"], job["n_test"], job["n_val"])
    model = CONFIGS[job["config"]][0]
    est = make_estimator(model, params_of(job["config"], job["beta"], job["seed"], job["epochs"]))
    t0 = time.perf_counter()
    est.fit(d["train"])
    secs = time.perf_counter() - t0
    steps_per_epoch = int(np.ceil(len(d["train"]) / est.batch_size))
    out = dict(job, model=model, seconds=secs, epochs_run=len(est.history_),
               seconds_per_epoch=secs / len(est.history_),
               ms_per_step=1000 * float(np.mean([h["dur"] for h in est.history_])) / steps_per_epoch,
               final_train_loss=float(est.history_[-1, "train_loss"]),
               table1=copula_columns(est, d["test"], job["seed"]),
               unconditional=unconditional_metrics(est, d["test_small"], random_state=job["seed"]),
               conditional=conditional_metrics(est, d["test_small"], random_state=job["seed"])["mean"])
    if job["phase"] == "search":
        vu = unconditional_metrics(est, d["val"], random_state=job["seed"])["joint_wasserstein"]
        vc = conditional_metrics(est, d["val"], random_state=job["seed"])["mean"]["joint_wasserstein"]
        out["criterion"] = 0.5 * (vu + vc) / d["val_floor"]["joint_wasserstein"]
    return out


def _key(r: dict) -> tuple:
    return r["phase"], r["config"], float(r["beta"]), int(r["seed"])


def choose(runs: list[dict], config: str) -> float | None:
    """The searched beta of ``config`` (None while its search is incomplete)."""
    rs = [r for r in runs if r["phase"] == "search" and r["config"] == config]
    return min(rs, key=lambda r: r["criterion"])["beta"] if rs else None


def summarise(runs: list[dict], configs, grid, seeds) -> dict:
    """Per configuration: the chosen beta and the mean and sd over seeds of every column."""
    out = {}
    for c in configs:
        rs = [r for r in runs if r["phase"] == "search" and r["config"] == c]
        if len(rs) < len(grid):
            continue
        beta = choose(runs, c)
        main = [r for r in runs if r["phase"] == "main" and r["config"] == c]
        if not main:
            continue
        # the search's fit at the chosen beta is seed 0's run when it had the full epochs
        seeded = sorted([r for r in rs if r["beta"] == beta and r["epochs"] == main[0]["epochs"]] + main,
                        key=lambda r: r["seed"])
        s = {"beta": beta, "seeds": [r["seed"] for r in seeded],
             "criterion": {str(r["beta"]): r["criterion"] for r in rs},
             "seconds_per_epoch": float(np.mean([r["seconds_per_epoch"] for r in seeded])),
             "ms_per_step": float(np.mean([r["ms_per_step"] for r in seeded]))}
        for kind in ("unconditional", "conditional"):
            t = np.array([r["table1"][kind] for r in seeded])
            s["table1_" + kind] = {"per_coordinate_mean": t.mean(0).tolist(), "per_coordinate_std": t.std(0).tolist(),
                                   "mean": float(t.mean()), "std_of_mean": float(t.mean(1).std())}
            s[kind] = {m: float(np.mean([r[kind][m] for r in seeded])) for m in seeded[0][kind]}
        out[c] = s
    return out


def print_table(res: dict) -> None:
    from mcgen.reproduce import PAPER

    paper = PAPER["table1"]
    st = res["settings"]
    print(f"\nTable I, Copula: {st['epochs']} epochs, {st['n_train']} rows, seeds {st['seeds']}, beta searched over "
          f"{st['grid']} ({st['search_epochs']} epochs, seed {st['seeds'][0]}); marginal W1 x 1000 on "
          f"{st['n_test']} held-out rows, mean ± sd over seeds")
    print(f"{'model':19s} {'beta':>6s} | {'uncond D1':>12s} {'D2':>12s} {'mean':>12s} {'paper':>6s} | "
          f"{'cond D1':>12s} {'D2':>12s} {'mean':>12s} {'paper':>6s} | {'ms/step':>7s}")
    for c, s in res["summary"].items():
        model = CONFIGS[c][0]
        cells = []
        for kind in ("unconditional", "conditional"):
            t = s["table1_" + kind]
            cells += [f"{m:5.2f} ± {sd:4.2f}" for m, sd in zip(t["per_coordinate_mean"], t["per_coordinate_std"])]
            cells += [f"{t['mean']:5.2f} ± {t['std_of_mean']:4.2f}", f"{paper[kind][model]:6.2f}"]
        print(f"{LABELS[c]:19s} {s['beta']:6g} | {cells[0]:>12s} {cells[1]:>12s} {cells[2]:>12s} {cells[3]} | "
              f"{cells[4]:>12s} {cells[5]:>12s} {cells[6]:>12s} {cells[7]} | {s['ms_per_step']:7.1f}")
    print(f"wall time {res.get('wall_seconds', 0) / 60:.1f} min with {st['workers']} worker processes")


def _write(res: dict, path: str | None) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1, default=float)
        os.replace(tmp, path)


def run(args: argparse.Namespace) -> dict:
    import torch

    configs = [c for c in ORDER if c in args.configs]
    base = dict(n_train=args.n_train, n_test=args.n_test, n_val=args.n_val)
    runs: list[dict] = []
    prior_wall = 0.0  # a resumed run adds the time of the runs it found
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out) as f:
            previous = json.load(f)
        runs, prior_wall = previous["runs"], float(previous.get("wall_seconds", 0.0))
    done = {_key(r) for r in runs}
    res = {"protocol": "paper", "settings": {k: v for k, v in vars(args).items() if k != "func"},
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                       "threads_per_process": 1},
           "runs": runs}
    t_start = time.perf_counter()

    def search_jobs():
        for c in configs:
            for beta in args.grid:
                job = dict(base, phase="search", config=c, beta=float(beta), seed=args.seeds[0],
                           epochs=args.search_epochs)
                if _key(job) not in done:
                    yield job

    def main_jobs(c):
        beta = choose(runs, c)
        for seed in args.seeds:
            if seed == args.seeds[0] and args.search_epochs == args.epochs:
                continue  # the search's own fit at the chosen beta is this seed's run
            job = dict(base, phase="main", config=c, beta=float(beta), seed=seed, epochs=args.epochs)
            if _key(job) not in done:
                yield job

    def searched(c):
        return sum(r["phase"] == "search" and r["config"] == c for r in runs) == len(args.grid)

    pending = list(search_jobs())
    released = set()
    # main jobs of configurations whose search finished in an earlier (resumed) run come first
    for c in configs:
        if searched(c):
            pending[:0] = list(main_jobs(c))
            released.add(c)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        futures = {}
        while pending or futures:
            while pending and len(futures) < args.workers:
                job = pending.pop(0)
                futures[pool.submit(run_job, job)] = job
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = futures.pop(fut)
                r = fut.result()
                runs.append(r)
                print(f"[{(time.perf_counter() - t_start) / 60:6.1f} min] {job['phase']} {job['config']} "
                      f"beta={job['beta']:g} seed={job['seed']}: {r['ms_per_step']:.1f} ms/step, table1 "
                      f"{r['table1']['unconditional_mean']:.2f} / {r['table1']['conditional_mean']:.2f}"
                      + (f", criterion {r['criterion']:.2f}" if "criterion" in r else ""), flush=True)
                c = job["config"]
                if c not in released and searched(c):
                    released.add(c)
                    # a configuration's seeds go before the remaining searches, so that the run
                    # ends on short jobs and both workers stay busy to the end
                    pending[:0] = list(main_jobs(c))
            res["wall_seconds"] = prior_wall + time.perf_counter() - t_start
            res["summary"] = summarise(runs, configs, args.grid, args.seeds)
            _write(res, args.out)
    res["wall_seconds"] = prior_wall + time.perf_counter() - t_start
    res["summary"] = summarise(runs, configs, args.grid, args.seeds)
    _write(res, args.out)
    return res


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--paper`` options (``copula.py`` shares ``--epochs``, ``--seeds``, ``--grid``, ...)."""
    p.add_argument("--search-epochs", type=int, default=50,
                   help="epochs of each beta-search fit (seed 0); the paper does not state its search budget")
    p.add_argument("--workers", type=int, default=2, help="parallel single-thread processes (default: 2)")
    p.add_argument("--configs", nargs="+", default=list(ORDER), help=f"subset of {', '.join(ORDER)}")
    p.add_argument("--n-val", type=int, default=2000, help="validation rows of the beta search")
    p.add_argument("--resume", action="store_true", help="skip the jobs already in --out")
