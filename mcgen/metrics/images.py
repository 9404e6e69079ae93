"""Image metrics: SSIM, Fréchet distance / FID with pluggable feature extractors, and the
centre-of-mass Wasserstein distance of image components.

Images are component arrays of shape ``(n, C, H, W)`` (channels first, as torch uses) or
``(n, H, W)`` (one channel), with intensities in ``[0, data_range]``.
"""

from __future__ import annotations

import os
import types
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import ot
import torch
from scipy import linalg
from skimage.metrics import structural_similarity

from mcgen.metrics._common import MetricResult
from mcgen.metrics.conditional import complete_rows, component_arrays
from mcgen.plugins.hookspecs import hookimpl

#: File name of the standard FID InceptionV3 weights (converted from TensorFlow by pytorch-fid).
INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _as_nchw(a: np.ndarray, label: str) -> np.ndarray:
    """An image component as float64 ``(n, C, H, W)``."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{label} has non-numeric dtype {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"{label} has shape {a.shape}; images must be (n, C, H, W) or (n, H, W)")
    if not np.isfinite(a).all():
        raise ValueError(f"{label} contains NaN or infinite values")
    return a.astype(np.float64, copy=False)


def _image_pair(gen, ref, paired: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    g = component_arrays(gen, "generated")
    r = component_arrays(ref, "reference")
    if len(g) != len(r):
        raise ValueError(f"generated has {len(g)} components, reference has {len(r)}")
    g = [_as_nchw(a, f"generated component {i}") for i, a in enumerate(g)]
    r = [_as_nchw(a, f"reference component {i}") for i, a in enumerate(r)]
    for i, (a, b) in enumerate(zip(g, r)):
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"component {i}: generated images have shape {a.shape[1:]}, reference {b.shape[1:]}")
        if paired and a.shape[0] != b.shape[0]:
            raise ValueError(f"component {i}: {a.shape[0]} generated images but {b.shape[0]} reference images; "
                             "SSIM compares pairs, so both need the same rows")
    return g, r


def _select(components: Sequence[int] | None, M: int) -> list[int]:
    if components is None:
        return list(range(M))
    comps = [int(c) for c in components]
    if not comps or min(comps) < 0 or max(comps) >= M:
        raise ValueError(f"components {list(components)} out of range for {M} components")
    return comps


def assemble(arrays: Sequence[np.ndarray], how: str | Callable = "max") -> np.ndarray:
    """Assemble image components into one image per row.

    Parameters
    ----------
    arrays : list of arrays
        Component images of one common shape ``(n, C, H, W)`` or ``(n, H, W)``.
    how : "max" or callable
        ``"max"``: pixel-wise maximum (BIKED: the parts are drawn on one canvas); a callable
        receives the list and returns the assembled array.
    """
    if callable(how):
        return np.asarray(how(list(arrays)))
    if how != "max":
        raise ValueError(f"assembly must be 'max' or a callable, got {how!r}")
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"assembly='max' needs components of one shape, got {sorted(shapes)}")
    return np.max(np.stack(arrays, 0), axis=0)


# ----------------------------------------------------------------------------------------------
# SSIM
# ----------------------------------------------------------------------------------------------
def ssim_pairs(gen: np.ndarray, ref: np.ndarray, data_range: float = 1.0, **kwargs) -> np.ndarray:
    """SSIM of every pair ``(gen[k], ref[k])`` of images, in one scikit-image call.

    The n images of C channels are laid side by side as ``n * C`` channels of one image
    (``channel_axis=-1``): scikit-image computes SSIM channel by channel, so the mean of each
    image's channels is that pair's multichannel SSIM.

    Parameters
    ----------
    gen, ref : arrays ``(n, C, H, W)`` or ``(n, H, W)``
    data_range : float
        The intensity range (``max - min`` possible value), passed explicitly to
        :func:`skimage.metrics.structural_similarity`.
    **kwargs
        Further options of ``structural_similarity`` (``win_size``, ``gaussian_weights``, ...).

    Returns
    -------
    ndarray ``(n,)``
    """
    g, r = _as_nchw(gen, "generated"), _as_nchw(ref, "reference")
    if g.shape != r.shape:
        raise ValueError(f"generated images {g.shape} and reference images {r.shape} differ in shape")
    if not (np.isscalar(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    n, C, H, W = g.shape
    for key in ("channel_axis", "full", "data_range"):
        if key in kwargs:
            raise TypeError(f"ssim sets {key!r} itself")
    stack_g = g.reshape(n * C, H, W).transpose(1, 2, 0)
    stack_r = r.reshape(n * C, H, W).transpose(1, 2, 0)
    _, S = structural_similarity(stack_g, stack_r, data_range=float(data_range), channel_axis=-1,
                                 full=True, **kwargs)
    win = kwargs.get("win_size")
    if win is None:  # scikit-image's default window (its crop of the SSIM map uses it)
        win = 2 * int(3.5 * kwargs.get("sigma", 1.5) + 0.5) + 1 if kwargs.get("gaussian_weights") else 7
    pad = (win - 1) // 2
    crop = S[pad:H - pad, pad:W - pad] if pad else S
    per_channel = crop.reshape(-1, n * C).mean(0, dtype=np.float64)
    return per_channel.reshape(n, C).mean(1)


def ssim(gen, ref, data_range: float = 1.0, components: Sequence[int] | None = None,
         assembly: str | Callable | None = None, **kwargs) -> MetricResult:
    """Structural similarity between paired generated and real images, averaged over pairs.

    Parameters
    ----------
    gen, ref : list of image arrays, Components or one image array
        Row k of ``gen`` is compared with row k of ``ref`` (e.g. conditional generations and
        the real rows they complete).
    data_range : float, default=1.0
        Intensity range of the images (1 for images in [0, 1]).
    components : list of int, optional
        Components entering the component-wise mean (default all).
    assembly : "max" or callable, optional
        Also compute SSIM on the assembled images (``details["assembly"]``), e.g. the full
        bike as the pixel-wise max of its parts.
    **kwargs
        Passed to :func:`skimage.metrics.structural_similarity`.

    Returns
    -------
    MetricResult
        ``value``: mean over the selected components of the mean pair SSIM (higher is better,
        1 for identical images); ``details["per_component"]``.
    """
    g, r = _image_pair(gen, ref, paired=True)
    comps = _select(components, len(g))
    per = np.array([ssim_pairs(g[i], r[i], data_range, **kwargs).mean() for i in comps])
    details: dict = {"per_component": dict(zip(comps, per.tolist())), "data_range": data_range}
    if assembly is not None:
        details["assembly"] = float(ssim_pairs(assemble(g, assembly), assemble(r, assembly),
                                               data_range, **kwargs).mean())
    return MetricResult("ssim", float(per.mean()), details, g[0].shape[0], r[0].shape[0])


def conditional_ssim(estimator, X, known_sets="single", data_range: float = 1.0,
                     assembly: str | Callable | None = None, random_state=0, **kwargs) -> MetricResult:
    """SSIM of conditional generations against the real rows they complete.

    For each observed subset (see :func:`mcgen.metrics.conditional.known_subsets`), the missing
    components are generated with ``predict_missing`` and compared pair by pair with the real
    ones; with ``assembly`` the completed rows (observed + generated parts) are also assembled and
    compared with the assembled real rows.

    Returns
    -------
    MetricResult
        ``value``: mean over subsets of the SSIM over the generated components;
        ``details["per_subset"]`` (``{known: value}``) and, with ``assembly``,
        ``details["assembly"]`` (mean over subsets) and ``details["assembly_per_subset"]``.
    """
    ref = component_arrays(X)
    per, per_asm = {}, {}
    for known, full, missing in complete_rows(estimator, ref, known_sets, random_state):
        res = ssim(full, ref, data_range, components=missing, assembly=assembly, **kwargs)
        per[tuple(known)] = res.value
        if assembly is not None:
            per_asm[tuple(known)] = res.details["assembly"]
    details: dict = {"per_subset": per}
    if assembly is not None:
        details["assembly"] = float(np.mean(list(per_asm.values())))
        details["assembly_per_subset"] = per_asm
    n = len(ref[0])
    return MetricResult("conditional_ssim", float(np.mean(list(per.values()))), details, n, n, random_state)


# ----------------------------------------------------------------------------------------------
# Fréchet distance and FID
# ----------------------------------------------------------------------------------------------
def _features_2d(f, label: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2:
        raise ValueError(f"{label} features must be (n, f), got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"{label} features need at least 2 rows to estimate a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError(f"{label} features contain NaN or infinite values")
    return f


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> MetricResult:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with sample means and (unbiased)
    covariances; the matrix square root is :func:`scipy.linalg.sqrtm`.  When it returns
    non-finite values or an imaginary part larger than ``1e-3``, or warns that the product is
    singular (e.g. a constant feature), it is retried with ``eps * I`` added to both covariances
    (``details["offset"]`` says so; the value then carries an error of order ``sqrt(eps)``).

    Parameters
    ----------
    feats_a, feats_b : arrays ``(n_a, f)``, ``(n_b, f)``
    eps : float
        Diagonal offset of the retry.

    Returns
    -------
    MetricResult
        The squared-distance-valued Fréchet distance (lower is better, 0 for equal moments).
    """
    a, b = _features_2d(feats_a, "first"), _features_2d(feats_b, "second")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    S_a = np.atleast_2d(np.cov(a, rowvar=False))
    S_b = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(S_a @ S_b)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    offset = 0.0
    if singular or not np.isfinite(covmean).all() or (
            np.iscomplexobj(covmean) and np.abs(covmean.imag).max() > 1e-3):
        offset = float(eps)
        eye = np.eye(S_a.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((S_a + offset * eye) @ (S_b + offset * eye))
        if not np.isfinite(covmean).all():
            raise FloatingPointError("the matrix square root of S_a S_b is not finite even with the offset")
    covmean = np.real(covmean)
    mean_term = float(np.sum((mu_a - mu_b) ** 2))
    trace_term = float(np.trace(S_a) + np.trace(S_b) - 2.0 * np.trace(covmean))
    value = mean_term + trace_term
    # The true value is >= 0; round-off on identical inputs can give a tiny negative number.
    scale = max(1.0, float(np.trace(S_a) + np.trace(S_b)))
    if -1e-8 * scale < value < 0:
        value = 0.0
    return MetricResult("frechet_distance", value, {"mean_term": mean_term, "trace_term": trace_term,
                                                    "offset": offset}, a.shape[0], b.shape[0])


class ClassifierFeatures:
    """Feature extractor: a penultimate layer of a torch classifier ("classifier FID").

    Parameters
    ----------
    classifier : torch.nn.Module
        Maps a batch of images ``(B, C, H, W)`` to logits.
    layer : str, optional
        Name (as in ``classifier.named_modules()``) of the module whose *output* is the feature
        vector.  Default: the *input* of the last ``nn.Linear`` module, i.e. the penultimate layer.
    batch_size : int, default=256
    device : str or torch.device, optional
        Where to run (default: the classifier's device).

    Notes
    -----
    The classifier is run in eval mode without gradients; its previous mode is restored.  FIDs
    from different extractors are not comparable: ``name`` says which one produced a number.
    """

    def __init__(self, classifier: torch.nn.Module, layer: str | None = None, batch_size: int = 256,
                 device=None):
        if not isinstance(classifier, torch.nn.Module):
            raise TypeError(f"classifier must be a torch.nn.Module, got {type(classifier).__name__}")
        self.classifier = classifier
        self.layer = layer
        self.batch_size = batch_size
        self.device = device
        self.name = f"classifier:{type(classifier).__name__}" + (f".{layer}" if layer else "")
        self._hooked_module()  # fail early on a bad layer name / a classifier without nn.Linear

    def _hooked_module(self) -> torch.nn.Module:
        if self.layer is not None:
            modules = dict(self.classifier.named_modules())
            if self.layer not in modules:
                raise ValueError(f"classifier has no module named {self.layer!r}; "
                                 f"modules: {', '.join(n for n in modules if n)}")
            return modules[self.layer]
        linears = [m for m in self.classifier.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ValueError("classifier has no nn.Linear layer; pass layer= to name the feature layer")
        return linears[-1]

    def __call__(self, images) -> np.ndarray:
        x = _as_nchw(images, "images")
        module = self._hooked_module()
        store: list[torch.Tensor] = []
        if self.layer is None:
            handle = module.register_forward_pre_hook(lambda m, inp: store.append(inp[0].detach()))
        else:
            handle = module.register_forward_hook(lambda m, inp, out: store.append(out.detach()))
        params = list(self.classifier.parameters())
        device = self.device or (params[0].device if params else "cpu")
        dtype = params[0].dtype if params else torch.float32
        was_training = self.classifier.training
        self.classifier.eval()
        feats = []
        try:
            with torch.no_grad():
                for s in range(0, x.shape[0], self.batch_size):
                    store.clear()
                    self.classifier(torch.as_tensor(x[s:s + self.batch_size], dtype=dtype, device=device))
                    feats.append(store[-1].flatten(1).double().cpu().numpy())
        finally:
            handle.remove()
            self.classifier.train(was_training)
        return np.concatenate(feats, 0)


def _fid_inception_a(self, x):
    pool = torch.nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(pool)], 1)


def _fid_inception_c(self, x):
    pool = torch.nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = x
    for k in range(1, 6):
        bd = getattr(self, f"branch7x7dbl_{k}")(bd)
    return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(pool)], 1)


def _fid_inception_e(pool_kind: str):
    def forward(self, x):
        if pool_kind == "avg":
            pool = torch.nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        else:
            pool = torch.nn.functional.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pool)], 1)

    return forward


_INCEPTION_STAGES = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


def load_inception_v3(weights_path: str | os.PathLike) -> torch.nn.Module:
    """The FID InceptionV3 network (TensorFlow's 2015-12-05 graph) with the standard weights.

    Parameters
    ----------
    weights_path : path
        The pytorch-fid weights file ``pt_inception-2015-12-05-6726825d.pth`` (download it
        yourself from the pytorch-fid GitHub releases; mcgen never downloads anything).

    Returns
    -------
    torch.nn.Module in eval mode (torchvision's ``Inception3`` with the FID pooling variants:
    average pools that exclude padding in the A, C and first E blocks, a max pool in the last E
    block, 1008 classes).

    Raises
    ------
    FileNotFoundError
        The weights file does not exist.
    ImportError
        torchvision is not installed.
    """
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"InceptionV3 weights file {path!r} not found; download {INCEPTION_WEIGHTS_FILE} "
            "(the pytorch-fid release asset) and pass its path, or use ClassifierFeatures instead")
    try:
        from torchvision.models.inception import Inception3
    except ImportError as exc:
        raise ImportError("the InceptionV3 feature extractor needs torchvision: pip install torchvision "
                          "(matching your torch version)") from exc
    model = Inception3(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        blk = getattr(model, name)
        blk.forward = types.MethodType(_fid_inception_a, blk)
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        blk = getattr(model, name)
        blk.forward = types.MethodType(_fid_inception_c, blk)
    model.Mixed_7b.forward = types.MethodType(_fid_inception_e("avg"), model.Mixed_7b)
    model.Mixed_7c.forward = types.MethodType(_fid_inception_e("max"), model.Mixed_7c)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


class InceptionV3Features:
    """Feature extractor: InceptionV3 pool3 (2048-D), the features of the published FIDs.

    Images ``(n, C, H, W)`` in ``[0, 1]`` (one channel is repeated to three) are resized to
    299 x 299 (bilinear) and scaled to ``[-1, 1]``.

    Parameters
    ----------
    weights_path : path
        The standard pytorch-fid weights file (see :func:`load_inception_v3`).
    batch_size : int, default=50
    device : str, default="cpu"

    Raises
    ------
    FileNotFoundError, ImportError
        See :func:`load_inception_v3` (raised at construction).
    """

    name = "inception_v3_pool3"

    def __init__(self, weights_path: str | os.PathLike, batch_size: int = 50, device="cpu"):
        self.weights_path = weights_path
        self.batch_size = batch_size
        self.device = device
        self.model = load_inception_v3(weights_path).to(device)

    def __call__(self, images) -> np.ndarray:
        x = _as_nchw(images, "images")
        if x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1)
        if x.shape[1] != 3:
            raise ValueError(f"InceptionV3 needs 1 or 3 channels, got {x.shape[1]}")
        feats = []
        with torch.no_grad():
            for s in range(0, x.shape[0], self.batch_size):
                h = torch.as_tensor(x[s:s + self.batch_size], dtype=torch.float32, device=self.device)
                h = torch.nn.functional.interpolate(h, size=(299, 299), mode="bilinear", align_corners=False)
                h = 2 * h - 1
                for stage in _INCEPTION_STAGES:
                    h = getattr(self.model, stage)(h)
                feats.append(torch.nn.functional.adaptive_avg_pool2d(h, 1).flatten(1).double().cpu().numpy())
        return np.concatenate(feats, 0)


def _extractors(extractor, M: int) -> list[Callable]:
    ext = list(extractor) if isinstance(extractor, (list, tuple)) else [extractor] * M
    if len(ext) != M:
        raise ValueError(f"got {len(ext)} feature extractors for {M} components")
    out = []
    for i, e in enumerate(ext):
        if isinstance(e, torch.nn.Module):
            e = ClassifierFeatures(e)
        if not callable(e):
            raise TypeError(f"feature extractor for component {i} is not callable: {type(e).__name__}")
        out.append(e)
    return out


def _extractor_name(e) -> str:
    return str(getattr(e, "name", getattr(e, "__name__", type(e).__name__)))


def fid(gen, ref, extractor, components: Sequence[int] | None = None, eps: float = 1e-6) -> MetricResult:
    """Fréchet distance between the features of generated and real images, per component.

    Parameters
    ----------
    gen, ref : list of image arrays, Components or one image array
        The rows need not be paired (and counts may differ).
    extractor : callable or list of callables
        ``images (n, C, H, W) -> features (n, f)``, one for all components or one per component;
        a ``torch.nn.Module`` is wrapped in :class:`ClassifierFeatures` (its penultimate layer).
        Built in: :class:`ClassifierFeatures`, :class:`InceptionV3Features`.
    components : list of int, optional
        Components to evaluate (default all).
    eps : float
        See :func:`frechet_distance`.

    Returns
    -------
    MetricResult
        ``value``: mean FID over the components (lower is better);
        ``details["per_component"]`` and ``details["extractor"]`` (names; FIDs from different
        extractors are not comparable).
    """
    g, r = _image_pair(gen, ref, paired=False)
    comps = _select(components, len(g))
    ext = _extractors(extractor, len(g))
    per = {i: frechet_distance(ext[i](g[i]), ext[i](r[i]), eps).value for i in comps}
    names = sorted({_extractor_name(ext[i]) for i in comps})
    return MetricResult("fid", float(np.mean(list(per.values()))),
                        {"per_component": per, "extractor": names[0] if len(names) == 1 else names},
                        g[0].shape[0], r[0].shape[0])


def conditional_fid(estimator, X, extractor, known_sets="single", random_state=0, eps: float = 1e-6
                    ) -> MetricResult:
    """FID of the generated (missing) components of completed rows against the real ones.

    Returns
    -------
    MetricResult
        ``value``: mean over subsets of the mean FID over the generated components;
        ``details["per_subset"]``.
    """
    ref = component_arrays(X)
    ext = _extractors(extractor, len(ref))
    per = {tuple(known): fid(full, ref, ext, components=missing, eps=eps).value
           for known, full, missing in complete_rows(estimator, ref, known_sets, random_state)}
    n = len(ref[0])
    return MetricResult("conditional_fid", float(np.mean(list(per.values()))),
                        {"per_subset": per, "extractor": sorted({_extractor_name(e) for e in ext})}, n, n,
                        random_state)


# ----------------------------------------------------------------------------------------------
# centre of mass
# ----------------------------------------------------------------------------------------------
def centres_of_mass(images, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Intensity-weighted centroid ``(x, y)`` of every image.

    Parameters
    ----------
    images : array ``(n, C, H, W)`` or ``(n, H, W)``
        Intensities (summed over channels); negative values count as 0.
    normalize : bool, default=True
        Coordinates in ``[0, 1]`` (column / (W - 1), row / (H - 1)) instead of pixels.

    Returns
    -------
    centroids : ndarray ``(n, 2)``
        ``x`` (column) then ``y`` (row); an all-zero image gets the image centre.
    empty : ndarray of bool ``(n,)``
        Which images were all zero.
    """
    x = _as_nchw(images, "images")
    w = np.clip(x, 0, None).sum(1)  # (n, H, W)
    n, H, W = w.shape
    total = w.sum((1, 2))
    empty = total <= 0
    cols = np.arange(W, dtype=np.float64)
    rows = np.arange(H, dtype=np.float64)
    safe = np.where(empty, 1.0, total)
    cx = (w.sum(1) @ cols) / safe
    cy = (w.sum(2) @ rows) / safe
    cx = np.where(empty, (W - 1) / 2, cx)
    cy = np.where(empty, (H - 1) / 2, cy)
    c = np.stack([cx, cy], 1)
    if normalize:
        c = c / np.array([max(W - 1, 1), max(H - 1, 1)], dtype=np.float64)
    return c, empty


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    M = ot.dist(a, b, metric="euclidean")
    return float(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), M, numItermax=10_000_000))


def centre_of_mass_wasserstein(gen, ref, n: int = 2000, normalize: bool = True, random_state=0
                               ) -> MetricResult:
    """Wasserstein-1 distance between generated and real centre-of-mass clouds (BIKED).

    Every component image is reduced to its intensity-weighted centroid ``(x, y)``
    (:func:`centres_of_mass`); exact OT (``ot.emd2``, Euclidean cost) compares the clouds per
    component and the joint ``2M``-vector of all centroids of a row, which measures whether the
    parts sit where they belong relative to each other.

    Parameters
    ----------
    gen, ref : list of image arrays or Components
    n : int, default=2000
        Rows subsampled from each side (exact OT is cubic in n).
    normalize : bool, default=True
        Centroids in image-size units (``[0, 1]``) rather than pixels.
    random_state : int or None
        Seed of the subsampling.

    Returns
    -------
    MetricResult
        ``value``: the joint distance (lower is better); ``details["per_component"]``,
        ``details["mean_per_component"]`` and ``details["n_empty"]`` (all-zero images, placed at
        the centre, per component of generated / reference).
    """
    g, r = _image_pair(gen, ref, paired=False)
    rng = np.random.default_rng(random_state)
    gi = rng.permutation(g[0].shape[0])[:n]
    ri = rng.permutation(r[0].shape[0])[:n]
    cg = [centres_of_mass(a[gi], normalize) for a in g]
    cr = [centres_of_mass(a[ri], normalize) for a in r]
    per = np.array([_w1(a[0], b[0]) for a, b in zip(cg, cr)])
    joint = _w1(np.concatenate([c[0] for c in cg], 1), np.concatenate([c[0] for c in cr], 1))
    details = {"per_component": per, "mean_per_component": float(per.mean()),
               "n_empty": {"generated": [int(c[1].sum()) for c in cg], "reference": [int(c[1].sum()) for c in cr]}}
    return MetricResult("centre_of_mass_wasserstein", joint, details, len(gi), len(ri), random_state)


def conditional_centre_of_mass_wasserstein(estimator, X, known_sets="single", n: int = 2000,
                                           normalize: bool = True, random_state=0) -> MetricResult:
    """:func:`centre_of_mass_wasserstein` between completed rows (observed + generated parts)
    and the real rows, averaged over the observed subsets (``details["per_subset"]``)."""
    ref = component_arrays(X)
    per = {tuple(known): centre_of_mass_wasserstein(full, ref, n, normalize, random_state).value
           for known, full, _ in complete_rows(estimator, ref, known_sets, random_state)}
    m = len(ref[0])
    return MetricResult("conditional_centre_of_mass_wasserstein", float(np.mean(list(per.values()))),
                        {"per_subset": per}, m, m, random_state)


@hookimpl
def mcgen_register_metrics(register):
    register("ssim", ssim, greater_is_better=True,
             description="structural similarity of paired images (scikit-image), mean over pairs")
    register("fid", fid, greater_is_better=False,
             description="Fréchet distance between image features of a named extractor")
    register("centre_of_mass_wasserstein", centre_of_mass_wasserstein, greater_is_better=False,
             description="exact W1 between intensity-centroid clouds, per component and joint")
