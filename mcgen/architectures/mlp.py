"""``mlp``: fully connected encoder/decoder for vector components (any shape is flattened).

The defaults are the paper's Copula network: two hidden layers of 256 units with ReLU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from mcgen.plugins.hookspecs import hookimpl

# ReLU and LeakyReLU run in place: they always follow a Linear layer, whose backward does not
# need its output, so this saves one activation-sized tensor per layer (the step is bound by
# memory traffic, not arithmetic, at the paper's widths; benchmarks/step_floor.py).
ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}") from None


def _stack(sizes: Sequence[int], activation: str, dropout: float, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2 or last_activation:
            layers.append(_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten the component and map it through hidden layers to a feature vector.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample of the component.
    hidden : sequence of int
        Hidden layer sizes; the last one is ``out_features``.
    activation : str
        One of ``relu``, ``leaky_relu``, ``elu``, ``gelu``, ``silu``, ``tanh``.
    dropout : float
        Dropout after every hidden activation.
    """

    def __init__(self, input_shape: tuple[int, ...], hidden: Sequence[int] = (256, 256),
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        if len(hidden) == 0:
            raise ValueError("mlp encoder needs at least one hidden layer")
        n_in = math.prod(input_shape)
        self.net = _stack([n_in, *hidden], activation, dropout, last_activation=True)
        self.out_features = int(hidden[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """Map a latent vector through hidden layers to the component's shape."""

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], hidden: Sequence[int] = (256, 256),
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.net = _stack([latent_dim, *hidden, math.prod(output_shape)], activation, dropout,
                          last_activation=False)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.output_shape)


@hookimpl
def mcgen_register_architectures(register):
    register("mlp", MLPEncoder, MLPDecoder, kinds=("vector", "image"),
             description="fully connected net (default 256-256 ReLU, the paper's Copula net)")
