"""The hook contract between mcgen and its plugins.

Both sides import only this module: mcgen's own built-in architectures, datasets and metrics
implement these hooks exactly as a third-party package does.  Every hook receives a
``register`` callback (keyword argument) and calls it once per thing it provides.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "mcgen"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def mcgen_register_architectures(register):
    """Register component encoders/decoders.

    Call ``register(name, encoder_factory, decoder_factory, *, kinds=("vector",),
    description="", priority=0, supports=None)`` once per architecture.

    ``encoder_factory(input_shape, **kwargs)`` returns an ``nn.Module`` that maps a batch of
    one component ``(B, *input_shape)`` to a feature tensor ``(B, F)`` and exposes the
    integer attribute ``out_features`` (F).  ``decoder_factory(latent_dim, output_shape,
    **kwargs)`` returns an ``nn.Module`` that maps ``(B, latent_dim)`` to the likelihood's
    location parameter of shape ``(B, *output_shape)``.  Models add their own distribution
    heads, so any architecture works with any model.

    ``kinds`` names the components it is meant for: ``"vector"`` ``(F,)``, ``"sequence"``
    ``(C, T)``, ``"image"`` ``(C, H, W)``.  ``encoder="auto"`` picks, among the architectures
    declaring a component's kind whose ``supports(shape)`` is true (when given), the one with
    the highest ``priority`` (the first registered on a tie; mcgen's ``resnet`` has 20,
    ``conv`` 10, ``mlp`` 0).
    """


@hookspec
def mcgen_register_datasets(register):
    """Register datasets.

    Call ``register(name, loader, *, description="")``; ``loader(**kwargs)`` returns
    ``(Components, info)`` where ``info`` is a dict (component names, kinds, shapes, ...).
    """


@hookspec
def mcgen_register_metrics(register):
    """Register metrics.

    Call ``register(name, function, *, greater_is_better=False, description="")``;
    ``function(generated, reference, **kwargs)`` compares two lists of component arrays.
    """
