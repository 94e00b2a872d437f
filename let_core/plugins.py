"""Plugin loading and the registry of backends and reporters.

Loading is lazy and happens once: importing ``let_core`` calls no hook. Built-in plugins are
the modules in ``DEFAULT_PLUGINS``; third-party ones come from the entry-point group ``let``,
filtered by ``LET_LOAD_PLUGINS`` (unset: all; empty: none; comma list: only those names).
A plugin that fails to load or registers something invalid is reported as a warning and listed
by ``let plugins``; it never stops the built-ins from working.
"""

from __future__ import annotations

import importlib
import re
import threading
import warnings
from typing import Any, Callable, Literal

import pluggy
from attrs import define, field, frozen

from let_core import hookspecs
from let_core.errors import LetWarning, PluginError

# Built-in plugins, registered by dotted name. Order is the order of "auto" selection:
# estimates first, then metered backends.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "let_backends.codecarbon",
    "let_backends.manual",
    "let_backends.rapl",
    "let_backends.nvml",
    "let_backends.jetson",
    "let_backends.tasmota",
    "let_reporters.csv",
    "let_reporters.parquet",
    "let_reporters.strep",
    "let_reporters.mlflow",
    "let_reporters.statement",
)
ENTRY_POINT_GROUP = "let"
BUILTIN_SOURCE = "built-in"

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

PluginKind = Literal["backend", "reporter"]


@frozen
class Registered:
    """One registered backend or reporter and where it came from."""

    name: str
    kind: PluginKind
    factory: Any  # BackendFactory or ReporterFactory
    plugin: str  # pluggy plugin name: module or entry-point name
    source: str  # "built-in" or the distribution that provides it


@frozen
class LoadProblem:
    plugin: str
    source: str
    message: str


@define
class Registry:
    backends: dict[str, Registered] = field(factory=dict)
    reporters: dict[str, Registered] = field(factory=dict)
    problems: list[LoadProblem] = field(factory=list)

    def of_kind(self, kind: PluginKind) -> dict[str, Registered]:
        return self.backends if kind == "backend" else self.reporters


pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_registry: Registry | None = None
_sources: dict[str, str] = {}


def _problem(registry: Registry, plugin: str, message: str) -> None:
    registry.problems.append(LoadProblem(plugin, _sources.get(plugin, "?"), message))
    warnings.warn(f"LET plugin {plugin!r} ({_sources.get(plugin, '?')}): {message}",
                  LetWarning, stacklevel=3)


def _wanted_entry_points() -> set[str] | None:
    """Names allowed by LET_LOAD_PLUGINS; None means all."""
    from let_core.config import load_plugins_env

    return load_plugins_env()


def load_plugins() -> None:
    """Register built-in and entry-point plugins once; later calls do nothing."""
    global _registry
    with _lock:
        if _registry is not None:
            return
        for module_name in DEFAULT_PLUGINS:
            if pm.has_plugin(module_name):
                continue
            pm.register(importlib.import_module(module_name), name=module_name)
            _sources[module_name] = BUILTIN_SOURCE
        fresh = Registry()
        wanted = _wanted_entry_points()
        if wanted is None or wanted:
            _load_entry_points(fresh, wanted)
        _collect(fresh)
        _registry = fresh


def _load_entry_points(registry: Registry, wanted: set[str] | None) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if wanted is not None and ep.name not in wanted:
            continue
        source = ep.dist.name if ep.dist is not None else "?"
        if pm.has_plugin(ep.name):
            continue
        _sources[ep.name] = source
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not break the built-ins
            _problem(registry, ep.name,
                     f"could not be loaded: {type(exc).__name__}: {exc}. Fix or uninstall "
                     f"{source!r}, or leave it out with LET_LOAD_PLUGINS.")


def _collect(registry: Registry) -> None:
    hooks: list[tuple[PluginKind, Any]] = [
        ("backend", pm.hook.let_register_backends),
        ("reporter", pm.hook.let_register_reporters),
    ]
    for kind, hook in hooks:
        # Called one implementation at a time so that a failing plugin is named and skipped
        # while the others still register (a plain hook call would stop at the first error).
        for impl in hook.get_hookimpls():
            register = _register_callback(registry, kind, impl.plugin_name)
            try:
                impl.function(register=register)
            except Exception as exc:
                _problem(registry, impl.plugin_name,
                         f"failed while registering {kind}s: {type(exc).__name__}: {exc}")


def _register_callback(registry: Registry, kind: PluginKind, plugin: str) -> Callable[[Any], None]:
    def register(factory: Any) -> None:
        name = getattr(factory, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            _problem(registry, plugin,
                     f"registered a {kind} with invalid name {name!r}; names are lowercase "
                     "letters, digits, '-' and '_', starting with a letter")
            return
        required = ("from_settings", "availability") + (("report",) if kind == "reporter" else ())
        missing = [attr for attr in required if not hasattr(factory, attr)]
        if missing:
            _problem(registry, plugin, f"{kind} {name!r} lacks {', '.join(missing)}")
            return
        table = registry.of_kind(kind)
        if name in table:
            other = table[name]
            _problem(registry, plugin,
                     f"{kind} name {name!r} is already registered by {other.plugin!r} "
                     f"({other.source}); this one is ignored. Rename it in {plugin!r}.")
            return
        table[name] = Registered(name, kind, factory, plugin, _sources.get(plugin, "?"))

    return register


def registry() -> Registry:
    """The registry, loading plugins on first use."""
    load_plugins()
    assert _registry is not None
    return _registry


def reset() -> None:
    """Forget every loaded plugin (for tests that install plugins at run time)."""
    global _registry
    with _lock:
        for name, plugin in list(pm.list_name_plugin()):
            pm.unregister(plugin, name=name)
        _registry = None
        _sources.clear()


def get_factory(kind: PluginKind, name: str) -> Registered:
    table = registry().of_kind(kind)
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise PluginError(f"unknown {kind} {name!r}; registered {kind}s: {known}. "
                          "Run `let plugins` to see every plugin and why one is missing.")
    return table[name]
