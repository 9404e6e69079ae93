"""Tiny, fast configurations of every estimator, shared by the API test suites.

Each factory takes ``**overrides`` and returns an unfitted estimator small enough to fit in
well under a second on the test data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mcgen

TINY_NET = {"hidden": (16,)}


def gmrf(**kw):
    params = dict(latent_dim=2, beta=0.01, max_epochs=2, batch_size=64, encoder_kwargs=TINY_NET,
                  decoder_kwargs=TINY_NET, offdiag_hidden=16, random_state=0)
    params.update(kw)
    return mcgen.GMRFMultiComponentVAE(**params)


def _baseline(cls, **extra):
    def factory(**kw):
        params = dict(latent_dim=3, beta=0.1, max_epochs=2, batch_size=64, encoder_kwargs=TINY_NET,
                      decoder_kwargs=TINY_NET, random_state=0, **extra)
        params.update(kw)
        return cls(**params)

    factory.__name__ = cls.__name__.lower()
    return factory


mvae = _baseline(mcgen.MVAE)
mmvae = _baseline(mcgen.MMVAE, K=2)
mopoe = _baseline(mcgen.MoPoEVAE)
mmvaeplus = _baseline(mcgen.MMVAEPlus, private_dim=1)

#: name -> factory; the baselines add themselves here.
FACTORIES = {"gmrf": gmrf, "mvae": mvae, "mmvae": mmvae, "mopoe": mopoe, "mmvaeplus": mmvaeplus}


# One linear layer each way: the smallest architecture a plugin can register (tests of the registry).
class LinearEncoder(nn.Module):
    def __init__(self, input_shape, width=5):
        super().__init__()
        self.lin = nn.Linear(int(np.prod(input_shape)), width)
        self.out_features = width

    def forward(self, x):
        return torch.tanh(self.lin(x.flatten(1)))


class LinearDecoder(nn.Module):
    def __init__(self, latent_dim, output_shape):
        super().__init__()
        self.shape = tuple(output_shape)
        self.lin = nn.Linear(latent_dim, int(np.prod(output_shape)))

    def forward(self, z):
        return self.lin(z).reshape(z.shape[0], *self.shape)


@pytest.fixture(autouse=True)
def fresh_plugins():
    """Every test of a module that imports this fixture starts and ends with the default
    process-wide plugin manager."""
    from mcgen.plugins import reset_plugins

    reset_plugins()
    yield
    reset_plugins()
