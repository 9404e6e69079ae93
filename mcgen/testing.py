"""Checks for plugin authors: test an architecture or a dataset loader against mcgen's contract.

Use them in a plugin's own test suite (the example plugin ``plugins/mcgen-sequence`` does)::

    from mcgen.testing import check_architecture, check_dataset

    def test_tcn_keeps_the_contract(plugin_registered):
        check_architecture("tcn", shapes=[(1, 32), (3, 20)], encoder_kwargs={"channels": 4})

    def test_oscillators_keep_the_contract(plugin_registered):
        check_dataset("oscillators", n_samples=16)

Every failure is a :class:`mcgen.PluginContractError` that says which shape, which network
and what is wrong.  The estimators run the same shape checks when they build a network, so a
broken architecture fails at ``fit`` before training; these functions add what a build-time
check cannot afford (gradients, row independence, a short fit, reproducibility of a loader).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from mcgen.components import Components
from mcgen.exceptions import PluginContractError
from mcgen.plugins import Architecture, component_kind, get_registries, load_dataset
from mcgen.plugins.contract import CheckedFactory, dummy_batch

__all__ = ["DEFAULT_SHAPES", "check_architecture", "check_dataset"]

#: The sample shapes :func:`check_architecture` tries by default, per declared kind.
DEFAULT_SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vector": ((1,), (7,)),
    "sequence": ((1, 16), (3, 20)),
    "image": ((1, 8, 8), (3, 28, 28)),
}


def _resolve_architecture(architecture: str | Architecture | tuple[Callable, Callable]
                          ) -> tuple[str, Architecture]:
    if isinstance(architecture, str):
        regs = get_registries()
        if architecture not in regs.architectures:
            from mcgen.plugins import get_architecture

            get_architecture(architecture)  # raises the registry's message (unknown or broken)
        entry = regs.architectures[architecture]
        where = f"{entry.distribution} {entry.version}" if entry.distribution else "registered in-process"
        return f"architecture {architecture!r} of plugin {entry.plugin!r} ({where})", entry.obj
    if isinstance(architecture, Architecture):
        return "architecture", architecture
    if isinstance(architecture, tuple) and len(architecture) == 2 and all(map(callable, architecture)):
        return "architecture", Architecture(*architecture)
    raise TypeError("architecture must be a registered name, an mcgen.plugins.Architecture or a pair "
                    f"(encoder_factory, decoder_factory), got {type(architecture).__name__}")


def check_architecture(architecture: str | Architecture | tuple[Callable, Callable],
                       shapes: Sequence[Sequence[int]] | None = None, *, latent_dim: int = 3,
                       encoder_kwargs: dict[str, Any] | None = None, decoder_kwargs: dict[str, Any] | None = None,
                       fit: bool = True) -> list[tuple[int, ...]]:
    """Check an architecture against the contract of ``mcgen_register_architectures``.

    For every shape: the encoder is an ``nn.Module`` with an integer ``out_features`` mapping
    ``(B, *shape)`` to ``(B, out_features)``; the decoder maps ``(B, latent_dim)`` to exactly
    ``(B, *shape)``; both return floating-point tensors; every parameter of both receives a
    gradient; rows are processed independently in eval mode (changing one row changes no other
    row's output).  With ``fit`` and a registered name, a ``GMRFMultiComponentVAE`` and an
    ``MVAE`` using it train for one epoch on a few rows of every shape and sample.

    Parameters
    ----------
    architecture : str, Architecture or (encoder_factory, decoder_factory)
        A registered name (the messages name its plugin) or the factories themselves.
    shapes : sequence of tuple of int, optional
        The component sample shapes to check (default: :data:`DEFAULT_SHAPES` of every kind the
        architecture declares, those its ``supports`` accepts).
    latent_dim : int, default=3
        The latent size the decoders are built for.
    encoder_kwargs, decoder_kwargs : dict, optional
        Options passed to the factories (small networks keep the check fast).
    fit : bool, default=True
        Also fit the estimators for one epoch (registered names only).

    Returns
    -------
    list of tuple of int
        The shapes checked.

    Raises
    ------
    PluginContractError
        On the first violation, naming the architecture, the shape and the network.
    """
    label, arch = _resolve_architecture(architecture)
    if shapes is None:
        shapes = [s for kind in arch.kinds for s in DEFAULT_SHAPES.get(kind, ())
                  if arch.supports is None or arch.supports(s)]
        if not shapes:
            raise ValueError(f"{label} declares kinds {arch.kinds} with no default shapes it supports; pass shapes=")
    shapes = [tuple(int(d) for d in s) for s in shapes]
    enc_kw, dec_kw = dict(encoder_kwargs or {}), dict(decoder_kwargs or {})
    for shape in shapes:
        where = f"{label}, component of shape {shape}"
        enc = CheckedFactory(arch.encoder_factory, "encoder", f"{where}, encoder")(shape, **enc_kw)
        dec = CheckedFactory(arch.decoder_factory, "decoder", f"{where}, decoder")(latent_dim, shape, **dec_kw)
        _check_gradients(enc, dummy_batch(shape, 4), f"{where}, encoder")
        _check_gradients(dec, dummy_batch((latent_dim,), 4), f"{where}, decoder")
        _check_rows_independent(enc, dummy_batch(shape, 4), f"{where}, encoder")
        _check_rows_independent(dec, dummy_batch((latent_dim,), 4), f"{where}, decoder")
    if fit and isinstance(architecture, str):
        _check_fit(architecture, shapes, latent_dim, enc_kw, dec_kw, label)
    return shapes


def _check_gradients(module: torch.nn.Module, x: torch.Tensor, label: str) -> None:
    module.train()
    module.zero_grad(set_to_none=True)
    out = module(x)
    (out.float().square().mean()).backward()
    missing = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
    module.zero_grad(set_to_none=True)
    module.eval()
    if missing:
        raise PluginContractError(f"{label}: parameters {missing} receive no gradient (they are not used in forward, "
                                  "or the graph is cut by .detach() / .data / numpy)")


def _check_rows_independent(module: torch.nn.Module, x: torch.Tensor, label: str) -> None:
    module.eval()
    with torch.no_grad():
        base = module(x)
        other = x.clone()
        other[1:] = other[1:].flip(0) * 0.5 + 0.25
        moved = module(other)
    if not torch.allclose(base[0], moved[0], rtol=1e-4, atol=1e-5):
        raise PluginContractError(f"{label}: in eval mode the output for row 0 changed when only the other rows of "
                                  "the batch changed; rows must be processed independently (batch statistics at "
                                  "inference, reshapes across the batch axis)")


def _check_fit(name: str, shapes: list[tuple[int, ...]], latent_dim: int, enc_kw: dict, dec_kw: dict,
               label: str) -> None:
    from mcgen import MVAE, GMRFMultiComponentVAE

    rng = np.random.default_rng(0)
    X = Components([rng.standard_normal((12, *s)).astype(np.float32) for s in shapes])
    for cls in (GMRFMultiComponentVAE, MVAE):
        est = cls(latent_dim=latent_dim, encoder=name, decoder=name, encoder_kwargs=enc_kw, decoder_kwargs=dec_kw,
                  max_epochs=1, batch_size=6, random_state=0)
        try:
            est.fit(X)
            out = est.sample(2, random_state=0)
        except PluginContractError:
            raise
        except Exception as exc:
            raise PluginContractError(f"{label}: one epoch of {cls.__name__} on components of shapes {shapes} "
                                      f"failed: {type(exc).__name__}: {exc}") from exc
        got = [a.shape[1:] for a in out]
        if got != shapes:
            raise PluginContractError(f"{label}: {cls.__name__} sampled shapes {got}, expected {shapes}")


def check_dataset(dataset: str | Callable[..., Any], **loader_kwargs: Any) -> tuple[Components, dict]:
    """Check a dataset loader against the contract of ``mcgen_register_datasets``.

    The loader returns ``(Components, info)`` with ``info`` a dict; every component is a
    numeric array with finite values; when ``info`` has ``names``, ``kinds`` or ``shapes``, they
    hold one entry per component and agree with the arrays (``kinds`` with the sample shapes:
    ``"vector"`` ``(F,)``, ``"sequence"`` ``(C, T)``, ``"image"`` ``(C, H, W)``); ``n_samples``,
    when passed and accepted, gives that many rows; a loader taking ``random_state`` returns
    the same data twice for the same seed.

    Parameters
    ----------
    dataset : str or callable
        A registered dataset name or the loader itself.
    **loader_kwargs
        Passed to the loader (keep it small: ``n_samples=16``).

    Returns
    -------
    (Components, dict)
        What the loader returned.

    Raises
    ------
    PluginContractError
        Naming the dataset and what is wrong.
    """
    from mcgen.plugins.contract import check_loader_result

    if isinstance(dataset, str):
        label = f"dataset {dataset!r}"

        def load(**kw: Any) -> tuple[Any, dict]:
            return load_dataset(dataset, **kw)

        params = inspect.signature(get_registries().datasets[dataset].obj).parameters
    elif callable(dataset):
        label = f"dataset loader {getattr(dataset, '__qualname__', repr(dataset))}"

        def load(**kw: Any) -> tuple[Any, dict]:
            return check_loader_result(dataset(**kw), label)

        params = inspect.signature(dataset).parameters
    else:
        raise TypeError(f"dataset must be a registered name or a loader, got {type(dataset).__name__}")
    X, info = load(**loader_kwargs)
    if not isinstance(X, Components):
        raise PluginContractError(f"{label}: returned a {type(X).__name__}, not an mcgen.Components")
    for i, a in enumerate(X.arrays):
        if a.dtype.kind not in "biuf":
            raise PluginContractError(f"{label}: component {i} has non-numeric dtype {a.dtype}")
        if a.ndim < 2:
            raise PluginContractError(f"{label}: component {i} has shape {a.shape}; (n_samples, *features) is needed")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise PluginContractError(f"{label}: component {i} holds NaN or infinite values")
    M = X.n_components
    for key in ("names", "kinds", "shapes"):
        if key in info and len(info[key]) != M:
            raise PluginContractError(f"{label}: info[{key!r}] has {len(info[key])} entries for {M} components")
    if "shapes" in info:
        declared = [tuple(int(d) for d in s) for s in info["shapes"]]
        if declared != list(X.component_shapes):
            raise PluginContractError(f"{label}: info['shapes'] says {declared} but the components have sample "
                                      f"shapes {list(X.component_shapes)}")
    if "kinds" in info:
        actual = [component_kind(s) for s in X.component_shapes]
        if list(info["kinds"]) != actual:
            raise PluginContractError(f"{label}: info['kinds'] says {list(info['kinds'])} but the sample shapes "
                                      f"{list(X.component_shapes)} are of kinds {actual}")
    if "n_samples" in loader_kwargs and loader_kwargs["n_samples"] is not None \
            and X.n_samples != loader_kwargs["n_samples"]:
        raise PluginContractError(f"{label}: asked for n_samples={loader_kwargs['n_samples']}, got {X.n_samples} rows")
    if "random_state" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kw = {"random_state": 0, **loader_kwargs}
        first, _ = load(**kw)
        again, _ = load(**kw)
        for i, (a, b) in enumerate(zip(first.arrays, again.arrays)):
            if a.shape != b.shape or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                raise PluginContractError(f"{label}: two calls with random_state={kw['random_state']} gave different "
                                          f"data for component {i}; a seeded loader must be reproducible")
    if math.prod(X.shape) == 0:
        raise PluginContractError(f"{label}: returned no rows")
    return X, info
