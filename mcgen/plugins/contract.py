"""The plugin contract, checked: architectures on a dummy batch, dataset loaders' return values.

mcgen runs these checks itself (every network an estimator builds is checked once, before
training; :func:`mcgen.load_dataset` checks what a loader returns), and plugin authors run them
in their own tests through :mod:`mcgen.testing`.  Every error is a
:class:`~mcgen.exceptions.PluginContractError` whose message starts with the label the caller
gives (which plugin, which architecture or dataset, which component).

The dummy batch is deterministic (no random numbers are drawn, so checking a network does not
change what a seeded fit computes) and the network runs in eval mode without gradients; its
train/eval mode is restored afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from mcgen.exceptions import PluginContractError

__all__ = ["CheckedFactory", "check_decoder", "check_encoder", "check_loader_result", "dummy_batch"]

#: Rows of the dummy batch (two, so that layers normalising over the batch work).
DUMMY_ROWS = 2


def dummy_batch(shape: Sequence[int], rows: int = DUMMY_ROWS) -> torch.Tensor:
    """A deterministic float32 batch ``(rows, *shape)`` with values spread over [-1, 1]."""
    shape = tuple(int(s) for s in shape)
    n = rows * math.prod(shape)
    return torch.linspace(-1.0, 1.0, n, dtype=torch.float32).reshape(rows, *shape)


def _run(module: nn.Module, x: torch.Tensor, label: str, what: str) -> Any:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return module(x)
    except Exception as exc:
        raise PluginContractError(f"{label}: the {what} failed on a dummy batch of shape {tuple(x.shape)}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    finally:
        module.train(was_training)


def check_encoder(module: Any, input_shape: Sequence[int], label: str = "encoder") -> int:
    """Check an encoder built for ``input_shape``: an ``nn.Module`` with an integer
    ``out_features`` that maps a batch ``(B, *input_shape)`` to ``(B, out_features)``.

    Parameters
    ----------
    module : object
        What the encoder factory returned.
    input_shape : tuple of int
        The component's sample shape.
    label : str
        Names the network in the error message (plugin, architecture, component).

    Returns
    -------
    int
        ``out_features``.

    Raises
    ------
    PluginContractError
        Naming ``label`` and what is wrong.
    """
    input_shape = tuple(int(s) for s in input_shape)
    if not isinstance(module, nn.Module):
        raise PluginContractError(f"{label}: the encoder factory returned a {type(module).__name__}, not a "
                                  "torch.nn.Module")
    width = getattr(module, "out_features", None)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise PluginContractError(f"{label}: the encoder must have a positive integer attribute `out_features` "
                                  f"(the width of its output), got {width!r}")
    out = _run(module, dummy_batch(input_shape), label, "encoder")
    expected = (DUMMY_ROWS, width)
    _check_output(out, expected, label, "encoder", "(B, out_features)", lambda got: (
        f"{label}: for input of shape (B, *{input_shape}) = {(DUMMY_ROWS, *input_shape)} the encoder returned "
        f"shape {got}, but it declares out_features={width}, so (B, out_features) = {expected} is expected"))
    return width


def _check_output(out: Any, expected: tuple[int, ...], label: str, what: str, shape_name: str,
                  mismatch: Callable[[tuple[int, ...]], str]) -> None:
    """A network's output on the dummy batch: a floating-point tensor of shape ``expected``
    (``mismatch(shape)`` is the message for another shape)."""
    if not isinstance(out, torch.Tensor):
        raise PluginContractError(f"{label}: the {what} returned a {type(out).__name__}, not a tensor of shape "
                                  f"{shape_name} = {expected}")
    if tuple(out.shape) != expected:
        raise PluginContractError(mismatch(tuple(out.shape)))
    if not out.is_floating_point():
        raise PluginContractError(f"{label}: the {what} returned dtype {out.dtype}; a floating-point tensor is "
                                  "expected")


def check_decoder(module: Any, latent_dim: int, output_shape: Sequence[int], label: str = "decoder") -> None:
    """Check a decoder built for ``(latent_dim, output_shape)``: an ``nn.Module`` that maps
    ``(B, latent_dim)`` to exactly ``(B, *output_shape)``.

    Parameters
    ----------
    module : object
        What the decoder factory returned.
    latent_dim : int
    output_shape : tuple of int
        The component's sample shape.
    label : str
        Names the network in the error message (plugin, architecture, component).

    Raises
    ------
    PluginContractError
        Naming ``label`` and what is wrong; a shape with the right number of values but other
        axes (``(B, 16, 1)`` for a ``(1, 16)`` component) is refused too.
    """
    output_shape = tuple(int(s) for s in output_shape)
    if not isinstance(module, nn.Module):
        raise PluginContractError(f"{label}: the decoder factory returned a {type(module).__name__}, not a "
                                  "torch.nn.Module")
    out = _run(module, dummy_batch((int(latent_dim),)), label, "decoder")
    expected = (DUMMY_ROWS, *output_shape)
    _check_output(out, expected, label, "decoder", "(B, *component_shape)", lambda got: (
        f"{label}: for latents of shape (B, {int(latent_dim)}) the decoder returned shape {got}; "
        f"the component's shape is {output_shape}, so (B, *component_shape) = {expected} is expected"))


class CheckedFactory:
    """An encoder or decoder factory whose every network is checked on a dummy batch when built.

    The estimators wrap the registry's factories in this, so a network that breaks the contract
    fails at ``fit`` before training, with an error naming ``label`` (plugin, architecture and
    component), instead of a shape error deep inside torch or a silently wrong model.

    Parameters
    ----------
    factory : callable
        ``factory(input_shape, **kw)`` (encoder) or ``factory(latent_dim, output_shape, **kw)``
        (decoder).
    role : {"encoder", "decoder"}
    label : str
        E.g. ``"architecture 'tcn' of plugin 'sequence' (mcgen-sequence 0.1.0), encoder of component 2"``.
    """

    def __init__(self, factory: Callable[..., nn.Module], role: str, label: str):
        if role not in ("encoder", "decoder"):
            raise ValueError(f"role must be 'encoder' or 'decoder', got {role!r}")
        self.factory = factory
        self.role = role
        self.label = label
        self.__qualname__ = getattr(factory, "__qualname__", type(factory).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        try:
            module = self.factory(*args, **kwargs)
        except TypeError as exc:
            raise PluginContractError(f"{self.label}: the {self.role} factory could not be called with "
                                      f"{', '.join(map(repr, args))} and options {kwargs}: {exc}") from exc
        if self.role == "encoder":
            check_encoder(module, args[0], self.label)
        else:
            check_decoder(module, args[0], args[1], self.label)
        return module

    def __repr__(self) -> str:
        return f"CheckedFactory({self.__qualname__}, {self.role!r})"


def check_loader_result(result: Any, label: str) -> tuple[Any, dict]:
    """Check what a dataset loader returned: ``(Components, info)`` with ``info`` a dict.

    Parameters
    ----------
    result : object
        The loader's return value.
    label : str
        Names the dataset (and plugin) in the error message.

    Returns
    -------
    (Components, dict)

    Raises
    ------
    PluginContractError
    """
    expected = "a dataset loader must return (Components, info) with info a dict"
    if not isinstance(result, tuple) or len(result) != 2:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise PluginContractError(f"{label}: the loader returned {got}; {expected}")
    X, info = result
    # duck-typed: the plugin layer does not import mcgen.components (docs/design.md, "Layers")
    if type(X).__name__ != "Components" or not isinstance(getattr(X, "arrays", None), tuple):
        raise PluginContractError(f"{label}: the loader returned {type(X).__name__} as the data; {expected} "
                                  "(wrap the arrays: mcgen.Components([a, b, ...]))")
    if not isinstance(info, dict):
        raise PluginContractError(f"{label}: the loader returned {type(info).__name__} as the info; {expected}")
    return X, info
