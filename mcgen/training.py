"""Training: the skorch net that trains any model module by its own loss, its data pipeline,
and the training behaviours as skorch callbacks.

* :class:`ComponentsDataset` / :class:`BatchIterator`: whole batches by indexing tensors.
* :class:`MultiComponentNet`: a ``NeuralNet`` whose module returns the per-row loss.
* Callbacks: :class:`DivergenceGuard`, :class:`JitterCounter`, :class:`KLAnnealing`
  (MVAE), :class:`PriorRefit` (GMRF), :class:`EpochCheckpoint` and :class:`ResumeFromCheckpoint`
  (interrupted fits).
* :func:`build_net`: the net an estimator's settings describe; :func:`seeded_rng`.

This module knows nothing of scikit-learn estimators: the estimator passes plain settings and
callables in.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, GradientNormClipping, ProgressBar
from skorch.dataset import ValidSplit
from skorch.history import History
from torch.utils.data import Dataset, Subset

from mcgen.exceptions import TrainingDivergedError
from mcgen.persistence import write_checkpoint

__all__ = [
    "OPTIMIZERS",
    "BatchIterator",
    "ComponentsDataset",
    "DivergenceGuard",
    "EpochCheckpoint",
    "EpochProgressBar",
    "JitterCounter",
    "KLAnnealing",
    "MultiComponentNet",
    "PriorRefit",
    "ResumeFromCheckpoint",
    "TrainingDivergedError",
    "build_net",
    "in_parallel_worker",
    "refit_prior",
    "resolve_n_threads",
    "seeded_rng",
    "torch_threads",
]

#: Optimizer names accepted by the estimators' ``optimizer`` parameter.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
}
#: Rows per chunk when the prior refit passes over the training data.
REFIT_CHUNK = 4096


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
class ComponentsDataset(Dataset):
    """In-memory component tensors; indexing with a batch of row indices returns a whole batch.

    ``ds[idx]`` returns ``(list_of_batch_tensors, None)`` so skorch's ``(X, y)`` convention holds;
    with an observed ``mask`` (n, M) bool (rows lacking components), ``({"xs": tensors, "mask":
    mask}, None)``, which skorch passes to the module as keyword arguments.
    """

    def __init__(self, tensors: list[torch.Tensor], mask: torch.Tensor | None = None):
        self.tensors = list(tensors)
        self.mask = mask

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, idx):
        xs = [t[idx] for t in self.tensors]
        if self.mask is None:
            return xs, None
        return {"xs": xs, "mask": self.mask[idx]}, None


def _resolve(dataset) -> tuple[ComponentsDataset, torch.Tensor | None]:
    """Unwrap (possibly nested) ``Subset``s to the base dataset and row indices."""
    indices = None
    while isinstance(dataset, Subset):
        idx = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
        indices = idx if indices is None else idx[indices]
        dataset = dataset.dataset
    if not isinstance(dataset, ComponentsDataset):
        raise TypeError(f"expected a ComponentsDataset, got {type(dataset).__name__}")
    return dataset, indices


class BatchIterator:
    """Yields ``(list_of_tensors, None)`` batches by indexing whole tensors with row indices
    (no per-item collation); reshuffled on every pass when ``shuffle``."""

    def __init__(self, dataset, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None):
        self.base, self.indices = _resolve(dataset)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.base) if self.indices is None else len(self.indices)
        return math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.base) if self.indices is None else len(self.indices)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
            rows = order if self.indices is None else self.indices[order]
        else:
            rows = torch.arange(n) if self.indices is None else self.indices
        for start in range(0, n, self.batch_size):
            yield self.base[rows[start:start + self.batch_size]]


# ----------------------------------------------------------------------------------------------
# the net
# ----------------------------------------------------------------------------------------------
class MultiComponentNet(NeuralNet):
    """A ``NeuralNet`` whose module returns the per-row loss; ``criterion`` is unused.

    Parameters (beyond ``NeuralNet``'s)
    -----------------------------------
    shuffle_generator : torch.Generator, optional
        Generator for shuffling training batches (reproducibility).
    """

    def __init__(self, module, *args, criterion=torch.nn.Identity, shuffle_generator=None, **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)
        self.shuffle_generator = shuffle_generator

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return y_pred.mean()

    def get_iterator(self, dataset, training=False):
        return BatchIterator(dataset, self.batch_size if self.batch_size > 0 else len(dataset),
                             shuffle=training, generator=self.shuffle_generator if training else None)

    def get_dataset(self, X, y=None):
        if isinstance(X, (ComponentsDataset, Subset)):
            return X
        raise TypeError("MultiComponentNet is fed ComponentsDataset objects by the estimator")

    # A factorisation that fails on non-finite or extreme values (parameters blown up by a large
    # learning rate, a network producing NaN) is divergence too: report it as such, with where it
    # happened and what to try, instead of torch's linear-algebra error.
    def train_step_single(self, batch, **fit_params):
        try:
            return super().train_step_single(batch, **fit_params)
        except torch.linalg.LinAlgError as exc:
            raise diverged_error(self, "training", exc) from None

    def validation_step(self, batch, **fit_params):
        try:
            return super().validation_step(batch, **fit_params)
        except torch.linalg.LinAlgError as exc:
            raise diverged_error(self, "validation", exc) from None


def resolve_optimizer(optimizer: str | type) -> type:
    """A torch optimizer class from a name in :data:`OPTIMIZERS` (any case) or a class."""
    if isinstance(optimizer, str):
        try:
            return OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)} or a torch "
                             "optimizer class") from None
    return optimizer


def build_net(module: torch.nn.Module, *, seed: int, optimizer: str | type = "adam", lr: float = 1e-3,
              max_epochs: int = 100, batch_size: int = 256, validation_fraction: float | None = None,
              n_iter_no_change: int = 10, clip_grad_norm: float | None = None,
              callbacks: Sequence = (), device: str | torch.device | None = "cpu", verbose: int = 0,
              net_kwargs: dict | None = None, net_class: type[MultiComponentNet] = MultiComponentNet
              ) -> MultiComponentNet:
    """The skorch net that trains ``module`` with these settings (not initialised).

    Callbacks, in order: divergence guard, jitter counter, gradient clipping (when
    ``clip_grad_norm``), early stopping on ``valid_loss`` restoring the best epoch (when
    ``validation_fraction``), a progress bar (when ``verbose``), then ``callbacks`` (objects or
    ``(name, callback)`` pairs; unnamed ones are named after their class).
    """
    cbs: list[tuple[str, Callback]] = [("divergence_guard", DivergenceGuard()), ("jitter_counter", JitterCounter())]
    if clip_grad_norm is not None:
        cbs.append(("grad_clip", GradientNormClipping(gradient_clip_value=clip_grad_norm)))
    train_split = None
    if validation_fraction is not None:
        cbs.append(("early_stopping", EarlyStopping(monitor="valid_loss", patience=n_iter_no_change,
                                                    load_best=True)))
        train_split = ValidSplit(float(validation_fraction), random_state=seed % (2**31 - 1))
    if verbose:
        cbs.append(("progress", ProgressBar()))
    for k, cb in enumerate(callbacks):
        cbs.append(cb if isinstance(cb, tuple) else (f"user_{k}_{type(cb).__name__}", cb))
    gen = torch.Generator()
    gen.manual_seed(seed)
    opt_class = resolve_optimizer(optimizer)
    kwargs = dict(net_kwargs or {})
    if _fused_by_default(opt_class, device, kwargs):
        kwargs["optimizer__fused"] = True
    return net_class(module, optimizer=opt_class, lr=lr, max_epochs=max_epochs,
                     batch_size=batch_size, train_split=train_split, callbacks=cbs, device=device,
                     verbose=int(bool(verbose)), shuffle_generator=gen, **kwargs)


def _fused_by_default(opt_class: type, device, net_kwargs: dict) -> bool:
    """Whether Adam/AdamW get torch's fused kernel: one kernel for all parameters instead of a
    dozen per parameter tensor (the same update; the step of the paper's Copula networks is
    10-20 % faster, ``benchmarks/step_floor.py``).  Not when the user chose ``fused`` or
    ``foreach`` through ``net_kwargs``, nor on devices without the kernel."""
    if opt_class not in (torch.optim.Adam, torch.optim.AdamW):
        return False
    if any(k in net_kwargs for k in ("optimizer__fused", "optimizer__foreach")):
        return False
    return torch.device(device if device is not None else "cpu").type in ("cpu", "cuda")


def in_parallel_worker() -> bool:
    """Whether this code runs inside a parallel worker: a joblib worker process or thread
    (``GridSearchCV(n_jobs=k)``, ``cross_val_score(n_jobs=k)``, ``Parallel``; joblib's own
    sequential runs are not workers) or a Dask worker."""
    import sys

    try:  # joblib marks the calls it runs in workers with a nested backend (nesting level >= 1)
        from joblib.parallel import _get_active_backend

        if getattr(_get_active_backend()[0], "nesting_level", 0) >= 1:
            return True
    except Exception:  # pragma: no cover - a joblib without this helper
        pass
    import multiprocessing

    if multiprocessing.current_process().name.startswith("LokyProcess"):
        return True
    if "distributed" in sys.modules:
        try:
            sys.modules["distributed"].get_worker()
            return True
        except (ValueError, AttributeError):
            pass
    return False


def resolve_n_threads(n_threads: int | str | None) -> int | None:
    """The torch thread count an estimator's ``n_threads`` asks for here: ``None`` (keep torch's
    setting), an int, or ``"auto"``: 1 inside a parallel worker (:func:`in_parallel_worker`: the
    workers already share the cores), torch's setting elsewhere."""
    if n_threads == "auto":
        return 1 if in_parallel_worker() else None
    return None if n_threads is None else int(n_threads)


_THREADS_LOCK = threading.Lock()
#: Calls inside :func:`torch_threads` now, and the setting the first of them found.
_THREADS_STATE: dict[str, int | None] = {"active": 0, "original": None}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n)`` (nothing changes for ``None``), then restore the
    setting found before.

    Concurrent callers (threads of a joblib threading backend) restore the setting the first of
    them found, not one another's: torch's OpenMP setting is per thread, but a new thread starts
    from the last value set anywhere.
    """
    if n is None:
        yield
        return
    with _THREADS_LOCK:
        if not _THREADS_STATE["active"]:
            _THREADS_STATE["original"] = torch.get_num_threads()
        _THREADS_STATE["active"] += 1
        original = int(_THREADS_STATE["original"])
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["active"] -= 1
        if torch.get_num_threads() != original:
            torch.set_num_threads(original)


@contextlib.contextmanager
def seeded_rng(seed: int, device: str | torch.device | None = None) -> Iterator[None]:
    """Run with torch's global RNG seeded; the caller's RNG state is restored afterwards."""
    devices = []
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# ----------------------------------------------------------------------------------------------
# callbacks
# ----------------------------------------------------------------------------------------------
def _position(net: NeuralNet) -> tuple[int, int]:
    """The current (epoch, batch) of training, both counted from 1 (batch 0: between batches)."""
    epoch = len(net.history)
    n_batch = len(net.history[-1, "batches"]) if epoch else 0
    return epoch, n_batch


def _advice(net: NeuralNet) -> str:
    return (f"try a smaller learning rate (lr={net.lr:g} now), gradient clipping (clip_grad_norm=...), or check "
            "the data for extreme values")


def diverged_error(net: NeuralNet, phase: str, exc: BaseException) -> TrainingDivergedError:
    """The :class:`TrainingDivergedError` for a numerical failure (``exc``, e.g. a Cholesky
    factorisation that failed even with jitter) during the ``phase`` step of ``net``: where it
    happened, what is non-finite, and what to try."""
    epoch, n_batch = _position(net)
    module = getattr(net, "module_", None)
    bad = [name for name, p in module.named_parameters() if not bool(torch.isfinite(p.detach()).all())] \
        if module is not None else []
    largest = max((float(p.detach().abs().max()) for p in module.parameters() if p.numel()), default=0.0) \
        if module is not None and not bad else 0.0
    if bad:
        cause = (f"{len(bad)} parameter tensor(s) became non-finite (e.g. {bad[0]}) after the previous optimizer "
                 "step")
    elif largest > 1e4:
        cause = f"the parameters grew to magnitude {largest:.3g}, so the networks produced extreme values"
    else:
        cause = (f"the networks produced non-finite or extreme values while the parameters are moderate (largest "
                 f"magnitude {largest:.3g}): check a custom encoder or the data")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return TrainingDivergedError(
        f"training diverged at epoch {epoch}, batch {n_batch} ({phase} step): a latent covariance could not be "
        f"factorised ({first}); {cause}. {_advice(net)[0].upper()}{_advice(net)[1:]}")


class DivergenceGuard(Callback):
    """Stops training with a clear error as soon as a batch loss is not finite."""

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
            epoch, n_batch = _position(net)
            phase = "training" if training else "validation"
            raise TrainingDivergedError(
                f"the {phase} loss became {float(loss.detach())} at epoch {epoch}, batch {n_batch}; {_advice(net)}")


class EpochProgressBar(Callback):
    """One progress bar over the epochs of a fit (``tqdm``, on standard error), showing the last
    training loss; what ``mcgen demo`` shows by default.  Lighter than skorch's per-batch
    ``ProgressBar`` (``verbose=1``), and silent about everything else.

    Parameters
    ----------
    file : file-like, optional
        Where to draw (default: ``sys.stderr``).
    desc : str
        The bar's label.
    """

    def __init__(self, file=None, desc: str = "training"):
        self.file = file
        self.desc = desc

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        import sys

        from tqdm.auto import tqdm

        done = len(net.history)  # a resumed fit starts after the checkpoint's epochs
        self.bar_ = tqdm(total=max(net.max_epochs, done), initial=done, desc=self.desc, unit="epoch",
                         file=self.file or sys.stderr, leave=True, dynamic_ncols=True)

    def on_epoch_end(self, net, **kwargs):
        bar = getattr(self, "bar_", None)
        if bar is not None:
            loss = net.history[-1].get("train_loss")
            if loss is not None:
                bar.set_postfix(train_loss=f"{loss:.4g}", refresh=False)
            bar.update(1)

    def on_train_end(self, net, **kwargs):
        bar = getattr(self, "bar_", None)
        if bar is not None:
            bar.close()
            self.bar_ = None

    def __getstate__(self):  # a live bar holds a file handle: not part of a pickle
        state = dict(self.__dict__)
        state.pop("bar_", None)
        state["file"] = None
        return state


class JitterCounter(Callback):
    """Records, per epoch, how many posterior Cholesky factorisations needed jitter
    (history key ``"cholesky_jitter"``), for modules that count them in ``n_jitter``."""

    def on_epoch_begin(self, net, **kwargs):
        counter = getattr(net.module_, "n_jitter", None)
        self.start_ = int(counter) if counter is not None else None

    def on_epoch_end(self, net, **kwargs):
        counter = getattr(net.module_, "n_jitter", None)
        if counter is not None and self.start_ is not None:
            net.history.record("cholesky_jitter", int(counter) - self.start_)


class KLAnnealing(Callback):
    """MVAE's KL annealing: the KL weight rises linearly per batch over the first
    ``epochs`` epochs, ``beta_t = beta (i + (e - 1) N + 1) / (A N)`` for epoch ``e < A``
    (1-based, batch ``i``, ``N`` batches per epoch), then ``beta``.

    Sets ``net.module_.kl_weight`` (the factor the module multiplies its ``beta`` by).
    """

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        self.batch_ = 0
        bs = net.batch_size if net.batch_size > 0 else len(dataset_train)
        self.n_batches_ = max(1, math.ceil(len(dataset_train) / bs))

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        e, N, A = len(net.history), self.n_batches_, self.epochs
        net.module_.kl_weight = min(1.0, (self.batch_ + (e - 1) * N + 1) / (A * N)) if e < A else 1.0

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if training:
            self.batch_ += 1


def refit_prior(module: torch.nn.Module, dataset: ComponentsDataset) -> None:
    """Refit a GMRF module's prior to the aggregate posterior over ``dataset`` in closed form
    (the moment match for one prior component, EM for a mixture), in eval mode, without
    gradients; the module's train/eval mode is restored."""
    dev = next(module.parameters()).device
    n = len(dataset)

    def posteriors():
        for s in range(0, n, REFIT_CHUNK):
            batch, _ = dataset[torch.arange(s, min(n, s + REFIT_CHUNK))]
            if isinstance(batch, dict):  # rows lacking components: their implied full posteriors
                yield module.posterior([x.to(dev) for x in batch["xs"]], mask=batch["mask"].to(dev))
            else:
                yield module.posterior([x.to(dev) for x in batch])

    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            D = module.latent_size
            # EM passes over the posteriors many times: keep them when they fit in ~256 MB.
            if module.n_prior_components > 1 and n * D * (D + 1) <= 2**26:
                cached = list(posteriors())
                module.refit_prior(lambda: cached)
            else:
                module.refit_prior(posteriors)
    finally:
        module.train(was)


class PriorRefit(Callback):
    """At the end of every training run, refit the module's prior to the aggregate posterior
    of the training data (:func:`refit_prior`).  Runs after the callbacks before it (early
    stopping has restored the best epoch by then)."""

    def on_train_end(self, net, X=None, y=None, **kwargs):
        dataset, _ = _resolve(X)
        try:
            refit_prior(net.module_, dataset)
        except torch.linalg.LinAlgError as exc:
            raise diverged_error(net, "prior refit after the last", exc) from None


class EpochCheckpoint(Callback):
    """After every epoch, write everything needed to resume to ``dirname/checkpoint.pt``
    (atomically): ``describe(net)`` (the estimator's parameters and fitted state) plus the
    epoch, the optimizer state and the RNG states, so a resumed fit reproduces an uninterrupted
    one.

    Parameters
    ----------
    dirname : str
    describe : callable ``net -> dict``
        The estimator-side part of the checkpoint.
    """

    def __init__(self, dirname: str, describe: Callable[[NeuralNet], dict]):
        self.dirname = dirname
        self.describe = describe

    def on_epoch_end(self, net, **kwargs):
        payload = dict(self.describe(net))
        payload.update(epoch=len(net.history), optimizer=net.optimizer_.state_dict(),
                       torch_rng=torch.get_rng_state(), shuffle_rng=net.shuffle_generator.get_state())
        if torch.cuda.is_available():
            payload["cuda_rng"] = torch.cuda.get_rng_state_all()
        write_checkpoint(self.dirname, payload)

    def __getstate__(self):  # the describing closure holds the estimator: not part of a pickle
        state = dict(self.__dict__)
        state["describe"] = None
        return state


class ResumeFromCheckpoint(Callback):
    """At the start of training, restore the module, optimizer, history and RNG states from a
    checkpoint written by :class:`EpochCheckpoint` (once; the checkpoint is then dropped)."""

    def __init__(self, checkpoint: dict[str, Any]):
        self.checkpoint = checkpoint

    def on_train_begin(self, net, **kwargs):
        ck = self.checkpoint
        if ck is None:
            return
        net.module_.load_state_dict(ck["state_dict"])
        net.optimizer_.load_state_dict(ck["optimizer"])
        net.history = History(json.loads(ck["history"]))
        torch.set_rng_state(ck["torch_rng"])
        if "cuda_rng" in ck and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        net.shuffle_generator.set_state(ck["shuffle_rng"])
        self.checkpoint = None
