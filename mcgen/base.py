"""``MultiComponentVAE``: the scikit-learn estimator shared by every model.

The estimator validates input, standardises vector components, builds the model module that
its subclass names, trains it through a skorch net and turns the module's tensor methods into
NumPy-in / NumPy-out estimator methods.  It knows nothing of the mathematics of the models.
"""

from __future__ import annotations

import contextlib
import json
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EarlyStopping, GradientNormClipping, ProgressBar
from skorch.dataset import ValidSplit

from mcgen.components import Components, _as_array, as_components
from mcgen.likelihoods import LIKELIHOODS
from mcgen.models.base import ComponentSpec, MultiComponentModule
from mcgen.plugins import get_architecture, get_registries
from mcgen.training import ComponentsDataset, DivergenceGuard, JitterCounter, MultiComponentNet

#: Likelihoods whose component is standardised internally (location-scale families).
_STANDARDISED_LIKELIHOODS = ("gaussian", "laplace")
#: Monte Carlo samples used by ``score_samples`` (fixed seed: the score is deterministic).
SCORE_MC_SAMPLES = 8
#: Rows per chunk in inference methods (bounds memory on large inputs).
INFERENCE_CHUNK = 4096


def _per_component(value: Any, M: int, name: str, types: tuple = (object,)) -> list:
    """Broadcast a scalar/str/dict parameter to M components, or check a per-component list."""
    if isinstance(value, (list, tuple)) and not (name.endswith("_kwargs") and isinstance(value, dict)):
        if len(value) != M:
            raise ValueError(f"{name} has {len(value)} entries but there are {M} components")
        return list(value)
    return [value] * M


def _seed_from(random_state) -> int:
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


class MultiComponentVAE(DensityMixin, BaseEstimator):
    """Base class of mcgen's multi-component generative estimators.

    Subclasses define their parameters in ``__init__`` and implement ``_build_module``.
    See :class:`mcgen.GMRFMultiComponentVAE` for the parameters every estimator shares.
    """

    #: Folder for per-epoch checkpoints (a parameter of every public estimator; class default).
    checkpoint_dir = None
    #: Default latent size (the paper's settings differ per method).
    _default_latent_dim = 2
    #: ``latent_dim="auto"``: this many latent coordinates per component, or the component's number
    #: of features when it has fewer (docs/results.md, "Completion on real data").
    _auto_latent_max = 8

    def _build_module(self, specs: list[ComponentSpec]) -> MultiComponentModule:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # scikit-learn plumbing
    # ------------------------------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        tags.non_deterministic = True
        return tags

    # ------------------------------------------------------------------------------------------
    # validation
    # ------------------------------------------------------------------------------------------
    def _validate_fit_input(self, X) -> Components:
        C = as_components(X)
        for i, a in enumerate(C.arrays):
            if a.ndim < 2:
                raise ValueError(
                    f"component {i} has shape {a.shape}; each component needs shape "
                    "(n_samples, *features), e.g. reshape a 1-D array with x[:, None]"
                )
            if a.shape[1:] and 0 in a.shape[1:]:
                raise ValueError(f"component {i} has no features (shape {a.shape})")
            self._check_finite(a, i)
        if C.n_samples < 2:
            raise ValueError(f"fit needs at least 2 rows, got {C.n_samples}")
        return C

    @staticmethod
    def _check_finite(a: np.ndarray, i: int) -> None:
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            n_bad = int((~np.isfinite(a)).sum())
            raise ValueError(f"component {i} contains {n_bad} NaN or infinite values")

    def _validate_input(self, X, *, components: Sequence[int] | None = None) -> list[np.ndarray]:
        """Validate inference input against the fitted shapes; ``components`` names which
        fitted components the arrays of X are (default: all, in order).  Messages name the
        fitted component index."""
        comps = list(range(self.n_components_)) if components is None else list(components)
        if isinstance(X, Components):
            X = list(X.arrays)
        elif isinstance(X, np.ndarray) and len(comps) == 1:
            X = [X]
        if not isinstance(X, (list, tuple)):
            raise TypeError(f"expected a list of component arrays or a Components, got {type(X).__name__}")
        if len(X) != len(comps):
            raise ValueError(
                f"X has {len(X)} components but the estimator was fitted with {len(comps)} "
                "(pass a list or Components with one array per component)"
            )
        arrays = [_as_array(a, f"component {i}") for a, i in zip(X, comps)]
        n = arrays[0].shape[0]
        for a, i in zip(arrays, comps):
            if a.shape[0] != n:
                raise ValueError(f"component {i} has {a.shape[0]} rows but component {comps[0]} has {n}; "
                                 "all components must have the same number of rows")
            if a.shape[1:] != self.component_shapes_[i]:
                raise ValueError(
                    f"component {i} has sample shape {a.shape[1:]} but the estimator was fitted on "
                    f"{self.component_shapes_[i]}"
                )
            self._check_finite(a, i)
        if n == 0:
            raise ValueError("X has 0 rows; at least one sample is required")
        return arrays

    def _resolve_specs(self, C: Components | None, shapes: Sequence[tuple[int, ...]] | None = None
                       ) -> list[ComponentSpec]:
        """Per-component specs from the parameters and the component shapes (``C`` gives the
        shapes and allows data-dependent checks; ``shapes`` alone is used when loading)."""
        shapes = C.component_shapes if C is not None else [tuple(sh) for sh in shapes]
        M = len(shapes)
        latent = self.latent_dim if self.latent_dim is not None else self._default_latent_dim
        if isinstance(latent, str):
            if latent != "auto":
                raise ValueError(f"latent_dim must be a positive integer, a list of them or 'auto', got {latent!r}")
            # as many latent coordinates as the benchmark found best, never more than features
            latent = [min(self._auto_latent_max, int(np.prod(sh))) for sh in shapes]
        latent = _per_component(latent, M, "latent_dim")
        encoders = _per_component(self.encoder, M, "encoder")
        decoders = _per_component(self.decoder, M, "decoder")
        enc_kw = _per_component(self.encoder_kwargs or {}, M, "encoder_kwargs")
        dec_kw = _per_component(self.decoder_kwargs or {}, M, "decoder_kwargs")
        liks = _per_component(self.likelihood, M, "likelihood")
        scales = _per_component(1.0 if self.llik_scaling is None else self.llik_scaling, M, "llik_scaling")
        specs = []
        registered = get_registries().architectures
        for i in range(M):
            d = latent[i]
            if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
                raise ValueError(f"latent_dim for component {i} must be a positive integer, got {d!r}")
            shape = shapes[i]
            names = []
            for arch in (encoders[i], decoders[i]):
                if arch == "auto":
                    arch = self._auto_architecture(shape, registered)
                get_architecture(arch)  # raises a clear error listing the valid names
                names.append(arch)
            lik = liks[i]
            lik_name = lik.get("name") if isinstance(lik, dict) else lik
            if isinstance(lik_name, str) and lik_name not in LIKELIHOODS:
                raise ValueError(
                    f"unknown likelihood {lik_name!r} for component {i}; valid: {', '.join(LIKELIHOODS)}"
                )
            if lik_name == "bernoulli" and C is not None:
                a = C.arrays[i]
                if a.size and (a.min() < 0 or a.max() > 1):
                    raise ValueError(
                        f"component {i} has values outside [0, 1] ({a.min():g}..{a.max():g}); "
                        "the bernoulli likelihood needs data in [0, 1]"
                    )
            s = float(scales[i])
            if not np.isfinite(s) or s <= 0:
                raise ValueError(f"llik_scaling for component {i} must be positive, got {scales[i]!r}")
            for kw, role in ((enc_kw[i], "encoder_kwargs"), (dec_kw[i], "decoder_kwargs")):
                if not isinstance(kw, dict):
                    raise TypeError(f"{role} for component {i} must be a dict, got {type(kw).__name__}")
            specs.append(ComponentSpec(shape=shape, latent_dim=int(d), encoder=names[0], decoder=names[1],
                                       encoder_kwargs=dict(enc_kw[i]), decoder_kwargs=dict(dec_kw[i]),
                                       likelihood=lik, llik_scale=s))
        return specs

    @staticmethod
    def _auto_architecture(shape: tuple[int, ...], registered) -> str:
        """Pick an architecture by the component's shape: images (C, H, W) get ``resnet`` for
        the paper's sizes, else ``conv`` when registered and the image is at least 8 x 8 (three
        halvings); everything else, tiny images included, ``mlp``."""
        if len(shape) == 3:
            if "resnet" in registered and shape[1:] in ((28, 28), (64, 64), (32, 32)):
                return "resnet"
            if "conv" in registered and min(shape[1:]) >= 8:
                return "conv"
        return "mlp"

    # ------------------------------------------------------------------------------------------
    # standardisation of location-scale components
    # ------------------------------------------------------------------------------------------
    def _fit_standardisation(self, C: Components, specs: list[ComponentSpec]) -> None:
        self.standardize_mean_ = []
        self.standardize_scale_ = []
        for a, spec in zip(C.arrays, specs):
            lik = spec.likelihood.get("name") if isinstance(spec.likelihood, dict) else spec.likelihood
            if self.standardize and lik in _STANDARDISED_LIKELIHOODS:
                x = a.astype(np.float64, copy=False)
                mean = x.mean(0)
                scale = x.std(0)
                scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)
                self.standardize_mean_.append(mean.astype(np.float32))
                self.standardize_scale_.append(scale.astype(np.float32))
            else:
                self.standardize_mean_.append(None)
                self.standardize_scale_.append(None)

    def _to_tensor(self, a: np.ndarray, i: int, device=None) -> torch.Tensor:
        """Copy a component to a float32 tensor in the model's (standardised) space.

        Always copies: the user's array (possibly read-only or memory-mapped) is never touched.
        """
        x = np.array(a, dtype=np.float32, copy=True)
        if self.standardize_mean_[i] is not None:
            x -= self.standardize_mean_[i]
            x /= self.standardize_scale_[i]
        t = torch.from_numpy(x)
        return t if device is None else t.to(device)

    def _from_tensor(self, t: torch.Tensor, i: int) -> np.ndarray:
        x = t.detach().cpu().numpy().astype(np.float32, copy=False)
        if self.standardize_mean_[i] is not None:
            x = x * self.standardize_scale_[i] + self.standardize_mean_[i]
        return x

    def _log_jacobian(self) -> float:
        """``sum log scale``: converts a density in standardised space to the data's units."""
        return float(sum(np.log(s.astype(np.float64)).sum() for s in self.standardize_scale_ if s is not None))

    # ------------------------------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------------------------------
    def _make_net(self, module: MultiComponentModule, seed: int) -> MultiComponentNet:
        callbacks: list = [("divergence_guard", DivergenceGuard()), ("jitter_counter", JitterCounter())]
        if self.clip_grad_norm is not None:
            callbacks.append(("grad_clip", GradientNormClipping(gradient_clip_value=self.clip_grad_norm)))
        if self.valid_fraction is not None:
            callbacks.append(("early_stopping", EarlyStopping(monitor="valid_loss", patience=self.patience,
                                                               load_best=True)))
        if self.verbose:
            callbacks.append(("progress", ProgressBar()))
        for k, cb in enumerate(self.callbacks or []):
            callbacks.append(cb if isinstance(cb, tuple) else (f"user_{k}_{type(cb).__name__}", cb))
        if self.checkpoint_dir is not None:
            from mcgen.persistence import EpochCheckpoint

            # last, so that it saves the state after every other callback has run
            callbacks.append(("epoch_checkpoint", EpochCheckpoint(str(self.checkpoint_dir), self)))
        if self.valid_fraction is not None:
            vf = float(self.valid_fraction)
            if not 0 < vf < 1:
                raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction!r}")
            train_split = ValidSplit(vf, random_state=seed % (2**31 - 1))
        else:
            train_split = None
        gen = torch.Generator()
        gen.manual_seed(seed)
        opt = self.optimizer
        if isinstance(opt, str):
            opts = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
                    "rmsprop": torch.optim.RMSprop}
            if opt.lower() not in opts:
                raise ValueError(f"unknown optimizer {opt!r}; valid: {', '.join(opts)} or a torch optimizer class")
            opt = opts[opt.lower()]
        net = MultiComponentNet(
            module, optimizer=opt, lr=self.lr, max_epochs=self.max_epochs, batch_size=self.batch_size,
            train_split=train_split, callbacks=callbacks, device=self.device,
            verbose=int(bool(self.verbose)), shuffle_generator=gen, **(self.net_kwargs or {}),
        )
        return net

    def _check_params(self) -> None:
        for name in ("max_epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.beta, numbers.Real) and self.beta >= 0 and np.isfinite(self.beta)):
            raise ValueError(f"beta must be a non-negative number, got {self.beta!r}")
        if self.device not in (None,) and not isinstance(self.device, (str, torch.device)):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {self.device!r}")
        if isinstance(self.device, str) and self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device='cuda' was requested but torch reports no CUDA device")

    def _dataset(self, arrays: Sequence[np.ndarray]) -> ComponentsDataset:
        # Stays on CPU; skorch moves each batch to the device.
        return ComponentsDataset([self._to_tensor(a, i) for i, a in enumerate(arrays)])

    def fit(self, X, y=None, *, resume: bool = False) -> MultiComponentVAE:
        """Fit the model.

        Parameters
        ----------
        X : list of array-like or Components
            One array per component, all with the same number of rows.
        y : ignored
        resume : bool, default=False
            Continue from the last checkpoint in ``checkpoint_dir`` (written after every epoch)
            up to ``max_epochs``; with the same data and parameters the result equals an
            uninterrupted fit.  Without a checkpoint there, training starts from scratch.

        Returns
        -------
        self
        """
        self._check_params()
        C = self._validate_fit_input(X)
        specs = self._resolve_specs(C)
        checkpoint = None
        if resume:
            if self.checkpoint_dir is None:
                raise ValueError("fit(resume=True) needs checkpoint_dir, the folder the interrupted fit wrote")
            from mcgen.persistence import read_checkpoint

            checkpoint = read_checkpoint(self.checkpoint_dir)
        self.n_components_ = C.n_components
        self.component_shapes_ = C.component_shapes
        self.latent_dims_ = [s.latent_dim for s in specs]
        self._fit_rows_ = C.n_samples
        self._fit_standardisation(C, specs)
        seed = _seed_from(self.random_state)
        if checkpoint is not None:
            self._check_checkpoint(checkpoint, C)
            seed = int(checkpoint["seed"])
        self._seed_ = seed
        dataset = self._dataset(C.arrays)
        with self._rng(seed):
            module = self._build_module(specs)
            for lik, sd in zip(module.likelihoods, self.standardize_scale_):  # fixed scales: data units
                if sd is not None and hasattr(lik, "set_data_scale"):
                    lik.set_data_scale(torch.from_numpy(sd))
            self.net_ = self._make_net(module, seed)
            self.net_.initialize()
            epochs = self.max_epochs
            if checkpoint is not None:
                epochs = self._load_checkpoint(checkpoint)
            if epochs > 0:
                self.net_.partial_fit(dataset, None, epochs=epochs)
            self.net_.module_.eval()
            self._after_fit(dataset)
        self.history_ = self.net_.history
        return self

    def _check_checkpoint(self, ck: dict, C: Components) -> None:
        from mcgen.persistence import PersistenceError, params_to_json

        if ck["estimator"] != type(self).__name__:
            raise PersistenceError(f"the checkpoint in {self.checkpoint_dir} was written by a {ck['estimator']}, "
                                   f"not a {type(self).__name__}")
        # These may differ on resume: more epochs, another device, other logging.
        free = {"max_epochs", "verbose", "callbacks", "device", "checkpoint_dir"}
        old, new = json.loads(ck["params"]), json.loads(params_to_json(self, warn=False))
        changed = sorted(k for k in set(old) | set(new) if k not in free and old.get(k) != new.get(k))
        if changed:
            raise PersistenceError(f"the checkpoint in {self.checkpoint_dir} was written with other values of "
                                   f"{', '.join(changed)}; resume with the parameters of the interrupted fit")
        if [tuple(s) for s in ck["component_shapes"]] != list(C.component_shapes) or ck["n_rows"] != C.n_samples:
            raise PersistenceError(f"the checkpoint in {self.checkpoint_dir} was written for other data "
                                   f"({ck['n_rows']} rows, shapes {ck['component_shapes']})")

    def _load_checkpoint(self, ck: dict) -> int:
        """Restore module, optimizer, history and RNG states; return the epochs still to run."""
        from skorch.history import History

        module = self.net_.module_
        module.load_state_dict(ck["state_dict"])
        self.net_.optimizer_.load_state_dict(ck["optimizer"])
        self.net_.history = History(json.loads(ck["history"]))
        torch.set_rng_state(ck["torch_rng"])
        if "cuda_rng" in ck and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        self.net_.shuffle_generator.set_state(ck["shuffle_rng"])
        return max(0, self.max_epochs - int(ck["epoch"]))

    def save(self, path) -> None:
        """Save to one file that :func:`mcgen.load` reads safely (parameters as JSON, weights as
        a state dict, a format version; no pickled code)."""
        from mcgen.persistence import save

        save(self, path)

    def partial_fit(self, X, y=None, epochs: int = 1) -> MultiComponentVAE:
        """Train for ``epochs`` more epochs (one by default); fits from scratch when unfitted."""
        if not hasattr(self, "net_"):
            params = self.get_params()
            self.max_epochs = epochs
            try:
                return self.fit(X)
            finally:
                self.max_epochs = params["max_epochs"]
        arrays = self._validate_input(X)
        dataset = self._dataset(arrays)
        seed = (self._seed_ + 7919 * len(self.net_.history)) % (2**31 - 1)
        with self._rng(seed):
            self.net_.partial_fit(dataset, None, epochs=epochs)
            self.net_.module_.eval()
            self._after_fit(dataset)
        self.history_ = self.net_.history
        return self

    def _after_fit(self, dataset: ComponentsDataset) -> None:
        """Hook for post-training steps (e.g. the GMRF's closed-form prior refit)."""

    @contextlib.contextmanager
    def _rng(self, seed: int):
        """Run with torch's global RNG seeded (restored afterwards, so user state is untouched)."""
        devices = []
        if torch.cuda.is_available() and isinstance(self.device, str) and self.device.startswith("cuda"):
            devices = [torch.device(self.device).index or 0]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # ------------------------------------------------------------------------------------------
    # inference helpers
    # ------------------------------------------------------------------------------------------
    @property
    def module_(self) -> MultiComponentModule:
        """The trained torch module."""
        check_is_fitted(self, "net_")
        return self.net_.module_

    def _device(self) -> torch.device:
        return next(iter(self.module_.buffers())).device if any(True for _ in self.module_.buffers()) \
            else torch.device("cpu")

    def _generator(self, random_state) -> torch.Generator:
        g = torch.Generator(device=self._device())
        g.manual_seed(_seed_from(random_state))
        return g

    @contextlib.contextmanager
    def _eval(self):
        # The module is left in eval mode after every fit; setting it again is idempotent, and
        # never switching back to train mode here keeps concurrent inference threads safe.
        module = self.module_
        if module.training:
            module.eval()
        with torch.no_grad():
            yield module

    def _chunks(self, n: int):
        for start in range(0, n, INFERENCE_CHUNK):
            yield slice(start, min(n, start + INFERENCE_CHUNK))

    # ------------------------------------------------------------------------------------------
    # public inference API
    # ------------------------------------------------------------------------------------------
    def sample(self, n_samples: int = 1, random_state=None) -> list[np.ndarray]:
        """Draw ``n_samples`` joint samples (decoder means of prior draws).

        Returns
        -------
        list of M arrays, each ``(n_samples, *component_shape)``.
        """
        check_is_fitted(self, "net_")
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

    def predict_missing(self, X, known, n_samples: int = 1, random_state=None) -> list[np.ndarray]:
        """Generate the missing components from the observed ones.

        Parameters
        ----------
        X : list or Components
            Either only the known components, in the order of ``known``, or all M components
            with ``None`` (or any placeholder, ignored) where a component is unknown.
        known : sequence of int
            Indices of the observed components (any non-empty proper subset).
        n_samples : int
            Completions per row.  With ``n_samples > 1`` every returned array gains a second
            axis: ``(n_rows, n_samples, *component_shape)`` (multiple imputation).
        random_state : int, RandomState or None

        Returns
        -------
        list of M arrays; the known components are returned unchanged (repeated along the
        samples axis when ``n_samples > 1``).
        """
        check_is_fitted(self, "net_")
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
        arrays = self._validate_input(X_known, components=known)
        n = arrays[0].shape[0]
        g = self._generator(random_state)
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
                a = np.asarray(arrays[known.index(i)])
                result.append(a.copy() if n_samples == 1 else np.repeat(a[:, None], n_samples, axis=1))
            else:
                x = np.concatenate(gen_parts[i], 0)
                result.append(x[:, 0] if n_samples == 1 else x)
        return result

    def transform(self, X) -> np.ndarray:
        """Posterior (latent) means, ``(n, total_latent)``."""
        check_is_fitted(self, "net_")
        arrays = self._validate_input(X)
        dev = self._device()
        parts = []
        with self._eval() as module:
            for sl in self._chunks(arrays[0].shape[0]):
                xs = [self._to_tensor(a[sl], i, dev) for i, a in enumerate(arrays)]
                parts.append(module.encode(xs).cpu().numpy())
        return np.concatenate(parts, 0)

    def inverse_transform(self, Z) -> list[np.ndarray]:
        """Decode latent vectors ``(n, total_latent)`` to M component arrays (decoder means)."""
        check_is_fitted(self, "net_")
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
        check_is_fitted(self, "net_")
        arrays = self._validate_input(X)
        g = self._generator(0)
        dev = self._device()
        jac = self._log_jacobian()
        parts = []
        with self._eval() as module:
            for sl in self._chunks(arrays[0].shape[0]):
                xs = [self._to_tensor(a[sl], i, dev) for i, a in enumerate(arrays)]
                parts.append(module.elbo(xs, n_mc=SCORE_MC_SAMPLES, generator=g).double().cpu().numpy())
        return np.concatenate(parts, 0) - jac

    def score(self, X, y=None) -> float:
        """Mean per-row ELBO (higher is better); what ``GridSearchCV`` maximises by default."""
        return float(np.mean(self.score_samples(X)))
