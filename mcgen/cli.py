"""The ``mcgen`` command.

``mcgen demo``: train the GMRF MCVAE on the built-in Copula data, print its quality against the
noise floor (by default the four distribution metrics; ``--metrics`` takes any registered metric
names, a plugin's included) and write a pair plot.  ``mcgen plugins``: list the registered
plugins.  ``mcgen reproduce``: the paper's tables and figures.  ``mcgen --version``.

Every option is checked when the command line is read, before any work: a bad value is an
argparse error (exit status 2) naming the option.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mcgen.cli_types import int_at_least

#: Image formats the pair plot can be written in (by the file's suffix).
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")
#: The pair plot's file when ``--plot`` is not given.
DEFAULT_PLOT = "copula_pairs.png"


def _seed(text: str) -> int:
    value = int_at_least(0, "a seed")(text)
    if value > 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be at most 2**32 - 1 (a seed), got {value}")
    return value


def _plot_path(text: str) -> str:
    """``--plot``: '' (no plot) or a file in an existing, writable folder, with an image suffix."""
    if text == "":
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name such as {path / DEFAULT_PLOT}")
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} has no image suffix; use one of {', '.join(PLOT_SUFFIXES)}")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text!r} is not writable")
    return str(path)


def _matplotlib_missing() -> str | None:
    """The reason no plot can be drawn (matplotlib, the ``[plot]`` extra, is missing), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def _demo(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from mcgen import GMRFMultiComponentVAE, load_dataset
    from mcgen.metrics import DEFAULT_METRICS, conditional_metrics, noise_floor, unconditional_metrics
    from mcgen.plugins import get_registries
    from mcgen.training import EpochProgressBar

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else DEFAULT_METRICS
    unknown = [m for m in metrics if m not in get_registries().metrics]
    if unknown:
        print(f"mcgen demo: unknown metrics {unknown}; registered metrics: "
              f"{', '.join(sorted(get_registries().metrics))}", file=sys.stderr)
        return 2
    plot = args.plot
    if plot is None:  # the default file, in the working folder: checked like an explicit --plot
        try:
            plot = _plot_path(DEFAULT_PLOT)
        except argparse.ArgumentTypeError as exc:
            print(f"mcgen demo: cannot write the pair plot: {exc}; pass --plot PATH or --plot ''", file=sys.stderr)
            return 2
    if plot:
        missing = _matplotlib_missing()
        if missing is not None:
            if args.plot is not None:  # asked for explicitly: an error before any work
                print(f"mcgen demo: --plot needs matplotlib (pip install 'mcgen[plot]'): {missing}; pass --plot '' "
                      "to skip the plot", file=sys.stderr)
                return 2
            print("mcgen demo: no pair plot (matplotlib is not installed: pip install 'mcgen[plot]')",
                  file=sys.stderr)
            plot = ""
    if args.threads:
        torch.set_num_threads(args.threads)
    X, _ = load_dataset("copula", n_samples=args.n_samples, random_state=0)
    X_test, _ = load_dataset("copula", n_samples=args.n_test, random_state=1)
    X_ref, _ = load_dataset("copula", n_samples=args.n_test, random_state=2)
    # the epoch bar unless skorch's own table and batch bars are on (--verbose)
    callbacks = [("epoch_progress", EpochProgressBar())] if args.progress and not args.verbose else None
    est = GMRFMultiComponentVAE(max_epochs=args.epochs, random_state=args.seed, verbose=args.verbose,
                                callbacks=callbacks)
    t0 = time.perf_counter()
    est.fit(X)
    secs = time.perf_counter() - t0
    if args.progress:
        print("computing the metrics ...", file=sys.stderr, flush=True)
    floor = noise_floor(X_ref, X_test, metrics=metrics)
    unc = unconditional_metrics(est, X_test, metrics=metrics, random_state=0)
    cond = conditional_metrics(est, X_test, metrics=metrics, random_state=0)["mean"]
    print(f"GMRF MCVAE on copula: {args.n_samples} rows, {args.epochs} epochs, {secs:.1f} s "
          f"({secs / args.epochs:.2f} s/epoch)")
    print(f"{'metric':24s} {'unconditional':>14s} {'conditional':>12s} {'noise floor':>12s} {'uncond/floor':>13s}")
    for m in floor:
        ratio = f"{unc[m] / floor[m]:13.2f}" if floor[m] else f"{'-':>13s}"
        print(f"{m:24s} {unc[m]:14.4f} {cond[m]:12.4f} {floor[m]:12.4f} {ratio}")
    if plot:
        from mcgen.plotting import pair_plot

        gen = est.sample(args.n_test, random_state=0)
        pair_plot([np.asarray(a) for a in X_test.arrays], gen, path=plot, names=[f"x{i + 1}" for i in range(len(gen))])
        print(f"pair plot written to {plot}")
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


def build_parser() -> argparse.ArgumentParser:
    """The ``mcgen`` argument parser (every option with its help and its check).

    Returns
    -------
    argparse.ArgumentParser
    """
    from mcgen.version import __version__

    parser = argparse.ArgumentParser(prog="mcgen", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"mcgen {__version__}",
                        help="print mcgen's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the GMRF MCVAE on the Copula data and report its quality",
                          description="Train the GMRF MCVAE on the built-in Copula data (4 components), print "
                                      "its quality against the noise floor and write a pair plot.")
    demo.add_argument("--epochs", type=int_at_least(1, "training epochs"), default=100,
                      help="training epochs (default: %(default)s)")
    demo.add_argument("--n-samples", type=int_at_least(2, "training rows"), default=10_000,
                      help="rows of Copula data to train on (default: %(default)s)")
    demo.add_argument("--n-test", type=int_at_least(2, "test rows"), default=2000,
                      help="rows of the test and reference sets the metrics use (default: %(default)s)")
    demo.add_argument("--seed", type=_seed, default=0,
                      help="random_state of the model: initialisation, batches, noise (default: %(default)s)")
    demo.add_argument("--threads", type=int_at_least(0, "torch threads; 0 keeps torch's default"), default=0,
                      help="torch threads (default: 0, torch's default: one per core; 1 is faster on a busy "
                           "machine)")
    demo.add_argument("--plot", type=_plot_path, default=None,
                      help=f"pair-plot image path, in an existing folder ('' to skip; default: {DEFAULT_PLOT}, "
                           "skipped with a note when matplotlib is missing)")
    demo.add_argument("--verbose", type=int_at_least(0, "a verbosity level"), default=0,
                      help="1: skorch's per-epoch table and batch progress bars instead of the epoch bar "
                           "(default: %(default)s)")
    demo.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                      help="show a progress bar over the training epochs on standard error (default: on)")
    demo.add_argument("--metrics", default="", help="comma-separated registered metric names (default: "
                      "marginal_wasserstein, joint_wasserstein, sliced_wasserstein, dependency_error)")
    demo.set_defaults(func=_demo)
    plugins = sub.add_parser("plugins", help="list registered architectures, datasets and metrics, and the "
                             "plugin and distribution version each came from")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.set_defaults(func=_plugins)
    from mcgen.reproduce import add_parser as add_reproduce_parser

    add_reproduce_parser(sub)  # mcgen reproduce NAME [--quick]
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``mcgen`` command with ``argv`` (default: the process's arguments).

    Parameters
    ----------
    argv : list of str, optional

    Returns
    -------
    int
        The exit status.
    """
    parser = build_parser()
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
