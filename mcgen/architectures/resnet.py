"""``resnet``: the paper's ResNet encoder/decoder for image components.

The GMRF MCVAE paper (its Tables V-VIII) uses, for the 28 x 28 RGB PolyMNIST images and the
64 x 64 grayscale BIKED component images, the ResNet of Mescheder et al. (2018):

* a residual block is ``x_s + 0.1 * conv_1(act(conv_0(act(x))))`` with 3 x 3 convolutions,
  ``act = LeakyReLU(0.2)``, a hidden width ``min(f_in, f_out)`` and a learned 1 x 1 shortcut
  (no bias) when the widths differ;
* the encoder is ``conv_img`` (3 x 3, C -> nf), a block at width nf, then ``n`` times
  [average pooling (3 x 3, stride 2, padding 1), a block doubling the width up to ``nf_max``],
  ending at an ``s0 x s0`` map that is flattened (after the activation);
* the decoder mirrors it: a linear layer to ``nf_n x s0 x s0``, ``n`` times [a block halving
  the width, nearest upsampling x 2], a block at width nf and ``conv_img`` (3 x 3, nf -> C) on
  the activated map, with no output non-linearity (the likelihood owns that).

``n`` is fixed by the image size and ``s0``: ``H = s0 * 2**n``.  The paper's settings are
``s0 = 7`` (28 -> 14 -> 7, two levels) and ``s0 = 4`` (64 -> 4, four levels); by default
``s0`` is the smallest size of at least 4 reached by exact halvings.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from mcgen.plugins.hookspecs import hookimpl

#: Slope of the LeakyReLU used throughout (the paper's 0.2).
LEAKY_SLOPE = 0.2


class ResnetBlock(nn.Module):
    """Pre-activation residual block ``x_s + res_scale * conv_1(act(conv_0(act(x))))``.

    Parameters
    ----------
    fin, fout : int
        Input and output channels.
    fhidden : int, optional
        Channels between the two convolutions (default ``min(fin, fout)``).
    res_scale : float
        Weight of the residual branch (0.1 in the paper's network).
    """

    def __init__(self, fin: int, fout: int, fhidden: int | None = None, res_scale: float = 0.1):
        super().__init__()
        fhidden = min(fin, fout) if fhidden is None else fhidden
        self.res_scale = float(res_scale)
        self.conv_0 = nn.Conv2d(fin, fhidden, 3, padding=1)
        self.conv_1 = nn.Conv2d(fhidden, fout, 3, padding=1)
        self.shortcut = nn.Identity() if fin == fout else nn.Conv2d(fin, fout, 1, bias=False)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: Tensor) -> Tensor:
        dx = self.conv_1(self.act(self.conv_0(self.act(x))))
        return self.shortcut(x) + self.res_scale * dx


def _image_shape(shape: tuple[int, ...], arch: str) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"{arch} needs image components of shape (channels, height, width), got sample shape {shape}; "
            "reshape a grayscale batch (n, H, W) to (n, 1, H, W), or use encoder='mlp' for vectors"
        )
    return shape  # type: ignore[return-value]


def _levels(size: tuple[int, int], s0) -> tuple[int, tuple[int, int]]:
    """Number of halvings ``n`` and the bottom size ``(s0h, s0w)`` with ``size = s0 * 2**n``."""
    H, W = size
    if s0 is None:
        n = 0
        while H % 2 ** (n + 1) == 0 and W % 2 ** (n + 1) == 0 and min(H, W) // 2 ** (n + 1) >= 4:
            n += 1
        return n, (H // 2**n, W // 2**n)
    s0h, s0w = (s0, s0) if isinstance(s0, int) else tuple(s0)
    if s0h < 1 or s0w < 1 or H % s0h or W % s0w:
        raise ValueError(f"s0={s0!r} does not divide the image size {H}x{W}")
    fh, fw = H // s0h, W // s0w
    n = int(round(math.log2(fh))) if fh > 0 else -1
    if fh != fw or 2**n != fh:
        raise ValueError(
            f"image size {H}x{W} must be s0 times a power of two in both directions (s0={s0!r}); "
            "for the paper's images use s0=7 (28x28) or s0=4 (64x64)"
        )
    return n, (s0h, s0w)


def _widths(nf: int, nf_max: int, n: int) -> list[int]:
    if nf < 1 or nf_max < 1:
        raise ValueError(f"nf and nf_max must be positive, got nf={nf}, nf_max={nf_max}")
    return [min(nf * 2**i, nf_max) for i in range(n + 1)]


class ResNetEncoder(nn.Module):
    """The paper's ResNet image encoder (see the module docstring).

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` of one image.
    nf : int, default=32
        Channels at full resolution; doubled at every level.
    nf_max : int, default=256
        Channel cap.
    s0 : int or (int, int), optional
        Spatial size at the bottom; default: the smallest size >= 4 reached by exact halvings
        (7 for 28 x 28, 4 for 64 x 64).
    out_features : int, optional
        Add a linear layer (and LeakyReLU) to this many features; default: the flattened
        ``nf_n x s0 x s0`` map itself, as in the paper (the model's heads act on it).
    res_scale : float, default=0.1
        Weight of every residual branch.

    Attributes
    ----------
    out_features : int
        Width of the feature vector.
    """

    def __init__(self, input_shape: tuple[int, ...], nf: int = 32, nf_max: int = 256, s0=None,
                 out_features: int | None = None, res_scale: float = 0.1):
        super().__init__()
        C, H, W = _image_shape(input_shape, "resnet")
        n, (s0h, s0w) = _levels((H, W), s0)
        widths = _widths(nf, nf_max, n)
        layers: list[nn.Module] = [nn.Conv2d(C, widths[0], 3, padding=1), ResnetBlock(widths[0], widths[0],
                                                                                      res_scale=res_scale)]
        for i in range(n):
            layers += [nn.AvgPool2d(3, stride=2, padding=1), ResnetBlock(widths[i], widths[i + 1],
                                                                         res_scale=res_scale)]
        layers += [nn.LeakyReLU(LEAKY_SLOPE), nn.Flatten(1)]
        flat = widths[-1] * s0h * s0w
        if out_features is not None:
            if out_features < 1:
                raise ValueError(f"out_features must be positive, got {out_features}")
            layers += [nn.Linear(flat, out_features), nn.LeakyReLU(LEAKY_SLOPE)]
            flat = int(out_features)
        self.net = nn.Sequential(*layers)
        self.out_features = int(flat)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ResNetDecoder(nn.Module):
    """The paper's ResNet image decoder, mirroring :class:`ResNetEncoder`.

    Parameters
    ----------
    latent_dim : int
    output_shape : tuple of int
        ``(channels, height, width)`` of one image.
    nf, nf_max, s0, res_scale
        As for :class:`ResNetEncoder`.

    The output is the likelihood's location (logits for a Bernoulli likelihood), unbounded.
    """

    def __init__(self, latent_dim: int, output_shape: tuple[int, ...], nf: int = 32, nf_max: int = 256,
                 s0=None, res_scale: float = 0.1):
        super().__init__()
        C, H, W = _image_shape(output_shape, "resnet")
        n, (s0h, s0w) = _levels((H, W), s0)
        widths = _widths(nf, nf_max, n)
        self.bottom = (widths[-1], s0h, s0w)
        self.fc = nn.Linear(latent_dim, widths[-1] * s0h * s0w)
        layers: list[nn.Module] = []
        for i in range(n, 0, -1):
            layers += [ResnetBlock(widths[i], widths[i - 1], res_scale=res_scale),
                       nn.Upsample(scale_factor=2, mode="nearest")]
        layers += [ResnetBlock(widths[0], widths[0], res_scale=res_scale), nn.LeakyReLU(LEAKY_SLOPE),
                   nn.Conv2d(widths[0], C, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).reshape(z.shape[0], *self.bottom))


@hookimpl
def mcgen_register_architectures(register):
    register("resnet", ResNetEncoder, ResNetDecoder, kinds=("image",), priority=20, supports=_papers_image_size,
             description="the paper's ResNet (LeakyReLU 0.2, avg-pool down, upsample up; nf, nf_max, s0)")


def _papers_image_size(shape: tuple[int, ...]) -> bool:
    """What ``encoder="auto"`` may give resnet: the paper's image sizes, 28 x 28, 32 x 32 and 64 x 64."""
    return len(shape) == 3 and tuple(shape[1:]) in ((28, 28), (32, 32), (64, 64))
