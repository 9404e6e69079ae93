"""Digit classifiers for the coherence metrics (:mod:`mcgen.metrics.coherence`) on PolyMNIST.

The coherence of a generated PolyMNIST tuple is judged by one digit classifier per modality:
:func:`train_classifiers` trains them (the MoPoE authors' architecture,
:class:`PolyMNISTClassifier`) on the ``polymnist`` dataset of the registry and caches them;
:func:`load_pretrained_classifiers` loads the authors' pretrained ones from a folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcgen.components import Components
from mcgen.data_files import cache_key, get_cache_dir, verify_sha256
from mcgen.plugins import load_dataset

__all__ = [
    "IMAGE_SHAPE", "N_MODALITIES", "PRETRAINED_NAMES", "PolyMNISTClassifier", "evaluate_classifiers",
    "load_pretrained_classifiers", "predict_digits", "train_classifiers",
]

#: PolyMNIST's modalities: five RGB 28 x 28 images of one digit.
N_MODALITIES = 5
IMAGE_SHAPE = (3, 28, 28)
#: File names of the pretrained classifiers in ``../shared/data/polymnist_classifiers``.
PRETRAINED_NAMES = tuple(f"pretrained_img_to_digit_clf_m{m}" for m in range(N_MODALITIES))
#: Part of the cache key of classifiers trained on given data (the dataset's version otherwise).
_CACHE_VERSION = 1


class PolyMNISTClassifier(nn.Module):
    """The MoPoE authors' PolyMNIST digit classifier; returns logits over the 10 digits.

    Conv2d(3,10,k4,s2,p1) - Dropout2d(.5) - ReLU - Conv2d(10,20,k4,s2,p1) - Dropout2d(.5) - ReLU -
    Flatten(980) - Linear(980,128) - Dropout(.5) - ReLU - Linear(128,10), held in ``encoder``
    so the pretrained state_dicts (keys ``encoder.{0,3,7,10}.*``) load unchanged.
    """

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 10, kernel_size=4, stride=2, padding=1), nn.Dropout2d(0.5), nn.ReLU(),
            nn.Conv2d(10, 20, kernel_size=4, stride=2, padding=1), nn.Dropout2d(0.5), nn.ReLU(),
            nn.Flatten(), nn.Linear(980, 128), nn.Dropout(0.5), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 10)`` of images ``(B, 3, 28, 28)`` in [0, 1]."""
        return self.encoder(x)


def _read_sums(folder: Path) -> dict[str, str]:
    sums = {}
    f = folder / "SHA256SUMS"
    if f.exists():
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*")] = parts[0]
    return sums


def load_pretrained_classifiers(path: str | os.PathLike | Sequence[str | os.PathLike], *,
                                device: str | torch.device = "cpu") -> list[PolyMNISTClassifier]:
    """Load five pretrained PolyMNIST classifiers (one per modality), in eval mode.

    Parameters
    ----------
    path : path-like or sequence of five path-likes
        A folder holding ``pretrained_img_to_digit_clf_m0`` .. ``_m4`` (verified against its
        ``SHA256SUMS`` when present), or the five state_dict files in modality order.
    device : str or torch.device

    Returns
    -------
    list of :class:`PolyMNISTClassifier`
    """
    if isinstance(path, (str, os.PathLike)):
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder of pretrained classifiers")
        files = [folder / name for name in PRETRAINED_NAMES]
        sums = _read_sums(folder)
        for f in files:
            if f.name in sums:
                verify_sha256(f, sums[f.name])
    else:
        files = [Path(p) for p in path]
    if len(files) != N_MODALITIES:
        raise ValueError(f"expected {N_MODALITIES} classifier files, got {len(files)}")
    models = []
    for m, f in enumerate(files):
        if not f.exists():
            raise FileNotFoundError(f"classifier for modality {m} not found: {f}")
        state = torch.load(f, map_location="cpu", weights_only=True)
        model = PolyMNISTClassifier()
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{f} is not a PolyMNIST classifier state_dict: {exc}") from None
        models.append(model.to(device).eval())
    return models


@torch.no_grad()
def predict_digits(classifiers: Sequence[nn.Module], X, *, batch_size: int = 1024) -> np.ndarray:
    """Predicted digit of every modality of every row, ``(n, M)`` int64.

    Parameters
    ----------
    classifiers : list of M modules mapping ``(B, 3, 28, 28)`` to logits
    X : Components or list of M arrays ``(n, 3, 28, 28)`` in [0, 1]
    batch_size : int
    """
    arrays = list(X.arrays) if isinstance(X, Components) else list(X)
    if len(arrays) != len(classifiers):
        raise ValueError(f"got {len(arrays)} modalities for {len(classifiers)} classifiers")
    preds = []
    for m, (clf, a) in enumerate(zip(classifiers, arrays)):
        a = np.asarray(a)
        if a.ndim != 4 or a.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"modality {m} must have shape (n, 3, 28, 28), got {a.shape}")
        was = clf.training
        clf.eval()
        dev = next(clf.parameters()).device
        out = [clf(torch.as_tensor(a[s:s + batch_size], dtype=torch.float32, device=dev)).argmax(1).cpu()
               for s in range(0, len(a), batch_size)]
        clf.train(was)
        preds.append(torch.cat(out).numpy())
    return np.stack(preds, axis=1).astype(np.int64)


def evaluate_classifiers(classifiers: Sequence[nn.Module], X, labels) -> np.ndarray:
    """Accuracy of each modality's classifier on ``(X, labels)``, shape ``(M,)``."""
    labels = np.asarray(labels)
    return (predict_digits(classifiers, X) == labels[:, None]).mean(0)


def _fit_one(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, max_epochs: int, batch_size: int, lr: float,
             generator: torch.Generator, progress: bool, desc: str) -> None:
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    n = len(x)
    steps = max_epochs * ((n + batch_size - 1) // batch_size)
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(max_epochs):
            perm = torch.randperm(n, generator=generator)
            for s in range(0, n, batch_size):
                idx = perm[s:s + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                bar.update(1)
    model.eval()


def train_classifiers(X=None, labels=None, *, X_test=None, labels_test=None, n_train: int | None = None,
                      n_test: int | None = None, data_home=None, random_state: int = 0, max_epochs: int = 5,
                      batch_size: int = 128, lr: float = 1e-3, cache: bool = True, progress: bool = True,
                      verbose: bool = False) -> list[PolyMNISTClassifier]:
    """Train one digit classifier per PolyMNIST modality (the pretrained architecture); cached.

    Parameters
    ----------
    X, labels : Components or list of five arrays, and (n,) digits, optional
        Training data; default: ``load_dataset("polymnist", split="train", n_samples=n_train,
        random_state=0)``.
    X_test, labels_test : optional
        Held-out data for the reported accuracy; default (when X is not given): the test split
        (``n_test`` tuples).
    n_train, n_test : int, optional
        Sizes of the default train/test splits (all by default).
    data_home : path-like, optional
        Where MNIST is read and the cache is written (``polymnist`` subfolder).
    random_state : int
        Seed of initialisation, dropout and batching.
    max_epochs, batch_size, lr
        Adam training settings.
    cache : bool
        Reuse/write the trained weights (keyed by the data and the settings).
    progress, verbose : bool
        Progress bar; print the test accuracy per modality.

    Returns
    -------
    list of five :class:`PolyMNISTClassifier` in eval mode; each has ``test_accuracy`` (float,
    or None without test data).
    """
    version = _CACHE_VERSION
    if X is None:
        if labels is not None:
            raise ValueError("labels given without X")
        X, info = load_dataset("polymnist", split="train", n_samples=n_train, data_home=data_home, random_state=0,
                               progress=progress)
        labels = info["labels"]
        version = info["version"]
        data_id = {"split": "train", "n": n_train, "mnist": list(info["mnist_sha256"])}
        if X_test is None:
            X_test, info_t = load_dataset("polymnist", split="test", n_samples=n_test, data_home=data_home,
                                          random_state=0, progress=progress)
            labels_test = info_t["labels"]
            data_id["test_n"] = n_test
    else:
        if labels is None:
            raise ValueError("X given without labels")
        data_id = None
    arrays = list(X.arrays) if isinstance(X, Components) else list(X)
    labels = np.asarray(labels).astype(np.int64)
    if len(arrays) != N_MODALITIES:
        raise ValueError(f"X must hold {N_MODALITIES} modalities, got {len(arrays)}")
    for m, a in enumerate(arrays):
        if a.ndim != 4 or a.shape[1:] != IMAGE_SHAPE or len(a) != len(labels):
            raise ValueError(f"modality {m} must have shape ({len(labels)}, 3, 28, 28), got {a.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError("labels must be digits 0..9")
    path = None
    if cache:
        if data_id is None:
            h = hashlib.sha256(labels.tobytes())
            for a in arrays:
                h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
            if X_test is not None:
                h.update(np.asarray(labels_test, dtype=np.int64).tobytes())
                for a in (X_test.arrays if isinstance(X_test, Components) else X_test):
                    h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
            data_id = h.hexdigest()
        key = cache_key(version=version, data=data_id, seed=random_state, epochs=max_epochs, batch=batch_size,
                        lr=lr)
        path = get_cache_dir(data_home, "polymnist") / f"classifiers_{key}.pt"
    models = [PolyMNISTClassifier() for _ in range(N_MODALITIES)]
    if path is not None and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        for model, state in zip(models, saved["state_dicts"]):
            model.load_state_dict(state)
            model.eval()
        accs = saved["test_accuracy"]
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            gen = torch.Generator().manual_seed(random_state)
            y = torch.as_tensor(labels)
            for m, (model, a) in enumerate(zip(models, arrays)):
                x = torch.as_tensor(np.asarray(a, dtype=np.float32))
                _fit_one(model, x, y, max_epochs=max_epochs, batch_size=batch_size, lr=lr, generator=gen,
                         progress=progress, desc=f"classifier m{m}")
        accs = None
        if X_test is not None:
            accs = [float(v) for v in evaluate_classifiers(models, X_test, labels_test)]
        if path is not None:
            tmp = path.with_suffix(".pt.part")
            torch.save({"state_dicts": [m.state_dict() for m in models], "test_accuracy": accs}, tmp)
            os.replace(tmp, path)
    for m, model in enumerate(models):
        model.test_accuracy = None if accs is None else float(accs[m])
        if verbose and accs is not None:
            print(f"PolyMNIST classifier m{m}: test accuracy {accs[m]:.4f}")
    return models
