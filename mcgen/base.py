"""``MultiComponentVAE``: the scikit-learn estimator every model shares.

It declares the shared parameters once (:meth:`MultiComponentVAE.__init__` and
``_parameter_constraints``; each estimator extends both with its own), validates every input at
one gate (:meth:`~MultiComponentVAE._validate_data`), resolves the per-component specifications
(latent sizes, architecture factories from the registry, likelihoods), and orchestrates fitting
(the training loop and its behaviours live in :mod:`mcgen.training`) and inference.  It knows
nothing of the mathematics of the models: a subclass names its torch module in
:meth:`~MultiComponentVAE._build_module`.

**Adding a shared hyper-parameter** takes three edits, all in this module: the keyword in
:meth:`MultiComponentVAE.__init__`, its constraint in ``_parameter_constraints`` and its entry in
``SHARED_PARAMETER_DOCS``; the estimators' signatures and docstrings include it by themselves
(see ``docs/design.md``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import math
import numbers
import os
import warnings
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_scalar
from skorch.history import History

from mcgen.components import (
    SPLIT_BY_ENTRIES_HINT,
    Components,
    _as_array,
    as_components,
    check_not_split_by_component,
    is_single_array,
)
from mcgen.exceptions import PersistenceError
from mcgen.likelihoods import Likelihood, make_likelihood
from mcgen.missing import check_observed, format_rows, observed_mask, observed_patterns
from mcgen.models.base import ComponentSpec, MultiComponentModule
from mcgen.persistence import (
    CHECKPOINT_FILE,
    params_to_json,
    read_checkpoint,
    register_estimator_class,
    upgrade_params,
)
from mcgen.plugins import auto_architecture, get_architecture, get_registries
from mcgen.plugins.contract import CheckedFactory
from mcgen.standardizer import Standardizer
from mcgen.training import (
    OPTIMIZERS,
    ComponentsDataset,
    EpochCheckpoint,
    MultiComponentNet,
    ResumeFromCheckpoint,
    build_net,
    resolve_n_threads,
    seeded_rng,
    torch_threads,
)

__all__ = ["SHARED_PARAMETER_DOCS", "MultiComponentVAE"]

logger = logging.getLogger("mcgen")

#: Monte Carlo samples used by ``score_samples`` (fixed seed: the score is deterministic).
SCORE_MC_SAMPLES = 8
#: Rows per chunk in inference methods (bounds memory on large inputs).
INFERENCE_CHUNK = 4096
#: The line of an estimator's docstring that the shared parameters' entries replace.
SHARED_PARAMETERS_MARKER = "    [shared parameters]\n"
#: Parameters a checkpoint may have been written with other values of: resuming with more
#: epochs, on another device or with other logging continues the same fit.
_RESUME_FREE_PARAMETERS = frozenset({"max_epochs", "verbose", "callbacks", "device", "checkpoint_dir",
                                      "n_threads"})

#: numpydoc entries (type, description) of the shared parameters; the default is read from
#: each estimator's signature.  An estimator may reword an entry in ``_shared_parameter_docs``.
SHARED_PARAMETER_DOCS: dict[str, tuple[str, str]] = {
    "latent_dim": ("int, list of int or \"auto\"",
                   "Latent size, one for all components or one per component; ``\"auto\"``: 8 per component, "
                   "or the component's number of features when it has fewer (measured best on real data)."),
    "beta": ("float", "Weight of the KL term of the training objective."),
    "encoder": ("str or list of str",
                "Registered architecture name(s) encoding each component; ``\"auto\"`` picks, by the "
                "component's shape, the registered architecture of its kind that ranks highest "
                "(``mlp`` for vectors, ``resnet``/``conv`` for images; see ``docs/plugins.md``)."),
    "decoder": ("str or list of str", "As ``encoder``, for the decoders."),
    "encoder_kwargs": ("dict or list of dict",
                       "Options for the encoder architectures (e.g. ``{\"hidden\": (128, 128)}`` for ``mlp``), "
                       "one dict for all components or one per component."),
    "decoder_kwargs": ("dict or list of dict", "As ``encoder_kwargs``, for the decoders."),
    "likelihood": ("str, dict, Likelihood or list",
                   "``\"gaussian\"`` (learned per-feature scale), ``\"laplace\"`` or ``\"bernoulli\"``, one for all "
                   "components or one per component; a dict such as ``{\"name\": \"laplace\", \"scale\": 0.75, "
                   "\"learn_scale\": False}`` fixes options; a ``mcgen.likelihoods.Likelihood`` instance is "
                   "copied for every component."),
    "llik_scale": ("float or list of float",
                   "Weight of each component's log-likelihood in the training loss (``None``: 1)."),
    "standardize": ("bool",
                    "Standardise the components whose likelihood is a location-scale family (gaussian, "
                    "laplace) internally, and undo it on every output, so data of any scale trains with the "
                    "same defaults."),
    "max_epochs": ("int", "Training epochs."),
    "batch_size": ("int", "Rows per training batch."),
    "lr": ("float", "Learning rate."),
    "optimizer": ("{\"adam\", \"adamw\", \"sgd\", \"rmsprop\"} or torch optimizer class", "The optimizer."),
    "device": ("str", "``\"cuda\"`` trains and infers on the GPU."),
    "callbacks": ("list of skorch callbacks", "Extra skorch callbacks (objects or ``(name, callback)`` pairs)."),
    "validation_fraction": ("float",
                            "Hold out this fraction of rows for validation and stop early on the validation "
                            "loss, restoring the best epoch (``None``: no early stopping)."),
    "n_iter_no_change": ("int",
                         "Epochs without improvement of the validation loss before training stops (used with "
                         "``validation_fraction``)."),
    "clip_grad_norm": ("float", "Clip the gradient norm at this value (``None``: no clipping)."),
    "net_kwargs": ("dict", "Other keyword arguments of the skorch ``NeuralNet`` (its ``__`` routing works)."),
    "random_state": ("int, RandomState or None",
                     "Seed for initialisation, batching and Monte Carlo noise; an int makes ``fit`` "
                     "reproducible."),
    "verbose": ("int", "Print a per-epoch table and a progress bar when positive."),
    "checkpoint_dir": ("str or path",
                       "Save a checkpoint after every epoch there (atomically; the folder is created when missing); "
                       "``fit(X, resume=True)`` continues an interrupted fit of the same data from it (see "
                       "``docs/reliability.md``)."),
    "n_threads": ("int, \"auto\" or None",
                  "Torch threads for ``fit`` and every inference call (restored afterwards). ``\"auto\"``: one "
                  "thread inside a parallel worker (``GridSearchCV(n_jobs=k)``, ``cross_val_score(n_jobs=k)``, "
                  "joblib, Dask), whose processes already share the cores, and torch's setting elsewhere; "
                  "``None``: always torch's setting; an int: that many. On a machine busy with other work, 1 is "
                  "often much faster than torch's default of one per core (see ``docs/reliability.md``)."),
}


def _per_component(value: Any, M: int, name: str) -> list:
    """Broadcast a scalar/str/dict parameter to M components, or check a per-component list."""
    if isinstance(value, (list, tuple)):
        if len(value) != M:
            raise ValueError(f"{name} has {len(value)} entries but there are {M} components")
        return list(value)
    return [value] * M


def _seed_from(random_state) -> int:
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _architecture_label(name: str) -> str:
    """``architecture 'name' of plugin 'p' (distribution version)``, for error messages."""
    entry = get_registries().architectures[name]
    where = f"{entry.distribution} {entry.version}" if entry.distribution else "registered in-process"
    return f"architecture {name!r} of plugin {entry.plugin!r} ({where})"


def _format_default(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _fitted_state(shapes: Sequence[tuple[int, ...]], standardizer: Standardizer, seed: int, n_rows: int | None,
                  net: MultiComponentNet) -> dict:
    """Everything a fit learned, as tensors and plain data (the persistence format)."""
    state = {"component_shapes": [list(s) for s in shapes], **standardizer.get_state(), "seed": int(seed),
             "state_dict": {k: v.detach().cpu() for k, v in net.module_.state_dict().items()},
             "history": json.dumps(net.history.to_list(), default=float)}
    if n_rows is not None:
        state["n_rows"] = int(n_rows)
    return state


def _describe_for_checkpoint(name: str, params_json: str, shapes, standardizer, seed, n_rows, data_sha256, net
                             ) -> dict:
    """The estimator part of a training checkpoint (see :class:`mcgen.training.EpochCheckpoint`)."""
    out = {"estimator": name, "params": params_json, **_fitted_state(shapes, standardizer, seed, n_rows, net)}
    if data_sha256 is not None:
        out["data_sha256"] = data_sha256
    return out


#: Rows hashed at a time by :func:`data_fingerprint` (bounds the float32 copy it makes).
_FINGERPRINT_CHUNK = 65536


def data_fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 of the training data as the model sees it: the number of components, each
    component's shape and its values as float32, row by row (so other values, another row order
    or a rescaling give another fingerprint, and the same numbers in another dtype or container
    the same one)."""
    h = hashlib.sha256(f"{len(arrays)}".encode())
    for a in arrays:
        h.update(f"|{tuple(a.shape)}|".encode())
        for start in range(0, a.shape[0], _FINGERPRINT_CHUNK):
            h.update(np.ascontiguousarray(a[start:start + _FINGERPRINT_CHUNK], dtype=np.float32).tobytes())
    return h.hexdigest()


class MultiComponentVAE(TransformerMixin, DensityMixin, BaseEstimator):
    """Base class of mcgen's multi-component generative estimators.

    Holds the parameters every estimator shares (see :class:`mcgen.GMRFMultiComponentVAE` for
    their documentation).  A subclass lists only its own parameters (and the shared defaults it
    changes) in its ``__init__``, passes the rest on with ``**shared``, extends
    ``_parameter_constraints`` and implements :meth:`_build_module`; its signature (what
    ``get_params`` reads) and the shared part of its docstring are completed automatically.
    """

    _parameter_constraints: dict = {
        "latent_dim": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), list, tuple, None],
        "beta": [Interval(Real, 0, None, closed="left")],
        "encoder": [str, list, tuple],
        "decoder": [str, list, tuple],
        "encoder_kwargs": [dict, list, tuple, None],
        "decoder_kwargs": [dict, list, tuple, None],
        "likelihood": [str, dict, Likelihood, list, tuple],
        "llik_scale": [Interval(Real, 0, None, closed="neither"), list, tuple, None],
        "standardize": ["boolean"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(set(OPTIMIZERS)), type],
        "device": [str, torch.device, None],
        "callbacks": [list, tuple, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "clip_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "net_kwargs": [dict, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_dir": [str, os.PathLike, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    }
    #: Renamed parameters, ``{old: new}``: files written before the rename still load.
    _renamed_parameters: dict[str, str] = {
        "valid_fraction": "validation_fraction", "patience": "n_iter_no_change", "llik_scaling": "llik_scale",
    }
    #: Rewordings of shared parameter entries in this estimator's docstring, ``{name: (type, text)}``.
    _shared_parameter_docs: dict[str, tuple[str, str]] = {}
    #: scikit-learn checks (``sklearn.utils.estimator_checks``) that cannot pass, with the reason;
    #: the test suite hands them to ``parametrize_with_checks(expected_failed_checks=...)``.
    _expected_failed_checks: dict[str, str] = {
        "check_transformer_data_not_an_array": (
            "a Python list is mcgen's multi-component input (one array per component), so the check's list of "
            "rows is read as that many one-row components; array-likes that are not lists (the check's "
            "_NotAnArray) are accepted as one component"),
        "check_methods_subset_invariance": (
            "score_samples is a Monte Carlo ELBO estimate whose draws come from one fixed-seed generator per "
            "call, so a row's value depends on the other rows of the call (transform is row-wise)"),
        "check_methods_sample_order_invariance": (
            "score_samples is a Monte Carlo ELBO estimate whose draws come from one fixed-seed generator per "
            "call, so permuting the rows permutes the draws (transform is row-wise)"),
    }
    #: ``latent_dim=None`` gives this many latent coordinates per component.
    _default_latent_dim = 2
    #: ``latent_dim="auto"``: this many latent coordinates per component, or the component's number
    #: of features when it has fewer (docs/results.md, "Completion on real data").
    _auto_latent_max = 8

    def __init__(self, latent_dim=None, beta=1.0, *, encoder="auto", decoder="auto", encoder_kwargs=None,
                 decoder_kwargs=None, likelihood="gaussian", llik_scale=None, standardize=True, max_epochs=100,
                 batch_size=256, lr=1e-3, optimizer="adam", device="cpu", callbacks=None, validation_fraction=None,
                 n_iter_no_change=10, clip_grad_norm=None, net_kwargs=None, random_state=None, verbose=0,
                 checkpoint_dir=None, n_threads="auto"):
        self.latent_dim = latent_dim
        self.beta = beta
        self.encoder = encoder
        self.decoder = decoder
        self.encoder_kwargs = encoder_kwargs
        self.decoder_kwargs = decoder_kwargs
        self.likelihood = likelihood
        self.llik_scale = llik_scale
        self.standardize = standardize
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.device = device
        self.callbacks = callbacks
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.clip_grad_norm = clip_grad_norm
        self.net_kwargs = net_kwargs
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.n_threads = n_threads

    # ------------------------------------------------------------------------------------------
    # declaring the parameters once: signatures and docstrings of the subclasses
    # ------------------------------------------------------------------------------------------
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            init.__signature__ = cls._composed_signature(init)
        cls._render_docstring()
        register_estimator_class(cls)

    @classmethod
    def _composed_signature(cls, init) -> inspect.Signature:
        """The signature of ``init(self, <own parameters>, **shared)`` with ``**shared`` replaced
        by the parent's parameters: the parent's order, with the defaults ``init`` changes, then
        ``init``'s own keyword-only parameters."""
        own = {p.name: p for p in inspect.signature(init).parameters.values() if p.kind is not p.VAR_KEYWORD}
        parent = inspect.signature(super(cls, cls).__init__).parameters.values()
        positional = [p for p in own.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        keyword = [own.get(p.name, p).replace(kind=p.KEYWORD_ONLY) for p in parent
                   if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in own)]
        extras = [p for name, p in own.items() if p.kind is p.KEYWORD_ONLY and name not in {q.name for q in parent}]
        return inspect.Signature([*positional, *keyword, *extras])

    @classmethod
    def _render_docstring(cls) -> None:
        """Replace the ``[shared parameters]`` line of the class docstring by the numpydoc
        entries of the shared parameters, with this class's defaults.

        Raises ``TypeError`` (at import) when a public mcgen estimator's docstring lacks the
        line or has it twice, or when a rewording names no shared parameter.
        """
        doc = cls.__dict__.get("__doc__") or ""
        count = doc.count(SHARED_PARAMETERS_MARKER)
        public = cls.__module__.startswith("mcgen.") and not cls.__name__.startswith("_")
        if count == 0 and not public:
            return
        if count != 1:
            raise TypeError(f"the docstring of {cls.__name__} must hold the line {SHARED_PARAMETERS_MARKER.strip()!r} "
                            f"exactly once (found {count})")
        docs: dict[str, tuple[str, str]] = dict(SHARED_PARAMETER_DOCS)
        for klass in reversed(cls.__mro__):
            overrides = klass.__dict__.get("_shared_parameter_docs", {})
            unknown = set(overrides) - set(SHARED_PARAMETER_DOCS)
            if unknown:
                raise TypeError(f"{klass.__name__}._shared_parameter_docs rewords unknown parameters {sorted(unknown)}")
            docs.update(overrides)
        defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}
        shared = inspect.signature(MultiComponentVAE.__init__).parameters
        missing = [name for name in shared if name != "self" and name not in docs]
        if missing:
            raise TypeError(f"shared parameters without documentation: {missing}")
        entries = []
        for name in shared:
            if name == "self":
                continue
            kind, text = docs[name]
            entries.append(f"    {name} : {kind}, default={_format_default(defaults[name])}\n")
            words, line = text.split(), "       "
            for word in words:
                if len(line) + 1 + len(word) > 96:
                    entries.append(line + "\n")
                    line = "       "
                line += " " + word
            entries.append(line + "\n")
        before, _, after = doc.partition(SHARED_PARAMETERS_MARKER)
        cls.__doc__ = before + "".join(entries) + after

    # ------------------------------------------------------------------------------------------
    # scikit-learn plumbing
    # ------------------------------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_")

    def _build_module(self, specs: list[ComponentSpec]) -> MultiComponentModule:  # pragma: no cover
        """The torch module this estimator trains (subclasses implement it)."""
        raise NotImplementedError

    def _callbacks(self) -> list:
        """The training callbacks: estimator-specific ones (subclasses extend) and the user's."""
        return list(self.callbacks or [])

    # ------------------------------------------------------------------------------------------
    # the input gate
    # ------------------------------------------------------------------------------------------
    def _validate_data(self, X, *, reset: bool, components: Sequence[int] | None = None,
                       missing_rows: bool = False):
        """Validate ``X``: the one input check of every public method.

        ``reset=True`` (fitting): ``X`` is a list of arrays, a ``Components`` or one array (one
        component); returns a :class:`Components` checked for training.  Nothing is stored here:
        ``fit`` sets ``n_features_in_`` and the other fitted attributes once everything passed.

        ``reset=False`` (inference): the arrays of the fitted components ``components``
        (default: all, in order) are checked against the fitted shapes; returns them as a list
        of arrays.  Messages name the fitted component index.  ``missing_rows`` lets a row's
        component be missing (NaN throughout), as fitting always does; every row keeps at least
        one observed component.
        """
        if reset:
            check_not_split_by_component(X)
            C = as_components(X)
            for i, a in enumerate(C.arrays):
                if a.ndim < 2:
                    raise ValueError(f"component {i} has shape {a.shape}; each component needs shape "
                                     "(n_samples, *features). Reshape your data, e.g. x[:, None] for a single "
                                     "feature")
                if 0 in a.shape[1:]:
                    raise ValueError(f"component {i} has 0 feature(s) (shape={a.shape}) while a minimum of 1 is "
                                     "required.")
                self._check_finite(a, i, missing_rows=True)
            if C.n_samples < 2:
                raise ValueError(f"fit needs at least 2 samples (rows), got n_samples = {C.n_samples}")
            check_observed(observed_mask(C.arrays))
            return C
        check_is_fitted(self)
        comps = list(range(self.n_components_)) if components is None else list(components)
        if isinstance(X, Components):
            X = list(X.arrays)
        elif len(comps) == 1 and is_single_array(X):
            X = [X]
        if not isinstance(X, (list, tuple)):
            raise TypeError(f"expected a list of component arrays or a Components, got {type(X).__name__}")
        if len(X) != len(comps):
            raise ValueError(f"X has {len(X)} components but the estimator was fitted with {len(comps)} "
                             f"({SPLIT_BY_ENTRIES_HINT})")
        arrays = [_as_array(a, f"component {i}") for a, i in zip(X, comps)]
        n = arrays[0].shape[0]
        for a, i in zip(arrays, comps):
            if a.shape[0] != n:
                raise ValueError(f"component {i} has {a.shape[0]} rows but component {comps[0]} has {n}; "
                                 "all components must have the same number of rows")
            fitted = self.component_shapes_[i]
            if a.ndim < 2:
                raise ValueError(f"component {i} has shape {a.shape} but the estimator was fitted on sample shape "
                                 f"{fitted}. Reshape your data: x[None] for a single sample")
            if a.shape[1:] != fitted:
                msg = f"component {i} has sample shape {a.shape[1:]} but the estimator was fitted on {fitted}"
                if self.n_components_ == 1 and a.ndim == 2 and len(fitted) == 1:
                    msg += (f" (X has {a.shape[1]} features, but {type(self).__name__} is expecting {fitted[0]} "
                            "features as input)")
                raise ValueError(msg)
            self._check_finite(a, i, missing_rows=missing_rows)
        if n == 0:
            raise ValueError("X has 0 rows; at least one sample is required")
        if missing_rows:
            check_observed(observed_mask(arrays), components=comps, need_every_component=False)
        return arrays

    @staticmethod
    def _check_finite(a: np.ndarray, i: int, missing_rows: bool = False) -> None:
        """Refuse NaN, infinite, and values beyond float32's range (the models compute in
        float32, where they would overflow to infinity).

        With ``missing_rows`` a row whose component ``i`` is NaN throughout is a missing
        component (``fit``, ``partial_fit``, ``predict_missing`` and ``score_samples`` take them);
        a row that is NaN in part of the component stays an error naming the row."""
        if a.dtype.kind != "f" or a.size == 0:
            return
        finite = np.isfinite(a)
        if not finite.all():
            nan = np.isnan(a)
            n_inf = int(a.size - finite.sum() - nan.sum())
            if n_inf:
                rows = np.flatnonzero(np.isinf(a).reshape(len(a), -1).any(1))
                raise ValueError(f"component {i} contains {n_inf} infinite value{'s' * (n_inf != 1)} (rows "
                                 f"{format_rows(rows)}); mcgen needs finite values")
            per_row = nan.reshape(len(a), -1)
            partial = np.flatnonzero(per_row.any(1) & ~per_row.all(1))
            if partial.size:
                raise ValueError(f"component {i} is NaN in part of row{'s' * (partial.size != 1)} "
                                 f"{format_rows(partial)}: a component is either observed in full or missing "
                                 "(NaN throughout); impute the partly missing features or set the whole component "
                                 "of that row to NaN")
            if not missing_rows:
                rows = np.flatnonzero(per_row.all(1))
                raise ValueError(f"component {i} is missing (NaN) in row{'s' * (rows.size != 1)} "
                                 f"{format_rows(rows)}; this method needs the component observed in every row (fit, "
                                 "partial_fit, score_samples and predict_missing(X) take missing components)")
        if a.dtype.itemsize > 4:
            finite_values = np.abs(a[finite])
            big = float(finite_values.max()) if finite_values.size else 0.0
            limit = float(np.finfo(np.float32).max)
            if big > limit:
                n_big = int((np.nan_to_num(np.abs(a)) > limit).sum())
                raise ValueError(f"component {i} holds {n_big} value{'s' * (n_big != 1)} beyond float32's range "
                                 f"(largest magnitude {big:.3g} > {limit:.3g}); mcgen computes in float32, where they "
                                 "overflow to infinity: rescale the component (e.g. divide it by a power of ten)")

    def _check_device(self) -> None:
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} was requested but torch reports no CUDA device")

    # ------------------------------------------------------------------------------------------
    # per-component specifications
    # ------------------------------------------------------------------------------------------
    def _latent_dims(self, shapes: Sequence[tuple[int, ...]]) -> list[int]:
        """One latent size per component from ``latent_dim``."""
        latent = self._default_latent_dim if self.latent_dim is None else self.latent_dim
        if isinstance(latent, str):  # "auto": as many as the benchmark found best, never more than features
            latent = [min(self._auto_latent_max, math.prod(sh)) for sh in shapes]
        dims = _per_component(latent, len(shapes), "latent_dim")
        return [_positive_int(d, f"latent_dim for component {i}") for i, d in enumerate(dims)]

    def _resolve_specs(self, shapes: Sequence[tuple[int, ...]], arrays: Sequence[np.ndarray] | None = None
                       ) -> list[ComponentSpec]:
        """Per-component specs from the parameters and the component shapes: the latent size,
        the encoder and decoder factories (``"auto"`` and names resolved through the registry),
        the likelihood (built and, with ``arrays``, checked against the data) and its weight."""
        shapes = [tuple(int(d) for d in sh) for sh in shapes]
        M = len(shapes)
        latent = self._latent_dims(shapes)
        encoders = _per_component(self.encoder, M, "encoder")
        decoders = _per_component(self.decoder, M, "decoder")
        enc_kw = _per_component(self.encoder_kwargs or {}, M, "encoder_kwargs")
        dec_kw = _per_component(self.decoder_kwargs or {}, M, "decoder_kwargs")
        liks = _per_component(self.likelihood, M, "likelihood")
        scales = _per_component(1.0 if self.llik_scale is None else self.llik_scale, M, "llik_scale")
        specs = []
        for i, shape in enumerate(shapes):
            factories = []
            for name, role in ((encoders[i], "encoder"), (decoders[i], "decoder")):
                if not isinstance(name, str):
                    raise TypeError(f"{role} for component {i} must be an architecture name, got {name!r}")
                resolved = auto_architecture(shape) if name == "auto" else name
                arch = get_architecture(resolved)
                # every network built from it is checked on a dummy batch (PluginContractError
                # naming the plugin, the architecture and the component)
                factories.append(CheckedFactory(arch.encoder_factory if role == "encoder" else arch.decoder_factory,
                                                role, f"{_architecture_label(resolved)}, {role} of component {i} "
                                                      f"(shape {shape})"))
            for kw, role in ((enc_kw[i], "encoder_kwargs"), (dec_kw[i], "decoder_kwargs")):
                if not isinstance(kw, dict):
                    raise TypeError(f"{role} for component {i} must be a dict, got {type(kw).__name__}")
            lik = make_likelihood(liks[i], shape, i)
            if arrays is not None:
                lik.check_support(arrays[i], f"component {i}")
            s = scales[i]
            if isinstance(s, bool) or not isinstance(s, numbers.Real) or not (np.isfinite(s) and s > 0):
                raise ValueError(f"llik_scale for component {i} must be a positive number, got {s!r}")
            specs.append(ComponentSpec(shape=shape, latent_dim=latent[i], encoder=factories[0], decoder=factories[1],
                                       encoder_kwargs=dict(enc_kw[i]), decoder_kwargs=dict(dec_kw[i]),
                                       likelihood=lik, llik_scale=float(s)))
        return specs

    @staticmethod
    def _auto_architecture(shape: tuple[int, ...], registered=None) -> str:
        """The architecture ``"auto"`` resolves to for ``shape`` (see
        :func:`mcgen.plugins.auto_architecture`)."""
        return auto_architecture(shape, registered)

    # ------------------------------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------------------------------
    def _make_net(self, module: MultiComponentModule, seed: int) -> MultiComponentNet:
        """The skorch net training ``module`` with this estimator's settings (the place to
        swap the net class, as the Accelerate recipe of ``docs/scaling.md`` does)."""
        return build_net(module, seed=seed, optimizer=self.optimizer, lr=self.lr, max_epochs=self.max_epochs,
                         batch_size=self.batch_size, validation_fraction=self.validation_fraction,
                         n_iter_no_change=self.n_iter_no_change, clip_grad_norm=self.clip_grad_norm,
                         callbacks=self._callbacks(), device=self.device, verbose=self.verbose,
                         net_kwargs=self.net_kwargs)

    def _new_net(self, module: MultiComponentModule, seed: int, shapes, standardizer: Standardizer,
                 n_rows: int | None, resume_from: dict | None = None, data_sha256: str | None = None
                 ) -> MultiComponentNet:
        """:meth:`_make_net` plus the checkpoint callbacks: restoring ``resume_from`` first,
        writing a checkpoint after every epoch (when ``checkpoint_dir``; with the data's
        fingerprint ``data_sha256``) last."""
        net = self._make_net(module, seed)
        callbacks = list(net.callbacks or [])
        if resume_from is not None:
            callbacks.insert(0, ("resume_from_checkpoint", ResumeFromCheckpoint(resume_from)))
        if self.checkpoint_dir is not None:
            describe = functools.partial(_describe_for_checkpoint, type(self).__name__,
                                         params_to_json(self, warn=False), tuple(shapes), standardizer, seed, n_rows,
                                         data_sha256)
            callbacks.append(("epoch_checkpoint", EpochCheckpoint(os.fspath(self.checkpoint_dir), describe)))
        net.callbacks = callbacks
        return net

    def _dataset(self, arrays: Sequence[np.ndarray], standardizer: Standardizer | None = None) -> ComponentsDataset:
        """The training dataset (standardised float32 tensors on the CPU; skorch moves batches).

        Missing components (NaN rows) become zeros and the dataset carries the observed mask,
        which the module receives as ``mask``."""
        st = self.standardizer_ if standardizer is None else standardizer
        mask = observed_mask(arrays)
        tensors = [st.to_tensor(a, i) for i, a in enumerate(arrays)]
        for i, t in enumerate(tensors):
            if mask is not None and not bool(mask[:, i].all()):
                t[~torch.from_numpy(mask[:, i])] = 0.0  # a placeholder, never read as data
            if not bool(torch.isfinite(t).all()):  # values near float32's limit, spread to both ends
                raise ValueError(f"component {i} overflows float32 once centred and scaled (values near "
                                 f"{float(np.finfo(np.float32).max):.3g} of both signs); rescale the component")
        return ComponentsDataset(tensors, None if mask is None else torch.from_numpy(mask))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, resume: bool = False) -> MultiComponentVAE:
        """Fit the model.

        Every check (parameters, data, the model's construction) runs before any fitted
        attribute is set, so a failed ``fit`` leaves a fitted estimator as it was.

        Parameters
        ----------
        X : list of array-like or Components
            One array per component, all with the same number of rows.
        y : ignored
        resume : bool, default=False
            Continue from the last checkpoint in ``checkpoint_dir`` (written after every epoch)
            up to ``max_epochs``; with the same data and parameters the result equals an
            uninterrupted fit.  Other data (checked by a SHA-256 of the values, their order and
            shapes) or other parameters raise a :class:`~mcgen.exceptions.PersistenceError`.
            Without a checkpoint there, training starts from scratch.  Either way a line says
            what happened (printed when ``verbose``, logged at INFO by the ``"mcgen"`` logger).

        Notes
        -----
        One array (not in a list) is a model of one component: ``fit(A)`` with ``A`` of shape
        ``(n, F)`` is ``fit([A])``, which is how scikit-learn's own checks pass data.

        Returns
        -------
        self
        """
        return self._fit(X, epochs=None, resume=resume)

    def _fit(self, X, *, epochs: int | None, resume: bool = False) -> MultiComponentVAE:
        C = self._validate_data(X, reset=True)
        self._check_device()
        checkpoint = None
        if resume and self.checkpoint_dir is None:
            raise ValueError("fit(resume=True) needs checkpoint_dir, the folder the interrupted fit wrote")
        fingerprint = data_fingerprint(C.arrays) if self.checkpoint_dir is not None else None
        if resume:
            checkpoint = read_checkpoint(self.checkpoint_dir)
            if checkpoint is not None:
                self._check_checkpoint(checkpoint, C, fingerprint)
                done = int(checkpoint["epoch"])
                todo = (f"training epoch {done + 1}" if self.max_epochs == done + 1 else
                        f"training epochs {done + 1}-{self.max_epochs}" if self.max_epochs > done + 1 else
                        "no epoch left to train")
                path = os.path.join(os.fspath(self.checkpoint_dir), CHECKPOINT_FILE)
                self._say(f"resuming from the checkpoint {path} after epoch {done} of {self.max_epochs}: {todo}")
            else:
                self._say(f"no checkpoint in {os.fspath(self.checkpoint_dir)}: training from scratch")
        seed = int(checkpoint["seed"]) if checkpoint is not None else _seed_from(self.random_state)
        shapes = C.component_shapes
        specs = self._resolve_specs(shapes, C.arrays)
        standardizer = Standardizer.fit(C.arrays, [bool(self.standardize) and s.likelihood.location_scale
                                                   for s in specs])
        dataset = self._dataset(C.arrays, standardizer)
        if checkpoint is not None:
            epochs = max(0, self.max_epochs - int(checkpoint["epoch"]))
        with torch_threads(resolve_n_threads(self.n_threads)), seeded_rng(seed, self.device):
            module = self._build_module(specs)
            for lik, sd in zip(module.likelihoods, standardizer.scale):  # fixed likelihood scales: data units
                if sd is not None and hasattr(lik, "set_data_scale"):
                    lik.set_data_scale(torch.from_numpy(sd))
            net = self._new_net(module, seed, shapes, standardizer, C.n_samples, resume_from=checkpoint,
                                data_sha256=fingerprint)
            net.initialize()
            net.partial_fit(dataset, None, epochs=self.max_epochs if epochs is None else epochs)
            net.module_.eval()
        self._set_fitted(shapes, specs, standardizer, seed, C.n_samples, net)
        return self

    def _set_fitted(self, shapes, specs: list[ComponentSpec], standardizer: Standardizer, seed: int,
                    n_rows: int | None, net: MultiComponentNet) -> None:
        """Set every fitted attribute at once (only after everything succeeded)."""
        self.n_components_ = len(shapes)
        self.component_shapes_ = tuple(tuple(s) for s in shapes)
        self.n_features_in_ = int(sum(math.prod(s) for s in shapes))
        self.latent_dims_ = [s.latent_dim for s in specs]
        self.standardizer_ = standardizer
        self._seed_ = int(seed)
        self._fit_rows_ = n_rows
        self.net_ = net
        self.history_ = net.history

    def _say(self, message: str) -> None:
        """A line about what ``fit`` does: logged at INFO by the ``"mcgen"`` logger, printed when
        ``verbose`` (like skorch's epoch table)."""
        logger.info(message)
        if self.verbose:
            print(message, flush=True)

    def _check_checkpoint(self, ck: dict, C: Components, fingerprint: str | None = None) -> None:
        if ck["estimator"] != type(self).__name__:
            raise PersistenceError(f"the checkpoint in {self.checkpoint_dir} was written by a {ck['estimator']}, "
                                   f"not a {type(self).__name__}")
        old = upgrade_params(json.loads(ck["params"]), self._renamed_parameters)
        new = json.loads(params_to_json(self, warn=False))
        changed = sorted(k for k in set(old) | set(new)
                         if k not in _RESUME_FREE_PARAMETERS and old.get(k) != new.get(k))
        if changed:
            raise PersistenceError(f"the checkpoint in {self.checkpoint_dir} was written with other values of "
                                   f"{', '.join(changed)}; resume with the parameters of the interrupted fit")
        if [tuple(s) for s in ck["component_shapes"]] != list(C.component_shapes) or ck["n_rows"] != C.n_samples:
            raise PersistenceError(f"the checkpoint in {self.checkpoint_dir} was written for other data "
                                   f"({ck['n_rows']} rows, shapes {ck['component_shapes']})")
        recorded = ck.get("data_sha256")
        if recorded is None:  # written by mcgen 0.1
            warnings.warn(f"the checkpoint in {self.checkpoint_dir} records no fingerprint of its training data (it "
                          "was written by an older mcgen), so resuming cannot check that the data are the same",
                          UserWarning, stacklevel=4)
        elif fingerprint is not None and recorded != fingerprint:
            raise PersistenceError(
                f"the checkpoint in {self.checkpoint_dir} was written for other data: the SHA-256 of the training "
                "data differs (same rows and shapes, other values or row order); resume with the data of the "
                "interrupted fit, or start over with another checkpoint_dir (or without resume=True)")

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, epochs: int = 1) -> MultiComponentVAE:
        """Train for ``epochs`` more epochs (one by default); fits from scratch when unfitted.

        Parameters
        ----------
        X : list of array-like or Components
        y : ignored
        epochs : int, default=1

        Returns
        -------
        self
        """
        check_scalar(epochs, "epochs", Integral, min_val=1)
        if not self.__sklearn_is_fitted__():
            return self._fit(X, epochs=epochs)
        check_not_split_by_component(X)
        arrays = self._validate_data(X, reset=False, missing_rows=True)
        dataset = self._dataset(arrays)
        seed = (self._seed_ + 7919 * len(self.net_.history)) % (2**31 - 1)
        with torch_threads(resolve_n_threads(self.n_threads)), seeded_rng(seed, self.device):
            self.net_.partial_fit(dataset, None, epochs=epochs)
            self.net_.module_.eval()
        self.history_ = self.net_.history
        return self

    # ------------------------------------------------------------------------------------------
    # persistence protocol (mcgen.persistence)
    # ------------------------------------------------------------------------------------------
    def _get_fitted_state(self) -> dict:
        """Everything learned, as tensors and plain data (what ``save`` writes)."""
        check_is_fitted(self)
        return _fitted_state(self.component_shapes_, self.standardizer_, self._seed_, self._fit_rows_, self.net_)

    def _set_fitted_state(self, state: dict) -> None:
        """Rebuild the fitted estimator from :meth:`_get_fitted_state`'s output (with the
        current parameters).  The user's global torch RNG is left untouched."""
        shapes = [tuple(int(d) for d in s) for s in state["component_shapes"]]
        standardizer = Standardizer.from_state(state)
        seed = int(state["seed"])
        n_rows = state.get("n_rows")
        specs = self._resolve_specs(shapes)
        with seeded_rng(seed, self.device):
            module = self._build_module(specs)
            module.load_state_dict(state["state_dict"])
            net = self._new_net(module, seed, shapes, standardizer, n_rows)
            net.initialize()
        net.history = History(json.loads(state["history"]))
        net.module_.eval()
        self._set_fitted(shapes, specs, standardizer, seed, n_rows, net)

    def save(self, path) -> None:
        """Save to one file that :func:`mcgen.load` reads safely (parameters as JSON, weights as
        a state dict, a format version; no pickled code)."""
        from mcgen.persistence import save

        save(self, path)

    # ------------------------------------------------------------------------------------------
    # inference helpers
    # ------------------------------------------------------------------------------------------
    @property
    def module_(self) -> MultiComponentModule:
        """The trained torch module."""
        check_is_fitted(self)
        return self.net_.module_

    @property
    def standardize_mean_(self) -> list[np.ndarray | None]:
        """Per component, the feature means used for standardisation (``None``: not standardised)."""
        check_is_fitted(self)
        return self.standardizer_.mean

    @property
    def standardize_scale_(self) -> list[np.ndarray | None]:
        """Per component, the feature scales used for standardisation (``None``: not standardised)."""
        check_is_fitted(self)
        return self.standardizer_.scale

    def _to_tensor(self, a: np.ndarray, i: int, device=None) -> torch.Tensor:
        """Component ``i`` as a float32 tensor in the model's (standardised) space (a copy)."""
        return self.standardizer_.to_tensor(a, i, device)

    def _from_tensor(self, t: torch.Tensor, i: int) -> np.ndarray:
        """Component ``i`` from the model's space back to the data's units."""
        return self.standardizer_.inverse_transform(t.detach().cpu().numpy(), i)

    def _device(self) -> torch.device:
        buffers = list(self.module_.buffers())
        return buffers[0].device if buffers else torch.device("cpu")

    def _generator(self, random_state) -> torch.Generator:
        g = torch.Generator(device=self._device())
        g.manual_seed(_seed_from(random_state))
        return g

    @contextlib.contextmanager
    def _eval(self):
        """The module, in eval mode, under ``torch.no_grad``.

        The module is left in eval mode after every fit; setting it again is idempotent, and
        never switching back to train mode here keeps concurrent inference threads safe.
        """
        module = self.module_
        if module.training:
            module.eval()
        with torch_threads(resolve_n_threads(self.n_threads)), torch.no_grad():
            yield module

    @staticmethod
    def _chunks(n: int):
        for start in range(0, n, INFERENCE_CHUNK):
            yield slice(start, min(n, start + INFERENCE_CHUNK))

    # ------------------------------------------------------------------------------------------
    # public inference API
    # ------------------------------------------------------------------------------------------
    def sample(self, n_samples: int = 1, random_state=None) -> list[np.ndarray]:
        """Draw ``n_samples`` joint samples (decoder means of prior draws).

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState or None
            Seed of this call's draws (a private generator; the global RNG is untouched).

        Returns
        -------
        list of M arrays, each ``(n_samples, *component_shape)``.
        """
        check_is_fitted(self)
        n_samples = self._check_n_samples(n_samples)
        g = self._generator(random_state)
        outs: list[list[np.ndarray]] = [[] for _ in range(self.n_components_)]
        with self._eval() as module:
            for sl in self._chunks(n_samples):
                xs = module.sample(sl.stop - sl.start, generator=g)
                for i, x in enumerate(xs):
                    outs[i].append(self._from_tensor(x, i))
        return [np.concatenate(o, 0) for o in outs]

    @staticmethod
    def _check_n_samples(n_samples) -> int:
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
            raise TypeError(f"n_samples must be an integer, got {type(n_samples).__name__}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}")
        return int(n_samples)

    def _check_known(self, known) -> list[int]:
        M = self.n_components_
        if isinstance(known, (numbers.Integral, np.integer)) and not isinstance(known, bool):
            known = [known]
        try:
            known = [k for k in known]
        except TypeError:
            raise TypeError(f"known must be a list of component indices, got {type(known).__name__}") from None
        if len(known) == 0:
            raise ValueError("known is empty; at least one component must be observed")
        for k in known:
            if isinstance(k, bool) or not isinstance(k, (numbers.Integral, np.integer)):
                raise TypeError(f"known must hold integer component indices, got {k!r}")
            if not 0 <= k < M:
                raise ValueError(f"known holds component {k}, out of range for {M} components (0..{M - 1})")
        if len(set(int(k) for k in known)) != len(known):
            raise ValueError(f"known holds duplicated components: {list(known)}")
        if len(known) == M:
            raise ValueError(
                "known covers every component; nothing is missing (use reconstruct for all components)"
            )
        return [int(k) for k in known]

    def predict_missing(self, X, known=None, n_samples: int = 1, random_state=None) -> list[np.ndarray]:
        """Generate the missing components from the observed ones.

        Parameters
        ----------
        X : list or Components
            Either only the known components, in the order of ``known``, or all M components
            with ``None`` (or any placeholder, ignored) where a component is unknown.  With
            ``known=None``: all M components, where each row may lack any components, given as
            NaN throughout the component (as ``fit`` takes them); each row is completed from its
            own observed components.
        known : sequence of int or None, default=None
            Indices of the observed components (any non-empty proper subset), the same for
            every row; ``None``: read from the NaN rows of ``X``.
        n_samples : int
            Completions per row.  With ``n_samples > 1`` every returned array gains a second
            axis: ``(n_rows, n_samples, *component_shape)`` (multiple imputation).
        random_state : int, RandomState or None

        Returns
        -------
        list of M arrays, each in its component's output dtype (float64 for a component
        fitted on float64 data, float32 otherwise; ``docs/reliability.md``, "Output dtype"); the
        known components are returned as copies of the input in that dtype (repeated along the
        samples axis when ``n_samples > 1``).
        """
        check_is_fitted(self)
        if known is None:
            return self._complete_rows(X, self._check_n_samples(n_samples), random_state)
        known = self._check_known(known)
        n_samples = self._check_n_samples(n_samples)
        M = self.n_components_
        if isinstance(X, Components):
            X = list(X.arrays)
        if not isinstance(X, (list, tuple)):
            raise TypeError(f"X must be a list of component arrays or a Components, got {type(X).__name__}")
        if len(X) == M:
            X_known = [X[k] for k in known]
        elif len(X) == len(known):
            X_known = list(X)
        else:
            raise ValueError(
                f"X has {len(X)} entries; pass either the {len(known)} known components (in the order "
                f"of known={known}) or all {M} components with None where unknown"
            )
        arrays = self._validate_data(X_known, reset=False, components=known)
        return self._complete(arrays, known, n_samples, self._generator(random_state))

    def _complete(self, arrays: list[np.ndarray], known: list[int], n_samples: int, g: torch.Generator
                  ) -> list[np.ndarray]:
        """``predict_missing`` of validated arrays of the components ``known``."""
        M = self.n_components_
        n = arrays[0].shape[0]
        unknown = [i for i in range(M) if i not in known]
        gen_parts: dict[int, list[np.ndarray]] = {i: [] for i in unknown}
        dev = self._device()
        with self._eval() as module:
            for sl in self._chunks(n):
                xs = [self._to_tensor(a[sl], k, dev) for a, k in zip(arrays, known)]
                out = module.complete(xs, known, n_samples=n_samples, generator=g)
                for i in unknown:
                    x = out[i]  # (n_samples, b, *shape)
                    gen_parts[i].append(self._from_tensor(x.transpose(0, 1), i))
        result: list[np.ndarray] = []
        for i in range(M):
            if i in known:
                a = self.standardizer_.as_output(arrays[known.index(i)], i)  # the component's output dtype
                result.append(a if n_samples == 1 else np.repeat(a[:, None], n_samples, axis=1))
            else:
                x = np.concatenate(gen_parts[i], 0)
                result.append(x[:, 0] if n_samples == 1 else x)
        return result

    def _complete_rows(self, X, n_samples: int, random_state) -> list[np.ndarray]:
        """``predict_missing(X)``: every row completed from its own observed components, rows
        grouped by their pattern of observed components (each group batched)."""
        M = self.n_components_
        if isinstance(X, Components):
            X = list(X.arrays)
        if isinstance(X, (list, tuple)) and len(X) != M:
            raise ValueError(f"predict_missing without known needs all {M} components, with NaN where a row lacks "
                             f"one; X has {len(X)} entries (or pass known=[...] with the known components only)")
        arrays = self._validate_data(X, reset=False, missing_rows=True)
        mask = observed_mask(arrays)
        g = self._generator(random_state)
        result = [self.standardizer_.as_output(a, i) for i, a in enumerate(arrays)]
        if n_samples > 1:
            result = [np.repeat(a[:, None], n_samples, axis=1) for a in result]
        if mask is None:
            return result
        for known, rows in observed_patterns(mask):
            if len(known) == M:
                continue
            parts = self._complete([arrays[k][rows] for k in known], known, n_samples, g)
            for i in range(M):
                if i not in known:
                    result[i][rows] = parts[i]
        return result

    def transform(self, X) -> np.ndarray:
        """Posterior (latent) means.

        Parameters
        ----------
        X : list of array-like or Components

        Returns
        -------
        ndarray of shape ``(n, total_latent)``, float32
        """
        arrays = self._validate_data(X, reset=False)
        dev = self._device()
        parts = []
        with self._eval() as module:
            for sl in self._chunks(arrays[0].shape[0]):
                xs = [self._to_tensor(a[sl], i, dev) for i, a in enumerate(arrays)]
                parts.append(module.encode(xs).cpu().numpy())
        return np.concatenate(parts, 0)

    def inverse_transform(self, Z) -> list[np.ndarray]:
        """Decode latent vectors ``(n, total_latent)`` to M component arrays (decoder means)."""
        check_is_fitted(self)
        Z = np.asarray(Z, dtype=np.float32)
        width = self.module_.latent_size
        if Z.ndim != 2 or Z.shape[1] != width:
            raise ValueError(f"Z must have shape (n, {width}), got {Z.shape}")
        if not np.isfinite(Z).all():
            raise ValueError("Z contains NaN or infinite values")
        dev = self._device()
        outs: list[list[np.ndarray]] = [[] for _ in range(self.n_components_)]
        with self._eval() as module:
            for sl in self._chunks(Z.shape[0]):
                xs = module.decode(torch.from_numpy(Z[sl].copy()).to(dev))
                for i, x in enumerate(xs):
                    outs[i].append(self._from_tensor(x, i))
        return [np.concatenate(o, 0) for o in outs]

    def reconstruct(self, X) -> list[np.ndarray]:
        """Encode every component and decode the posterior means."""
        return self.inverse_transform(self.transform(X))

    def score_samples(self, X) -> np.ndarray:
        """Per-row evidence lower bound in nats (in the data's own units; higher is better).

        A Monte Carlo estimate with a fixed seed, so repeated calls agree exactly.
        """
        arrays = self._validate_data(X, reset=False, missing_rows=True)
        g = self._generator(0)
        dev = self._device()
        mask = observed_mask(arrays)
        jac = self.standardizer_.log_jacobian()  # per component
        parts = []
        with self._eval() as module:
            for sl in self._chunks(arrays[0].shape[0]):
                xs = [self._to_tensor(np.nan_to_num(a[sl]), i, dev) for i, a in enumerate(arrays)]
                m = None if mask is None else torch.from_numpy(mask[sl]).to(dev)
                kw = {} if m is None else {"mask": m}
                parts.append(module.elbo(xs, n_mc=SCORE_MC_SAMPLES, generator=g, **kw).double().cpu().numpy())
        jac_rows = np.full(arrays[0].shape[0], jac.sum()) if mask is None else mask @ jac
        return np.concatenate(parts, 0) - jac_rows

    def score(self, X, y=None) -> float:
        """Mean per-row ELBO (higher is better); what ``GridSearchCV`` maximises by default."""
        return float(np.mean(self.score_samples(X)))

