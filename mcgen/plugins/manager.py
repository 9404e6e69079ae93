"""The plugin manager and the three registries it fills.

Built-in plugins are loaded by dotted module name (as pytest loads its default plugins),
third-party plugins from the ``"mcgen"`` entry-point group.  No core module imports the
built-in architectures or datasets directly: everything is looked up here.  The registries
answer questions by name (which architecture suits a component's shape, which metrics exist);
only the estimator layer turns a name into a factory for the models.

The manager is a :class:`pluggy.PluginManager` that turns pluggy's generic validation errors
into messages that say what mcgen expects (the hook signature, the distribution a broken
plugin came from), and remembers which distribution every entry-point plugin belongs to so
that ``mcgen plugins`` can report it.

**A broken plugin is contained.**  The process-wide manager and registries (what estimators,
:func:`load_dataset` and ``mcgen plugins`` use) skip a third-party plugin that cannot be
imported, implements a hook wrongly, raises in a hook, returns its registrations instead of
calling ``register``, or clashes with a name registered before it, and record it as a
:class:`BrokenPlugin` with the reason (``get_registries().broken``): every other plugin, the
built-ins included, keeps working, ``mcgen plugins`` lists the broken one, and asking for a
name that is not registered names the broken plugins (the one that tried to register that name
first).  :func:`make_plugin_manager` and :func:`collect_registries` called directly are strict
by default (they raise), which is what a plugin's own tests want.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mcgen.exceptions import (
    PluginBrokenError,
    PluginClashError,
    PluginError,
    PluginLoadError,
    PluginSignatureError,
)
from mcgen.version import __version__

from . import hookspecs
from .contract import check_loader_result

#: Built-in plugin modules, registered through the same hooks as any third-party plugin.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "mcgen.architectures.mlp",
    "mcgen.architectures.conv",
    "mcgen.architectures.resnet",
    "mcgen.datasets.copula",
    "mcgen.datasets.digits",
    "mcgen.datasets.polymnist",
    "mcgen.datasets.biked",
    "mcgen.datasets.wdbc",
    "mcgen.metrics.wasserstein",
    "mcgen.metrics.images",
    "mcgen.metrics.coherence",
)

#: Environment variable that disables entry-point discovery (like pytest's).
DISABLE_AUTOLOAD_ENV = "MCGEN_DISABLE_PLUGIN_AUTOLOAD"

#: The hooks and the signature of the ``register`` callback each one receives.
HOOK_SIGNATURES: dict[str, str] = {
    "mcgen_register_architectures": "register(name, encoder_factory, decoder_factory, *, kinds=('vector',), "
                                    "description='', priority=0, supports=None)",
    "mcgen_register_datasets": "register(name, loader, *, description='')",
    "mcgen_register_metrics": "register(name, function, *, greater_is_better=False, description='')",
}


#: The kinds of component the ``"auto"`` architecture choice tells apart, by number of sample axes.
COMPONENT_KINDS: dict[int, str] = {1: "vector", 2: "sequence", 3: "image"}


@dataclass(frozen=True)
class RegistryEntry:
    """One registered object and where it came from.

    Attributes
    ----------
    name : str
        The name it is looked up by.
    obj : object
        An :class:`Architecture`, a dataset loader or a metric function.
    plugin : str
        Name of the plugin that registered it (module path for built-ins, entry-point name
        for installed plugins, the given name for in-process plugins).
    distribution, version : str or None
        The distribution (pip package) the plugin came from and its version; ``None`` for a
        plugin registered in-process.
    meta : dict
        The keyword arguments given to ``register`` (``kinds``, ``description``, ...).
    """

    name: str
    obj: Any
    plugin: str
    distribution: str | None = None
    version: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that was skipped because it is broken, and why.

    Attributes
    ----------
    name : str
        The plugin's name (the entry-point name for an installed plugin).
    reason : str
        What went wrong, as a one-paragraph message (the exception class and its message).
    distribution, version : str or None
        The distribution (pip package) it came from, when known.
    names : tuple of str
        The names it tried to register before it failed, as ``"dataset 'x'"`` (empty when it
        failed before registering anything).
    error : Exception or None
        The exception that broke it.
    """

    name: str
    reason: str
    distribution: str | None = None
    version: str | None = None
    names: tuple[str, ...] = ()
    error: BaseException | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """``plugin 'name' (distribution version)``: how messages name it."""
        where = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"plugin {self.name!r}{where}"


@dataclass
class Registries:
    """The architectures, datasets and metrics that the loaded plugins registered.

    ``broken`` holds the plugins that were skipped (:class:`BrokenPlugin`, by plugin name);
    it stays empty for registries collected strictly (the default of
    :func:`collect_registries`), which raise instead.
    """

    architectures: dict[str, RegistryEntry] = field(default_factory=dict)
    datasets: dict[str, RegistryEntry] = field(default_factory=dict)
    metrics: dict[str, RegistryEntry] = field(default_factory=dict)
    broken: dict[str, BrokenPlugin] = field(default_factory=dict)


def _signature_help(hook_name: str) -> str:
    return (f"mcgen hooks take one keyword argument, the register callback: "
            f"`@hookimpl def {hook_name}(register): ...`, then call "
            f"{HOOK_SIGNATURES.get(hook_name, 'register(name, ...)')}")


class MCGenPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` for project ``"mcgen"`` with mcgen's error messages.

    Registration errors (an argument the hook specification does not know, a hook name that
    does not exist, a wrapper) raise :class:`PluginSignatureError` naming the plugin, the hook
    and the expected signature, and leave the manager as it was.  Entry-point plugins remember
    their distribution (see :meth:`plugin_distribution`).
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self._ep_distributions: list[tuple[object, importlib.metadata.Distribution]] = []
        #: Entry-point plugins skipped by a tolerant load (:meth:`load_setuptools_entrypoints`
        #: with ``strict=False``), by name.
        self.broken: dict[str, BrokenPlugin] = {}

    # -- registration ---------------------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (a module or an object with ``@hookimpl`` methods).

        Raises
        ------
        PluginSignatureError
            When a hook implementation does not match mcgen's hook specifications.
        """
        try:
            plugin_name = super().register(plugin, name)
        except pluggy.PluginValidationError as exc:
            # pluggy has already recorded the plugin under its name: undo that.
            if self.is_registered(plugin):
                self.unregister(plugin)
            raise PluginSignatureError(self._explain(plugin, name, exc)) from exc
        if plugin_name is not None:
            for hook_name in HOOK_SIGNATURES:
                for impl in getattr(self.hook, hook_name).get_hookimpls():
                    if impl.plugin is not plugin:
                        continue
                    if impl.hookwrapper or impl.wrapper:
                        self.unregister(plugin)
                        raise PluginSignatureError(
                            f"plugin {plugin_name!r} implements {hook_name} as a wrapper; mcgen's "
                            f"registration hooks are plain functions. {_signature_help(hook_name)}")
                    if "register" not in impl.argnames:
                        # pluggy accepts an implementation taking fewer arguments than the
                        # specification; without `register` it could never register anything.
                        self.unregister(plugin)
                        raise PluginSignatureError(
                            f"plugin {plugin_name!r} implements {hook_name} without the `register` argument, "
                            f"so it cannot register anything. {_signature_help(hook_name)}")
        return plugin_name

    @staticmethod
    def _explain(plugin: object, name: str | None, exc: Exception) -> str:
        label = name or getattr(plugin, "__name__", None) or repr(plugin)
        for hook_name in HOOK_SIGNATURES:
            if hook_name in str(exc):
                return (f"plugin {label!r} implements {hook_name} with the wrong signature. "
                        f"{_signature_help(hook_name)}. pluggy said: {exc}")
        return f"plugin {label!r} failed validation: {exc}"

    def check_pending(self) -> None:
        """Refuse hook implementations whose name is not one of mcgen's hooks.

        Raises
        ------
        PluginSignatureError
            Naming the plugin, the unknown hook and the valid hook names.
        """
        try:
            super().check_pending()
        except pluggy.PluginValidationError as exc:
            label = self.get_name(exc.plugin) or repr(exc.plugin)
            raise PluginSignatureError(
                f"plugin {label!r} implements a hook mcgen does not define: {exc}; mcgen's hooks are "
                f"{', '.join(HOOK_SIGNATURES)}") from exc

    def _check_known_hooks(self, plugin: object) -> None:
        """:meth:`check_pending` for one plugin: refuse (and unregister) it when it implements a
        hook mcgen does not define."""
        for hook_name in list(vars(self.hook)):
            if hook_name.startswith("_"):
                continue
            caller = getattr(self.hook, hook_name)
            if caller.has_spec():
                continue
            if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
                label = self.get_name(plugin) or repr(plugin)
                self.unregister(plugin)
                raise PluginSignatureError(
                    f"plugin {label!r} implements a hook mcgen does not define: unknown hook {hook_name!r}; "
                    f"mcgen's hooks are {', '.join(HOOK_SIGNATURES)}")

    # -- entry points -----------------------------------------------------------------------------
    def load_setuptools_entrypoints(self, group: str, name: str | None = None, *, strict: bool = True) -> int:
        """Load the plugins of entry-point ``group``; return how many were loaded.

        Like pluggy's loader, but an import error or a wrong hook signature names the entry
        point and the distribution it came from.

        Parameters
        ----------
        group : str
            The entry-point group (``"mcgen"``).
        name : str, optional
            Load only the entry point of this name.
        strict : bool, default=True
            Raise on the first broken entry point.  With ``False``, a broken entry point is
            skipped and recorded in ``self.broken`` (a :class:`BrokenPlugin` with the reason),
            and the others load.

        Returns
        -------
        int
            How many plugins were loaded.

        Raises
        ------
        PluginLoadError
            When an entry point cannot be imported (``strict`` only).
        PluginSignatureError
            When a loaded plugin does not match the hook specifications (``strict`` only).
        """
        count = 0
        for dist in list(importlib.metadata.distributions()):
            for ep in dist.entry_points:
                if ep.group != group or (name is not None and ep.name != name):
                    continue
                if self.has_plugin(ep.name) or self.is_blocked(ep.name) or ep.name in self.broken:
                    continue
                origin = f"entry point {ep.name!r} = {ep.value!r} of distribution " \
                         f"{dist.metadata['Name']!r} {dist.version}"
                try:
                    try:
                        plugin = ep.load()
                    except Exception as exc:
                        raise PluginLoadError(f"cannot load the mcgen plugin {origin}: "
                                              f"{type(exc).__name__}: {exc}") from exc
                    try:
                        self.register(plugin, name=ep.name)
                        if not strict:  # strict callers get the check from check_pending
                            self._check_known_hooks(plugin)
                    except PluginSignatureError as exc:
                        raise PluginSignatureError(f"{exc} (from {origin})") from exc
                except PluginError as exc:
                    if strict:
                        raise
                    self.broken[ep.name] = BrokenPlugin(ep.name, f"{type(exc).__name__}: {exc}",
                                                        dist.metadata["Name"], dist.version, error=exc)
                    continue
                self._ep_distributions.append((plugin, dist))
                count += 1
        return count

    def list_plugin_distributions(self) -> list[tuple[object, importlib.metadata.Distribution]]:
        """(plugin, distribution) pairs for every plugin loaded through an entry point."""
        # list_plugin_distinfo exists in every pluggy >= 1.3 (list_plugin_distributions only
        # from 1.7); unwrap its legacy DistFacade to the importlib.metadata distribution.
        loaded_by_pluggy = [(p, getattr(d, "_dist", d)) for p, d in self.list_plugin_distinfo()]
        return loaded_by_pluggy + list(self._ep_distributions)

    def plugin_distribution(self, plugin: object) -> tuple[str | None, str | None]:
        """``(distribution name, version)`` a registered plugin came from.

        mcgen's built-ins report ``("mcgen", mcgen.__version__)``; plugins registered in-process
        (not through an entry point) report ``(None, None)``.
        """
        for plug, dist in self.list_plugin_distributions():
            if plug is plugin:
                return dist.metadata["Name"], dist.version
        name = self.get_name(plugin) or ""
        if name in BUILTIN_PLUGINS:
            return "mcgen", __version__
        return None, None


def make_plugin_manager(
    load_entrypoints: bool | None = None, builtins: bool = True, *, strict: bool = True
) -> MCGenPluginManager:
    """Build a fresh plugin manager.

    Parameters
    ----------
    load_entrypoints : bool or None
        Load third-party plugins from the ``"mcgen"`` entry-point group.  ``None`` means
        "unless the environment variable ``MCGEN_DISABLE_PLUGIN_AUTOLOAD`` is set".
    builtins : bool
        Register mcgen's own built-in plugins.
    strict : bool, default=True
        Raise on a broken entry-point plugin.  With ``False`` (what the process-wide manager
        uses) it is skipped and recorded in the manager's ``broken`` dict.

    Returns
    -------
    MCGenPluginManager

    Raises
    ------
    PluginLoadError, PluginSignatureError
        For a broken entry-point plugin, when ``strict``.
    """
    pm = MCGenPluginManager()
    if builtins:
        for dotted in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(dotted), name=dotted)
    if load_entrypoints is None:
        load_entrypoints = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME, strict=strict)
    pm.check_pending()
    return pm


def _plugin_origin(pm: pluggy.PluginManager, plugin: object) -> tuple[str, str | None, str | None]:
    name = pm.get_name(plugin) or repr(plugin)
    if isinstance(pm, MCGenPluginManager):
        return (name, *pm.plugin_distribution(plugin))
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return name, dist.metadata["Name"], dist.version
    return name, None, None


def _describe(entry: RegistryEntry) -> str:
    where = f" ({entry.distribution} {entry.version})" if entry.distribution else " (registered in-process)"
    return f"plugin {entry.plugin!r}{where}"


@dataclass(frozen=True)
class Architecture:
    """An encoder factory and a decoder factory registered under one name.

    ``encoder_factory(input_shape, **kwargs)`` builds a module mapping ``(B, *input_shape)`` to
    ``(B, out_features)``; ``decoder_factory(latent_dim, output_shape, **kwargs)`` one mapping
    ``(B, latent_dim)`` to ``(B, *output_shape)``.  ``kinds`` says which components it is meant
    for (``"vector"``, ``"image"``, ``"sequence"``, ...): ``encoder="auto"`` picks, among the
    architectures declaring a component's kind whose ``supports(shape)`` (when given) is true,
    the one with the highest ``priority`` (the first registered on a tie).
    """

    encoder_factory: Callable
    decoder_factory: Callable
    kinds: tuple[str, ...] = ("vector",)
    description: str = ""
    priority: int = 0
    supports: Callable[[tuple[int, ...]], bool] | None = None


@dataclass(frozen=True)
class Metric:
    """A metric function ``function(generated, reference, **kwargs)`` and its direction."""

    function: Callable
    greater_is_better: bool = False
    description: str = ""


def _arch(encoder_factory: Callable, decoder_factory: Callable, *, kinds=("vector",),
          description: str = "", priority: int = 0, supports: Callable | None = None) -> Architecture:
    if not callable(encoder_factory) or not callable(decoder_factory):
        raise TypeError("encoder_factory and decoder_factory must be callables")
    if isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds):
        raise TypeError(f"kinds must be a tuple of strings, got {kinds!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an integer, got {priority!r}")
    if supports is not None and not callable(supports):
        raise TypeError(f"supports must be a callable shape -> bool, got {supports!r}")
    return Architecture(encoder_factory, decoder_factory, tuple(kinds), str(description), priority, supports)


def _dataset(loader: Callable, *, description: str = "") -> Callable:
    if not callable(loader):
        raise TypeError(f"the dataset loader must be callable, got {type(loader).__name__}")
    return loader


def _metric(function: Callable, *, greater_is_better: bool = False, description: str = "") -> Metric:
    if not callable(function):
        raise TypeError(f"the metric must be callable, got {type(function).__name__}")
    return Metric(function, bool(greater_is_better), str(description))


def collect_registries(pm: pluggy.PluginManager, *, strict: bool = True) -> Registries:
    """Call every registration hook of ``pm`` and gather what the plugins registered.

    Each hook implementation gets its own ``register`` callback, so every entry records the
    plugin (and distribution) it came from.  The hooks run first, then their registrations
    are entered plugin by plugin in registration order (built-ins first), so a clash names the
    earlier plugin as the owner.

    Parameters
    ----------
    pm : pluggy.PluginManager
    strict : bool, default=True
        Raise on the first broken plugin.  With ``False`` (what :func:`get_registries` uses), a
        plugin whose hook raises, returns a value instead of calling ``register``, calls
        ``register`` wrongly or registers a name already taken is skipped as a whole (none of
        its names are kept) and recorded in the result's ``broken``; so are the plugins the
        manager could not load (``pm.broken``).

    Returns
    -------
    Registries

    Raises
    ------
    PluginClashError
        When two plugins register the same name in one registry (the message names both).
    PluginSignatureError
        When a plugin calls ``register`` with the wrong arguments, or its hook returns a value
        instead of calling ``register``.
    PluginError
        When a hook raises any other exception (the message names the plugin and the hook).
    """
    regs = Registries()
    regs.broken.update(getattr(pm, "broken", {}))
    hooks = (
        ("mcgen_register_architectures", regs.architectures, "architecture", _arch),
        ("mcgen_register_datasets", regs.datasets, "dataset", _dataset),
        ("mcgen_register_metrics", regs.metrics, "metric", _metric),
    )
    # plugin -> the entries its hooks registered, in order: (table, kind, entry)
    staged: dict[int, list[tuple[dict, str, RegistryEntry]]] = {}
    order: list[object] = []

    def fail(plugin: object, exc: Exception, names: list[str]) -> None:
        name, dist, version = _plugin_origin(pm, plugin)
        previous = regs.broken.get(name)
        if previous is not None:  # a second hook of an already broken plugin
            names = list(previous.names) + [n for n in names if n not in previous.names]
            regs.broken[name] = BrokenPlugin(name, previous.reason, dist, version, tuple(names), previous.error)
            return
        regs.broken[name] = BrokenPlugin(name, f"{type(exc).__name__}: {exc}", dist, version, tuple(names), exc)

    def make_register(hook_name: str, table: dict[str, RegistryEntry], kind: str, plugin: object,
                      build: Callable, names: list[str]) -> Callable[..., None]:
        origin = _plugin_origin(pm, plugin)

        def register(name: str, *args: Any, **kwargs: Any) -> None:
            new = RegistryEntry(name, None, *origin, meta=dict(kwargs))
            if not isinstance(name, str) or not name:
                raise PluginSignatureError(f"{_describe(new)} registered a {kind} with an invalid name "
                                           f"{name!r} (a non-empty string is needed)")
            names.append(f"{kind} {name!r}")
            try:
                obj = build(*args, **kwargs)
            except TypeError as exc:
                raise PluginSignatureError(
                    f"{_describe(new)} registered {kind} {name!r} wrongly ({exc}); the callback's "
                    f"signature is {HOOK_SIGNATURES[hook_name]}") from exc
            staged[id(plugin)].append((table, kind, RegistryEntry(name, obj, *origin, meta=dict(kwargs))))

        return register

    for hook_name, table, kind, build in hooks:
        # get_hookimpls() is in registration order: built-ins first.
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin
            if id(plugin) not in staged:
                staged[id(plugin)] = []
                order.append(plugin)
            names: list[str] = []
            register = make_register(hook_name, table, kind, plugin, build, names)
            try:
                try:
                    returned = impl.function(**{arg: register for arg in impl.argnames})
                except PluginError:
                    raise
                except Exception as exc:
                    label = _describe(RegistryEntry("", None, *_plugin_origin(pm, plugin)))
                    raise PluginError(f"{label}: its hook {hook_name} raised {type(exc).__name__}: {exc}") from exc
                if returned is not None:
                    label = _describe(RegistryEntry("", None, *_plugin_origin(pm, plugin)))
                    raise PluginSignatureError(
                        f"{label}: its hook {hook_name} returned a {type(returned).__name__} instead of calling "
                        f"register; {_signature_help(hook_name)} (and return nothing)")
            except PluginError as exc:
                if strict:
                    raise
                fail(plugin, exc, names)

    for plugin in order:
        name = _plugin_origin(pm, plugin)[0]
        if name in regs.broken:
            continue
        entries = staged[id(plugin)]
        clash = None
        for table, kind, entry in entries:
            if entry.name in table:
                clash = PluginClashError(
                    f"{kind} {entry.name!r} is registered twice: by {_describe(table[entry.name])} and by "
                    f"{_describe(entry)}; uninstall or block one of them "
                    f"(MCGEN_DISABLE_PLUGIN_AUTOLOAD=1 disables all installed plugins)")
                break
            table[entry.name] = entry
        if clash is not None:
            if strict:
                raise clash
            for table, _, entry in entries:  # the plugin goes as a whole
                if table.get(entry.name) is entry:
                    del table[entry.name]
            fail(plugin, clash, [f"{kind} {entry.name!r}" for _, kind, entry in entries])
    return regs


_STATE: dict[str, Any] = {}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built on first use).

    A broken installed plugin does not stop it: it is skipped and recorded (the manager's
    ``broken``; see :func:`get_registries`).
    """
    if "pm" not in _STATE:
        _STATE["pm"] = make_plugin_manager(strict=False)
    return _STATE["pm"]


def get_registries() -> Registries:
    """The process-wide registries (collected on first use).

    Broken plugins are skipped, listed in the result's ``broken`` (by ``mcgen plugins`` too),
    and announced once by a warning; everything else, the built-ins included, is registered.
    """
    if "regs" not in _STATE:
        if _STATE.get("collecting"):
            raise PluginError("the registries were looked up while they are being collected (a hook called "
                              "get_architecture, load_dataset, get_registries...); a hook must only call register: "
                              "look names up when the registered objects are used")
        _STATE["collecting"] = True
        try:
            regs = collect_registries(get_plugin_manager(), strict=False)
        finally:
            _STATE.pop("collecting", None)
        _STATE["regs"] = regs
        for broken in regs.broken.values():
            if broken.name not in _STATE.setdefault("warned", set()):
                _STATE["warned"].add(broken.name)
                warnings.warn(f"mcgen skipped the broken {broken.describe()}: {broken.reason} "
                              "(`mcgen plugins` lists it; fix or uninstall it)", UserWarning, stacklevel=2)
    return _STATE["regs"]


def reset_plugins(pm: pluggy.PluginManager | None = None) -> None:
    """Forget the cached manager and registries (use ``pm`` from now on if given)."""
    _STATE.clear()
    if pm is not None:
        _STATE["pm"] = pm


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin in-process (no installation needed) in the process-wide manager.

    Useful in tests and notebooks: ``register_plugin(my_module)`` and the names it registers
    are available to every estimator at once.

    Parameters
    ----------
    plugin : module or object
        Anything with ``@hookimpl``-marked functions or methods.
    name : str, optional
        Plugin name (default: pluggy's canonical name, the module name for a module).

    Returns
    -------
    str
        The name it was registered under (pass it to :func:`unregister_plugin`).

    Raises
    ------
    PluginSignatureError, PluginClashError
        The plugin is refused and the registries stay as they were.
    """
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    if registered is None:  # pragma: no cover - blocked name
        raise ValueError(f"plugin name {name!r} is blocked")
    try:
        pm.check_pending()
        # tolerant, so that an installed broken plugin does not refuse this one; this one's own
        # failure is raised
        _STATE["collecting"] = True
        try:
            regs = collect_registries(pm, strict=False)
        finally:
            _STATE.pop("collecting", None)
        own = regs.broken.get(registered)
        if own is not None:
            raise own.error if own.error is not None else PluginError(own.reason)
    except Exception:
        pm.unregister(name=registered)
        raise
    _STATE["regs"] = regs
    return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin` (or any plugin, by name)."""
    pm = get_plugin_manager()
    if pm.get_plugin(name) is None:
        raise ValueError(f"no plugin named {name!r} is registered")
    pm.unregister(name=name)
    _STATE.pop("regs", None)


def _lookup(table: dict[str, RegistryEntry], kind: str, name: str,
            broken: dict[str, BrokenPlugin] | None = None) -> RegistryEntry:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
    try:
        return table[name]
    except KeyError:
        pass
    broken = {} if broken is None else broken
    wanted = f"{kind} {name!r}"
    owners = [b for b in broken.values() if wanted in b.names]
    if owners:
        b = owners[0]
        raise PluginBrokenError(f"{wanted} comes from the {b.describe()}, which is broken and was skipped: "
                                f"{b.reason}")
    valid = ", ".join(sorted(table)) or "(none)"
    msg = f"unknown {kind} {name!r}; registered {kind}s: {valid}"
    if broken:
        msg += ("; it may come from a broken plugin that was skipped: "
                + "; ".join(f"{b.describe()}: {b.reason}" for b in broken.values()))
    raise ValueError(msg)


def get_architecture(name: str) -> Architecture:
    """Look up a registered architecture by name.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the registered ones).
    """
    regs = get_registries()
    return _lookup(regs.architectures, "architecture", name, regs.broken).obj


def component_kind(shape: tuple[int, ...]) -> str:
    """The kind of a component with this sample shape: ``"vector"`` ``(F,)``, ``"sequence"``
    ``(C, T)``, ``"image"`` ``(C, H, W)``; anything else is read as a (flattened) vector."""
    return COMPONENT_KINDS.get(len(shape), "vector")


def auto_architecture(shape: tuple[int, ...], architectures: dict[str, RegistryEntry] | None = None) -> str:
    """The name ``encoder="auto"`` / ``decoder="auto"`` resolves to for a component of ``shape``.

    Among the registered architectures declaring the component's kind (:func:`component_kind`)
    whose ``supports(shape)`` holds (when they give one), the highest ``priority`` wins, the
    first registered on a tie.  When none declares that kind, the vector architectures are
    asked (they flatten any shape).  So a plugin architecture is the automatic choice for the
    kinds it declares when it ranks highest.

    Parameters
    ----------
    shape : tuple of int
    architectures : dict, optional
        A registry (default: the process-wide one).

    Raises
    ------
    ValueError
        When no registered architecture suits the shape.
    """
    table = get_registries().architectures if architectures is None else architectures
    shape = tuple(int(s) for s in shape)
    kind = component_kind(shape)
    for wanted in dict.fromkeys((kind, "vector")):
        ranked = [(-e.obj.priority, k, name) for k, (name, e) in enumerate(table.items())
                  if wanted in e.obj.kinds and (e.obj.supports is None or e.obj.supports(shape))]
        if ranked:
            return min(ranked)[2]
    raise ValueError(f"no registered architecture suits {kind} components of shape {shape}; registered "
                     f"architectures: {', '.join(sorted(table)) or '(none)'}; name one with encoder=/decoder=")


def get_metric(name: str) -> Callable:
    """Look up a registered metric function by name.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the registered ones).
    """
    return get_metric_info(name).function


def get_metric_info(name: str) -> Metric:
    """Look up a registered metric (its function, direction and description) by name.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the registered ones).
    """
    regs = get_registries()
    return _lookup(regs.metrics, "metric", name, regs.broken).obj


def load_dataset(name: str, **kwargs: Any):
    """Load a registered dataset: ``load_dataset(name, **kwargs) -> (Components, info)``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the registered ones).
    PluginBrokenError
        For a name that a broken plugin tried to register (the message says why it is broken).
    PluginContractError
        When the loader does not return ``(Components, info dict)`` (the message names the
        dataset and its plugin).
    """
    regs = get_registries()
    entry = _lookup(regs.datasets, "dataset", name, regs.broken)
    return check_loader_result(entry.obj(**kwargs), f"dataset {name!r} of {_describe(entry)}")
