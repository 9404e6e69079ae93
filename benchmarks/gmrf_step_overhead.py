"""Benchmark: cost of one GMRF training step against its floor, M independent VAEs.

The floor runs the same M encoders, heads and decoders with a diagonal posterior and a
closed-form diagonal KL to N(0, I); the GMRF step adds the global encoder, the covariance
assembly, the batched Cholesky and the full-covariance KL (DESIGN section 7).  Prints a table
and writes JSON.

    python benchmarks/gmrf_step_overhead.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from mcgen import GMRFMultiComponentVAE, load_dataset


def independent_loss(module, xs):
    """M independent VAEs on the GMRF module's own networks (no cross-component terms)."""
    mus, vs, _ = module.encode_components(xs)
    mu, v = torch.cat(mus, -1), torch.cat(vs, -1)
    z = mu + v.sqrt() * torch.randn_like(mu)
    ll = module.log_likelihoods(module._decode_locs(z), xs).sum(-1)
    kl = 0.5 * (v + mu.pow(2) - 1 - v.log()).sum(-1)
    return -ll + module.beta * kl


def time_steps(loss_fn, opt, n_steps, warmup=3):
    for k in range(warmup + n_steps):
        if k == warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn().mean().backward()
        opt.step()
    return (time.perf_counter() - t0) / n_steps * 1000


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds; the median is reported")
    p.add_argument("--components", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "gmrf_step_overhead.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for M in args.components:
        X, _ = load_dataset("copula", n_samples=args.batch_size * 2, n_components=M, random_state=0)
        est = GMRFMultiComponentVAE(max_epochs=1, random_state=0).fit(X)
        module = est.module_.train()
        xs = [est._to_tensor(a[: args.batch_size], i) for i, a in enumerate(X.arrays)]
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        # Alternate the two variants over several rounds so that drifts of the machine hit both alike.
        floors, gmrfs = [], []
        for _ in range(args.rounds):
            floors.append(time_steps(lambda m=module, b=xs: independent_loss(m, b), opt, args.steps))
            gmrfs.append(time_steps(lambda m=module, b=xs: m(b), opt, args.steps))
        floor, gmrf = float(np.median(floors)), float(np.median(gmrfs))
        rows.append({"M": M, "D": module.D, "independent_ms": floor, "gmrf_ms": gmrf, "overhead": gmrf / floor - 1})
    print(f"{'M':>3} {'D':>4} {'independent VAEs ms/step':>25} {'GMRF ms/step':>13} {'overhead':>9}")
    for r in rows:
        print(f"{r['M']:3d} {r['D']:4d} {r['independent_ms']:25.1f} {r['gmrf_ms']:13.1f} {100 * r['overhead']:8.0f}%")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"settings": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
