"""LET 0.1.x's ``lamarr_energy_tracker.tracker`` module names."""

from let_core.results import load_results
from let_core.store import delete_results
from let_core.tracker import EnergyTracker

__all__ = ["EnergyTracker", "delete_results", "load_results"]
