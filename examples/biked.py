"""
BIKED: complete a bicycle from its frame
========================================

Complete bicycles from some of their components with the GMRF Multi-Component VAE.

User story: a designer fixes some parts of a bike (by default the frame) and asks for the
remaining components -- wheels, crank, saddle, handlebars -- that fit it.  The figure follows
the paper's Figure 4: for each test design, the conditioning components, then several completed
bikes (the given components in white, the generated ones overlaid in orange), then the real
design.  The script prints the SSIM between completed and real full bikes (full bike = pixel-wise
maximum of the five component images).

Defaults are CPU-sized (a few minutes on 2 cores: 2,000 rendered designs, fully connected
networks, 30 epochs).  ``--paper`` switches to all valid designs, the ``auto`` image networks
(ResNets for 64 x 64) and 300 epochs (a GPU job).  Run::

    MCGEN_DATA=../shared/data python examples/biked.py --out docs/img/biked_conditional.png
    python examples/biked.py --known frame wheels     # condition on two components

The gallery page is built with ``--gallery`` (600 designs, 15 epochs); its run time is stated at
the bottom of the page.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

import mcgen
from mcgen.datasets.biked_render import COMPONENTS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Complete bicycles from some of their components with the GMRF Multi-Component VAE.")
    p.add_argument("--data-home", default=None, help="folder holding biked/ (default $MCGEN_DATA or ~/.mcgen_data)")
    p.add_argument("--n", type=int, default=2000, help="designs used (0 = all valid designs)")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--known", nargs="+", default=["frame"], choices=COMPONENTS, help="conditioning components")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--latent-dim", type=int, default=8, help="latent size per component")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--encoder", default="mlp", help="architecture of encoders and decoders ('auto' = the image "
                                                    "nets chosen by shape, ResNets for 64x64)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-show", type=int, default=6, help="test designs in the figure")
    p.add_argument("--n-completions", type=int, default=3, help="completions per design in the figure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="docs/img/biked_conditional.png")
    p.add_argument("--examples-out", default=None,
                   help="also write a grid of real designs (five components and the full bike) here")
    p.add_argument("--paper", action="store_true", help="all designs, auto (ResNet) nets, 300 epochs")
    p.add_argument("--smoke", action="store_true", help="tiny run for tests (1 epoch)")
    p.add_argument("--gallery", action="store_true", help="the documentation's setting (600 designs, 15 epochs)")
    args = p.parse_args(argv)
    if args.paper:
        args.n, args.epochs, args.encoder = 0, 300, "auto"
    if args.gallery:
        args.n, args.epochs = 600, 15
    if args.smoke:
        args.epochs, args.latent_dim, args.batch_size, args.n_show, args.n_completions = 1, 2, 16, 2, 2
        args.n = min(args.n, 64)  # 0 (all designs) stays 0
    return args


def overlay(given: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """RGB image: the given components white, the generated ones orange (``(H, W)`` maps in [0, 1])."""
    orange = np.array([1.0, 0.55, 0.1])
    rgb = generated[..., None] * orange
    return np.clip(np.maximum(rgb, given[..., None]), 0, 1)


def conditional_figure(given: np.ndarray, completions: np.ndarray, real: np.ndarray, known_names: list[str],
                       path: str):
    """Figure-4-style grid (returns the figure).

    Parameters
    ----------
    given : (n, H, W) maximum of the conditioning components
    completions : (n, k, H, W) maximum of the generated components, k completions per design
    real : (n, H, W) real full bikes
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = completions.shape[:2]
    rows = 2 + k
    fig, axes = plt.subplots(rows, n, figsize=(1.5 * n + 1.0, 1.5 * rows), squeeze=False)
    for c in range(n):
        panels = [np.repeat(given[c][..., None], 3, -1)]
        panels += [overlay(given[c], completions[c, j]) for j in range(k)]
        panels.append(np.repeat(real[c][..., None], 3, -1))
        for r, img in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("given:\n" + "+".join(known_names), fontsize=8)
    for j in range(k):
        axes[1 + j, 0].set_ylabel(f"completion {j + 1}", fontsize=8)
    axes[-1, 0].set_ylabel("real bike", fontsize=8)
    fig.suptitle("GMRF MCVAE on BIKED: given components (white), generated ones (orange)", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return fig


def examples_figure(X, info, path: str, n: int = 8, seed: int = 0) -> None:
    """Grid of real designs: each row one design, its five component images then the full bike."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.sort(np.random.default_rng(seed).choice(len(X), size=min(n, len(X)), replace=False))
    fig, axes = plt.subplots(len(rows), 6, figsize=(7.2, 1.25 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        comps = [a[i, 0] for a in X.arrays]
        for c, img in enumerate([*comps, np.max(comps, axis=0)]):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title([*COMPONENTS, "full bike"][c], fontsize=8)
        axes[r, 0].set_ylabel(f"design {info['design_ids'][i]}", fontsize=7)
    fig.suptitle("BIKED designs rendered from their parameters (64 x 64)", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    from skimage.metrics import structural_similarity

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    progress = not (args.smoke or args.gallery)  # the gallery page shows the results, not progress bars
    X, info = mcgen.load_dataset("biked_images", data_home=args.data_home, n_samples=args.n or None,
                                 random_state=args.seed, progress=progress)
    if args.examples_out:
        examples_figure(X, info, args.examples_out, seed=args.seed)
    idx_train, idx_test = train_test_split(np.arange(len(X)), test_size=args.test_fraction,
                                           random_state=args.seed)
    X_train, X_test = X[idx_train], X[idx_test]
    est = mcgen.GMRFMultiComponentVAE(
        latent_dim=args.latent_dim, beta=args.beta, likelihood="bernoulli", encoder=args.encoder,
        decoder=args.encoder, max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
        random_state=args.seed, verbose=int(progress))
    t0 = time.perf_counter()
    est.fit(X_train)
    fit_s = time.perf_counter() - t0

    known = [COMPONENTS.index(name) for name in args.known]
    unknown = [i for i in range(len(COMPONENTS)) if i not in known]
    given_all = np.max([X_test.arrays[i][:, 0] for i in known], axis=0)
    real_all = np.max([a[:, 0] for a in X_test.arrays], axis=0)
    out = est.predict_missing([X_test.arrays[i] for i in known], known=known, n_samples=args.n_completions,
                              random_state=args.seed)
    # out[i]: (n, k, 1, H, W) for every component
    gen = np.max([out[i][:, :, 0] for i in unknown], axis=0)  # (n, k, H, W)
    full = np.maximum(gen, given_all[:, None])
    ssim = np.array([[structural_similarity(real_all[r], full[r, j], data_range=1.0)
                      for j in range(full.shape[1])] for r in range(full.shape[0])])
    show = np.arange(min(args.n_show, len(X_test)))
    conditional_figure(given_all[show], gen[show], real_all[show], list(args.known), args.out)
    result = {"n_train": len(X_train), "n_test": len(X_test), "known": list(args.known), "epochs": args.epochs,
              "encoder": args.encoder, "fit_seconds": round(fit_s, 1),
              "ssim_full_bike_mean": round(float(ssim.mean()), 4), "figure": args.out}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
