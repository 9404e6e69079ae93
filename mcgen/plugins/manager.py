"""The plugin manager and the three registries it fills.

Built-in plugins are loaded by dotted module name (as pytest loads its default plugins),
third-party plugins from the ``"mcgen"`` entry-point group.  No core module imports the
built-in architectures or datasets directly: everything is looked up here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from . import hookspecs

#: Built-in plugin modules, registered through the same hooks as any third-party plugin.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "mcgen.architectures.mlp",
    "mcgen.architectures.conv",
    "mcgen.architectures.resnet",
    "mcgen.datasets.copula",
    "mcgen.datasets.digits",
    "mcgen.datasets.polymnist",
    "mcgen.datasets.biked",
    "mcgen.metrics.wasserstein",
    "mcgen.metrics.images",
    "mcgen.metrics.coherence",
)

#: Environment variable that disables entry-point discovery (like pytest's).
DISABLE_AUTOLOAD_ENV = "MCGEN_DISABLE_PLUGIN_AUTOLOAD"


class PluginClashError(ValueError):
    """Two plugins registered the same name in the same registry."""


@dataclass(frozen=True)
class RegistryEntry:
    """One registered object and where it came from."""

    name: str
    obj: Any
    plugin: str
    distribution: str | None = None
    version: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Registries:
    """The architectures, datasets and metrics that the loaded plugins registered."""

    architectures: dict[str, RegistryEntry] = field(default_factory=dict)
    datasets: dict[str, RegistryEntry] = field(default_factory=dict)
    metrics: dict[str, RegistryEntry] = field(default_factory=dict)


def make_plugin_manager(
    load_entrypoints: bool | None = None, builtins: bool = True
) -> pluggy.PluginManager:
    """Build a fresh plugin manager.

    Parameters
    ----------
    load_entrypoints : bool or None
        Load third-party plugins from the ``"mcgen"`` entry-point group.  ``None`` means
        "unless the environment variable ``MCGEN_DISABLE_PLUGIN_AUTOLOAD`` is set".
    builtins : bool
        Register mcgen's own built-in plugins.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if builtins:
        for dotted in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(dotted), name=dotted)
    if load_entrypoints is None:
        load_entrypoints = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
    pm.check_pending()
    return pm


def _plugin_origin(pm: pluggy.PluginManager, plugin: object) -> tuple[str, str | None, str | None]:
    name = pm.get_name(plugin) or repr(plugin)
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return name, dist.project_name, dist.version
    if name.startswith("mcgen."):
        from mcgen import __version__

        return name, "mcgen", __version__
    return name, None, None


def collect_registries(pm: pluggy.PluginManager) -> Registries:
    """Call every registration hook of ``pm`` and gather what the plugins registered.

    Raises
    ------
    PluginClashError
        When two plugins register the same name in one registry (the message names both).
    """
    regs = Registries()

    def make_register(table: dict[str, RegistryEntry], kind: str, plugin: object, build: Callable):
        origin = _plugin_origin(pm, plugin)

        def register(name: str, *args: Any, **kwargs: Any) -> None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"plugin {origin[0]!r} registered a {kind} with an invalid name {name!r}")
            if name in table:
                raise PluginClashError(
                    f"{kind} {name!r} is registered twice: by plugin {table[name].plugin!r} "
                    f"and by plugin {origin[0]!r}"
                )
            table[name] = RegistryEntry(name, build(*args, **kwargs), *origin, meta=dict(kwargs))

        return register

    hooks = (
        ("mcgen_register_architectures", regs.architectures, "architecture", _arch),
        ("mcgen_register_datasets", regs.datasets, "dataset", _single),
        ("mcgen_register_metrics", regs.metrics, "metric", _single),
    )
    for hook_name, table, kind, build in hooks:
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            impl.function(register=make_register(table, kind, impl.plugin, build))
    return regs


@dataclass(frozen=True)
class Architecture:
    """An encoder factory and a decoder factory registered under one name."""

    encoder_factory: Callable
    decoder_factory: Callable
    kinds: tuple[str, ...] = ("vector",)
    description: str = ""


def _arch(encoder_factory, decoder_factory, *, kinds=("vector",), description="", **_):
    return Architecture(encoder_factory, decoder_factory, tuple(kinds), description)


def _single(obj, **_):
    return obj


_STATE: dict[str, Any] = {}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built on first use)."""
    if "pm" not in _STATE:
        _STATE["pm"] = make_plugin_manager()
    return _STATE["pm"]


def get_registries() -> Registries:
    """The process-wide registries (collected on first use)."""
    if "regs" not in _STATE:
        _STATE["regs"] = collect_registries(get_plugin_manager())
    return _STATE["regs"]


def reset_plugins(pm: pluggy.PluginManager | None = None) -> None:
    """Forget the cached manager and registries (use ``pm`` from now on if given)."""
    _STATE.clear()
    if pm is not None:
        _STATE["pm"] = pm


def _lookup(table: dict[str, RegistryEntry], kind: str, name: str) -> RegistryEntry:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table)) or "(none)"
        raise ValueError(f"unknown {kind} {name!r}; registered {kind}s: {valid}") from None


def get_architecture(name: str) -> Architecture:
    """Look up a registered architecture by name."""
    return _lookup(get_registries().architectures, "architecture", name).obj


def get_metric(name: str) -> Callable:
    """Look up a registered metric function by name."""
    return _lookup(get_registries().metrics, "metric", name).obj


def load_dataset(name: str, **kwargs: Any):
    """Load a registered dataset: ``load_dataset(name, **kwargs) -> (Components, info)``."""
    loader = _lookup(get_registries().datasets, "dataset", name).obj
    return loader(**kwargs)
