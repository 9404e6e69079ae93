"""The multimodal-VAE baseline estimators (kept for ``from mcgen.baselines import ...``; they
live in :mod:`mcgen.estimators`, one module each)."""

from mcgen.estimators.mmvae import MMVAE
from mcgen.estimators.mmvaeplus import MMVAEPlus
from mcgen.estimators.mopoe import MoPoEVAE
from mcgen.estimators.mvae import MVAE
from mcgen.training import KLAnnealing

__all__ = ["MMVAE", "MVAE", "KLAnnealing", "MMVAEPlus", "MoPoEVAE"]
