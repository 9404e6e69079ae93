"""Benchmark: all five estimators completing real multi-component data (issue 11).

For every dataset, seed and model, one estimator is trained on 75 % of the rows and asked to
complete the other 25 %:

- ``leave_one_out``: every component from all the others
  (``completion_metrics(..., known="leave_one_out")``);
- ``from_one``: every component alone observed, the others completed (``known="single"``);
- ``from_frame`` (``biked_images`` only, the paper's Table III): the bike completed from its frame.

Each task reports :func:`mcgen.metrics.completion.completion_metrics` over ``--n-completions``
completions per row (energy score, lower is better, normalised by the data's scale; R2 of the
mean of the completions and of a single completion; coverage of the central 50 % and 90 %
intervals), averaged over the observed subsets (``per_known`` keeps each subset).  Further
columns use the first completion of every row:

- labelled data (``digits``, ``wdbc``): ``coherence``, the accuracy of
  ``make_pipeline(StandardScaler(), LogisticRegression())`` trained on the real training rows
  (all components concatenated and flattened) on the completed test rows, next to its accuracy
  on the real test rows (``ceiling``) and on test rows whose missing components are replaced by
  their training mean (``mean_imputation``: what the observed components alone give; the
  classifier also reads the observed components, so only the gap above this line is the
  completions' doing);
- ``polymnist``: ``coherence``, the PolyMNIST protocol (:func:`mcgen.metrics.coherence`): the
  per-modality digit classifiers of ``train_classifiers`` read the generated modalities only;
  ``ceiling`` is their accuracy on the real test modalities;
- ``biked_images``: SSIM of the generated components and of the full bike (pixel-wise max of
  the five parts; :func:`mcgen.metrics.ssim`) against the real rows, and the joint
  centre-of-mass Wasserstein distance (:func:`mcgen.metrics.centre_of_mass_wasserstein`) of the
  completed bikes against the real ones (the metrics of ``conditional_ssim`` and
  ``conditional_centre_of_mass_wasserstein``, computed from one completion).

Equal terms.  Every model gets the dataset's ``max_epochs``, ``batch_size`` and ``lr`` (and, for
the image datasets, the same networks and likelihood); everything else is each estimator's
library default (``beta`` included: nothing is tuned here).  Latent capacity is ``d`` per
component: the GMRF model gets ``latent_dim=d`` (total ``d M``), MVAE, MMVAE and MoPoE-VAE one
shared latent of ``d M``; MMVAE+ gets ``private_dim = p = max(1, d // 4)`` per component and a
shared latent of ``M (d - p)``, so its total ``latent_dim + M private_dim`` is also ``d M``
(with ``--param mmvaeplus:private_dim=P`` alone the shared size follows, ``M (d - P)``).

Settings per dataset (:data:`SETTINGS`; ``--quick`` the tiny variants):

============== ============================== ====== ===== ====== =========================
dataset        rows (train / test)            epochs batch latent networks, likelihood
============== ============================== ====== ===== ====== =========================
copula         8,000 (6,000 / 2,000)          60     256   2      defaults
digits         1,797 (1,347 / 450), 4 x 4 x 4 60     64    4      defaults
biked_param.   4,011 (3,008 / 1,003)          60     128   4      defaults
wdbc           569 (426 / 143)                60     32    4      defaults
biked_images   2,000 (1,500 / 500), 32 x 32   30     64    8      mlp, bernoulli
polymnist      10,000 train / 1,000 test      10     128   16     mlp, gaussian (default)
============== ============================== ====== ===== ====== =========================

``--epochs``, ``--batch-size``, ``--rows`` and ``--latent`` replace the value of every dataset
run.  Measured on the shared 2-core machine (one thread): ``wdbc`` takes 4-7 s per fit at 30
epochs; one PolyMNIST step of 128 tuples 0.13-0.42 s.  Expect roughly 1-2 min per fit for the
other tabular sets and ``biked_images``, 2-6 min for PolyMNIST (plus, once, training and caching
its classifiers), so about 3 hours for everything with three seeds: split the work with
``--datasets`` and ``--tag``.

Splits are ``train_test_split(test_size=0.25, random_state=seed)`` (stratified on the labels of
labelled data); PolyMNIST uses its own train and test splits (fixed data; the seed changes the
models only), and its classifiers are ``train_classifiers(n_train=20000, n_test=1000)`` as in
``benchmarks/polymnist_coherence.py`` (cached).

``--param MODEL:key=value`` (repeatable; ``MODEL`` is a model name or ``all``; the value is read
with :func:`ast.literal_eval`, else kept as a string) overrides any estimator parameter, and
``--tag NAME`` writes ``benchmarks/results/completion_NAME.json``, so ablations do not
overwrite each other.  Every fit and every task runs in its own ``try``: an error is recorded in
the JSON and the benchmark goes on.  The JSON is rewritten after every fit.

JSON: ``command``, ``settings`` (the arguments), ``versions``, ``machine``, ``wall_seconds`` and
per dataset its ``settings``, ``n_train``/``n_test``, ``references`` (per seed: ``ceiling``,
``mean_imputation``), ``runs`` (per model and seed: ``params``, ``fit_seconds``, ``epochs_run``,
``final_train_loss``, ``total_latent``, ``error``, and per task every metric, ``per_known``,
``first_completion_per_known``, ``eval_seconds``) and ``summary`` (per task and model: ``mean``,
``sd`` (sample sd over seeds), ``n`` (finite values) and ``values`` of every metric).

    python benchmarks/completion.py --datasets wdbc digits copula biked_parametric
    MCGEN_DATA=../shared/data python benchmarks/completion.py --datasets biked_images polymnist
    python benchmarks/completion.py --datasets wdbc --models gmrf --param gmrf:beta=0.05 --tag beta005
    python benchmarks/completion.py --quick --datasets copula wdbc --seeds 0 --out /tmp/c.json   # smoke run
"""

import argparse
import ast
import json
import math
import os
import platform
import shlex
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

import mcgen
from mcgen.metrics.coherence import coherence
from mcgen.metrics.images import centre_of_mass_wasserstein, ssim

MODELS = ("gmrf", "mvae", "mmvae", "mopoe", "mmvaeplus")
LABELS = {"gmrf": "GMRF MCVAE", "mvae": "MVAE", "mmvae": "MMVAE", "mopoe": "MoPoE-VAE", "mmvaeplus": "MMVAE+"}
CLASSES = {"gmrf": mcgen.GMRFMultiComponentVAE, "mvae": mcgen.MVAE, "mmvae": mcgen.MMVAE,
           "mopoe": mcgen.MoPoEVAE, "mmvaeplus": mcgen.MMVAEPlus}
DATASETS = ("copula", "digits", "biked_parametric", "wdbc", "biked_images", "polymnist")
#: completion_metrics' ``known`` argument of every task (``from_frame``: biked_images only).
TASKS = {"leave_one_out": "leave_one_out", "from_one": "single", "from_frame": [[0]]}
TASK_TITLES = {"leave_one_out": "each component from all the others",
               "from_one": "each component alone observed, the others completed",
               "from_frame": "the bike completed from its frame (Table III)"}
#: completion_metrics' summary keys, and whether higher is better.
COMPLETION_KEYS = {"energy_score": False, "r2_mean": True, "r2_single": True, "coverage_50": None,
                   "coverage_90": None}
#: Columns computed from the first completion, per kind of dataset.
EXTRA_KEYS = {"labelled": {"coherence": True}, "polymnist": {"coherence": True},
              "images": {"ssim_generated": True, "ssim_full_bike": True, "com_wasserstein": False}}


# (No ``from __future__ import annotations`` in this script: a dataclass with string annotations
# fails when the file is loaded by path without a sys.modules entry, as tests/test_benchmarks.py does.)
@dataclass
class Setting:
    """What one dataset is trained with (the same for every model).

    Attributes
    ----------
    rows : int or None
        Rows loaded (``None``: all); for ``polymnist`` the training tuples.
    epochs, batch_size : int
        ``max_epochs`` and ``batch_size`` of every model.
    latent : int
        Latent size ``d`` per component (see the module docstring for the baselines).
    test_rows : int or None
        ``polymnist`` only: tuples of its test split.
    estimator : dict
        Further parameters given to every model (networks, likelihood).
    load : dict
        Keyword arguments of ``load_dataset``.
    kind : str
        ``"vector"``, ``"labelled"``, ``"images"`` (biked) or ``"polymnist"``.
    classifier_rows, classifier_test_rows, classifier_epochs : int
        ``polymnist`` only: ``train_classifiers`` sizes.
    """

    rows: int | None
    epochs: int
    batch_size: int
    latent: int
    test_rows: int | None = None
    estimator: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)
    kind: str = "vector"
    classifier_rows: int = 20_000
    classifier_test_rows: int = 1000
    classifier_epochs: int = 5


def copula_setting(quick: bool) -> Setting:
    """The paper's synthetic Gaussian copula (4 x 2-D), its Table I networks and latent 2."""
    return Setting(rows=240 if quick else 8000, epochs=2 if quick else 60, batch_size=64 if quick else 256, latent=2)


def digits_setting(quick: bool) -> Setting:
    """scikit-learn's digits, four 4 x 4 quadrants, labelled.  Kept as (1, 4, 4) images (the
    networks are the same fully connected ones) so that the completion metrics scale each quadrant
    by one pooled standard deviation: per pixel, the rarely inked corner pixels (standard deviation
    near 0 on the test rows) dominated both the energy score and the R2, whose values then swung
    from -0.7 to 0.45 between two splits of the same model."""
    return Setting(rows=160 if quick else None, epochs=2 if quick else 60, batch_size=32 if quick else 64,
                   latent=4, kind="labelled")


def biked_parametric_setting(quick: bool) -> Setting:
    """BIKED parameters, five vector components (50, 18, 6, 3, 15 columns)."""
    return Setting(rows=160 if quick else None, epochs=2 if quick else 60, batch_size=32 if quick else 128,
                   latent=4, load={"progress": False})


def wdbc_setting(quick: bool) -> Setting:
    """Breast-cancer table, mean / se / worst components (3 x 10-D), labelled; small batches
    because 426 training rows make few steps per epoch."""
    return Setting(rows=160 if quick else None, epochs=2 if quick else 60, batch_size=32, latent=4,
                   kind="labelled")


def biked_images_setting(quick: bool) -> Setting:
    """BIKED rendered at 32 x 32 (five grayscale parts), fully connected nets, Bernoulli pixels
    (``examples/biked.py``'s CPU setting at a quarter of the pixels)."""
    return Setting(rows=64 if quick else 2000, epochs=1 if quick else 30, batch_size=16 if quick else 64,
                   latent=2 if quick else 8, kind="images",
                   estimator={"encoder": "mlp", "decoder": "mlp", "likelihood": "bernoulli"},
                   load={"size": 32, "progress": False})


def polymnist_setting(quick: bool) -> Setting:
    """PolyMNIST (five 3 x 28 x 28 modalities), fully connected nets, latent 16 per modality,
    the library's gaussian likelihood.  10,000 tuples x 10 epochs: 790 steps of 128, measured at
    0.13-0.42 s per step on one loaded core (MoPoE-VAE fastest, GMRF slowest), so 2-6 min per fit,
    well inside 20 min."""
    return Setting(rows=64 if quick else 10_000, test_rows=32 if quick else 1000, epochs=1 if quick else 10,
                   batch_size=16 if quick else 128, latent=2 if quick else 16, kind="polymnist",
                   estimator={"encoder": "mlp", "decoder": "mlp"}, load={"progress": False},
                   classifier_rows=256 if quick else 20_000, classifier_test_rows=64 if quick else 1000,
                   classifier_epochs=1 if quick else 5)


SETTINGS = {"copula": copula_setting, "digits": digits_setting, "biked_parametric": biked_parametric_setting,
            "wdbc": wdbc_setting, "biked_images": biked_images_setting, "polymnist": polymnist_setting}


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _split_names(values: list[str], valid: tuple[str, ...], what: str) -> list[str]:
    names = [v for item in values for v in item.split(",") if v]
    bad = [n for n in names if n not in valid]
    if bad:
        raise SystemExit(f"unknown {what} {', '.join(bad)}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(items: list[str] | None, models: list[str]) -> dict[str, dict]:
    """Read ``--param MODEL:key=value`` items into ``{model: {key: value}}``.

    Parameters
    ----------
    items : list of str or None
        ``MODEL:key=value``; ``MODEL`` is one of :data:`MODELS` or ``all``; the value is read
        with :func:`ast.literal_eval`, else kept as a string.
    models : list of str
        The models run (``all`` applies to these).

    Returns
    -------
    dict
        One dict of overrides per model of ``models``; later items win.

    Raises
    ------
    SystemExit
        For a malformed item, an unknown model or a parameter the estimator does not have.
    """
    out: dict[str, dict] = {m: {} for m in models}
    for item in items or []:
        head, sep, value = item.partition("=")
        model, colon, key = head.partition(":")
        if not sep or not colon or not key.strip():
            raise SystemExit(f"--param {item!r}: expected MODEL:key=value, e.g. gmrf:beta=0.05")
        model, key = model.strip(), key.strip()
        if model != "all" and model not in MODELS:
            raise SystemExit(f"--param {item!r}: unknown model {model!r}; valid: {', '.join(MODELS)}, all")
        for m in (models if model == "all" else [model]):
            valid = CLASSES[m]().get_params(deep=False)
            if key not in valid:
                raise SystemExit(f"--param {item!r}: {CLASSES[m].__name__} has no parameter {key!r}; "
                                 f"valid: {', '.join(sorted(valid))}")
            if m in out:
                out[m][key] = _literal(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), help=f"any of {', '.join(DATASETS)}")
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   help=f"comma- or space-separated subset of {', '.join(MODELS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-completions", type=int, default=10, help="completions per test row for completion_metrics")
    p.add_argument("--latent", type=int, default=None, help="latent size d per component (default: per dataset)")
    p.add_argument("--epochs", type=int, default=None, help="max_epochs of every model (default: per dataset)")
    p.add_argument("--batch-size", type=int, default=None, help="default: per dataset")
    p.add_argument("--rows", type=int, default=None, help="rows loaded (polymnist: training tuples); default: "
                                                          "per dataset")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--param", action="append", metavar="MODEL:KEY=VALUE",
                   help="override an estimator parameter, e.g. gmrf:beta=0.05 or all:likelihood='laplace' "
                        "(repeatable)")
    p.add_argument("--tag", default=None, help="names the output: benchmarks/results/completion_TAG.json")
    p.add_argument("--quick", action="store_true", help="tiny rows and epochs (a smoke run in seconds)")
    p.add_argument("--data-home", default=None, help="folder of the raw data (default $MCGEN_DATA or "
                                                     "~/.mcgen_data); biked_* and polymnist need it")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/completion[_TAG].json)")
    return p


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
@dataclass
class Split:
    """One dataset split for one seed, with what the label-based columns need."""

    X_train: mcgen.Components
    X_test: mcgen.Components
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def load_split(name: str, setting: Setting, seed: int, data_home) -> Split:
    """Load ``name`` and split it for ``seed`` (75/25; PolyMNIST: its own train/test splits).

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    setting : Setting
        Rows and loader options.
    seed : int
        Seed of the split (stratified on the labels where there are labels).
    data_home : path-like or None
        Passed to the loader.

    Returns
    -------
    Split
    """
    from sklearn.model_selection import train_test_split

    if name == "polymnist":
        X, info = mcgen.load_dataset("polymnist", split="train", n_samples=setting.rows, data_home=data_home,
                                     random_state=0, **setting.load)
        Xt, info_t = mcgen.load_dataset("polymnist", split="test", n_samples=setting.test_rows,
                                        data_home=data_home, random_state=0, **setting.load)
        return Split(X, Xt, info["labels"], info_t["labels"], info)
    kwargs = dict(setting.load)
    if setting.rows is not None:
        kwargs["n_samples"] = setting.rows
    X, info = mcgen.load_dataset(name, data_home=data_home, random_state=0, **kwargs)
    labels = info.get("labels")
    idx_train, idx_test = train_test_split(np.arange(len(X)), test_size=0.25, random_state=seed,
                                           stratify=labels)
    y_train = None if labels is None else labels[idx_train]
    y_test = None if labels is None else labels[idx_test]
    return Split(X[idx_train], X[idx_test], y_train, y_test, info)


def _flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a).reshape(len(a), -1) for a in arrays], 1)


def subsets(task: str, M: int) -> list[list[int]]:
    """The observed subsets of ``task`` for ``M`` components."""
    known = TASKS[task]
    if known == "leave_one_out":
        return [[j for j in range(M) if j != i] for i in range(M)]
    if known == "single":
        return [[i] for i in range(M)]
    return [list(s) for s in known]


class Labelled:
    """The real-data classifier of a labelled tabular dataset, fitted on the training rows.

    Parameters
    ----------
    split : Split
        Its training rows (all components flattened and concatenated) and labels fit
        ``make_pipeline(StandardScaler(), LogisticRegression())``; its test labels score.
    """

    def __init__(self, split: Split):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.split = split
        self.clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        self.clf.fit(_flat(split.X_train.arrays), split.y_train)
        self.means = [np.asarray(a, dtype=np.float64).mean(0) for a in split.X_train.arrays]

    def accuracy(self, arrays) -> float:
        """Accuracy on the test labels of rows given as a list of component arrays."""
        return float(self.clf.score(_flat(arrays), self.split.y_test))

    def ceiling(self) -> float:
        """Accuracy on the real test rows."""
        return self.accuracy(self.split.X_test.arrays)

    def mean_imputation(self, task: str) -> float:
        """Accuracy when the missing components are their training means (mean over subsets)."""
        ref = list(self.split.X_test.arrays)
        accs = []
        for known in subsets(task, len(ref)):
            rows = [a if i in known else np.broadcast_to(self.means[i], a.shape) for i, a in enumerate(ref)]
            accs.append(self.accuracy(rows))
        return float(np.mean(accs))


class PolyCoherence:
    """PolyMNIST's per-modality digit classifiers (``train_classifiers``, cached).

    Parameters
    ----------
    split : Split
        The test tuples and labels the ceiling is measured on.
    setting : Setting
        ``classifier_rows``, ``classifier_test_rows`` and ``classifier_epochs``.
    data_home : path-like or None
        Where MNIST is read and the classifiers are cached.
    """

    def __init__(self, split: Split, setting: Setting, data_home):
        from mcgen.metrics.classifiers import predict_digits, train_classifiers

        self.split = split
        self.clfs = train_classifiers(n_train=setting.classifier_rows, n_test=setting.classifier_test_rows,
                                      max_epochs=setting.classifier_epochs, data_home=data_home, progress=False)
        self._predict = predict_digits

    def ceiling(self) -> float:
        """Mean accuracy of the classifiers on the real test modalities."""
        pred = self._predict(self.clfs, self.split.X_test)
        return float((pred == self.split.y_test[:, None]).mean())


# ----------------------------------------------------------------------------------------------
# models and evaluation
# ----------------------------------------------------------------------------------------------
def estimator_params(name: str, setting: Setting, M: int, seed: int, lr: float, overrides: dict) -> dict:
    """The constructor parameters of model ``name`` (capacity rule of the module docstring).

    Parameters
    ----------
    name : str
        One of :data:`MODELS`.
    setting : Setting
        Epochs, batch size, latent size ``d`` and shared estimator options.
    M : int
        Number of components.
    seed : int
        ``random_state``.
    lr : float
        Learning rate.
    overrides : dict
        ``--param`` values; they win over everything else.

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        For an MMVAE+ private size that leaves no shared latent.
    """
    d = setting.latent
    params = dict(max_epochs=setting.epochs, batch_size=setting.batch_size, lr=lr, random_state=seed,
                  **setting.estimator)
    if name == "gmrf":
        params["latent_dim"] = d
    elif name == "mmvaeplus":
        p = int(overrides.get("private_dim", max(1, d // 4)))
        if d - p < 1 and "latent_dim" not in overrides:
            raise ValueError(f"MMVAE+ with private_dim={p} leaves no shared latent at d={d} per component")
        params.update(private_dim=p, latent_dim=M * (d - p))
    else:
        params["latent_dim"] = d * M
    params.update(overrides)
    return params


def _finite(x):
    """``x`` with non-finite floats replaced by ``None`` (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    return x


def evaluate_task(est, task: str, split: Split, setting: Setting, judge, args, seed: int) -> dict:
    """completion_metrics of ``task`` plus the first-completion columns of the dataset's kind.

    Parameters
    ----------
    est : fitted estimator
    task : str
        A key of :data:`TASKS`.
    split : Split
    setting : Setting
    judge : Labelled, PolyCoherence or None
        The classifiers of labelled data.
    args : argparse.Namespace
        ``n_completions``.
    seed : int
        ``random_state`` of every ``predict_missing`` call.

    Returns
    -------
    dict
        The summary keys of ``completion_metrics``, its ``per_known`` and, by kind, the
        first-completion metrics averaged over the subsets and ``first_completion_per_known``.
    """
    from mcgen.metrics.completion import completion_metrics

    res = completion_metrics(est, split.X_test, known=TASKS[task], n_completions=args.n_completions,
                             random_state=seed)
    out = {k: res[k] for k in COMPLETION_KEYS}
    out["per_known"] = res.get("per_known")
    if setting.kind not in ("labelled", "polymnist", "images"):
        return out
    ref = list(split.X_test.arrays)
    per = {}
    for known in subsets(task, len(ref)):
        full = est.predict_missing([ref[k] for k in known], known=known, random_state=seed)
        missing = [i for i in range(len(ref)) if i not in known]
        key = ",".join(map(str, known))
        if setting.kind == "labelled":
            per[key] = {"coherence": judge.accuracy(full)}
        elif setting.kind == "polymnist":
            per[key] = {"coherence": coherence(full, classifiers=judge.clfs, labels=split.y_test,
                                               components=missing).value}
        else:
            s = ssim(full, ref, components=missing, assembly="max")
            com = centre_of_mass_wasserstein(full, ref, random_state=seed)
            per[key] = {"ssim_generated": s.value, "ssim_full_bike": s.details["assembly"],
                        "com_wasserstein": com.value}
    for k in next(iter(per.values())):
        out[k] = float(np.mean([v[k] for v in per.values()]))
    out["first_completion_per_known"] = per
    return out


def run_one(name: str, dataset: str, setting: Setting, split: Split, judge, seed: int, overrides: dict,
            args) -> dict:
    """Fit one model and evaluate every task; errors are recorded, not raised.

    Parameters
    ----------
    name, dataset : str
        Model and dataset names.
    setting : Setting
    split : Split
    judge : Labelled, PolyCoherence or None
    seed : int
        ``random_state`` of the model and of the evaluation.
    overrides : dict
        ``--param`` values of this model.
    args : argparse.Namespace

    Returns
    -------
    dict
        ``params``, ``fit_seconds``, ``epochs_run``, ``final_train_loss``, ``total_latent``,
        ``error`` (``None`` or the message, with ``traceback``) and ``tasks``.
    """
    M = split.X_train.n_components
    run: dict = {"model": name, "dataset": dataset, "seed": seed, "error": None, "tasks": {}}
    try:
        params = estimator_params(name, setting, M, seed, args.lr, overrides)
        run["params"] = params
        est = CLASSES[name](**params)
        t0 = time.perf_counter()
        est.fit(split.X_train)
        run["fit_seconds"] = time.perf_counter() - t0
        run["epochs_run"] = len(est.history_)
        run["final_train_loss"] = float(est.history_[-1, "train_loss"])
    except Exception as exc:  # one model failing must not lose the others' numbers
        run["error"] = f"{type(exc).__name__}: {exc}"
        run["traceback"] = traceback.format_exc()
        return run
    try:  # the capacity actually built (the width of transform's latent means)
        run["total_latent"] = int(est.transform(split.X_test[:2]).shape[1])
    except Exception as exc:
        run["total_latent"] = f"{type(exc).__name__}: {exc}"
    tasks = ["leave_one_out", "from_one"] + (["from_frame"] if dataset == "biked_images" else [])
    for task in tasks:
        t0 = time.perf_counter()
        try:
            run["tasks"][task] = evaluate_task(est, task, split, setting, judge, args, seed)
        except Exception as exc:
            run["tasks"][task] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        run["tasks"][task]["eval_seconds"] = time.perf_counter() - t0
    return run


# ----------------------------------------------------------------------------------------------
# summary, table, JSON
# ----------------------------------------------------------------------------------------------
def metric_keys(setting: Setting) -> dict[str, bool | None]:
    """The columns reported for a dataset (name -> higher is better, ``None``: near the level)."""
    return {**COMPLETION_KEYS, **EXTRA_KEYS.get(setting.kind, {})}


def _stats(values: list) -> dict:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return {"mean": float(v.mean()) if len(v) else None, "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0 if len(v)
            else None, "n": int(len(v)), "values": list(values)}


def summarise(entry: dict, setting: Setting) -> dict:
    """Mean, sample sd and count over seeds, per task, model and metric."""
    out: dict = {}
    for task in dict.fromkeys(t for r in entry["runs"] for t in r["tasks"]):
        out[task] = {}
        for model in dict.fromkeys(r["model"] for r in entry["runs"]):
            rs = [r for r in entry["runs"] if r["model"] == model]
            cells = {k: _stats([r["tasks"].get(task, {}).get(k) for r in rs]) for k in metric_keys(setting)}
            cells["fit_seconds"] = _stats([r.get("fit_seconds") for r in rs])
            cells["errors"] = [r["error"] or r["tasks"].get(task, {}).get("error") for r in rs
                               if r["error"] or r["tasks"].get(task, {}).get("error")]
            out[task][model] = cells
        refs = {}
        for key in ("ceiling", "mean_imputation"):
            vals = [v[key].get(task) if isinstance(v[key], dict) else v[key]
                    for v in entry["references"].values() if key in v]
            vals = [x for x in vals if x is not None]
            if vals:
                refs[key] = _stats(vals)
        if refs:
            out[task]["references"] = refs
    return out


def _cell(s: dict, width: int) -> str:
    if s["mean"] is None:
        return "-".rjust(width)
    text = f"{s['mean']:.3f}" if s["n"] < 2 else f"{s['mean']:.3f} ± {s['sd']:.3f}"
    return text.rjust(width)


def print_tables(results: dict) -> None:
    """Per dataset and task: models x metrics, mean ± sd over seeds."""
    for dataset, entry in results["datasets"].items():
        if "error" in entry:
            print(f"\n{dataset}: not run ({entry['error']})")
        st = entry["settings"]
        setting = Setting(**{k: v for k, v in st.items() if k in Setting.__dataclass_fields__})
        keys = list(metric_keys(setting))
        for task, cells in entry.get("summary", {}).items():
            print(f"\n{dataset}, {task} ({TASK_TITLES[task]}): {entry['n_train']} train / {entry['n_test']} test "
                  f"rows, {st['epochs']} epochs, batch {st['batch_size']}, latent {st['latent']} per component, "
                  f"seeds {seeds_of(entry)}; mean ± sd over seeds; (+) higher is better, (-) lower")
            arrows = {True: " (+)", False: " (-)", None: ""}
            head = [f"{k}{arrows[metric_keys(setting)[k]]}" for k in keys] + ["fit s"]
            widths = [max(len(h), 15) for h in head]
            print(f"{'model':11s} " + " ".join(h.rjust(w) for h, w in zip(head, widths)))
            for model, c in cells.items():
                if model == "references":
                    continue
                row = " ".join(_cell(c[k], w) for k, w in zip([*keys, "fit_seconds"], widths))
                err = f"  [{len(c['errors'])} error(s): {c['errors'][0][:80]}]" if c["errors"] else ""
                print(f"{LABELS[model]:11s} {row}{err}")
            for key, s in cells.get("references", {}).items():
                label = {"ceiling": "classifier on the real test rows (ceiling)",
                         "mean_imputation": "missing components set to their training mean"}[key]
                print(f"  coherence reference, {label}: {_cell(s, 0)}")


def seeds_of(entry: dict) -> list[int]:
    """The seeds that have runs."""
    return list(dict.fromkeys(r["seed"] for r in entry["runs"]))


def write(results: dict, path: str) -> None:
    """Write ``results`` as strict JSON (non-finite numbers become null), atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(_finite(results), f, indent=1, default=str, allow_nan=False)
    os.replace(tmp, path)


def environment(threads: int) -> dict:
    """Versions and machine."""
    import sklearn
    import skorch

    return {"versions": {"mcgen": mcgen.__version__, "torch": torch.__version__, "numpy": np.__version__,
                         "scikit-learn": sklearn.__version__, "skorch": skorch.__version__,
                         "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                        "torch_threads": threads}}


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Run every dataset x seed x model and return the results (also written to ``args.out``)."""
    datasets = _split_names(args.datasets, DATASETS, "dataset")
    models = _split_names(args.models, MODELS, "model")
    overrides = parse_params(args.param, models)
    results = {"command": shlex.join(["benchmarks/completion.py", *argv]), "tag": args.tag,
               "settings": {k: v for k, v in vars(args).items()}, "models": models, "overrides": overrides,
               **environment(args.threads), "datasets": {}}
    t_start = time.perf_counter()
    for dataset in datasets:
        setting = SETTINGS[dataset](args.quick)
        setting = replace(setting, **{k: v for k, v in (("latent", args.latent), ("epochs", args.epochs),
                                                         ("batch_size", args.batch_size), ("rows", args.rows))
                                      if v is not None})
        entry = {"settings": asdict(setting), "runs": [], "references": {}}
        results["datasets"][dataset] = entry
        for seed in args.seeds:
            try:
                split = load_split(dataset, setting, seed, args.data_home)
                judge = None
                refs: dict = {}
                if setting.kind == "labelled":
                    judge = Labelled(split)
                    refs = {"ceiling": judge.ceiling(),
                            "mean_imputation": {t: judge.mean_imputation(t) for t in ("leave_one_out", "from_one")}}
                elif setting.kind == "polymnist":
                    judge = PolyCoherence(split, setting, args.data_home)
                    refs = {"ceiling": judge.ceiling()}
            except Exception as exc:  # e.g. missing raw files: record and go on with the next dataset
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()
                print(f"{dataset}: cannot load ({entry['error']})", flush=True)
                break
            entry.update(n_train=len(split.X_train), n_test=len(split.X_test),
                         components=split.info.get("names"), shapes=[list(a.shape[1:]) for a in split.X_train.arrays])
            entry["references"][str(seed)] = refs
            for name in models:
                r = run_one(name, dataset, setting, split, judge, seed, overrides[name], args)
                entry["runs"].append(r)
                entry["summary"] = summarise(entry, setting)
                results["wall_seconds"] = time.perf_counter() - t_start
                write(results, args.out)
                msg = r["error"] or ", ".join(
                    f"{t} energy {v['energy_score']:.3f} r2 {v['r2_mean']:.3f}" if "error" not in v
                    else f"{t} error {v['error'][:60]}" for t, v in r["tasks"].items())
                print(f"{dataset} {name} seed {seed}: fit {r.get('fit_seconds', float('nan')):.1f} s; {msg}",
                      flush=True)
    results["wall_seconds"] = time.perf_counter() - t_start
    write(results, args.out)
    return results


def main(argv=None) -> dict:
    """Run the benchmark from the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.out is None:
        name = f"completion_{args.tag}.json" if args.tag else "completion.json"
        args.out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", name)
    torch.set_num_threads(args.threads)
    results = run(args, argv)
    print_tables(results)
    print(f"\nJSON written to {args.out}")
    return results


if __name__ == "__main__":
    main()
