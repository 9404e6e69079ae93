"""``tcn``: a temporal convolutional encoder/decoder for sequence components.

A sequence component has sample shape ``(channels, length)`` (a bare ``(length,)`` is read as
one channel).  Both networks are stacks of residual blocks of dilated 1-D convolutions
(dilations 1, 2, 4, ...), so the receptive field grows exponentially with depth (Bai, Kolter
and Koltun 2018, "An empirical evaluation of generic convolutional and recurrent networks for
sequence modeling").  The convolutions are non-causal ("same" padding): the encoder sees the
whole sequence and the decoder generates all of it at once.

mcgen's architecture contract: the encoder maps ``(B, *shape)`` to ``(B, out_features)``; the
decoder maps ``(B, latent_dim)`` to ``(B, *shape)``, the likelihood's location.
"""

from __future__ import annotations

from torch import Tensor, nn


def _sequence_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = (1, shape[0])
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"tcn needs sequence components of shape (channels, length) or (length,), "
                         f"got sample shape {shape}")
    return shape  # type: ignore[return-value]


class TemporalBlock(nn.Module):
    """Residual block ``x + conv_2(act(conv_1(act(x))))`` of two dilated 1-D convolutions.

    Parameters
    ----------
    channels : int
    kernel_size : int
        Odd, so that "same" padding keeps the length.
    dilation : int
    dropout : float
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float = 0.0):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.branch = nn.Sequential(
            nn.GELU(), nn.Conv1d(channels, channels, kernel_size, padding=pad, dilation=dilation),
            nn.GELU(), nn.Dropout(dropout),
            nn.Conv1d(channels, channels, kernel_size, padding=pad, dilation=dilation),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _blocks(channels: int, n_blocks: int, kernel_size: int, dropout: float) -> nn.Sequential:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"tcn kernel_size must be a positive odd number, got {kernel_size}")
    if channels < 1 or n_blocks < 0:
        raise ValueError(f"tcn needs channels >= 1 and n_blocks >= 0, got {channels} and {n_blocks}")
    return nn.Sequential(*[TemporalBlock(channels, kernel_size, 2**k, dropout) for k in range(n_blocks)])


class TCNEncoder(nn.Module):
    """Temporal convolutional encoder.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, length)`` or ``(length,)``.
    channels : int, default=32
        Width of the residual stack.
    n_blocks : int, default=4
        Residual blocks, with dilations 1, 2, ..., 2**(n_blocks - 1).
    kernel_size : int, default=3
    out_features : int, default=64
        Width of the feature vector (a linear layer on the flattened stack output).
    dropout : float, default=0.0

    Attributes
    ----------
    out_features : int
    """

    def __init__(self, input_shape: tuple[int, ...], channels: int = 32, n_blocks: int = 4, kernel_size: int = 3,
                 out_features: int = 64, dropout: float = 0.0):
        super().__init__()
        self.shape = _sequence_shape(input_shape)
        c_in, length = self.shape
        self.net = nn.Sequential(
            nn.Conv1d(c_in, channels, 1), _blocks(channels, n_blocks, kernel_size, dropout), nn.GELU(),
            nn.Flatten(1), nn.Linear(channels * length, out_features), nn.GELU(),
        )
        self.out_features = int(out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], *self.shape))


class TCNDecoder(nn.Module):
    """Temporal convolutional decoder: a linear map to ``(channels, length)``, then the stack.

    Parameters
    ----------
    latent_dim : int
    output_shape : tuple of int
        ``(channels, length)`` or ``(length,)``.
    channels, n_blocks, kernel_size, dropout
        As for :class:`TCNEncoder`.
    """

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], channels: int = 32, n_blocks: int = 4,
                 kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        self.output_shape = tuple(int(s) for s in output_shape)
        c_out, length = _sequence_shape(output_shape)
        self.start = (channels, length)
        self.fc = nn.Linear(latent_dim, channels * length)
        self.net = nn.Sequential(_blocks(channels, n_blocks, kernel_size, dropout), nn.GELU(),
                                 nn.Conv1d(channels, c_out, 1))

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z).reshape(z.shape[0], *self.start)
        return self.net(h).reshape(z.shape[0], *self.output_shape)
