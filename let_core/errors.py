"""Exceptions and warnings. Every message says what went wrong and what to do next."""

from __future__ import annotations


class LetError(Exception):
    """Base class of every error LET raises on purpose."""


class ConfigurationError(LetError, ValueError):
    """A setting or argument is invalid; raised before any experiment runs."""


class BackendUnavailable(LetError):
    """A backend that was asked for by name cannot run on this machine."""


class PluginError(LetError):
    """A plugin could not be loaded or registered something invalid."""


class StoreError(LetError):
    """The central store cannot be read or written."""


class LetWarning(UserWarning):
    """A problem LET survived: a failed backend, reporter or plugin. The run is still recorded."""
