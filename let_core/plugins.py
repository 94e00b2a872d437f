"""Plugin loading and the registry of backends and reporters.

Loading is lazy and happens once: importing ``let_core`` calls no hook. Built-in plugins are
the modules in ``DEFAULT_PLUGINS``; third-party ones come from the entry-point group ``let``,
filtered by ``LET_LOAD_PLUGINS`` (unset: all; empty: none; comma list: only those names).
A plugin that fails to load or registers something invalid is reported as a warning and listed
by ``lett plugins``; it never stops the built-ins from working.
"""

from __future__ import annotations

import importlib
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any, Literal

import pluggy
from attrs import define, field, frozen

from let_core import hookspecs
from let_core.errors import LetWarning, PluginError

# Built-in plugins, registered by dotted name, with what each registers: (kind, name, auto).
# Knowing the names without importing lets a tracker load only the modules it uses; a test checks
# this table against what the modules really register. Order is the order of "auto" selection:
# estimates first, then metered backends.
BUILTINS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "let_backends.codecarbon": (("backend", "codecarbon", True),),
    "let_backends.manual": (("backend", "manual", False),),
    "let_backends.rapl": (("backend", "rapl", True),),
    "let_backends.nvml": (("backend", "nvml", True),),
    "let_backends.jetson": (("backend", "jetson", True),),
    "let_backends.tasmota": (("backend", "tasmota", True),),
    "let_reporters.csv": (("reporter", "csv", False),),
    "let_reporters.parquet": (("reporter", "parquet", True),),
    "let_reporters.strep": (("reporter", "strep", False),),
    "let_reporters.mlflow": (("reporter", "mlflow", True),),
    "let_reporters.statement": (("reporter", "statement", True),),
    "let_core.calibration_cli": (),  # commands only: `lett calibration`
    "let_groundtruth": (),  # commands only: `lett gt` (the ground-truth server and its set-up)
}
DEFAULT_PLUGINS: tuple[str, ...] = tuple(BUILTINS)
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
_registry = Registry()
_sources: dict[str, str] = {}
_entry_points_loaded = False

#: What every factory must have, by kind (the factory protocols in let_core.interfaces).
#: Attributes the core reads only when present (statement phrase, BibTeX) are not required.
REQUIRED: dict[str, tuple[str, ...]] = {
    "backend": ("name", "auto", "description", "availability", "from_settings"),
    "reporter": ("name", "auto", "description", "availability", "from_settings", "order"),
}


def _problem(registry: Registry, plugin: str, message: str) -> None:
    registry.problems.append(LoadProblem(plugin, _sources.get(plugin, "?"), message))
    warnings.warn(f"LET plugin {plugin!r} ({_sources.get(plugin, '?')}): {message}",
                  LetWarning, stacklevel=3)


def _wanted_entry_points() -> set[str] | None:
    """Names allowed by LET_LOAD_PLUGINS; None means all."""
    from let_core.config import load_plugins_env

    return load_plugins_env()


def _load_builtin(module_name: str) -> None:
    """Import and register one built-in module and collect what it registers (once)."""
    with _lock:
        if pm.has_plugin(module_name):
            return
        pm.register(importlib.import_module(module_name), name=module_name)
        _sources[module_name] = BUILTIN_SOURCE
        _collect(_registry, module_name)


def _load_third_party() -> None:
    """Register the entry-point plugins LET_LOAD_PLUGINS allows (once)."""
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        wanted = _wanted_entry_points()
        if wanted is not None and not wanted:
            return
        for name, value, source in _entry_points():
            if wanted is not None and name not in wanted:
                continue
            if pm.has_plugin(name):
                continue
            _sources[name] = source
            import pkgutil  # only when a third-party plugin is installed

            try:
                pm.register(pkgutil.resolve_name(value), name=name)
            except Exception as exc:  # a broken third-party plugin must not break the built-ins
                _problem(_registry, name,
                         f"could not be loaded: {type(exc).__name__}: {exc}. Fix or uninstall "
                         f"{source!r}, or leave it out with LET_LOAD_PLUGINS.")
                continue
            _collect(_registry, name)


def _entry_points() -> list[tuple[str, str, str]]:
    """(name, "module:attr", distribution) of every entry point in the group ``let``: read from
    the installed distributions' metadata each time. (A cache of the list, keyed by sys.path's
    folders, saved 0-7 ms of a 150 ms tracked process: not worth its 80 lines.)"""
    from importlib.metadata import entry_points

    return [(ep.name, ep.value, ep.dist.name if ep.dist is not None else "?")
            for ep in entry_points(group=ENTRY_POINT_GROUP)]


def load_plugins() -> None:
    """Register every built-in and entry-point plugin (``lett plugins``, the CLI); idempotent."""
    for module_name in BUILTINS:
        _load_builtin(module_name)
    _load_third_party()
    _check_hook_names()


def _check_hook_names() -> None:
    """A misspelled hook implementation (``let_register_backend``) is never called; say so."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = pm.get_name(exc.plugin) or "?"
        message = (f"{exc}: no hook of that name exists, so it is never called. Hook names are "
                   f"{', '.join(sorted(n for n in dir(hookspecs) if n.startswith('let_')))}.")
        with _lock:
            if all(p.message != message for p in _registry.problems):
                _problem(_registry, plugin, message)


def _collect(registry: Registry, plugin_name: str) -> None:
    hooks: list[tuple[PluginKind, Any]] = [
        ("backend", pm.hook.let_register_backends),
        ("reporter", pm.hook.let_register_reporters),
    ]
    for kind, hook in hooks:
        # Called one implementation at a time so that a failing plugin is named and skipped
        # while the others still register (a plain hook call would stop at the first error).
        for impl in hook.get_hookimpls():
            if impl.plugin_name != plugin_name:
                continue
            register = _register_callback(registry, kind, impl.plugin_name)
            try:
                impl.function(register=register)
            except Exception as exc:
                _problem(registry, impl.plugin_name,
                         f"failed while registering {kind}s: {type(exc).__name__}: {exc}")


def contract_problems(kind: PluginKind, factory: Any) -> list[str]:
    """What a factory lacks of the protocol its kind names; empty when it is complete."""
    missing = [attr for attr in REQUIRED[kind] if not hasattr(factory, attr)]
    wrong = []
    if "name" not in missing and not isinstance(factory.name, str):
        wrong.append(f"name must be a string, not {type(factory.name).__name__}")
    if "auto" not in missing and not isinstance(factory.auto, bool):
        wrong.append(f"auto must be True or False, not {factory.auto!r}")
    if "description" not in missing and not isinstance(factory.description, str):
        wrong.append(f"description must be a string, not {type(factory.description).__name__}")
    if "order" in REQUIRED[kind] and "order" not in missing and (
            isinstance(factory.order, bool) or not isinstance(factory.order, int)):
        wrong.append(f"order must be an integer, not {factory.order!r}")
    for method in ("availability", "from_settings"):
        if method not in missing and not callable(getattr(factory, method)):
            wrong.append(f"{method} must be callable")
    problems = [f"lacks {', '.join(missing)}"] if missing else []
    return problems + wrong


def _register_callback(registry: Registry, kind: PluginKind, plugin: str) -> Callable[[Any], None]:
    def register(factory: Any) -> None:
        name = getattr(factory, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            _problem(registry, plugin,
                     f"registered a {kind} with invalid name {name!r}; names are lowercase "
                     "letters, digits, '-' and '_', starting with a letter")
            return
        problems = contract_problems(kind, factory)
        if problems:
            _problem(registry, plugin,
                     f"{kind} {name!r} {'; '.join(problems)}: a {kind} factory needs "
                     f"{', '.join(REQUIRED[kind])} (see let_core.interfaces."
                     f"{'Backend' if kind == 'backend' else 'Reporter'}Factory); it is ignored.")
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
    """The registry with every plugin loaded."""
    load_plugins()
    return _registry


def reset() -> None:
    """Forget every loaded plugin (for tests that install plugins at run time)."""
    global _registry, _entry_points_loaded
    with _lock:
        for name, plugin in list(pm.list_name_plugin()):
            pm.unregister(plugin, name=name)
        _registry = Registry()
        _entry_points_loaded = False
        _sources.clear()


def _builtin_module(kind: PluginKind, name: str) -> str | None:
    for module_name, entries in BUILTINS.items():
        if (kind, name, True) in entries or (kind, name, False) in entries:
            return module_name
    return None


def get_factory(kind: PluginKind, name: str) -> Registered:
    """One backend or reporter by name, loading only its own module when it is a built-in."""
    module_name = _builtin_module(kind, name)
    if module_name is not None:
        _load_builtin(module_name)
    # Third-party plugins register after the built-ins, so a name clash keeps the built-in.
    table = _registry.of_kind(kind)
    if name not in table:
        load_plugins()
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise PluginError(f"unknown {kind} {name!r}; registered {kind}s: {known}. "
                          "Run `lett plugins` to see every plugin and why one is missing.")
    return table[name]


def auto_factories(kind: PluginKind) -> list[Registered]:
    """Every registered plugin of a kind that is on by default ("auto"), in registration order.

    Loads the built-in modules whose plugins are "auto" and the entry-point plugins, not the rest.
    """
    for module_name, entries in BUILTINS.items():
        if any(k == kind and auto for k, _, auto in entries):
            _load_builtin(module_name)
    _load_third_party()
    table = _registry.of_kind(kind)
    builtin_order = {name: i for i, (k, name, _) in enumerate(
        entry for entries in BUILTINS.values() for entry in entries) if k == kind}
    items = sorted(table.values(), key=lambda r: builtin_order.get(r.name, len(builtin_order)))
    return [r for r in items if r.factory.auto]
