"""LET 0.1.x's ``lamarr_energy_tracker.tracker`` module: its tracker and the names it exposed.

``EnergyTracker`` here keeps 0.1.x's meaning: its arguments in 0.1.x's order and a ``stop()``
whose ``energy_consumed`` and ``tracking_mode`` are CodeCarbon's estimate whenever CodeCarbon
ran, even when a ground-truth server or other backends took part (LET 1.x's
``let_core.EnergyTracker`` makes a metered value the headline instead). Code that compares the
estimate with ``GroundTruthTracker`` therefore never gets the socket's value twice. Without a
CodeCarbon figure (backends chosen without it, or it failed) it is the figure of the backends
the user chose. Every backend's figure is stored, returned under ``"measurements"``, and named
on the printed "Tracker stopped" line where there are several.

``python -m lamarr_energy_tracker.tracker`` runs 0.1.x's small example.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from let_core._lazy import lazy_exports
from let_core.errors import LetWarning
from let_core.tracker import EnergyTracker as _LetTracker

# 0.1.x's module exposed these beside its tracker. They load when asked for: the read side they
# import (and format_summary's click, 5 ms) is no part of a tracked run's start.
_EXPORTS = {
    "load_results": "let_core.results.loading",
    "delete_results": "let_core.results.deleting",
    "print_paper_statement": "let_core.statement",
    "format_summary": "lamarr_energy_tracker.print_paper_statement",
}
__all__ = ["EnergyTracker", "delete_results", "format_summary", "load_results",  # noqa: F822 - lazy names (_EXPORTS)
           "print_paper_statement"]

#: 0.1.x's ``tracking_mode`` for its (only) CodeCarbon figure.
CODECARBON_MODE = "CodeCarbon"


class EnergyTracker(_LetTracker):
    """LET 0.1.x's tracker: CodeCarbon's estimate is the result whenever CodeCarbon ran.

    Arguments in 0.1.x's order (``project_name, country_iso_code, measure_power_secs,
    output_dir, cuda_devices``); LET 1.x's other settings (``backends=``, ``reporters=``,
    ``carbon_intensity=``, ...) may be given by keyword.
    """

    def __init__(self, project_name: str = "default", country_iso_code: str = "DEU",
                 measure_power_secs: float = 1, output_dir: str | os.PathLike[str] | None = None,
                 cuda_devices: Sequence[int | str] | None = None, **settings: Any) -> None:
        super().__init__(project_name=project_name, output_dir=output_dir,
                         country_iso_code=country_iso_code, measure_power_secs=measure_power_secs,
                         cuda_devices=cuda_devices, **settings)

    def stop(self, print_summary: bool = True) -> dict[str, Any]:
        """Stop tracking and return 0.1.x's result: ``energy_consumed`` (kWh) and
        ``tracking_mode`` ("CodeCarbon") of CodeCarbon's estimate (without one, of the chosen
        backends' figure and their methodology), ``timestamp`` and ``start_time`` as 0.1.x gave
        them (local time without a time zone), ``duration``, and LET 1.x's keys
        (``measurements`` holds every backend's figure)."""
        return _codecarbon_view(super().stop(print_summary=print_summary), codecarbon_chosen=self._codecarbon_chosen)

    @property
    def _codecarbon_chosen(self) -> bool:
        return any(getattr(b, "name", "") == "codecarbon" for b in self.backends)

    @property
    def last_result(self) -> dict[str, Any] | None:
        result = super().last_result
        return None if result is None else _codecarbon_view(result, warn=False)


def _codecarbon_view(result: dict[str, Any], warn: bool = True, codecarbon_chosen: bool = True) -> dict[str, Any]:
    """The run's result with CodeCarbon's figure as the headline, as 0.1.x returned it; without
    one, the figure of the backends the user chose (never NaN for a run that was measured)."""
    estimates = {name: m for name, m in result.get("measurements", {}).items()
                 if str(m.get("methodology", "")).startswith("CodeCarbon")
                 and not m.get("error") and math.isfinite(m.get("energy_consumed", math.nan))}
    view = dict(result)
    view["tracking_mode"] = CODECARBON_MODE
    # 0.1.x parsed CodeCarbon's timestamp: local time, whole seconds, no time zone, and set
    # start_time = timestamp - duration. Code that subtracts datetime.now() from it keeps working.
    end = result.get("timestamp")
    if isinstance(end, datetime) and end.tzinfo is not None:
        view["timestamp"] = end.astimezone().replace(tzinfo=None, microsecond=0)
        view["start_time"] = view["timestamp"] - timedelta(seconds=float(result["duration"]))
    if estimates:
        measurement = next(iter(estimates.values()))
        view["energy_consumed"] = measurement["energy_consumed"]
        view["emissions"] = measurement["emissions"]
    else:
        # No CodeCarbon figure (not among the chosen backends, or it failed): the run's own
        # headline, from the backends the user chose, and their methodology as the mode.
        view["tracking_mode"] = result.get("tracking_mode") or "none"
        if warn and codecarbon_chosen:
            warnings.warn("CodeCarbon gave no estimate for this run, so energy_consumed is the other "
                          f"backends' figure ({view['tracking_mode']}); each backend's figure is in the "
                          "result's 'measurements'", LetWarning, stacklevel=3)
    return view


def _example() -> None:
    """0.1.x's example: a tracked block, then an explicit start/stop, in a temporary store."""
    import shutil
    import tempfile

    temp_dir = tempfile.mkdtemp()
    try:
        with EnergyTracker(project_name="example_project", output_dir=temp_dir):
            sum(i * i for i in range(10000))
        tracker = EnergyTracker(project_name="example_project_explicit", output_dir=temp_dir)
        tracker.start()
        sum(i * i for i in range(10000))
        result = tracker.stop()
        # 0.1.x unpacked the dict here (`energy_used, duration = tracker.stop()`) and crashed.
        print(f"Energy consumed (explicit): {result['energy_consumed']} kWh over "
              f"{result['duration']} seconds")
    finally:
        shutil.rmtree(temp_dir)


__getattr__ = lazy_exports(__name__, _EXPORTS)[0]


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if __name__ == "__main__":
    _example()

