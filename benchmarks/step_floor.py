"""Benchmark: each model's training step on the paper's Copula setting against its arithmetic floor.

floor = FLOPs of one training step (forward and backward, counted by
``torch.utils.flop_counter.FlopCounterMode``: the matrix products) / the GEMM throughput of this
machine at the same thread count (``--gemm`` x ``--gemm`` x ``--gemm`` float32 products, the
hidden layers' shape, median of ``--rounds``).  The step time is the real one: the mean epoch
duration of a ``fit`` (skorch's ``dur``, after the first epoch) divided by its steps, so it holds
data loading, callbacks and the optimizer.  The profile splits the step into its matrix products
(at the shapes the model runs them), element-wise and other kernels, and the optimizer.  Beside
it, the model's networks alone (the same modules called on inputs of the shapes they see in the
step, with a plain sum as the loss, forward and backward) and its optimizer step: what any loss
built on these networks costs in eager PyTorch, a lower bound of the step.

    python benchmarks/step_floor.py                     # one thread, 10,000 rows, 4 epochs
    python benchmarks/step_floor.py --epochs 2 --n-train 512 --configs gmrf --out /tmp/f.json   # smoke run
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
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import copula_paper  # noqa: E402
from allocator import keep_freed_memory  # noqa: E402

GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul")


def gemm_throughput(n: int, rounds: int) -> float:
    """Median FLOP/s of n x n x n float32 products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    reps = max(10, int(2e9 / (2 * n**3)))
    for _ in range(reps // 4):
        a @ b
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        rates.append(2 * n**3 * reps / (time.perf_counter() - t0))
    return float(np.median(rates))


def record_network_calls(module: torch.nn.Module, xs: list) -> list:
    """The calls of ``module``'s networks during one training loss: (network, input shape, whether
    the input needs a gradient) for every call of a child network (a child module, or a member
    of a child ``ModuleList``) other than the likelihoods."""
    nets = []
    for name, child in module.named_children():
        if name == "likelihoods":
            continue
        nets += list(child) if isinstance(child, torch.nn.ModuleList) else [child]
    calls = []
    hooks = [n.register_forward_hook(lambda mod, inp, out: calls.append((mod, inp[0].shape, inp[0].requires_grad)))
             for n in nets]
    try:
        module(xs).mean().backward()
    finally:
        for h in hooks:
            h.remove()
    return calls


def timed(fn, repeats: int = 5, n: int = 20) -> float:
    """Median milliseconds of one ``fn()`` over ``repeats`` rounds of ``n`` calls."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n * 1000)
    return float(np.median(times))


def measure(config: str, args, X) -> dict:
    from mcgen.reproduce import make_estimator

    model = copula_paper.CONFIGS[config][0]
    params = copula_paper.params_of(config, copula_paper.PAPER_GRID[2], 0, args.epochs)
    est = make_estimator(model, params).fit(X)
    steps = int(np.ceil(len(X) / est.batch_size))
    step_ms = 1000 * float(np.mean([h["dur"] for h in est.history_[1:]])) / steps
    # one step of the fitted module on a full batch, as the net runs it (its own optimizer)
    net, module = est.net_, est.module_.train()
    xs = [est._to_tensor(a[: est.batch_size], i) for i, a in enumerate(X.arrays)]
    opt = net.optimizer_

    def step():
        opt.zero_grad(set_to_none=True)
        module(xs).mean().backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        module(xs).mean().backward()
    flops = fc.get_total_flops()
    # The same network calls alone (same modules, shapes and gradient flags; a plain sum as the
    # loss) and the optimizer: what the step costs before any of the model's own algebra.
    calls = record_network_calls(module, xs)
    inputs = [torch.randn(shape).requires_grad_(grad) for _, shape, grad in calls]

    def networks():
        opt.zero_grad(set_to_none=True)
        sum(mod(x).sum() for (mod, _, _), x in zip(calls, inputs)).backward()

    networks_ms = timed(networks)
    step()  # every parameter's gradient, as the optimizer meets them in training
    optimizer_ms = timed(opt.step)
    step_bare_ms = timed(step)
    n = 20
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    ev = prof.key_averages()
    gemm_us = sum(e.self_cpu_time_total for e in ev if e.key in GEMM_OPS) / n
    opt_us = sum(e.cpu_time_total for e in ev if e.key.startswith("Optimizer.step")) / n
    total_us = sum(e.self_cpu_time_total for e in ev) / n
    return {"config": config, "gflop_per_step": flops / 1e9, "step_ms": step_ms,
            "profile_ms": {"total": total_us / 1000, "matrix_products": gemm_us / 1000,
                           "optimizer": opt_us / 1000, "other": (total_us - gemm_us - opt_us) / 1000},
            "kernels_per_step": int(sum(e.count for e in ev if e.key.startswith("aten::")) / n),
            "networks_ms": networks_ms, "optimizer_ms": optimizer_ms, "bare_step_ms": step_bare_ms,
            "network_calls": len(calls)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=4, help="epochs of the timed fit (the first is not counted)")
    p.add_argument("--gemm", type=int, default=256, help="size of the square products of the throughput")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--configs", nargs="+", default=list(copula_paper.ORDER))
    p.add_argument("--allocator", choices=("keep", "system"), default="keep",
                   help="keep: glibc keeps freed memory (benchmarks/allocator.py, as the Table I workers); "
                        "system: glibc's defaults")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "step_floor.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.allocator_kept = keep_freed_memory() if args.allocator == "keep" else False
    from mcgen import load_dataset

    X, _ = load_dataset("copula", n_samples=args.n_train, random_state=0)
    rate = gemm_throughput(args.gemm, args.rounds)
    rows = []
    for c in args.configs:
        r = measure(c, args, X)
        r["floor_ms"] = 1000 * r["gflop_per_step"] * 1e9 / rate
        r["ratio"] = r["step_ms"] / r["floor_ms"]
        r["matrix_products_over_floor"] = r["profile_ms"]["matrix_products"] / r["floor_ms"]
        r["networks_optimizer_over_floor"] = (r["networks_ms"] + r["optimizer_ms"]) / r["floor_ms"]
        r["step_over_networks_optimizer"] = r["step_ms"] / (r["networks_ms"] + r["optimizer_ms"])
        rows.append(r)
    rate_2048 = gemm_throughput(2048, 3)
    print(f"GEMM throughput, {args.threads} thread(s): {rate / 1e9:.0f} GFLOP/s at {args.gemm}^3 "
          f"({rate_2048 / 1e9:.0f} at 2048^3)")
    print(f"allocator: {args.allocator} (settings took: {args.allocator_kept})")
    print(f"{'configuration':19s} {'GFLOP/step':>10s} {'floor ms':>9s} {'step ms':>8s} {'ratio':>6s} | "
          f"{'networks':>8s} {'optimizer':>9s} {'(x floor)':>9s} {'step/them':>9s} | profile ms: "
          f"{'products':>8s} {'(x floor)':>9s} {'other':>6s} {'kernels':>7s}")
    for r in rows:
        pr = r["profile_ms"]
        print(f"{copula_paper.LABELS[r['config']]:19s} {r['gflop_per_step']:10.3f} {r['floor_ms']:9.2f} "
              f"{r['step_ms']:8.2f} {r['ratio']:6.2f} | {r['networks_ms']:8.2f} {r['optimizer_ms']:9.2f} "
              f"{r['networks_optimizer_over_floor']:9.2f} {r['step_over_networks_optimizer']:9.2f} | "
              f"{'':11s} {pr['matrix_products']:8.2f} "
              f"{r['matrix_products_over_floor']:9.2f} {pr['other']:6.2f} {r['kernels_per_step']:7d}")
    res = {"settings": vars(args), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
           "torch": torch.__version__}, "gemm_flops_per_s": rate, "gemm_2048_flops_per_s": rate_2048, "rows": rows}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
        print(f"JSON written to {args.out}")
    return res


if __name__ == "__main__":
    main()
