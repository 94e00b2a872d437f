"""LET, the Lamarr Energy Tracker: measure the energy of ML experiments, report it honestly.

Importing this package is cheap: names load on first use, and no heavy library (CodeCarbon,
pandas, pyarrow, requests) is imported until a feature needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from let_core._lazy import lazy_exports
from let_core._version import __version__

if TYPE_CHECKING:
    from let_core.errors import BackendUnavailable, ConfigurationError, LetError, LetWarning, PluginError, StoreError
    from let_core.hookspecs import hookimpl
    from let_core.interfaces import Availability, Settings
    from let_core.records import Measurement, Run
    from let_core.results import load_results
    from let_core.results.deleting import delete_results
    from let_core.statement import (
        custom_paper_statement,
        paper_statement,
        print_custom_paper_statement,
        print_paper_statement,
    )
    from let_core.store import Store
    from let_core.tracker import EnergyTracker, track_energy

_EXPORTS = {
    "EnergyTracker": "let_core.tracker",
    "track_energy": "let_core.tracker",
    "hookimpl": "let_core.hookspecs",
    "Measurement": "let_core.records",
    "Run": "let_core.records",
    "Availability": "let_core.interfaces",
    "Settings": "let_core.interfaces",
    "load_results": "let_core.results.loading",
    "delete_results": "let_core.results.deleting",
    "Store": "let_core.store",
    "paper_statement": "let_core.statement",
    "print_paper_statement": "let_core.statement",
    "custom_paper_statement": "let_core.statement",
    "print_custom_paper_statement": "let_core.statement",
    "LetError": "let_core.errors",
    "ConfigurationError": "let_core.errors",
    "BackendUnavailable": "let_core.errors",
    "PluginError": "let_core.errors",
    "StoreError": "let_core.errors",
    "LetWarning": "let_core.errors",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def load_ipython_extension(shell: object) -> None:
    """``%load_ext let_core`` in IPython/Jupyter: the ``%%track`` magics
    (``let_core.integrations.notebook``)."""
    from let_core.integrations.notebook import load_ipython_extension as load

    load(shell)
