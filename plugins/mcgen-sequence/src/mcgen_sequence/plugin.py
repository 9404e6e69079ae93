"""The hook implementations: the only module mcgen loads (entry point ``sequence``).

mcgen calls each hook with a ``register`` callback; everything this package provides is
registered here and nowhere else.
"""

from __future__ import annotations

from mcgen.plugins.hookspecs import hookimpl
from mcgen_sequence.data import load_oscillators
from mcgen_sequence.tcn import TCNDecoder, TCNEncoder


@hookimpl
def mcgen_register_architectures(register):
    register("tcn", TCNEncoder, TCNDecoder, kinds=("sequence",),
             description="temporal conv net: dilated residual 1-D convolutions for (channels, length) sequences")


@hookimpl
def mcgen_register_datasets(register):
    register("oscillators", load_oscillators,
             description="coherent sine/square/triangle waves sharing frequency, phase and amplitude")
