"""mcgen: multi-component generative modelling with scikit-learn estimators."""

from mcgen import exceptions, metrics, scoring
from mcgen.base import MultiComponentVAE
from mcgen.components import Components
from mcgen.estimators import MMVAE, MVAE, GMRFMultiComponentVAE, MMVAEPlus, MoPoEVAE
from mcgen.exceptions import (
    ChecksumError,
    DataTypeError,
    PersistenceError,
    PluginBrokenError,
    PluginClashError,
    PluginContractError,
    PluginError,
    PluginLoadError,
    PluginSignatureError,
    TrainingDivergedError,
)
from mcgen.persistence import load
from mcgen.plugins import load_dataset
from mcgen.scoring import get_scorer
from mcgen.version import __version__

__all__ = [
    "ChecksumError",
    "Components",
    "DataTypeError",
    "GMRFMultiComponentVAE",
    "MMVAE",
    "MMVAEPlus",
    "MVAE",
    "MoPoEVAE",
    "MultiComponentVAE",
    "PersistenceError",
    "PluginBrokenError",
    "PluginClashError",
    "PluginContractError",
    "PluginError",
    "PluginLoadError",
    "PluginSignatureError",
    "TrainingDivergedError",
    "__version__",
    "exceptions",
    "get_scorer",
    "load",
    "load_dataset",
    "metrics",
    "scoring",
]
