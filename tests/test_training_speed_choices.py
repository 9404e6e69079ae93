"""The two speed choices of the training step (benchmarks/step_floor.py): torch's fused Adam by
default, and in-place ReLU in the ``mlp`` networks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from mcgen import GMRFMultiComponentVAE
from mcgen.architectures.mlp import MLPDecoder, MLPEncoder


def _data(n=64):
    rng = np.random.default_rng(0)
    return [rng.normal(size=(n, 2)), rng.normal(size=(n, 3))]


def test_adam_is_fused_by_default_and_user_choices_win():
    est = GMRFMultiComponentVAE(max_epochs=1, random_state=0).fit(_data())
    assert est.net_.optimizer_.defaults["fused"] is True
    est = GMRFMultiComponentVAE(max_epochs=1, random_state=0, net_kwargs={"optimizer__foreach": True}).fit(_data())
    assert not est.net_.optimizer_.defaults["fused"] and est.net_.optimizer_.defaults["foreach"] is True
    est = GMRFMultiComponentVAE(max_epochs=1, random_state=0, optimizer="sgd").fit(_data())
    assert not est.net_.optimizer_.defaults.get("fused")


def test_fused_adam_trains_like_the_loop_adam():
    """The same update: two fits that differ only in the Adam kernel end at the same loss."""
    a = GMRFMultiComponentVAE(max_epochs=3, random_state=0).fit(_data(128))
    b = GMRFMultiComponentVAE(max_epochs=3, random_state=0, net_kwargs={"optimizer__foreach": False}).fit(_data(128))
    assert a.history_[-1, "train_loss"] == pytest.approx(b.history_[-1, "train_loss"], rel=1e-4)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_in_place_activation_gives_the_out_of_place_gradients(activation):
    """Planted bug guarded: an in-place activation on a tensor autograd still needs (e.g. after a
    layer whose backward reads its output) raises or corrupts the gradients."""
    torch.manual_seed(0)
    enc, dec = MLPEncoder((3,), activation=activation), MLPDecoder(2, (3,), activation=activation)
    assert any(getattr(m, "inplace", False) for m in enc.modules())
    ref_enc, ref_dec = copy.deepcopy(enc), copy.deepcopy(dec)
    for net in (ref_enc, ref_dec):
        for m in net.modules():
            if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
                m.inplace = False
    x = torch.randn(16, 3)
    z = torch.randn(16, 2)
    for e, d in ((enc, dec), (ref_enc, ref_dec)):
        (e(x).pow(2).sum() + d(z).pow(2).sum()).backward()
    for p, q in zip([*enc.parameters(), *dec.parameters()], [*ref_enc.parameters(), *ref_dec.parameters()]):
        torch.testing.assert_close(p.grad, q.grad)
