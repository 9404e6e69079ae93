"""The Accelerate recipe of docs/scaling.md, run on one CPU.

The recipe is read from the guide itself (the fenced block after ``<!-- accelerate-recipe -->``),
so the guide and this test cannot drift apart.  ``accelerate`` is not installed here; a
single-process stand-in implements the part of ``accelerate.Accelerator`` that skorch's
``AccelerateMixin`` calls, and records the calls.
"""

from __future__ import annotations

import contextlib
import pathlib
import re

import numpy as np
import torch
from sklearn.base import clone
from torch.utils.data import DataLoader

from mcgen.datasets.copula import make_copula

torch.set_num_threads(1)

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "scaling.md"


def load_recipe() -> dict:
    text = GUIDE.read_text()
    m = re.search(r"<!-- accelerate-recipe -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/scaling.md lost its accelerate recipe block"
    namespace: dict = {}
    exec(compile(m.group(1), str(GUIDE), "exec"), namespace)
    return namespace


class SingleProcessAccelerator:
    """What AccelerateMixin uses of ``accelerate.Accelerator``, for one CPU process."""

    device_placement = False
    is_main_process = True

    def __init__(self):
        self.prepared: list[str] = []
        self.backward_calls = 0
        self.accumulate_calls = 0

    def prepare(self, obj):
        self.prepared.append(type(obj).__name__)
        return obj

    @contextlib.contextmanager
    def accumulate(self, model):
        self.accumulate_calls += 1
        yield

    @contextlib.contextmanager
    def autocast(self):
        yield

    def backward(self, loss):
        self.backward_calls += 1
        loss.backward()

    def gather_for_metrics(self, x):
        return x

    def wait_for_everyone(self):
        pass

    def unwrap_model(self, model, keep_fp32_wrapper=True):
        return model

    def print(self, *args, **kwargs):
        print(*args, **kwargs)


def test_accelerate_recipe_trains_through_the_accelerator():
    ns = load_recipe()
    X = make_copula(200, random_state=0)[0]
    acc = SingleProcessAccelerator()
    ns["AcceleratedGMRF"].accelerator = acc
    est = ns["AcceleratedGMRF"](max_epochs=3, batch_size=64, lr=1e-2, encoder_kwargs={"hidden": (16,)},
                                decoder_kwargs={"hidden": (16,)}, offdiag_hidden=16, random_state=0)
    assert "accelerator" not in est.get_params() and clone(est).accelerator is acc
    est.fit(X)
    assert isinstance(est.net_, ns["AcceleratedNet"]) and est.net_.device is None
    # 200 rows in batches of 64: 4 steps per epoch, each through accumulate() and backward()
    assert acc.backward_calls == acc.accumulate_calls == 3 * 4
    assert {"GMRFModule", "Adam", "DataLoader"} <= set(acc.prepared)
    assert isinstance(est.net_.get_iterator(est.net_.get_dataset(est._dataset(X.arrays)), training=True),
                      DataLoader)
    losses = [h["train_loss"] for h in est.history_]
    assert losses[-1] < losses[0]
    # the estimator's own settings reach the rebuilt net
    assert (est.net_.max_epochs, est.net_.batch_size, est.net_.lr) == (3, 64, 1e-2)
    # inference works as usual after training (the module is unwrapped)
    assert [a.shape for a in est.sample(5, random_state=0)] == [(5, 2)] * 4
    assert np.isfinite(est.score(X))
    full = est.predict_missing([X.arrays[0]], known=[0], random_state=0)
    assert [a.shape for a in full] == [(200, 2)] * 4


def test_collate_components_stacks_rows():
    ns = load_recipe()
    rows = [([torch.tensor([1.0, 2.0]), torch.tensor([3.0])], None), ([torch.tensor([4.0, 5.0]), torch.tensor([6.0])],
                                                                      None)]
    xs, y = ns["collate_components"](rows)
    assert y is None
    torch.testing.assert_close(xs[0], torch.tensor([[1.0, 2.0], [4.0, 5.0]]))
    torch.testing.assert_close(xs[1], torch.tensor([[3.0], [6.0]]))
