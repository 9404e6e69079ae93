"""Tiny, fast configurations of every estimator, shared by the API test suites.

Each factory takes ``**overrides`` and returns an unfitted estimator small enough to fit in
well under a second on the test data.
"""

from __future__ import annotations

import mcgen

TINY_NET = {"hidden": (16,)}


def gmrf(**kw):
    params = dict(latent_dim=2, beta=0.01, max_epochs=2, batch_size=64, encoder_kwargs=TINY_NET,
                  decoder_kwargs=TINY_NET, offdiag_hidden=16, random_state=0)
    params.update(kw)
    return mcgen.GMRFMultiComponentVAE(**params)


#: name -> factory; the baselines add themselves here.
FACTORIES = {"gmrf": gmrf}
