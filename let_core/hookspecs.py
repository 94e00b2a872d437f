"""Hook specifications of LET's plugin system (pluggy project ``let``).

Plugins implement these with ``@let_core.hookimpl``. Built-in backends and reporters are
plugins too (see ``let_core.plugins.DEFAULT_PLUGINS``); third-party ones are found through the
entry-point group ``let``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from let_core.interfaces import BackendFactory, ReporterFactory

PROJECT_NAME = "let"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def let_register_backends(register: Callable[[type[BackendFactory]], None]) -> None:
    """Register energy backends by calling ``register(BackendClass)`` once per backend.

    Collecting hook: every plugin's implementation is called. ``BackendClass`` follows
    ``let_core.interfaces.BackendFactory``: a unique ``name``, whether it joins "auto"
    selection, an ``availability(settings)`` check and a ``from_settings(settings)`` constructor.
    """


@hookspec
def let_register_reporters(register: Callable[[type[ReporterFactory]], None]) -> None:
    """Register reporters by calling ``register(ReporterClass)`` once per reporter.

    Collecting hook: every plugin's implementation is called. ``ReporterClass`` follows
    ``let_core.interfaces.ReporterFactory``; its instances receive every finished ``Run``.
    """


@hookspec
def let_register_commands(cli: click.Group) -> None:
    """Add commands or command groups to the ``let`` command line (``@cli.command()``).

    Collecting hook: every plugin's implementation is called once, when ``let`` starts.
    """
