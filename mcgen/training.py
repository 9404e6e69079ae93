"""skorch integration: the dataset of component tensors, its batch iterator, and the net that
trains any model module by the per-row loss its ``forward`` returns."""

from __future__ import annotations

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from torch.utils.data import Dataset, Subset


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


class ComponentsDataset(Dataset):
    """In-memory component tensors; indexing with a batch of row indices returns a whole batch.

    ``ds[idx]`` returns ``(list_of_batch_tensors, None)`` so skorch's ``(X, y)`` convention holds.
    """

    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = list(tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, idx):
        return [t[idx] for t in self.tensors], None


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


class DivergenceGuard(Callback):
    """Stops training with a clear error as soon as a batch loss is not finite."""

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        if loss is not None and not bool(torch.isfinite(loss.detach()).all()):
            epoch = len(net.history)
            n_batch = len(net.history[-1, "batches"]) if len(net.history) else 0
            phase = "training" if training else "validation"
            raise TrainingDivergedError(
                f"the {phase} loss became {float(loss.detach())} at epoch {epoch}, batch {n_batch}; "
                f"try a smaller learning rate (lr={net.lr:g} now), gradient clipping "
                "(clip_grad_norm=...), or check the data for extreme values"
            )


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

