"""Shared helpers of the metrics: result type and input handling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcgen.metrics.conditional import component_arrays


@dataclass(frozen=True)
class MetricResult:
    """A metric value with its details, sample sizes and seed.  ``float(result)`` is the value."""

    name: str
    value: float
    details: dict[str, Any] = field(default_factory=dict)
    n_generated: int = 0
    n_reference: int = 0
    random_state: Any = None

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        return (f"MetricResult({self.name}={self.value:.6g}, n_generated={self.n_generated}, "
                f"n_reference={self.n_reference}, random_state={self.random_state})")


def as_arrays(X, label: str) -> list[np.ndarray]:
    """A list of float64 arrays, each flattened to (n, features)."""
    return [np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in component_arrays(X, label)]


def check_pair(gen, ref) -> tuple[list[np.ndarray], list[np.ndarray]]:
    g = as_arrays(gen, "generated")
    r = as_arrays(ref, "reference")
    if len(g) != len(r):
        raise ValueError(f"generated has {len(g)} components, reference has {len(r)}")
    for i, (a, b) in enumerate(zip(g, r)):
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"component {i}: generated has {a.shape[1]} features, reference {b.shape[1]}")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError(f"component {i} contains NaN or infinite values")
    return g, r
