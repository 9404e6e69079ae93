"""The version of mcgen, in a module of its own so that any layer can read it without importing
the package's public namespace (which imports every estimator)."""

__version__ = "0.1.0"
