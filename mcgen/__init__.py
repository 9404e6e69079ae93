"""mcgen: multi-component generative modelling with scikit-learn estimators."""

__version__ = "0.1.0"

from mcgen import metrics, scoring  # noqa: E402
from mcgen.base import MultiComponentVAE  # noqa: E402
from mcgen.baselines import MMVAE, MVAE, MMVAEPlus, MoPoEVAE  # noqa: E402
from mcgen.components import Components  # noqa: E402
from mcgen.estimators import GMRFMultiComponentVAE  # noqa: E402
from mcgen.persistence import load  # noqa: E402
from mcgen.plugins import load_dataset  # noqa: E402
from mcgen.scoring import get_scorer  # noqa: E402

__all__ = [
    "Components",
    "GMRFMultiComponentVAE",
    "MMVAE",
    "MMVAEPlus",
    "MVAE",
    "MoPoEVAE",
    "MultiComponentVAE",
    "__version__",
    "get_scorer",
    "load",
    "load_dataset",
    "metrics",
    "scoring",
]
