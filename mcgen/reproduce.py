"""Reproduce the paper's tables and figures: ``mcgen reproduce NAME [--quick]``.

- ``table1``: Table I, Copula: marginal Wasserstein-1 x 1000 per coordinate, unconditional and
  conditional, for the five models (also writes ``fig2`` from the first seed); built-in data;
- ``table2``: Table II, PolyMNIST: unconditional and conditional coherence, conditional SSIM (also
  writes ``fig3``); needs MNIST;
- ``table3``: Table III, BIKED images: full-bike SSIM and centre-of-mass Wasserstein of the bike
  completed from its frame (also writes ``fig4``); needs the BIKED tables;
- ``fig2``: Copula, the five models' samples against real rows (pairs of components);
- ``fig3``: PolyMNIST, modalities m1-m4 generated from m0 by the GMRF model;
- ``fig4``: BIKED, bikes completed from their frame by the GMRF model.

Every experiment has two protocols.  The default is the paper's (as far as the paper states it:
200 epochs on 10,000 Copula rows, 300 epochs on PolyMNIST and BIKED with the image networks,
three seeds): CPU-hours to GPU-days.  ``--quick`` is a documented CPU version (fewer rows,
epochs and one seed; :data:`PROTOCOLS` lists both) that reports the same columns, so a reader
can check the pipeline and the ranking in minutes; its numbers are not the paper's.  What the
paper does not state (its evaluation sizes, latent sizes for the images) follows
``benchmarks/`` and ``docs/results.md``.

The "GMRF MCVAE" here is the paper's model: one Gaussian prior (``prior_components=1``) and no
conditional-generation term (``cond_weight=0``).  mcgen's defaults add both (they complete real
data better, see ``docs/results.md``); ``--library-defaults`` runs them instead.  The baselines
run at their library defaults (their ``beta`` chosen by the paper's grid on the Copula data).

The paper's Figure 5 is not reproduced: the repository records no description of it.

Every run prints its table next to the paper's values, writes ``NAME.json`` (settings, seeds,
per-seed values, wall time) and the figure into ``--out``.  Loaded data come from
``$MCGEN_DATA`` (or ``--data-home``) as for :func:`mcgen.load_dataset`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mcgen.cli_types import int_at_least

__all__ = [
    "EXPERIMENTS",
    "PAPER",
    "PROTOCOLS",
    "Protocol",
    "add_parser",
    "biked_columns",
    "copula_columns",
    "estimator_params",
    "format_table",
    "polymnist_columns",
    "run",
]

MODELS = ("mvae", "mmvae", "mopoe", "mmvaeplus", "gmrf")
LABELS = {"gmrf": "GMRF MCVAE", "mvae": "MVAE", "mmvae": "MMVAE", "mopoe": "MoPoE-VAE", "mmvaeplus": "MMVAE+"}

#: The paper's reported values (model -> value; the order of its tables: MVAE, MMVAE, MoPoE-VAE,
#: MMVAE+, GMRF MCVAE).  Table II's conditional SSIM is given as one range for all models.
PAPER = {
    "table1": {
        "unconditional": {"mvae": 2.9, "mmvae": 4.8, "mopoe": 2.2, "mmvaeplus": 6.5, "gmrf": 0.86},
        "conditional": {"mvae": 3.1, "mmvae": 5.0, "mopoe": 5.9, "mmvaeplus": 5.1, "gmrf": 2.6},
    },
    "table2": {
        "unconditional_coherence": {"mvae": 0.139, "mmvae": 0.175, "mopoe": 0.018, "mmvaeplus": 0.210,
                                    "gmrf": 0.321},
        "conditional_coherence": {"mvae": 0.448, "mmvae": 0.517, "mopoe": 0.475, "mmvaeplus": 0.856, "gmrf": 0.869},
        "conditional_ssim": "0.993-0.995 (all models)",
    },
    "table3": {
        "ssim_full_bike": {"mvae": 0.53, "mmvae": 0.50, "mopoe": 0.53, "mmvaeplus": 0.54, "gmrf": 0.64},
        "com_wasserstein": {"mvae": 0.46, "mmvae": 0.47, "mopoe": 0.49, "mmvaeplus": 0.51, "gmrf": 0.31},
    },
}


@dataclass(frozen=True)
class Protocol:
    """What one experiment trains and evaluates (the same for every model).

    Attributes
    ----------
    rows : int or None
        Training rows (Copula: rows drawn; PolyMNIST: training tuples; BIKED: designs loaded,
        of which ``test_fraction`` are held out); ``None``: all.
    test_rows : int
        Evaluation rows (Copula: held-out rows, and the size of the noise-floor sample;
        PolyMNIST: test tuples).
    epochs, batch_size : int
        ``max_epochs`` and ``batch_size`` of every model.
    seeds : tuple of int
        One fit per model and seed.
    latent : int
        Latent size per component of the GMRF model; the baselines get the paper's sizes
        (Copula) or the same total (images, see :func:`estimator_params`).
    estimator : dict
        Further parameters of every model (networks, likelihood).
    load : dict
        Keyword arguments of :func:`mcgen.load_dataset`.
    test_fraction : float
        BIKED only: held-out share of the designs.
    classifiers : dict
        PolyMNIST only: ``train_classifiers`` sizes of the coherence classifiers.
    note : str
        One line saying where the protocol comes from.
    """

    rows: int | None
    test_rows: int
    epochs: int
    batch_size: int
    seeds: tuple[int, ...]
    latent: int
    estimator: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)
    test_fraction: float = 0.25
    classifiers: dict = field(default_factory=lambda: {"n_train": 20_000, "n_test": 1000, "max_epochs": 5})
    note: str = ""


_IMAGE_NETS = {"encoder": "auto", "decoder": "auto"}  # ResNets for 28 x 28 and 64 x 64
_MLP = {"encoder": "mlp", "decoder": "mlp"}

#: ``PROTOCOLS[experiment][mode]``, mode ``"paper"`` (default), ``"quick"`` (``--quick``) or
#: ``"tiny"`` (seconds; for the test suite).
PROTOCOLS = {
    "copula": {
        "paper": Protocol(10_000, 10_000, 200, 256, (0, 1, 2), 2,
                          note="the paper's: 10,000 rows, 200 epochs, batch 256, 256-256 networks, 3 seeds; "
                               "10,000 evaluation rows (the paper does not state its evaluation size)"),
        "quick": Protocol(10_000, 2000, 25, 256, (0,), 2,
                          note="quick CPU version: the paper's 10,000 rows and networks, 25 epochs, 1 seed, 2,000 "
                               "evaluation rows"),
        "tiny": Protocol(200, 200, 1, 64, (0,), 2, note="smoke test"),
    },
    "polymnist": {
        "paper": Protocol(None, 10_000, 300, 256, (0, 1, 2), 16, {**_IMAGE_NETS}, {"progress": False},
                          note="the paper's: 60,000 tuples, 300 epochs, ResNets, 3 seeds (a GPU job)"),
        "quick": Protocol(3000, 1000, 5, 128, (0,), 16, {**_MLP}, {"progress": False},
                          note="quick CPU version: 3,000 tuples, 5 epochs, fully connected nets, 1 seed"),
        "tiny": Protocol(64, 32, 1, 32, (0,), 2, {**_MLP}, {"progress": False},
                         classifiers={"n_train": 64, "n_test": 32, "max_epochs": 1}, note="smoke test"),
    },
    "biked": {
        "paper": Protocol(None, 0, 300, 64, (0, 1, 2), 8, {**_IMAGE_NETS, "likelihood": "bernoulli"},
                          {"size": 64, "progress": False}, 0.1,
                          note="the paper's: all valid designs at 64 x 64, 300 epochs, ResNets, 3 seeds "
                               "(a GPU job)"),
        "quick": Protocol(2000, 0, 20, 64, (0,), 8, {**_MLP, "likelihood": "bernoulli"},
                          {"size": 32, "progress": False}, 0.25,
                          note="quick CPU version: 2,000 designs at 32 x 32, 20 epochs, fully connected nets, "
                               "1 seed (docs/results.md's CPU setting at 20 of its 30 epochs)"),
        "tiny": Protocol(48, 0, 1, 16, (0,), 2, {**_MLP, "likelihood": "bernoulli"},
                         {"size": 32, "progress": False}, 0.25, note="smoke test"),
    },
}

#: name -> (dataset protocol, models fitted, what is produced)
EXPERIMENTS = {
    "table1": ("copula", MODELS, "Table I: Copula, marginal W1 x 1000"),
    "table2": ("polymnist", MODELS, "Table II: PolyMNIST coherence and SSIM"),
    "table3": ("biked", MODELS, "Table III: BIKED, bike completed from its frame"),
    "fig2": ("copula", MODELS, "Figure 2: Copula samples of the five models"),
    "fig3": ("polymnist", ("gmrf",), "Figure 3: PolyMNIST, m1-m4 generated from m0"),
    "fig4": ("biked", ("gmrf",), "Figure 4: BIKED, bikes completed from their frame"),
}
_FIGURE_OF = {"table1": "fig2", "table2": "fig3", "table3": "fig4", "fig2": "fig2", "fig3": "fig3", "fig4": "fig4"}


# ------------------------------------------------------------------------------------------------
# estimators
# ------------------------------------------------------------------------------------------------
def estimator_params(model: str, dataset: str, protocol: Protocol, M: int, seed: int,
                     library_defaults: bool = False) -> dict:
    """Constructor parameters of ``model`` under ``protocol``.

    Copula: the paper's latent sizes (2 per component for the GMRF model, 3 shared for the
    baselines, MMVAE+ 3 shared and 1 private per component).  Images: ``d = protocol.latent``
    per component for the GMRF model and the same total for the baselines (``d M`` shared;
    MMVAE+ ``max(1, d // 4)`` private per component and the rest shared), as in
    ``benchmarks/completion.py``.

    Parameters
    ----------
    model : str
        One of ``"gmrf"``, ``"mvae"``, ``"mmvae"``, ``"mopoe"``, ``"mmvaeplus"``.
    dataset : str
        ``"copula"``, ``"polymnist"`` or ``"biked"``.
    protocol : Protocol
    M : int
        Number of components.
    seed : int
        ``random_state``.
    library_defaults : bool, default=False
        Keep the GMRF model's library defaults instead of the paper's single Gaussian prior
        without conditional-generation term.

    Returns
    -------
    dict
    """
    params = dict(max_epochs=protocol.epochs, batch_size=protocol.batch_size, lr=1e-3, random_state=seed,
                  **protocol.estimator)
    d = protocol.latent
    if model == "gmrf":
        params["latent_dim"] = d
        if not library_defaults:
            params.update(prior_components=1, cond_weight=0.0)
    elif dataset == "copula":
        params["latent_dim"] = 3
        if model == "mmvaeplus":
            params["private_dim"] = 1
    elif model == "mmvaeplus":
        p = max(1, d // 4)
        params.update(latent_dim=M * max(1, d - p), private_dim=p)
    else:
        params["latent_dim"] = d * M
    return params


def make_estimator(model: str, params: dict):
    """The estimator ``model`` with ``params``."""
    import mcgen

    classes = {"gmrf": mcgen.GMRFMultiComponentVAE, "mvae": mcgen.MVAE, "mmvae": mcgen.MMVAE,
               "mopoe": mcgen.MoPoEVAE, "mmvaeplus": mcgen.MMVAEPlus}
    return classes[model](**params)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def load_data(dataset: str, protocol: Protocol, data_home=None) -> dict:
    """Training and evaluation rows of ``dataset``.

    Returns
    -------
    dict
        ``train``, ``test`` (Components); Copula also ``floor`` (a second independent real sample
        for the noise floor); PolyMNIST also ``labels`` (of the test tuples).
    """
    import mcgen

    if dataset == "copula":
        X, _ = mcgen.load_dataset("copula", n_samples=protocol.rows, random_state=0)
        Xt, _ = mcgen.load_dataset("copula", n_samples=protocol.test_rows, random_state=1)
        Xf, _ = mcgen.load_dataset("copula", n_samples=protocol.test_rows, random_state=2)
        return {"train": X, "test": Xt, "floor": Xf}
    if dataset == "polymnist":
        X, _ = mcgen.load_dataset("polymnist", split="train", n_samples=protocol.rows, data_home=data_home,
                                  random_state=0, **protocol.load)
        Xt, info = mcgen.load_dataset("polymnist", split="test", n_samples=protocol.test_rows, data_home=data_home,
                                      random_state=0, **protocol.load)
        return {"train": X, "test": Xt, "labels": info["labels"]}
    from sklearn.model_selection import train_test_split

    X, _ = mcgen.load_dataset("biked_images", n_samples=protocol.rows, data_home=data_home, random_state=0,
                              **protocol.load)
    idx_train, idx_test = train_test_split(np.arange(len(X)), test_size=protocol.test_fraction, random_state=0)
    return {"train": X[idx_train], "test": X[idx_test]}


def polymnist_classifiers(protocol: Protocol, data_home=None) -> list:
    """The digit classifiers of the coherence columns: ``train_classifiers`` with the protocol's
    ``classifiers`` settings (20,000 tuples, 5 epochs, as ``benchmarks/completion.py``; cached
    after the first run)."""
    from mcgen.metrics.classifiers import train_classifiers

    return train_classifiers(**protocol.classifiers, data_home=data_home, progress=False)


# ------------------------------------------------------------------------------------------------
# metrics of one fitted model
# ------------------------------------------------------------------------------------------------
def copula_columns(est, X_test, seed: int) -> dict:
    """Table I's columns: marginal W1 x 1000 per coordinate (averaged over components) of
    unconditional samples and of completions from each single observed component (averaged over
    the generated components, then over the observed one)."""
    from mcgen.metrics import marginal_wasserstein

    ref = [np.asarray(a) for a in X_test.arrays]
    M = len(ref)
    gen = est.sample(len(ref[0]), random_state=seed)
    unc = marginal_wasserstein(gen, ref).details["per_coordinate"].mean(0) * 1000
    per = []
    for k in range(M):
        full = est.predict_missing([ref[k]], known=[k], random_state=seed)
        unknown = [i for i in range(M) if i != k]
        per.append(marginal_wasserstein([full[i] for i in unknown],
                                        [ref[i] for i in unknown]).details["per_coordinate"].mean(0))
    cond = np.mean(per, 0) * 1000
    return {"unconditional": unc.tolist(), "conditional": cond.tolist(),
            "unconditional_mean": float(unc.mean()), "conditional_mean": float(cond.mean())}


def polymnist_columns(est, data: dict, classifiers, seed: int) -> dict:
    """Table II's columns: unconditional coherence (rows of ``sample()`` whose five digits agree),
    conditional coherence and SSIM from each single observed modality (mean over the generated
    modalities, then over the observed one)."""
    from mcgen.metrics import conditional_coherence, conditional_ssim, unconditional_coherence

    X = data["test"]
    gen = est.sample(len(X), random_state=seed)
    return {"unconditional_coherence": unconditional_coherence(gen, classifiers).value,
            "conditional_coherence": conditional_coherence(est, X, data["labels"], classifiers, known_sets="single",
                                                           random_state=seed).value,
            "conditional_ssim": conditional_ssim(est, X, known_sets="single", random_state=seed).value}


def biked_columns(est, X_test, seed: int) -> dict:
    """Table III's columns for the bike completed from its frame (one completion per design):
    SSIM of the full bike (pixel-wise maximum of the five parts) and the joint centre-of-mass
    Wasserstein distance of the completed bikes against the real ones."""
    from mcgen.metrics import centre_of_mass_wasserstein, ssim

    ref = [np.asarray(a) for a in X_test.arrays]
    full = est.predict_missing([ref[0]], known=[0], random_state=seed)
    missing = list(range(1, len(ref)))
    s = ssim(full, ref, components=missing, assembly="max")
    return {"ssim_full_bike": s.details["assembly"], "ssim_generated": s.value,
            "com_wasserstein": centre_of_mass_wasserstein(full, ref, random_state=seed).value}


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def copula_figure(real, samples: dict, path) -> object:
    """Figure 2: real rows and each model's samples in three planes (Dim 1 of components 1-2 and
    1-3: a negative and a positive dependence; Dim 2 of components 1-2)."""
    plt = _plt()
    planes = [(0, 1, 0), (0, 2, 0), (0, 1, 1)]
    cols = [("real", real)] + [(LABELS[m], s) for m, s in samples.items()]
    fig, axes = plt.subplots(len(planes), len(cols), figsize=(2.1 * len(cols), 2.1 * len(planes)), squeeze=False)
    for c, (title, arrays) in enumerate(cols):
        for r, (i, j, dim) in enumerate(planes):
            ax = axes[r, c]
            a, b = np.asarray(arrays[i])[:2000, dim], np.asarray(arrays[j])[:2000, dim]
            ax.scatter(a, b, s=1, alpha=0.4, color="0.4" if c == 0 else "tab:blue", rasterized=True)
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(-0.05, 1.05)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"x{i + 1} vs x{j + 1}, Dim {dim + 1}", fontsize=8)
    fig.suptitle("Copula: real rows and unconditional samples", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def polymnist_figure(given, generated, labels, path) -> object:
    """Figure 3: the conditioning modality m0 (first row), then m1-m4 generated from it."""
    plt = _plt()
    rows = [given, *generated]
    n = len(given)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.0 * n + 0.9, 1.0 * len(rows)), squeeze=False)
    for r, imgs in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(np.asarray(imgs[c]).transpose(1, 2, 0), 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(labels[c]), fontsize=9)
        axes[r, 0].set_ylabel("m0 given" if r == 0 else f"m{r}", fontsize=9)
    fig.suptitle("GMRF MCVAE on PolyMNIST: m1-m4 generated from m0", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def biked_figure(given, completions, real, path) -> object:
    """Figure 4: the frame, completed bikes (given part white, generated parts orange), the real bike."""
    plt = _plt()
    n, k = completions.shape[:2]
    fig, axes = plt.subplots(k + 2, n, figsize=(1.5 * n + 1.0, 1.5 * (k + 2)), squeeze=False)
    orange = np.array([1.0, 0.55, 0.1])
    for c in range(n):
        panels = [np.repeat(given[c][..., None], 3, -1)]
        panels += [np.clip(np.maximum(completions[c, j][..., None] * orange, given[c][..., None]), 0, 1)
                   for j in range(k)]
        panels.append(np.repeat(real[c][..., None], 3, -1))
        for r, img in enumerate(panels):
            axes[r, c].imshow(img, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    axes[0, 0].set_ylabel("given: frame", fontsize=8)
    for j in range(k):
        axes[1 + j, 0].set_ylabel(f"completion {j + 1}", fontsize=8)
    axes[-1, 0].set_ylabel("real bike", fontsize=8)
    fig.suptitle("GMRF MCVAE on BIKED: the frame given (white), the other parts generated (orange)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def _figure_data(dataset: str, est, data: dict, seed: int) -> dict:
    """What the experiment's figure needs from one fitted model (small arrays)."""
    X = data["test"]
    if dataset == "copula":
        return {"samples": [np.asarray(a) for a in est.sample(2000, random_state=seed)]}
    if dataset == "polymnist":
        labels = data["labels"]
        pick = np.array([np.flatnonzero(labels == d)[0] for d in range(10) if np.any(labels == d)])
        given = np.asarray(X.arrays[0])[pick]
        out = est.predict_missing([given], known=[0], random_state=seed)
        return {"given": given, "generated": [np.asarray(a) for a in out[1:]], "labels": labels[pick]}
    ref = [np.asarray(a)[:6] for a in X.arrays]
    out = est.predict_missing([ref[0]], known=[0], n_samples=3, random_state=seed)  # (n, 3, 1, H, W) each
    return {"given": ref[0][:, 0], "completions": np.max([np.asarray(out[i])[:, :, 0] for i in range(1, len(ref))], 0),
            "real": np.max([a[:, 0] for a in ref], 0)}


# ------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------
def _fit_and_score(name: str, model: str, seed: int, protocol: Protocol, data_home, library_defaults: bool,
                   want_figure: bool, want_table: bool) -> dict:
    """One model and seed: fit, the table's columns, and the figure's data (a process of its own
    with ``--n-jobs``, hence loading its data itself)."""
    import torch

    torch.set_num_threads(1)
    dataset = EXPERIMENTS[name][0]
    data = load_data(dataset, protocol, data_home)
    M = data["train"].n_components
    params = estimator_params(model, dataset, protocol, M, seed, library_defaults)
    est = make_estimator(model, params)
    t0 = time.perf_counter()
    est.fit(data["train"])
    fit_s = time.perf_counter() - t0
    out = {"model": model, "seed": seed, "params": {k: v for k, v in params.items() if k != "random_state"},
           "fit_seconds": fit_s, "epochs_run": len(est.history_), "seconds_per_epoch": fit_s / len(est.history_)}
    if want_table:
        if dataset == "copula":
            out["columns"] = copula_columns(est, data["test"], seed)
        elif dataset == "polymnist":
            out["columns"] = polymnist_columns(est, data, polymnist_classifiers(protocol, data_home), seed)
        else:
            out["columns"] = biked_columns(est, data["test"], seed)
    if want_figure:
        out["figure_data"] = _figure_data(dataset, est, data, seed)
    return out


def _mean_sd(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _fmt(values, digits: int) -> str:
    mean, sd = _mean_sd(values)
    return f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def summarise(name: str, runs: list[dict]) -> dict:
    """Mean and sd over seeds of every column, per model."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == model and "columns" in r]
        if not rs:
            continue
        keys = [k for k, v in rs[0]["columns"].items() if not isinstance(v, list)]
        cell = {k: dict(zip(("mean", "sd"), _mean_sd([r["columns"][k] for r in rs]))) for k in keys}
        for k in (k for k, v in rs[0]["columns"].items() if isinstance(v, list)):
            arr = np.array([r["columns"][k] for r in rs])
            cell[k] = {"mean": arr.mean(0).tolist(), "sd": (arr.std(0, ddof=1) if len(rs) > 1 else 0 * arr[0]).tolist()}
        cell["seconds_per_epoch"] = _mean_sd([r["seconds_per_epoch"] for r in rs])[0]
        out[model] = cell
    return out


def format_table(name: str, runs: list[dict], floor: dict | None = None) -> str:
    """The table of ``name`` as text: our values (mean ± sd over seeds) next to the paper's."""
    paper = PAPER[name]
    lines = []
    models = list(dict.fromkeys(r["model"] for r in runs if "columns" in r))
    by = {m: [r["columns"] for r in runs if r["model"] == m and "columns" in r] for m in models}
    spe = {m: _mean_sd([r["seconds_per_epoch"] for r in runs if r["model"] == m])[0] for m in models}
    if name == "table1":
        w = 15 if any(len(c) > 1 for c in by.values()) else 12  # room for "mean ± sd"
        head = (f"{'model':11s} | {'uncond Dim 1':>{w}s} {'Dim 2':>{w}s} {'mean':>{w}s} {'paper':>6s} | "
                f"{'cond Dim 1':>{w}s} {'Dim 2':>{w}s} {'mean':>{w}s} {'paper':>6s} | {'s/epoch':>7s}")
        lines += ["Marginal Wasserstein-1 x 1000 (lower is better)", head, "-" * len(head)]
        for m in models:
            c = by[m]
            cells = []
            for kind in ("unconditional", "conditional"):
                cells += [_fmt([x[kind][0] for x in c], 2).rjust(w), _fmt([x[kind][1] for x in c], 2).rjust(w),
                          _fmt([x[f"{kind}_mean"] for x in c], 2).rjust(w), f"{paper[kind][m]:6.2f}"]
            lines.append(f"{LABELS[m]:11s} | {' '.join(cells[:4])} | {' '.join(cells[4:])} | {spe[m]:7.2f}")
        if floor is not None:
            f0, f1 = floor["per_coordinate"]
            lines.append(f"{'noise floor':11s} | {f0:{w}.2f} {f1:{w}.2f} {floor['mean']:{w}.2f}   (two independent "
                         f"real samples of {floor['rows']:,} rows: values near it cannot be told from real data)")
    elif name == "table2":
        cols = [("unconditional_coherence", "uncond. coherence (+)"), ("conditional_coherence", "cond. coherence (+)"),
                ("conditional_ssim", "cond. SSIM (+)")]
        head = f"{'model':11s} | " + " | ".join(f"{t:>22s} {'paper':>6s}" for _, t in cols) + f" | {'s/epoch':>7s}"
        lines += ["PolyMNIST; conditional columns: from each single observed modality", head, "-" * len(head)]
        for m in models:
            cells = []
            for key, _ in cols:
                p = paper[key]
                cells.append(f"{_fmt([x[key] for x in by[m]], 3):>22s} {p[m] if isinstance(p, dict) else '':>6}")
            lines.append(f"{LABELS[m]:11s} | " + " | ".join(cells) + f" | {spe[m]:7.2f}")
        lines.append(f"paper's conditional SSIM: {paper['conditional_ssim']}")
    else:
        cols = [("ssim_full_bike", "full-bike SSIM (+)"), ("com_wasserstein", "centre-of-mass W (-)")]
        head = f"{'model':11s} | " + " | ".join(f"{t:>22s} {'paper':>6s}" for _, t in cols) + f" | {'s/epoch':>7s}"
        lines += ["BIKED images, the bike completed from its frame (one completion per design)", head, "-" * len(head)]
        for m in models:
            cells = [f"{_fmt([x[key] for x in by[m]], 3):>22s} {paper[key][m]:6.2f}" for key, _ in cols]
            lines.append(f"{LABELS[m]:11s} | " + " | ".join(cells) + f" | {spe[m]:7.2f}")
    return "\n".join(lines)


def copula_floor(rows: int) -> dict:
    """Table I's noise floor: marginal W1 x 1000 between two independent real samples of ``rows``."""
    import mcgen
    from mcgen.metrics import marginal_wasserstein

    a, _ = mcgen.load_dataset("copula", n_samples=rows, random_state=1)
    b, _ = mcgen.load_dataset("copula", n_samples=rows, random_state=2)
    per = marginal_wasserstein(list(a.arrays), list(b.arrays)).details["per_coordinate"].mean(0) * 1000
    return {"per_coordinate": per.tolist(), "mean": float(per.mean()), "rows": rows}


def run(name: str, *, quick: bool = False, tiny: bool = False, out=".", data_home=None, n_jobs: int = 1,
        seeds=None, epochs: int | None = None, rows: int | None = None, library_defaults: bool = False,
        log=print) -> dict:
    """Run experiment ``name`` and write its JSON and figure into ``out``.

    Parameters
    ----------
    name : str
        A key of :data:`EXPERIMENTS`.
    quick : bool, default=False
        The quick CPU protocol instead of the paper's.
    tiny : bool, default=False
        A protocol that runs in seconds (tests).
    out : path-like, default="."
        Folder of ``NAME.json`` and the figure (created if needed).
    data_home : path-like, optional
        Folder of the raw data (default ``$MCGEN_DATA``, else ``~/.mcgen_data``).
    n_jobs : int, default=1
        Fits run in parallel processes (one torch thread each).
    seeds : sequence of int, optional
        Replace the protocol's seeds.
    epochs, rows : int, optional
        Replace the protocol's epochs and training rows (e.g. a longer CPU run than ``quick``).
    library_defaults : bool, default=False
        The GMRF model at mcgen's defaults instead of the paper's model.
    log : callable, default=print
        Receives the progress lines and the table.

    Returns
    -------
    dict
        What ``NAME.json`` holds: ``experiment``, ``protocol``, ``runs`` (per model and seed),
        ``summary``, ``paper``, ``figure`` (its path), ``wall_seconds``, ``machine``.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    mode = "tiny" if tiny else "quick" if quick else "paper"
    dataset, models, title = EXPERIMENTS[name]
    protocol = PROTOCOLS[dataset][mode]
    if seeds is not None:
        protocol = replace(protocol, seeds=tuple(int(s) for s in seeds))
    if epochs is not None:
        protocol = replace(protocol, epochs=int(epochs))
    if rows is not None:
        protocol = replace(protocol, rows=int(rows))
    is_table = name.startswith("table")
    seed_list = protocol.seeds if is_table else protocol.seeds[:1]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"{title}\nprotocol ({mode}): {protocol.note}")
    t0 = time.perf_counter()
    tasks = [(model, seed) for seed in seed_list for model in models]
    first = seed_list[0]
    args = [(name, m, s, protocol, data_home, library_defaults, s == first, is_table) for m, s in tasks]
    if n_jobs == 1:
        runs = []
        for a in args:
            runs.append(_fit_and_score(*a))
            r = runs[-1]
            log(f"  {LABELS[r['model']]} seed {r['seed']}: fit {r['fit_seconds']:.1f} s "
                f"({r['seconds_per_epoch']:.2f} s/epoch)")
    else:
        from joblib import Parallel, delayed

        runs = Parallel(n_jobs=n_jobs)(delayed(_fit_and_score)(*a) for a in args)
    figure_runs = {r["model"]: r.pop("figure_data") for r in runs if "figure_data" in r}
    fig_name = _FIGURE_OF[name]
    fig_path = out / f"{fig_name}.png"
    if dataset == "copula":
        data = load_data(dataset, protocol, data_home)
        copula_figure([np.asarray(a) for a in data["test"].arrays],
                      {m: d["samples"] for m, d in figure_runs.items()}, fig_path)
    elif dataset == "polymnist":
        d = figure_runs["gmrf"]
        polymnist_figure(d["given"], d["generated"], d["labels"], fig_path)
    else:
        d = figure_runs["gmrf"]
        biked_figure(d["given"], d["completions"], d["real"], fig_path)
    _plt().close("all")
    result = {"experiment": name, "title": title, "mode": mode, "protocol": asdict(protocol),
              "library_defaults": library_defaults, "runs": runs, "figure": str(fig_path)}
    if is_table:
        floor = copula_floor(protocol.test_rows) if dataset == "copula" else None
        result.update(summary=summarise(name, runs), paper=PAPER[name], noise_floor=floor)
        log("\n" + format_table(name, runs, floor))
    result["wall_seconds"] = time.perf_counter() - t0
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "n_jobs": n_jobs}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=_json_default))
    log(f"\nwrote {out / (name + '.json')} and {fig_path} ({result['wall_seconds']:.0f} s)")
    return result


def _json_default(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


# ------------------------------------------------------------------------------------------------
# command line (``mcgen reproduce``)
# ------------------------------------------------------------------------------------------------
def _command(args: argparse.Namespace) -> int:
    if args.name == "fig5":
        print("mcgen reproduce: the paper's Figure 5 is not reproduced (the repository records no description "
              "of it); available: " + ", ".join(EXPERIMENTS))
        return 2
    run(args.name, quick=args.quick, tiny=args.tiny, out=args.out, data_home=args.data_home, n_jobs=args.n_jobs,
        seeds=args.seeds, epochs=args.epochs, rows=args.rows, library_defaults=args.library_defaults)
    return 0



def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reproduce`` subcommand to the ``mcgen`` command's subparsers."""
    p = subparsers.add_parser(
        "reproduce", help="reproduce the paper's tables and figures (table1, table2, table3, fig2, fig3, fig4)",
        description="Run the paper's protocol (or --quick, a documented CPU version) for one table or figure, "
                    "print the table next to the paper's values and write its JSON and figure.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="quick protocols:\n" + "\n".join(f"  {d}: {PROTOCOLS[d]['quick'].note}" for d in PROTOCOLS)
               + "\npaper protocols:\n" + "\n".join(f"  {d}: {PROTOCOLS[d]['paper'].note}" for d in PROTOCOLS))
    p.add_argument("name", choices=[*EXPERIMENTS, "fig5"], help="what to reproduce")
    p.add_argument("--quick", action="store_true", help="the quick CPU protocol (minutes) instead of the paper's")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # seconds; the test suite's setting
    p.add_argument("--out", default="mcgen_reproduce", help="folder of the JSON and figure (default: %(default)s)")
    p.add_argument("--data-home", default=None, help="folder of the raw data (default $MCGEN_DATA or ~/.mcgen_data)")
    p.add_argument("--n-jobs", type=int_at_least(1), default=1,
                   help="fits in parallel processes, one torch thread each")
    p.add_argument("--seeds", type=int_at_least(0), nargs="+", default=None, help="replace the protocol's seeds")
    p.add_argument("--epochs", type=int_at_least(1), default=None, help="replace the protocol's epochs")
    p.add_argument("--rows", type=int_at_least(2), default=None,
                   help="replace the protocol's training rows (tuples, designs)")
    p.add_argument("--library-defaults", action="store_true",
                   help="the GMRF model at mcgen's defaults (mixture prior, conditional term) instead of the paper's")
    p.set_defaults(func=_command)
    return p
