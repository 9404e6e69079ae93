"""Plugin system: pluggy hook specifications, manager and registries."""

# The plugin errors' home is mcgen.exceptions (documented there, through mcgen); importable from here too.
from mcgen.exceptions import (  # noqa: F401
    PluginBrokenError,
    PluginClashError,
    PluginContractError,
    PluginError,
    PluginLoadError,
    PluginSignatureError,
)

from .hookspecs import hookimpl, hookspec
from .manager import (
    DISABLE_AUTOLOAD_ENV,
    Architecture,
    BrokenPlugin,
    MCGenPluginManager,
    Metric,
    Registries,
    RegistryEntry,
    auto_architecture,
    collect_registries,
    component_kind,
    get_architecture,
    get_metric,
    get_metric_info,
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
    "BrokenPlugin",
    "MCGenPluginManager",
    "Metric",
    "Registries",
    "RegistryEntry",
    "auto_architecture",
    "collect_registries",
    "component_kind",
    "get_architecture",
    "get_metric",
    "get_metric_info",
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
