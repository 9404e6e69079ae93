"""
PolyMNIST: generate four modalities from one
============================================

Fit the GMRF Multi-Component VAE on PolyMNIST and generate four modalities from one.

User story: five views of the same digit (different handwriting, different backgrounds) are
five components; seeing only one view, generate the other four so that they show the same
digit.  The figure follows the paper's Figure 3: the conditioning image (modality m0) in the
first row, then the generated modalities m1..m4 below it, one column per test digit.

Defaults are CPU-sized (6,000 training tuples, fully connected networks, latent 16 per
modality, beta 0.25, Gaussian likelihood, 20 epochs; the fit took 220 s on the shared 2-core
development machine).  The Gaussian likelihood draws legible digits where the Laplace one drew
mostly background, but at this budget the generated digit is still rarely the conditioning one
(conditional coherence 0.1-0.2; see "PolyMNIST coherence" in ``docs/results.md``).
``--paper`` switches to the full setting (all 60,000 tuples, the ``auto`` image networks --
ResNets for 28 x 28 -- and 300 epochs; a GPU job).  Run::

    python examples/polymnist.py                      # MNIST from $MCGEN_DATA or downloaded
    MCGEN_DATA=../shared/data python examples/polymnist.py --out docs/img/polymnist_conditional.png

When pretrained PolyMNIST classifiers are found (``--classifiers`` or
``<data_home>/polymnist_classifiers``) the script also prints the coherence: the fraction of
generated images that the modality's classifier reads as the conditioning digit.

The gallery page is built with ``--gallery`` (2,000 training tuples, 4 epochs: the digits are
blurry and mostly not the conditioning one); its run time is stated at the bottom of the page.
The figure in ``docs/img/polymnist_conditional.png`` used the defaults (fit 220 s).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import mcgen
from mcgen.data_files import get_data_home
from mcgen.metrics.classifiers import load_pretrained_classifiers, predict_digits


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Fit the GMRF Multi-Component VAE on PolyMNIST and generate four modalities from one.")
    p.add_argument("--data-home", default=None, help="folder holding mnist/ (default $MCGEN_DATA or ~/.mcgen_data)")
    p.add_argument("--n-train", type=int, default=6000, help="training tuples (0 = all 60,000)")
    p.add_argument("--n-test", type=int, default=1000, help="test tuples for the coherence")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--latent-dim", type=int, default=16, help="latent size per modality")
    p.add_argument("--beta", type=float, default=0.25)
    p.add_argument("--likelihood", default="gaussian", choices=("laplace", "bernoulli", "gaussian"))
    p.add_argument("--encoder", default="mlp", help="architecture of encoders and decoders ('auto' = the "
                                                     "image nets chosen by shape, ResNets for 28x28)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifiers", default=None, help="folder of the pretrained PolyMNIST classifiers")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="docs/img/polymnist_conditional.png")
    p.add_argument("--paper", action="store_true", help="full data, auto (ResNet) nets, 300 epochs")
    p.add_argument("--smoke", action="store_true", help="tiny run for tests (64 tuples, 1 epoch)")
    p.add_argument("--gallery", action="store_true", help="the documentation's setting (2,000 tuples, 4 epochs)")
    args = p.parse_args(argv)
    if args.paper:
        args.n_train, args.n_test, args.epochs, args.encoder = 0, 10_000, 300, "auto"
    if args.gallery:
        args.n_train, args.n_test, args.epochs = 2000, 300, 4
    if args.smoke:
        args.n_train, args.n_test, args.epochs, args.latent_dim, args.batch_size = 64, 30, 1, 4, 32
    return args


def conditional_figure(given: np.ndarray, generated: list[np.ndarray], labels: np.ndarray, path: str):
    """Figure-3-style grid: the conditioning image, then one row per generated modality (returns the figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [given, *generated]
    n_cols = given.shape[0]
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.0 * n_cols + 0.9, 1.0 * len(rows)), squeeze=False)
    for r, imgs in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c].transpose(1, 2, 0), 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(labels[c]), fontsize=9)
        axes[r, 0].set_ylabel("m0 given" if r == 0 else f"m{r}", fontsize=9)
    for c in range(n_cols):
        for side in ("top", "bottom", "left", "right"):
            axes[0, c].spines[side].set_color("tab:red")
            axes[0, c].spines[side].set_linewidth(2)
    fig.suptitle("GMRF MCVAE on PolyMNIST: generate m1-m4 from m0", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return fig


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    progress = not (args.smoke or args.gallery)  # the gallery page shows the results, not progress bars
    n_train = None if args.n_train == 0 else args.n_train
    X, info = mcgen.load_dataset("polymnist", split="train", n_samples=n_train, data_home=args.data_home,
                                 random_state=0, progress=progress)
    Xt, info_t = mcgen.load_dataset("polymnist", split="test", n_samples=args.n_test, data_home=args.data_home,
                                    random_state=0, progress=progress)
    est = mcgen.GMRFMultiComponentVAE(
        latent_dim=args.latent_dim, beta=args.beta, likelihood=args.likelihood, encoder=args.encoder,
        decoder=args.encoder, max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        device=args.device, random_state=args.seed, verbose=int(progress))
    t0 = time.perf_counter()
    est.fit(X)
    fit_s = time.perf_counter() - t0

    # one test example per digit (as many as the test split holds)
    labels_t = info_t["labels"]
    digits = [d for d in range(10) if np.any(labels_t == d)]
    pick = np.array([np.flatnonzero(labels_t == d)[0] for d in digits])
    out = est.predict_missing([Xt.arrays[0][pick]], known=[0], random_state=args.seed)
    conditional_figure(Xt.arrays[0][pick], out[1:], labels_t[pick], args.out)

    result = {"n_train": len(X), "epochs": args.epochs, "encoder": args.encoder, "fit_seconds": round(fit_s, 1),
              "figure": args.out}
    clf_dir = Path(args.classifiers) if args.classifiers else get_data_home(args.data_home) / "polymnist_classifiers"
    if clf_dir.is_dir():
        classifiers = load_pretrained_classifiers(clf_dir)
        gen = est.predict_missing([Xt.arrays[0]], known=[0], random_state=args.seed)
        pred_gen = predict_digits(classifiers, gen)[:, 1:]
        pred_real = predict_digits(classifiers, Xt)[:, 1:]
        result["coherence_from_m0"] = float((pred_gen == labels_t[:, None]).mean())
        result["coherence_per_modality"] = [round(float(v), 4) for v in (pred_gen == labels_t[:, None]).mean(0)]
        result["classifier_accuracy_on_real_m1_m4"] = float((pred_real == labels_t[:, None]).mean())
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
