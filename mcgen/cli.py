"""The ``mcgen`` command.

``mcgen demo``: train the GMRF MCVAE on the built-in Copula data, print its quality against the
noise floor (by default the four distribution metrics; ``--metrics`` takes any registered metric
names, a plugin's included) and write a pair plot.  ``mcgen plugins``: list the registered
plugins.
"""

from __future__ import annotations

import argparse
import os
import sys


def _demo(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from mcgen import GMRFMultiComponentVAE, load_dataset
    from mcgen.metrics import DEFAULT_METRICS, conditional_metrics, noise_floor, unconditional_metrics
    from mcgen.plugins import get_registries

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else DEFAULT_METRICS
    unknown = [m for m in metrics if m not in get_registries().metrics]
    if unknown:
        print(f"mcgen demo: unknown metrics {unknown}; registered metrics: "
              f"{', '.join(sorted(get_registries().metrics))}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads)) if args.threads else None
    X, _ = load_dataset("copula", n_samples=args.n_samples, random_state=0)
    X_test, _ = load_dataset("copula", n_samples=args.n_test, random_state=1)
    X_ref, _ = load_dataset("copula", n_samples=args.n_test, random_state=2)
    est = GMRFMultiComponentVAE(max_epochs=args.epochs, random_state=args.seed, verbose=args.verbose)
    t0 = time.perf_counter()
    est.fit(X)
    secs = time.perf_counter() - t0
    floor = noise_floor(X_ref, X_test, metrics=metrics)
    unc = unconditional_metrics(est, X_test, metrics=metrics, random_state=0)
    cond = conditional_metrics(est, X_test, metrics=metrics, random_state=0)["mean"]
    print(f"GMRF MCVAE on copula: {args.n_samples} rows, {args.epochs} epochs, {secs:.1f} s "
          f"({secs / args.epochs:.2f} s/epoch)")
    print(f"{'metric':24s} {'unconditional':>14s} {'conditional':>12s} {'noise floor':>12s} {'uncond/floor':>13s}")
    for m in floor:
        ratio = f"{unc[m] / floor[m]:13.2f}" if floor[m] else f"{'-':>13s}"
        print(f"{m:24s} {unc[m]:14.4f} {cond[m]:12.4f} {floor[m]:12.4f} {ratio}")
    if args.plot:
        try:
            from mcgen.plotting import pair_plot
        except ImportError as exc:  # matplotlib is the optional [plot] extra
            print(f"no pair plot: {exc}", file=sys.stderr)
        else:
            gen = est.sample(args.n_test, random_state=0)
            pair_plot([np.asarray(a) for a in X_test.arrays], gen, path=args.plot,
                      names=[f"x{i + 1}" for i in range(len(gen))])
            print(f"pair plot written to {args.plot}")
    return 0


def _json_meta(value):
    """A registration keyword as JSON: tuples as lists, callables (``supports=``) by dotted name."""
    if isinstance(value, tuple):
        return list(value)
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    return value


def _plugins(args: argparse.Namespace) -> int:
    import json
    import warnings

    from mcgen.plugins import PluginError, get_plugin_manager, get_registries

    try:
        with warnings.catch_warnings():  # broken plugins are listed below, not warned about
            warnings.simplefilter("ignore", UserWarning)
            pm = get_plugin_manager()
            regs = get_registries()
    except PluginError as exc:  # pragma: no cover - the process-wide registries skip broken plugins
        print(f"mcgen plugins: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    broken = regs.broken
    tables = {"architectures": regs.architectures, "datasets": regs.datasets, "metrics": regs.metrics}
    origins = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        dist, version = pm.plugin_distribution(plugin) if hasattr(pm, "plugin_distribution") else (None, None)
        origins[name] = {"distribution": dist, "version": version}
    if args.json:
        out = {"plugins": origins}
        for title, table in tables.items():
            out[title] = {
                name: {"plugin": e.plugin, "distribution": e.distribution, "version": e.version,
                       **{k: _json_meta(v) for k, v in e.meta.items()}}
                for name, e in sorted(table.items())
            }
        out["broken"] = {b.name: {"distribution": b.distribution, "version": b.version, "reason": b.reason,
                                  "names": list(b.names)} for b in broken.values()}
        print(json.dumps(out, indent=2, default=str))
        return 1 if broken else 0

    def where(dist, version):
        return f"{dist} {version}" if dist else "(in-process)"

    w_name = max([len(n) for t in tables.values() for n in t] + [8])
    w_plug = max([len(n) for n in origins] + [8])
    w_dist = max([len(where(o["distribution"], o["version"])) for o in origins.values()] + [8])
    print("plugins:")
    for name, o in origins.items():
        print(f"  {name:{w_plug}s} {where(o['distribution'], o['version'])}")
    for title, table in tables.items():
        print(f"\n{title}:")
        if not table:
            print("  (none)")
        for name, e in sorted(table.items()):
            extra = f"[{', '.join(e.meta['kinds'])}] " if "kinds" in e.meta else ""
            desc = e.meta.get("description", "")
            print(f"  {name:{w_name}s} {e.plugin:{w_plug}s} {where(e.distribution, e.version):{w_dist}s} "
                  f"{extra}{desc}".rstrip())
    if broken:
        print("\nbroken plugins (skipped; everything above works without them):")
        for b in broken.values():
            print(f"  {b.name:{w_plug}s} {where(b.distribution, b.version)}\n      {b.reason}")
        sys.stdout.flush()
        for b in broken.values():
            print(f"mcgen plugins: the {b.describe()} is broken and was skipped: {b.reason}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcgen", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the GMRF MCVAE on the Copula data and report its quality")
    demo.add_argument("--epochs", type=int, default=100)
    demo.add_argument("--n-samples", type=int, default=10_000)
    demo.add_argument("--n-test", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    demo.add_argument("--plot", default="copula_pairs.png", help="pair-plot PNG path ('' to skip)")
    demo.add_argument("--verbose", type=int, default=0)
    demo.add_argument("--metrics", default="", help="comma-separated registered metric names (default: "
                      "marginal_wasserstein, joint_wasserstein, sliced_wasserstein, dependency_error)")
    demo.set_defaults(func=_demo)
    plugins = sub.add_parser("plugins", help="list registered architectures, datasets and metrics, and the "
                             "plugin and distribution version each came from")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.set_defaults(func=_plugins)
    from mcgen.reproduce import add_parser as add_reproduce_parser

    add_reproduce_parser(sub)  # mcgen reproduce NAME [--quick]
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return rc
    except BrokenPipeError:  # `mcgen plugins | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
