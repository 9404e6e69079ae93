"""
Training with missing components: digits with a third of their quadrants lost
==============================================================================

Real records are often incomplete: a design without its drivetrain drawing, a patient without one
of the scans.  Every mcgen estimator trains on such rows as they are: give the missing component
of a row as NaN throughout (here, 30 % of the quadrants of scikit-learn's digits, chosen at
random), and ``fit`` maximises each row's objective over the components it has.
``predict_missing(X)`` then fills every NaN component from the row's own observed ones.

Three GMRF models are trained on the same 1,347 training digits: on the complete rows
(the reference), on the rows with 30 % of their quadrants missing, and on only the rows the
missing data leave complete (24 % of them, what a library that cannot train on incomplete rows
leaves).  Each completes every quadrant of the 450 complete test digits from the other three
(energy score of 10 completions, lower is better, and R2 of their mean); the figure shows test
digits with one quadrant removed and the three models' completions.

Run::

    python examples/missing_components.py --out docs/img/missing_components.png

Defaults: 60 epochs (about one minute per model on one core).  The gallery page uses
``--gallery`` (20 epochs).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

import mcgen
from mcgen.metrics.completion import completion_metrics


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train on digits with 30 % of the quadrants missing.")
    p.add_argument("--fraction", type=float, default=0.3, help="fraction of (digit, quadrant) entries removed")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/img/missing_components.png")
    p.add_argument("--gallery", action="store_true", help="the documentation's setting (20 epochs)")
    p.add_argument("--smoke", action="store_true", help="tiny run for tests (1 epoch)")
    args = p.parse_args(argv)
    if args.gallery:
        args.epochs = 20
    if args.smoke:
        args.epochs = 1
    return args


def remove_at_random(arrays, fraction, rng):
    """Copies with ``fraction`` of the (row, component) entries set to NaN; every row keeps one."""
    missing = rng.random((len(arrays[0]), len(arrays))) < fraction
    full = missing.all(1)
    missing[full, rng.integers(0, len(arrays), full.sum())] = False
    out = [a.copy() for a in arrays]
    for i, a in enumerate(out):
        a[missing[:, i]] = np.nan
    return out, ~missing


def assemble(quadrants, row):
    """The 8 x 8 digit of ``row`` from its four 4 x 4 quadrants (NaN shown as blank)."""
    q = [a[row, 0] for a in quadrants]
    return np.block([[q[0], q[1]], [q[2], q[3]]])


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    X, info = mcgen.load_dataset("digits")
    idx_train, idx_test = train_test_split(np.arange(len(X)), test_size=0.25, random_state=args.seed,
                                           stratify=info["labels"])
    train = [a[idx_train] for a in X.arrays]
    test = [a[idx_test] for a in X.arrays]
    rng = np.random.default_rng(args.seed)
    with_missing, observed = remove_at_random(train, args.fraction, rng)
    complete = observed.all(1)
    data = {"complete rows": train, f"{args.fraction:.0%} missing": with_missing,
            "complete rows only": [a[complete] for a in train]}
    print(f"{len(train[0])} training digits, {int((~observed).sum())} of {observed.size} quadrants missing, "
          f"{int(complete.sum())} digits left complete")
    fitted, scores = {}, {}
    for name, arrays in data.items():
        est = mcgen.GMRFMultiComponentVAE(latent_dim=4, max_epochs=args.epochs, batch_size=64,
                                          random_state=args.seed)
        t0 = time.perf_counter()
        est.fit(arrays)
        m = completion_metrics(est, mcgen.Components(test), known="leave_one_out", n_completions=10,
                               random_state=args.seed)
        fitted[name], scores[name] = est, m
        print(f"trained on {name:20s} ({len(arrays[0]):4d} rows, {time.perf_counter() - t0:4.0f} s): "
              f"energy {m['energy_score']:.3f}, R2 of the mean {m['r2_mean']:.3f}")

    # test digits, each with one quadrant removed, completed by each model
    show = np.arange(8)
    holes = np.arange(len(show)) % 4
    shown = [a[show].copy() for a in test]
    for r, h in enumerate(holes):
        shown[h][r] = np.nan
    rows = {"real": [a[show] for a in test], "observed": shown}
    for name, est in fitted.items():
        rows[f"trained on {name}"] = est.predict_missing(shown, random_state=args.seed)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(show), figsize=(1.3 * len(show), 1.45 * len(rows)))
    for r, (label, quadrants) in enumerate(rows.items()):
        for c in range(len(show)):
            ax = axes[r, c]
            img = assemble(quadrants, c)
            ax.imshow(np.ma.masked_invalid(img), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("digits: a removed quadrant (blank) completed by GMRF models trained three ways", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    return {name: {k: float(m[k]) for k in ("energy_score", "r2_mean")} for name, m in scores.items()}


if __name__ == "__main__":
    main()
