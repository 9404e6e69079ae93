"""Torch modules, one file per method.  They know nothing of scikit-learn."""
