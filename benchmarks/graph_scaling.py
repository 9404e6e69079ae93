"""Benchmark: cost of a GMRF training step against the number of components, chain vs all pairs.

For M = 4, 8, 16, 32 components, times one training step (forward, backward, Adam step) of
``GMRFMultiComponentVAE`` at its defaults (mixture prior, conditional-generation term) with
``graph="chain"`` and with ``graph=None`` (every pair), fits the exponent b of
``step time ~ M^b`` by least squares on log-log, prints a table and writes JSON.  The step time of
a setting is the CPU time of this process (one thread) per step in its fastest timing round: on
a shared machine CPU time does not count the time spent waiting for a core, and the fastest round
is the least disturbed by cache contention.  Wall-clock times (fastest and median round) are
reported too.  With a chain the
global encoder, the posterior factorisation, the KL and the conditioning all work on M - 1 edge
blocks (``docs/mathematics.md``, "A component graph"), so b should be about 1; with every pair the
global encoder has M(M - 1)/2 blocks and the factorisations are dense in D = M d.

    python benchmarks/graph_scaling.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from mcgen import GMRFMultiComponentVAE

GRAPHS = {"chain": "chain", "full": None}


def make_model(M: int, graph: str, args) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """A GMRF estimator fitted for one step on synthetic data, and one batch of inputs."""
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((args.batch_size, args.features)).astype(np.float32) for _ in range(M)]
    net = {"hidden": tuple(args.hidden)}
    est = GMRFMultiComponentVAE(latent_dim=args.latent_dim, graph=GRAPHS[graph], max_epochs=1,
                                batch_size=args.batch_size, encoder_kwargs=net, decoder_kwargs=net,
                                offdiag_hidden=args.offdiag_hidden, refit_prior=False, random_state=0).fit(X)
    module = est.module_.train()
    xs = [torch.from_numpy(a) for a in X]
    return module, xs


def time_steps(module, xs, opt, n_steps: int, warmup: int = 2) -> tuple[float, float]:
    """CPU and wall-clock milliseconds per training step (forward, backward, optimiser step)."""
    for k in range(warmup + n_steps):
        if k == warmup:
            c0, t0 = time.process_time(), time.perf_counter()
        opt.zero_grad(set_to_none=True)
        module(xs).mean().backward()
        opt.step()
    return ((time.process_time() - c0) / n_steps * 1000, (time.perf_counter() - t0) / n_steps * 1000)


def fit_exponent(Ms, ms) -> float:
    """Least-squares slope of log(step time) against log(M)."""
    return float(np.polyfit(np.log(np.asarray(Ms, float)), np.log(np.asarray(ms, float)), 1)[0])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--components", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--graphs", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    p.add_argument("--latent-dim", type=int, default=8, help="latent size per component (8: the \"auto\" default)")
    p.add_argument("--features", type=int, default=8, help="features per component (synthetic data)")
    p.add_argument("--hidden", type=int, nargs="+", default=[64], help="encoder/decoder hidden widths")
    p.add_argument("--offdiag-hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=9, help="alternating rounds; the fastest is reported")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "graph_scaling.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for M in args.components:
        models = {}
        for g in args.graphs:
            module, xs = make_model(M, g, args)
            models[g] = (module, xs, torch.optim.Adam(module.parameters(), lr=1e-4))
        # alternate the graphs over several rounds so that drifts of a shared machine hit both alike
        times: dict[str, list[float]] = {g: [] for g in args.graphs}
        walls: dict[str, list[float]] = {g: [] for g in args.graphs}
        for _ in range(args.rounds):
            for g in args.graphs:
                module, xs, opt = models[g]
                cpu, wall = time_steps(module, xs, opt, args.steps)
                times[g].append(cpu)
                walls[g].append(wall)
        for g in args.graphs:
            module = models[g][0]
            n_off = module.offdiag_net[-1].out_features if module.offdiag_net is not None else 0
            rows.append({"M": M, "graph": g, "D": module.D, "edges": len(module.edge_pairs),
                         "offdiag_outputs": n_off, "ms_per_step": float(np.min(times[g])),
                         "cpu_ms_rounds": [round(t, 2) for t in times[g]], "wall_ms_min": float(np.min(walls[g])),
                         "wall_ms_median": float(np.median(walls[g])),
                         "wall_ms_rounds": [round(t, 2) for t in walls[g]]})
    exponents, exponents_wall = {}, {}
    for g in args.graphs:
        sel = [r for r in rows if r["graph"] == g]
        if len(sel) > 1:
            exponents[g] = fit_exponent([r["M"] for r in sel], [r["ms_per_step"] for r in sel])
            exponents_wall[g] = fit_exponent([r["M"] for r in sel], [r["wall_ms_median"] for r in sel])
    print(f"{'M':>3} {'D':>4} " + " ".join(f"{g + ' CPU ms/step':>17} {'wall':>7} {g + ' edges':>11}"
                                            for g in args.graphs))
    for M in args.components:
        line = f"{M:3d} "
        for g in args.graphs:
            r = next(r for r in rows if r["M"] == M and r["graph"] == g)
            if g == args.graphs[0]:
                line += f"{r['D']:4d} "
            line += f"{r['ms_per_step']:17.1f} {r['wall_ms_median']:7.1f} {r['edges']:11d} "
        print(line)
    print("exponent b of step time ~ M^b (CPU time): " + ", ".join(f"{g} {b:.2f}" for g, b in exponents.items())
          + "; (median wall-clock): " + ", ".join(f"{g} {b:.2f}" for g, b in exponents_wall.items()))
    result = {"settings": vars(args), "torch": torch.__version__, "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "rows": rows, "exponents": exponents, "exponents_wall": exponents_wall}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
