"""Exceptions and warnings. Every message says what went wrong and what to do next."""

from __future__ import annotations

import warnings
from typing import Any


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


def close_names(value: str, names: list[str], shown: int = 10) -> str:
    """The hint for a name that matches none: the close ones ("did you mean 'vision'?"), else
    the names that exist ("stored: a, b ..."). Every "matches none" message words it so."""
    import difflib

    close = difflib.get_close_matches(str(value), names, n=3)
    if close:
        return f"did you mean {' or '.join(map(repr, close))}?"
    return f"stored: {', '.join(names[:shown]) or 'none'}" + (" ..." if len(names) > shown else "")


class LetWarning(UserWarning):
    """A problem LET survived: a failed backend, reporter or plugin. The run is still recorded."""


def _format_let_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                        line: str | None = None) -> str:
    # A LetWarning is addressed to the user, not to a developer: one line, no source excerpt.
    if isinstance(category, type) and issubclass(category, LetWarning):
        return f"LET warning: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


_default_formatwarning = warnings.formatwarning
warnings.formatwarning = _format_let_warning  # type: ignore[assignment]
