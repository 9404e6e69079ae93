"""``polymnist``: PolyMNIST-style data (Sutter et al. 2021) built from MNIST and scikit-image photos.

Five modalities of 28 x 28 RGB images that show the same digit in different handwriting on
different backgrounds.  The original background photos carry no clear licence, so the five
backgrounds are images that ship inside scikit-image (:data:`BACKGROUNDS`).

Construction, per split (train from MNIST train, test from MNIST test), seeded by
``random_state`` (a ``numpy.random.default_rng``):

1. for each modality m = 0..4 and each digit class c = 0..9, in that order, draw a random
   permutation of the MNIST images of class c; tuple i of class c joins the i-th image of every
   modality's permutation (same digit, five different handwritings);
2. shuffle the order of all tuples and keep the first ``n_samples`` (all by default);
3. for each modality, draw the top-left corner of a random 28 x 28 patch of its background
   (rows, then columns, uniformly over all valid positions);
4. binarise the digit (pixel > 128) and, at digit pixels, set every channel to
   1 - background (255 - background in uint8, which is exact).

The result is cached as uint8 in an ``.npz`` file and returned as float32 ``(n, 3, 28, 28)``
arrays in [0, 1], with the digit labels in ``info["labels"]``.

MNIST is read from ``data_home/mnist`` (the four standard ``*-idx?-ubyte.gz`` files), else
downloaded from the official source (mirrors in :data:`MNIST_MIRRORS`).  The SHA-256 digests in
:data:`MNIST_FILES` are of the *decompressed* IDX content, so any faithful gzip of the canonical
files passes.

The coherence metric's digit classifiers (one per modality) live in
:mod:`mcgen.metrics.classifiers`; they are still importable from here.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence

import numpy as np

from mcgen.components import Components
from mcgen.data_files import ChecksumError, atomic_savez, cache_key, fetch, get_cache_dir, get_data_home, verify_sha256  # noqa: F401
from mcgen.metrics.classifiers import (  # noqa: F401  (their old home: kept importable from here)
    PRETRAINED_NAMES,
    PolyMNISTClassifier,
    evaluate_classifiers,
    load_pretrained_classifiers,
    predict_digits,
    train_classifiers,
)
from mcgen.plugins.hookspecs import hookimpl

#: Version of the construction; part of every cache key.
POLYMNIST_VERSION = 1
#: scikit-image backgrounds, one per modality (``skimage.data.<name>()``).
BACKGROUNDS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
#: MNIST files: key -> (file name, SHA-256 of the decompressed IDX content).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
#: Where MNIST is downloaded from, tried in order (the official site first, then a mirror).
MNIST_MIRRORS: tuple[str, ...] = (
    "http://yann.lecun.com/exdb/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
PATCH = 28
N_MODALITIES = len(BACKGROUNDS)
SPLITS = ("train", "test")


# ------------------------------------------------------------------------------------------------
# MNIST
# ------------------------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped when the name ends in ``.gz``) of unsigned bytes.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    numpy.ndarray of uint8 with the shape stored in the header.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path} is not an IDX file (only {len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(f"{path}: header announces {dims} = {expected} bytes but {len(data) - header} follow")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(split: str = "train", *, data_home=None, mirrors: Sequence[str] | None = None,
               download_if_missing: bool = True, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images ``(n, 28, 28)`` uint8 and labels ``(n,)`` of one split, checksum-verified.

    Parameters
    ----------
    split : {"train", "test"}
    data_home : path-like, optional
        Files are looked for in ``data_home/mnist`` (see :func:`mcgen.datasets._fetch.get_data_home`).
    mirrors : sequence of str, optional
        Base URLs to download missing files from (default :data:`MNIST_MIRRORS`); ``file://``
        URLs work.
    download_if_missing : bool
    progress : bool

    Raises
    ------
    ChecksumError
        When a file's decompressed content does not have the expected SHA-256.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = get_data_home(data_home) / "mnist"
    mirrors = MNIST_MIRRORS if mirrors is None else tuple(mirrors)
    out = []
    for kind in ("images", "labels"):
        filename, digest = MNIST_FILES[f"{split}_{kind}"]
        path = fetch(filename, folder, mirrors, sha256=digest, decompress_checksum=True,
                     download_if_missing=download_if_missing, progress=progress)
        verify_sha256(path, digest, decompress=True)
        out.append(read_idx(path))
    images, labels = out
    if images.ndim != 3 or images.shape[1:] != (PATCH, PATCH) or labels.shape != (images.shape[0],):
        raise ValueError(f"MNIST {split} files have shapes {images.shape} and {labels.shape}; "
                         "expected (n, 28, 28) and (n,)")
    return images, labels


# ------------------------------------------------------------------------------------------------
# construction
# ------------------------------------------------------------------------------------------------
def background_images(names: Sequence[str] = BACKGROUNDS) -> list[np.ndarray]:
    """The scikit-image background photos as uint8 ``(H, W, 3)`` arrays."""
    import skimage.data

    images = []
    for name in names:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise ValueError(f"skimage.data has no image {name!r}")
        img = np.asarray(loader())
        if img.ndim != 3 or img.shape[2] < 3 or img.shape[0] < PATCH or img.shape[1] < PATCH:
            raise ValueError(f"background {name!r} must be an RGB image of at least 28x28, got {img.shape}")
        images.append(np.ascontiguousarray(img[:, :, :3].astype(np.uint8)))
    return images


def make_polymnist(images: np.ndarray, labels: np.ndarray, *, n_samples: int | None = None, random_state=0,
                   backgrounds: Sequence[np.ndarray] | None = None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Build PolyMNIST tuples from MNIST images (the procedure in the module docstring).

    Parameters
    ----------
    images : (N, 28, 28) uint8 array
    labels : (N,) int array
    n_samples : int, optional
        Number of tuples to keep (default N).
    random_state : int, numpy Generator or None
    backgrounds : list of (H, W, 3) uint8 arrays, optional
        One per modality (default: the scikit-image photos of :data:`BACKGROUNDS`).

    Returns
    -------
    modalities : list of (n, 3, 28, 28) uint8 arrays
    labels : (n,) int64 array
    source_index : (n, M) int64 array
        The MNIST image used by each modality of each tuple.
    """
    images = np.asarray(images)
    labels = np.asarray(labels).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (PATCH, PATCH):
        raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
    bgs = background_images() if backgrounds is None else [np.asarray(b, dtype=np.uint8) for b in backgrounds]
    n_total = images.shape[0]
    if n_samples is None:
        n_samples = n_total
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or not 1 <= n_samples <= n_total:
        raise ValueError(f"n_samples must be an integer in [1, {n_total}], got {n_samples!r}")
    rng = np.random.default_rng(random_state)
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    # step 1: per modality, per class, a permutation of that class's images
    source = np.stack([np.concatenate([idx[rng.permutation(len(idx))] for idx in by_class])
                       for _ in range(len(bgs))], axis=1)
    tuple_labels = np.concatenate([np.full(len(idx), c, dtype=np.int64) for c, idx in zip(classes, by_class)])
    # step 2: shuffle the tuples, keep n_samples
    order = rng.permutation(n_total)[:n_samples]
    source, tuple_labels = source[order], tuple_labels[order]
    ar = np.arange(PATCH)
    modalities = []
    for m, bg in enumerate(bgs):
        # step 3: random patch of the background
        rows = rng.integers(0, bg.shape[0] - PATCH + 1, size=n_samples)
        cols = rng.integers(0, bg.shape[1] - PATCH + 1, size=n_samples)
        patch = bg[rows[:, None, None] + ar[None, :, None], cols[:, None, None] + ar[None, None, :]]  # (n,28,28,3)
        # step 4: digit pixels become the inverted background
        digit = images[source[:, m]] > 128
        patch = np.where(digit[..., None], 255 - patch, patch)
        modalities.append(np.ascontiguousarray(patch.transpose(0, 3, 1, 2)))
    return modalities, tuple_labels, source


def load_polymnist(*, split: str = "train", n_samples: int | None = None, data_home=None, random_state=0,
                   cache: bool = True, mirrors: Sequence[str] | None = None, download_if_missing: bool = True,
                   progress: bool = True) -> tuple[Components, dict]:
    """Load (building and caching on first use) the PolyMNIST-style data.

    Parameters
    ----------
    split : {"train", "test"}
        Built from MNIST train (60,000) or test (10,000).
    n_samples : int, optional
        Number of tuples (default: as many as MNIST images in the split).
    data_home : path-like, optional
        MNIST is read from ``data_home/mnist``; the cache is written to ``data_home/polymnist``
        when writable, else ``~/.mcgen_data/polymnist``.
    random_state : int or None
        Seed of the construction.  ``None`` draws fresh randomness and skips the cache.
    cache : bool
        Read/write the uint8 ``.npz`` cache.
    mirrors : sequence of str, optional
        MNIST download mirrors (default :data:`MNIST_MIRRORS`).
    download_if_missing, progress : bool

    Returns
    -------
    X : Components
        Five float32 arrays ``(n, 3, 28, 28)`` in [0, 1], components ``m0`` .. ``m4``.
    info : dict
        ``names``, ``kinds``, ``shapes``, ``labels``, ``source_index`` (MNIST index per modality),
        ``backgrounds``, ``split``, ``version`` (of the construction), ``mnist_sha256`` (the MNIST
        release it is built from), ``cache_path``, ``description``, ``license``, ``source``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"random_state must be an int or None, got {type(random_state).__name__}")
    digests = [MNIST_FILES[f"{split}_{k}"][1] for k in ("images", "labels")]
    path = None
    if cache and random_state is not None:
        key = cache_key(version=POLYMNIST_VERSION, split=split, n=n_samples, seed=int(random_state),
                         backgrounds=BACKGROUNDS, mnist=digests)
        path = get_cache_dir(data_home, "polymnist") / f"polymnist_{split}_{key}.npz"
    if path is not None and path.exists():
        with np.load(path) as z:
            mods = [z[f"m{m}"] for m in range(N_MODALITIES)]
            labels, source = z["labels"], z["source_index"]
    else:
        images, mnist_labels = load_mnist(split, data_home=data_home, mirrors=mirrors,
                                          download_if_missing=download_if_missing, progress=progress)
        mods, labels, source = make_polymnist(images, mnist_labels, n_samples=n_samples, random_state=random_state)
        if path is not None:
            atomic_savez(path, labels=labels, source_index=source, **{f"m{m}": a for m, a in enumerate(mods)})
    names = [f"m{m}" for m in range(N_MODALITIES)]
    arrays = [a.astype(np.float32) * np.float32(1 / 255) for a in mods]
    info = {
        "name": "polymnist",
        "names": names,
        "kinds": ["image"] * N_MODALITIES,
        "shapes": [(3, PATCH, PATCH)] * N_MODALITIES,
        "labels": labels.astype(np.int64),
        "source_index": source,
        "backgrounds": list(BACKGROUNDS),
        "split": split,
        "version": POLYMNIST_VERSION,
        "mnist_sha256": [digest for _, digest in MNIST_FILES.values()],
        "cache_path": None if path is None else str(path),
        "description": "PolyMNIST-style: five 28x28 RGB modalities of the same digit (different MNIST "
                       "handwriting) on crops of five scikit-image photos, digit pixels inverted",
        "license": "MNIST: CC BY-SA 3.0; backgrounds: scikit-image sample data (public domain / CC0 / "
                   "BSD as listed in skimage.data)",
        "source": "built by mcgen.datasets.polymnist from MNIST (Y. LeCun, C. Cortes, C. Burges) "
                  "following Sutter, Daunhawer & Vogt (ICLR 2021)",
    }
    return Components(arrays, names=names), info


__all__ = [
    "BACKGROUNDS", "MNIST_FILES", "MNIST_MIRRORS", "load_mnist", "load_polymnist", "make_polymnist",
    "read_idx",
]


@hookimpl
def mcgen_register_datasets(register):
    register("polymnist", load_polymnist,
             description="PolyMNIST-style: 5 RGB 28x28 modalities of one digit (MNIST + skimage backgrounds)")
