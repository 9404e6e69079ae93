"""Benchmark: wall time of ``GridSearchCV(n_jobs=2)`` with torch's default threading vs limited.

Each variant runs in a fresh interpreter whose environment has no ``OMP_NUM_THREADS`` (so torch
starts with one thread per core, its default; ``--omp-num-threads K`` sets it, as a user's shell
may, and joblib then passes it on to its workers unchanged) and fits a GMRF MCVAE on the Copula data over a
grid of 2 values x ``--cv`` folds, ``n_jobs=2``, ``refit=False``; the torch thread count seen
inside ``fit`` is recorded by a callback.  Variants (``--variants``):

* ``default``: the library's default (``n_threads`` unset; before issue 13 there was no such
  parameter: torch's default inside every worker);
* ``n_threads=K``: the parameter set explicitly (``K=2``: every core in every worker, what
  oversubscription looks like);
* ``busy:...``: the same, while ``--hogs`` other processes keep the cores busy (the situation of
  issue 13: a shared machine).

``--backend threading`` runs the grid in threads of one process (joblib's threading backend, as
``parallel_config(backend="threading")`` or Dask-like schedulers do); ``loky`` (default) in
worker processes.

    python benchmarks/threads_gridsearch.py --backend threading --variants default n_threads=1 n_threads=2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import torch
from joblib import parallel_config
from skorch.callbacks import Callback
from sklearn.model_selection import GridSearchCV
from mcgen import Components, GMRFMultiComponentVAE, load_dataset

cfg = json.loads(sys.argv[1])


class Threads(Callback):
    def on_epoch_end(self, net, **kw):
        net.history.record("torch_threads", torch.get_num_threads())


def threads(est, X, y=None):
    return float(est.history_[-1, "torch_threads"])


X, _ = load_dataset("copula", n_samples=cfg["rows"], random_state=0)
params = dict(max_epochs=cfg["epochs"], random_state=0, callbacks=[Threads()])
if cfg["n_threads"] is not None:
    params["n_threads"] = cfg["n_threads"]
search = GridSearchCV(GMRFMultiComponentVAE(**params), {"beta": [0.1, 1.0]}, cv=cfg["cv"], n_jobs=2,
                      refit=False, scoring={"elbo": lambda e, X, y=None: e.score(X), "threads": threads},
                      error_score="raise")
t0 = time.perf_counter()
with parallel_config(backend=cfg["backend"]):
    search.fit(Components(X.arrays))
secs = time.perf_counter() - t0
print(json.dumps({"seconds": secs, "threads_in_fit": sorted(set(search.cv_results_["mean_test_threads"])),
                  "parent_threads": torch.get_num_threads()}))
"""


def _hog(stop_after: float) -> None:  # pragma: no cover - a busy loop in another process
    end = time.time() + stop_after
    x = 0
    while time.time() < end:
        x += 1


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    busy = variant.startswith("busy:")
    name = variant.removeprefix("busy:")
    n_threads = None if name == "default" else int(name.split("=")[1])
    cfg = {"rows": args.rows, "epochs": args.epochs, "cv": args.cv, "backend": args.backend, "n_threads": n_threads}
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if args.omp_num_threads:  # a user's environment setting, which joblib passes on to its workers unchanged
        env["OMP_NUM_THREADS"] = str(args.omp_num_threads)
    times, info, exit_aborts = [], {}, 0
    for _ in range(args.repeats):
        hogs = []
        if busy:
            hogs = [multiprocessing.Process(target=_hog, args=(3600,), daemon=True) for _ in range(args.hogs)]
            for h in hogs:
                h.start()
        try:
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True,
                                 env=env, timeout=args.timeout)
        finally:
            for h in hogs:
                h.terminate()
                h.join()
        lines = out.stdout.strip().splitlines()
        if not lines or not lines[-1].startswith("{"):
            raise RuntimeError(f"variant {variant} failed:\n{out.stderr[-3000:]}")
        # the search finished; a nonzero status after it is an abort at interpreter exit (seen with
        # the threading backend, with and without mcgen's thread limit): counted, not timed
        exit_aborts += out.returncode != 0
        info = json.loads(lines[-1])
        times.append(info["seconds"])
    return {"variant": variant, "backend": args.backend, "seconds": times, "median_s": statistics.median(times),
            "threads_in_fit": info["threads_in_fit"], "parent_threads": info["parent_threads"],
            "aborts_at_exit": exit_aborts}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", default="loky", choices=("loky", "threading"), help="joblib backend of the grid")
    p.add_argument("--variants", nargs="+", default=["default", "n_threads=1", "n_threads=2"],
                   help="'default', 'n_threads=K', each optionally prefixed 'busy:'")
    p.add_argument("--rows", type=int, default=2000, help="Copula training rows")
    p.add_argument("--epochs", type=int, default=5, help="epochs per fit")
    p.add_argument("--cv", type=int, default=2, help="folds (fits = 2 x folds)")
    p.add_argument("--repeats", type=int, default=2, help="runs per variant (the median is reported)")
    p.add_argument("--hogs", type=int, default=2, help="busy processes for the busy: variants")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--omp-num-threads", type=int, default=0,
                   help="set OMP_NUM_THREADS in the benchmark's environment (0: unset, torch's default)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    rows = []
    for v in args.variants:
        row = run_variant(v, args)
        rows.append(row)
        print(f"{args.backend:9s} {v:22s} median {row['median_s']:7.1f} s  runs {[round(t, 1) for t in row['seconds']]}"
              f"  torch threads in fit {row['threads_in_fit']}  aborts at exit {row['aborts_at_exit']}", flush=True)
    if args.out:
        meta = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "settings": vars(args)}
        Path(args.out).write_text(json.dumps({**meta, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
