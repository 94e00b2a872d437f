"""Prints what a run consumed and the paper statement for the project's stored runs (as LET 0.1.x)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TextIO

from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Run
from let_core.results.loading import ResultsHandle
from let_core.results.rule import usable_energy
from let_core.statement import statement_from_totals
from let_core.units import format_energy


class StatementReporter:
    name: ClassVar[str] = "statement"
    auto: ClassVar[bool] = True
    order: ClassVar[int] = 100
    #: Prints to the terminal: silenced by ``stop(print_summary=False)``.
    prints: ClassVar[bool] = True
    description: ClassVar[str] = "prints the run's energy and the project's paper statement"

    def __init__(self, settings: Settings, stream: TextIO | None = None) -> None:
        self.settings = settings
        self.stream = stream

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        return Availability.yes()

    @classmethod
    def from_settings(cls, settings: Settings) -> StatementReporter:
        return cls(settings)

    def report(self, run: Run, results: ResultsHandle | None = None) -> None:
        if run.task:
            return
        out = self.stream or sys.stdout
        energy = run.energy_kwh
        if math.isfinite(energy):
            print(f"\nTracker stopped - this experiment consumed {format_energy(energy)}{figures(run)}.\n", file=out)
        else:
            print("\nTracker stopped - no backend measured this experiment (see the warnings above).\n",
                  file=out)
        results = results or ResultsHandle(self.settings.output_dir, self.settings.output_uri)
        totals = results.totals(project_name=run.project_name, user=run.user, hostname=run.hostname)
        if not totals.empty:
            print(statement_from_totals(totals) + "\n", file=out)


def figures(run: Run) -> str:
    """Each backend's figure where the run has more than one, so that whichever a caller takes
    (LET 0.1.x's facade returns CodeCarbon's) is on the printed line: " (codecarbon 7.783 mWh +
    manual 74.100 mWh)", or " (tasmota 1.000 Wh metered; not counted: codecarbon 0.800 Wh estimated)"."""
    counted = run.primary
    ids = {id(m) for m in counted}
    others = [m for m in run.measurements if id(m) not in ids and m.kind in ("estimate", "metered")
              and not m.error and usable_energy(m.energy_kwh)]
    if len(counted) + len(others) < 2:
        return ""
    mixed = len({m.kind for m in [*counted, *others]}) > 1

    def named(m: Any, kind: bool) -> str:
        return f"{m.backend} {format_energy(m.energy_kwh)}" + (" metered" if m.kind == "metered" else " estimated") * kind

    text = " + ".join(named(m, mixed) for m in counted)
    if others:
        text += "; not counted: " + ", ".join(named(m, True) for m in others)
    return f" ({text})"


@hookimpl
def let_register_reporters(register: Callable[[Any], None]) -> None:
    register(StatementReporter)
