"""Benchmark: cross-modal coherence of the GMRF MCVAE on PolyMNIST over a grid of settings.

For every combination of ``--betas`` x ``--latent-dims`` x ``--likelihoods`` one model is trained
with ``refit_prior=False`` and evaluated twice: with the learned prior as trained, then after the
closed-form refit to the aggregate posterior (what ``refit_prior=True`` does at the end of
``fit``).  Each prior is scored by

- conditional coherence (``mcgen.metrics.coherence.conditional_coherence``): the observed
  modality's latent drawn from its posterior (``predict_missing``, the library's default) and,
  ``cond_mean``, set to the posterior mean (``GMRFModule.complete(use_mean=True)``);
- unconditional coherence: the fraction of joint prior samples whose five digits all agree;
- two diagnostics: ``recon``, the coherence of each modality's own reconstruction (an upper
  bound for what the decoders can show), and ``prior_r2``, the mean over ordered modality pairs
  (i, j) of the fraction of z_j's prior variance explained linearly by z_i -- the regression
  that conditional generation relies on (0: the blocks are independent under the prior);
  ``probe``, the test accuracy of a logistic regression reading the digit from one modality's
  posterior means (averaged over modalities): whether each block encodes the digit at all.

Digits are read by classifiers trained on this PolyMNIST-style data (``train_classifiers``,
cached); ``--classifiers pretrained`` uses the MoPoE authors' classifiers, trained on the
original PolyMNIST backgrounds.  Prints a table and writes (merges into) a JSON file.

    python benchmarks/polymnist_coherence.py --betas 0.25 1 5 --epochs 10 --n-train 3000
    python benchmarks/polymnist_coherence.py --n-train 256 --n-test 64 --epochs 1 --betas 1 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mcgen import GMRFMultiComponentVAE, load_dataset
from mcgen.metrics.classifiers import load_pretrained_classifiers, predict_digits, train_classifiers
from mcgen.metrics.coherence import conditional_coherence, unconditional_coherence


class MeanConditioner:
    """``predict_missing`` through ``GMRFModule.complete(use_mean=True)``: the observed latent
    is the posterior mean instead of a posterior draw.  With ``regression_mean=True`` the
    missing latents are also set to their conditional mean E[z_U | z_K] under the prior instead
    of a draw (a diagnostic: how much of the conditional signal the residual noise hides)."""

    def __init__(self, est: GMRFMultiComponentVAE, regression_mean: bool = False):
        self.est = est
        self.regression_mean = regression_mean

    def predict_missing(self, X, known, random_state=None):
        est = self.est
        known = est._check_known(known)
        arrays = est._validate_data(list(X), reset=False, components=known)
        g = est._generator(random_state)
        out = [None] * est.n_components_
        with est._eval() as module:
            xs = [est._to_tensor(a, k) for a, k in zip(arrays, known)]
            if self.regression_mean:
                mu_K = torch.cat(module.encode_components(xs, which=known)[0], -1)
                log_resp, means, _, unknown = module.conditional_latent(mu_K, known)
                z_U = (log_resp.exp().unsqueeze(-1) * means).sum(-2)  # the mixture's regression mean
                parts = torch.split(z_U, [module.block_sizes[u] for u in unknown], dim=-1)
                gen = {i: module.likelihoods[i].mean(module.decoders[i](zi))[None]
                       for i, zi in zip(unknown, parts)}
            else:
                gen = module.complete(xs, known, n_samples=1, generator=g, use_mean=True)
        for i in range(est.n_components_):
            out[i] = arrays[known.index(i)] if i in known else est._from_tensor(gen[i][0], i)
        return out


def prior_r2(est: GMRFMultiComponentVAE) -> float:
    """Mean over ordered block pairs (i, j) of tr(S_ji S_ii^-1 S_ij) / tr(S_jj) under the prior."""
    S = est.module_.prior_covariance().detach().double()
    off = est.module_.offsets
    M = est.n_components_
    vals = []
    for i, j in itertools.permutations(range(M), 2):
        Sii = S[off[i]:off[i + 1], off[i]:off[i + 1]]
        Sji = S[off[j]:off[j + 1], off[i]:off[i + 1]]
        Sjj = S[off[j]:off[j + 1], off[j]:off[j + 1]]
        explained = torch.trace(Sji @ torch.linalg.solve(Sii, Sji.mT))
        vals.append(float(explained / torch.trace(Sjj)))
    return float(np.mean(vals))


def digit_probe(est, X, y, Xt, yt) -> float:
    """Mean over modalities of the test accuracy of a linear read-out of the digit from mu_i."""
    from sklearn.linear_model import LogisticRegression

    Z, Zt, off = est.transform(X), est.transform(Xt), est.module_.offsets
    accs = []
    for i in range(est.n_components_):
        clf = LogisticRegression(max_iter=1000).fit(Z[:, off[i]:off[i + 1]], y)
        accs.append(clf.score(Zt[:, off[i]:off[i + 1]], yt))
    return float(np.mean(accs))


def evaluate(est, Xt, labels, clfs, args) -> dict:
    t0 = time.perf_counter()
    cond = conditional_coherence(est, Xt, labels, clfs, known_sets=args.known_sets, random_state=0)
    cond_mean = conditional_coherence(MeanConditioner(est), Xt, labels, clfs, known_sets=args.known_sets,
                                      random_state=0)
    cond_map = conditional_coherence(MeanConditioner(est, regression_mean=True), Xt, labels, clfs,
                                     known_sets=args.known_sets, random_state=0)
    unc = unconditional_coherence(est.sample(args.n_uncond, random_state=0), clfs)
    rec = predict_digits(clfs, est.reconstruct(Xt))
    return {"cond": cond.value, "cond_mean": cond_mean.value, "cond_regression_mean": cond_map.value,
            "cond_per_size": {str(k): v for k, v in cond.details["per_size"].items()},
            "uncond": unc.value, "recon": float((rec == labels[:, None]).mean()), "prior_r2": prior_r2(est),
            "eval_seconds": time.perf_counter() - t0}


def _merge_json(path: Path, entries: dict, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # the lock file lives in the temp folder, not next to the results
    with open(Path(tempfile.gettempdir()) / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
        data.update(meta)
        data["runs"].update(entries)
        tmp = path.with_suffix(".json.part")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    X, info = load_dataset("polymnist", split="train", n_samples=args.n_train, data_home=args.data_home,
                        random_state=0, progress=False)
    Xt, info_t = load_dataset("polymnist", split="test", n_samples=args.n_test, data_home=args.data_home,
                              random_state=0, progress=False)
    labels = info_t["labels"]
    if args.classifiers == "pretrained":
        clfs = load_pretrained_classifiers(Path(args.data_home) / "polymnist_classifiers")
    else:
        clfs = train_classifiers(n_train=20000, n_test=1000, data_home=args.data_home, progress=False)
    real_acc = float((predict_digits(clfs, Xt) == labels[:, None]).mean())
    print(f"classifier accuracy on real test modalities: {real_acc:.3f}", flush=True)
    meta = {"settings_last": vars(args), "classifier_accuracy_real": real_acc,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                        "threads": args.threads}}
    results = {}
    for beta, d, lik in itertools.product(args.betas, args.latent_dims, args.likelihoods):
        key = (f"beta={beta:g} latent={d} lik={lik} n={args.n_train} ep={args.epochs} "
               f"enc={args.encoder} bs={args.batch_size} lr={args.lr:g} seed={args.seed} clf={args.classifiers}")
        est = GMRFMultiComponentVAE(latent_dim=d, beta=beta, likelihood=lik, encoder=args.encoder,
                                    decoder=args.encoder, max_epochs=args.epochs, batch_size=args.batch_size,
                                    lr=args.lr, refit_prior=False, random_state=args.seed)
        t0 = time.perf_counter()
        est.fit(X)
        secs = time.perf_counter() - t0
        entry = {"beta": beta, "latent_dim": d, "likelihood": lik, "n_train": args.n_train, "epochs": args.epochs,
                 "seed": args.seed, "encoder": args.encoder, "batch_size": args.batch_size, "lr": args.lr,
                 "fit_seconds": secs, "final_train_loss": float(est.history_[-1, "train_loss"]),
                 "learned_prior": evaluate(est, Xt, labels, clfs, args)}
        est._refit_prior(est._dataset(X.arrays))
        entry["refit_prior"] = evaluate(est, Xt, labels, clfs, args)
        entry["probe"] = digit_probe(est, X, info["labels"], Xt, labels)
        results[key] = entry
        _merge_json(Path(args.out), {key: entry}, meta)
        for prior in ("learned_prior", "refit_prior"):
            e = entry[prior]
            print(f"{key:<62} {prior:<13} cond {e['cond']:.3f}  cond_mean {e['cond_mean']:.3f}  "
                  f"cond_E[zU] {e['cond_regression_mean']:.3f}  "
                  f"uncond {e['uncond']:.3f}  recon {e['recon']:.3f}  prior_r2 {e['prior_r2']:.3f}  "
                  f"probe {entry['probe']:.3f}  fit {secs:.0f} s", flush=True)
    return results


def show(path: str) -> None:
    """Print every run stored in the JSON file as a markdown table."""
    runs = json.loads(Path(path).read_text())["runs"]
    print("| beta | latent | likelihood | encoder | batch | n_train x epochs | prior | cond | cond (mean) | "
          "cond (E[z_U]) | uncond | recon | prior R2 | probe | fit s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e in sorted(runs.values(), key=lambda e: (e["n_train"] * e["epochs"], e["likelihood"], e.get("encoder", "mlp"),
                                                   e.get("batch_size", 128), e["beta"], e["latent_dim"])):
        for prior in ("learned_prior", "refit_prior"):
            r = e[prior]
            print(f"| {e['beta']:g} | {e['latent_dim']} | {e['likelihood']} | {e.get('encoder', 'mlp')} | "
                  f"{e.get('batch_size', 128)} | {e['n_train']} x {e['epochs']} | {prior.split('_')[0]} | "
                  f"{r['cond']:.3f} | {r['cond_mean']:.3f} | {r.get('cond_regression_mean', float('nan')):.3f} | "
                  f"{r['uncond']:.3f} | {r['recon']:.3f} | "
                  f"{r['prior_r2']:.3f} | {e.get('probe', float('nan')):.3f} | {e['fit_seconds']:.0f} |")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--betas", type=float, nargs="+", default=[0.25, 1.0, 2.5, 5.0, 10.0])
    p.add_argument("--latent-dims", type=int, nargs="+", default=[16])
    p.add_argument("--likelihoods", nargs="+", default=["laplace"], choices=("laplace", "bernoulli", "gaussian"))
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--n-uncond", type=int, default=1000)
    p.add_argument("--known-sets", default="single", choices=("single", "all"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--encoder", default="mlp")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifiers", default="trained", choices=("trained", "pretrained"))
    p.add_argument("--data-home", default=os.environ.get("MCGEN_DATA", "../shared/data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/polymnist_coherence.json")
    p.add_argument("--show", action="store_true", help="only print the runs stored in --out as a table")
    args = p.parse_args(argv)
    if args.show:
        show(args.out)
        return {}
    return run(args)


if __name__ == "__main__":
    main()
