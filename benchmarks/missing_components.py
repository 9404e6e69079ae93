"""Benchmark: training with missing components (issue 15, item 3).

For every dataset, model and seed, three estimators are trained on the same training rows
(``completion.py``'s split, settings and capacity rule) and asked to complete the same complete
test rows:

- ``complete``: every training row whole;
- ``missing``: ``--fraction`` (30 %) of the (row, component) entries removed at random (set to
  NaN; a row never loses all its components), trained on as they are;
- ``dropped``: the complete rows of ``missing`` only (what a library without missing-data
  training leaves a user).

Each reports :func:`mcgen.metrics.completion.completion_metrics` (energy score, lower is better;
R2 of the mean of ``--n-completions`` completions) for ``leave_one_out`` and ``from_one``.  The
issue's criteria: ``missing`` within 10 % of ``complete`` and better than ``dropped``.

    python benchmarks/missing_components.py                                 # copula and digits, 5 models, 3 seeds
    python benchmarks/missing_components.py --models gmrf --seeds 0 --quick  # smoke run
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import completion  # noqa: E402

from mcgen.metrics.completion import completion_metrics  # noqa: E402

VARIANTS = ("complete", "missing", "dropped")
TASKS = {"leave_one_out": "leave_one_out", "from_one": "single"}


def remove_at_random(arrays, fraction: float, seed: int):
    """Copies of ``arrays`` with ``fraction`` of the (row, component) entries set to NaN (a row
    keeps at least one component), and the (n, M) observed mask."""
    rng = np.random.default_rng(10_000 + seed)
    n, M = len(arrays[0]), len(arrays)
    missing = rng.random((n, M)) < fraction
    full = missing.all(1)
    missing[full, rng.integers(0, M, full.sum())] = False
    out = []
    for i, a in enumerate(arrays):
        a = np.array(a, dtype=np.float64 if np.asarray(a).dtype == np.float64 else np.float32, copy=True)
        a[missing[:, i]] = np.nan
        out.append(a)
    return out, ~missing


def run(args) -> dict:
    torch.set_num_threads(1)
    res = {"settings": vars(args), "machine": {"platform": platform.platform(), "torch": torch.__version__},
           "runs": []}
    for dataset in args.datasets:
        setting = completion.SETTINGS[dataset](args.quick)
        if args.epochs:
            setting.epochs = args.epochs
        for seed in args.seeds:
            split = completion.load_split(dataset, setting, seed, None)
            train = [np.asarray(a) for a in split.X_train.arrays]
            with_missing, observed = remove_at_random(train, args.fraction, seed)
            complete_rows = observed.all(1)
            data = {"complete": train, "missing": with_missing, "dropped": [a[complete_rows] for a in train]}
            M = len(train)
            for name in args.models:
                for variant in args.variants:
                    params = completion.estimator_params(name, setting, M, seed, 1e-3, {})
                    est = completion.CLASSES[name](**params)
                    t0 = time.perf_counter()
                    est.fit(data[variant])
                    secs = time.perf_counter() - t0
                    r = {"dataset": dataset, "model": name, "variant": variant, "seed": seed, "seconds": secs,
                         "train_rows": len(data[variant][0]), "observed_fraction": float(observed.mean())}
                    for task, known in TASKS.items():
                        m = completion_metrics(est, split.X_test, known=known, n_completions=args.n_completions,
                                               random_state=seed)
                        r[task] = {"energy_score": m["energy_score"], "r2_mean": m["r2_mean"]}
                    res["runs"].append(r)
                    print(f"{dataset} {name} {variant} seed {seed}: "
                          + ", ".join(f"{t} energy {r[t]['energy_score']:.3f} R2 {r[t]['r2_mean']:.3f}"
                                      for t in TASKS) + f" ({secs:.0f} s)", flush=True)
                    res["summary"] = summarise(res["runs"])
                    write(res, args.out)
    return res


def summarise(runs) -> dict:
    """Mean over seeds per (dataset, model, variant, task), and the criteria per (dataset, model, task)."""
    out: dict = {}
    for r in runs:
        for task in TASKS:
            cell = out.setdefault(r["dataset"], {}).setdefault(r["model"], {}).setdefault(task, {})
            cell.setdefault(r["variant"], []).append(r[task])
    for ds in out.values():
        for model in ds.values():
            for cell in model.values():
                for variant in list(cell):
                    vals = cell[variant]
                    cell[variant] = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]} | {"n": len(vals)}
                if all(v in cell for v in VARIANTS):
                    c, m, d = (cell[v]["energy_score"] for v in VARIANTS)
                    cell["missing_over_complete"] = m / c
                    cell["within_10_percent"] = bool(m <= 1.1 * c)
                    cell["beats_dropping"] = bool(m < d)
    return out


def print_table(res) -> None:
    print(f"\nenergy score (lower is better) / R2 of the mean; {res['settings']['fraction']:.0%} of components "
          f"missing at random; seeds {res['settings']['seeds']}")
    print(f"{'dataset':8s} {'model':10s} {'task':14s} | {'complete':>15s} {'missing':>15s} {'dropped':>15s} | "
          f"{'missing/complete':>16s} {'beats dropping':>14s}")
    for ds, models in res["summary"].items():
        for model, tasks in models.items():
            for task, cell in tasks.items():
                cells = [f"{cell[v]['energy_score']:.3f} / {cell[v]['r2_mean']:.3f}" if v in cell else "-"
                         for v in VARIANTS]
                ratio = f"{cell['missing_over_complete']:.3f}" if "missing_over_complete" in cell else "-"
                beats = str(cell.get("beats_dropping", "-"))
                print(f"{ds:8s} {model:10s} {task:14s} | {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s} | "
                      f"{ratio:>16s} {beats:>14s}")


def write(res, path) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(res, f, indent=1)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["copula", "digits"], choices=["copula", "digits", "wdbc"])
    p.add_argument("--models", nargs="+", default=list(completion.MODELS), choices=list(completion.MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fraction", type=float, default=0.3, help="fraction of (row, component) entries removed")
    p.add_argument("--epochs", type=int, default=None, help="replace the dataset's epochs (completion.py's settings)")
    p.add_argument("--n-completions", type=int, default=10)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="which trainings to run (default: all three)")
    p.add_argument("--quick", action="store_true", help="completion.py's tiny settings")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "missing_components.json"))
    args = p.parse_args(argv)
    res = run(args)
    print_table(res)
    if args.out:
        print(f"JSON written to {args.out}")
    return res


if __name__ == "__main__":
    main()
