"""The public estimators, one module each: :mod:`~mcgen.estimators.gmrf` (the GMRF
Multi-Component VAE) and the multimodal-VAE baselines :mod:`~mcgen.estimators.mvae`,
:mod:`~mcgen.estimators.mmvae`, :mod:`~mcgen.estimators.mopoe` and
:mod:`~mcgen.estimators.mmvaeplus`.  All derive from :class:`mcgen.base.MultiComponentVAE`."""

from mcgen.estimators.gmrf import GMRFMultiComponentVAE
from mcgen.estimators.mmvae import MMVAE
from mcgen.estimators.mmvaeplus import MMVAEPlus
from mcgen.estimators.mopoe import MoPoEVAE
from mcgen.estimators.mvae import MVAE

__all__ = ["MMVAE", "MVAE", "GMRFMultiComponentVAE", "MMVAEPlus", "MoPoEVAE"]
