"""Plugin system: pluggy hook specifications, manager and registries."""

from .hookspecs import hookimpl, hookspec
from .manager import (
    Architecture,
    PluginClashError,
    RegistryEntry,
    get_architecture,
    get_metric,
    get_plugin_manager,
    get_registries,
    load_dataset,
    make_plugin_manager,
    reset_plugins,
)

__all__ = [
    "Architecture",
    "PluginClashError",
    "RegistryEntry",
    "get_architecture",
    "get_metric",
    "get_plugin_manager",
    "get_registries",
    "hookimpl",
    "hookspec",
    "load_dataset",
    "make_plugin_manager",
    "reset_plugins",
]
