"""Plugin system: pluggy hook specifications, manager and registries."""

from .hookspecs import hookimpl, hookspec
from .manager import (
    DISABLE_AUTOLOAD_ENV,
    Architecture,
    MCGenPluginManager,
    PluginClashError,
    PluginError,
    PluginLoadError,
    PluginSignatureError,
    RegistryEntry,
    get_architecture,
    get_metric,
    get_plugin_manager,
    get_registries,
    load_dataset,
    make_plugin_manager,
    register_plugin,
    reset_plugins,
    unregister_plugin,
)

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "Architecture",
    "MCGenPluginManager",
    "PluginClashError",
    "PluginError",
    "PluginLoadError",
    "PluginSignatureError",
    "RegistryEntry",
    "get_architecture",
    "get_metric",
    "get_plugin_manager",
    "get_registries",
    "hookimpl",
    "hookspec",
    "load_dataset",
    "make_plugin_manager",
    "register_plugin",
    "reset_plugins",
    "unregister_plugin",
]
