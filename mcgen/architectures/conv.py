"""``conv``: a small, fast convolutional encoder/decoder for image components of any size.

Encoder: ``len(channels)`` convolutions (4 x 4, stride 2, padding 1; each halves the height
and width, rounding down) with an activation, then a linear layer to ``hidden`` features.
Decoder: the mirror image, linear layers up to the bottom map and transposed convolutions
(4 x 4, stride 2, padding 1) whose output padding restores odd sizes exactly, so any
``(C, H, W)`` round-trips (for example 28 -> 14 -> 7 -> 3 -> 7 -> 14 -> 28).
It costs a fraction of ``resnet`` and is the ``"auto"`` choice for images ``resnet`` does not
target.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mcgen.architectures.mlp import _activation
from mcgen.architectures.resnet import _image_shape
from mcgen.plugins.hookspecs import hookimpl


def _plan(H: int, W: int, n: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 convolution (index 0 is the input)."""
    sizes = [(H, W)]
    for _ in range(n):
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    if min(sizes[-1]) < 1:
        raise ValueError(
            f"conv: a {H}x{W} image cannot be halved {n} times; pass fewer `channels` (got {n} levels)")
    return sizes


def _check_channels(channels: Sequence[int]) -> list[int]:
    channels = [int(c) for c in channels]
    if not channels or min(channels) < 1:
        raise ValueError(f"conv needs at least one positive channel count, got {channels}")
    return channels


class ConvEncoder(nn.Module):
    """Strided-convolution image encoder.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` of one image.
    channels : sequence of int, default=(32, 64, 128)
        Output channels of the stride-2 convolutions.
    hidden : int, default=256
        Width of the final linear layer (``out_features``).
    activation : str, default="leaky_relu"
        Any activation name accepted by ``mlp``.

    Attributes
    ----------
    out_features : int
    """

    def __init__(self, input_shape: tuple[int, ...], channels: Sequence[int] = (32, 64, 128), hidden: int = 256,
                 activation: str = "leaky_relu"):
        super().__init__()
        C, H, W = _image_shape(input_shape, "conv")
        channels = _check_channels(channels)
        h, w = _plan(H, W, len(channels))[-1]
        layers: list[nn.Module] = []
        c_in = C
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), _activation(activation)]
            c_in = c
        layers += [nn.Flatten(1), nn.Linear(c_in * h * w, hidden), _activation(activation)]
        self.net = nn.Sequential(*layers)
        self.out_features = int(hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Transposed-convolution image decoder mirroring :class:`ConvEncoder`.

    Parameters
    ----------
    latent_dim : int
    output_shape : tuple of int
        ``(channels, height, width)`` of one image.
    channels, hidden, activation
        As for :class:`ConvEncoder` (``channels`` listed from full resolution down).

    The output is the likelihood's location (logits for a Bernoulli likelihood), unbounded.
    """

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], channels: Sequence[int] = (32, 64, 128),
                 hidden: int = 256, activation: str = "leaky_relu"):
        super().__init__()
        C, H, W = _image_shape(output_shape, "conv")
        channels = _check_channels(channels)
        sizes = _plan(H, W, len(channels))
        h, w = sizes[-1]
        self.bottom = (channels[-1], h, w)
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), _activation(activation),
                                nn.Linear(hidden, channels[-1] * h * w), _activation(activation))
        layers: list[nn.Module] = []
        outs = [C, *channels[:-1]]  # channels after each transposed convolution, bottom-up reversed
        for k in range(len(channels) - 1, -1, -1):
            th, tw = sizes[k]
            sh, sw = sizes[k + 1]
            # ConvTranspose2d(4, 2, 1) maps s to 2 s + output_padding: pad by the odd remainder.
            layers.append(nn.ConvTranspose2d(channels[k], outs[k], 4, stride=2, padding=1,
                                             output_padding=(th - 2 * sh, tw - 2 * sw)))
            if k > 0:
                layers.append(_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).reshape(z.shape[0], *self.bottom))


@hookimpl
def mcgen_register_architectures(register):
    register("conv", ConvEncoder, ConvDecoder, kinds=("image",), priority=10, supports=_halvable_three_times,
             description="small fast strided-conv net (4x4 stride-2 convs, 32-64-128, 256 features)")


def _halvable_three_times(shape: tuple[int, ...]) -> bool:
    """What ``encoder="auto"`` may give conv: images of at least 8 x 8 (three halvings)."""
    return len(shape) == 3 and min(shape[1:]) >= 8

