"""mcgen: multi-component generative modelling with scikit-learn estimators."""

from mcgen import exceptions, metrics, scoring  # noqa: E402
from mcgen._version import __version__
from mcgen.base import MultiComponentVAE  # noqa: E402
from mcgen.components import Components  # noqa: E402
from mcgen.estimators import MMVAE, MVAE, GMRFMultiComponentVAE, MMVAEPlus, MoPoEVAE  # noqa: E402
from mcgen.exceptions import (  # noqa: E402
    ChecksumError,
    DataTypeError,
    PersistenceError,
    PluginClashError,
    PluginError,
    PluginLoadError,
    PluginSignatureError,
    TrainingDivergedError,
)
from mcgen.persistence import load  # noqa: E402
from mcgen.plugins import load_dataset  # noqa: E402
from mcgen.scoring import get_scorer  # noqa: E402

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
    "PluginClashError",
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
