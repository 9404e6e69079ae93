"""Test-suite settings: one torch thread per process (the suite runs many tiny models, for which
extra threads only add contention, and joblib/Dask workers run beside it)."""

import torch

torch.set_num_threads(1)
