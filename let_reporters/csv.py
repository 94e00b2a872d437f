"""``csv``: exports stored runs as an emissions.csv-shaped file (``lett export csv FILE``).

Recording runs is not this reporter's job: the core appends every run to the central store
itself, before any reporter runs, whatever reporters are chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Run

if TYPE_CHECKING:
    import pandas as pd


class CsvReporter:
    name: ClassVar[str] = "csv"
    auto: ClassVar[bool] = False
    order: ClassVar[int] = 0
    description: ClassVar[str] = ("exports stored runs as an emissions.csv-shaped file; every run is "
                                  "recorded in the central store by the core anyway")

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        return Availability.yes()

    @classmethod
    def from_settings(cls, settings: Settings) -> CsvReporter:
        return cls()

    def report(self, run: Run) -> None:
        """Nothing to do per run: the core has already appended it to the central store."""

    def export(self, results: pd.DataFrame, destination: str) -> None:
        """Write a result set as an emissions.csv-shaped file.

        Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``,
        ``-``, ``@``, tab or carriage return; OWASP's CSV injection advice) get a leading
        apostrophe. Numbers stay numbers; the store itself keeps the raw value.
        """
        escape_formulas(results).to_csv(destination, index=False)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_formulas(results: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``results`` whose text cells cannot start a spreadsheet formula."""
    frame = results.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind in "biufcmM":
            continue
        text = values.astype(object)
        risky = text.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_PREFIXES))
        if risky.any():
            frame[column] = text.where(~risky, "'" + text.astype(str))
    return frame


@hookimpl
def let_register_reporters(register: Callable[[Any], None]) -> None:
    register(CsvReporter)
