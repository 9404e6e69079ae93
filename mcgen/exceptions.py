"""Every exception class mcgen defines, in one place (re-exported from :mod:`mcgen`).

Each class also derives from the built-in exception that code written before it existed
catches (``ValueError``, ``TypeError``, ...), so ``except ValueError`` keeps working.
scikit-learn's own exceptions are used where they apply: :class:`NotFittedError` before
``fit``, :class:`InvalidParameterError` for a parameter outside its ``_parameter_constraints``
(both re-exported here for convenience).
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

__all__ = [
    "ChecksumError",
    "DataTypeError",
    "InvalidParameterError",
    "NotFittedError",
    "PersistenceError",
    "PluginBrokenError",
    "PluginClashError",
    "PluginContractError",
    "PluginError",
    "PluginLoadError",
    "PluginSignatureError",
    "TrainingDivergedError",
]


class DataTypeError(TypeError, ValueError):
    """A component is of a kind mcgen cannot read as real numbers: complex, sparse or
    non-numeric.

    A ``TypeError`` (mcgen's error for a wrong dtype) and a ``ValueError`` (what scikit-learn
    raises for complex data), so code written for either catches it.
    """


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


class PersistenceError(ValueError):
    """A saved file cannot be loaded (wrong kind, version mismatch, mismatching estimator)."""


class ChecksumError(ValueError):
    """A downloaded or cached file's SHA-256 digest is not the expected one."""


class PluginError(Exception):
    """Base class of the errors raised for a broken or conflicting plugin."""


class PluginClashError(PluginError, ValueError):
    """Two plugins registered the same name in the same registry."""


class PluginSignatureError(PluginError, TypeError):
    """A plugin implements a hook with the wrong signature, an unknown hook, or calls
    ``register`` wrongly."""


class PluginLoadError(PluginError, ImportError):
    """An entry point of the ``"mcgen"`` group could not be imported."""


class PluginBrokenError(PluginError, ValueError):
    """A name was asked for that a broken plugin (skipped when the registries were collected)
    tried to register; the message names the plugin and why it is broken."""


class PluginContractError(PluginError, ValueError):
    """A plugin's architecture or dataset loader does not keep the contract of
    :mod:`mcgen.plugins.hookspecs` (a wrong output shape, a missing ``out_features``, a loader
    that does not return ``(Components, info)``); the message names the plugin, the
    architecture or dataset, and the component."""
