"""LET 0.1.x's import names, kept working on top of ``let_core``.

``from lamarr_energy_tracker import EnergyTracker, load_results, print_paper_statement,
print_custom_paper_statement, delete_results, GroundTruthTracker, GroundTruthTrackingServer``.
Names load on first use, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from let_core._lazy import lazy_exports
from let_core._version import __version__

_EXPORTS = {
    # 0.1.x's tracker: CodeCarbon's estimate is stop()'s energy_consumed (see its docstring)
    "EnergyTracker": "lamarr_energy_tracker.tracker",
    "track_energy": "let_core.tracker",
    "load_results": "let_core.results.loading",
    "delete_results": "let_core.results.deleting",
    "paper_statement": "let_core.statement",
    # 0.1.x's wording ("1.216 kgCO2-equivalents"), as its README imports it from here
    "print_custom_paper_statement": "lamarr_energy_tracker.print_paper_statement",
    "GroundTruthTracker": "lamarr_energy_tracker.ground_truth_tracking",
    "GroundTruthTrackingServer": "lamarr_energy_tracker.ground_truth_tracking",
}

__all__ = ["__version__", "print_paper_statement", *_EXPORTS]

_lazy_getattr, _lazy_dir = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "print_paper_statement":
        # The submodule, as in 0.1.x; it is also callable as the function (see the module).
        return importlib.import_module(f"{__name__}.print_paper_statement")
    return _lazy_getattr(name)


def __dir__() -> list[str]:
    return sorted({*_lazy_dir(), "print_paper_statement"})
