"""The central store reporter: every run's rows appended to ``emissions.csv`` (the system of record)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from let_core._version import __version__
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Run
from let_core.store import Store

if TYPE_CHECKING:
    import pandas as pd


class CsvReporter:
    name: ClassVar[str] = "csv"
    auto: ClassVar[bool] = True
    order: ClassVar[int] = 0
    description: ClassVar[str] = "the central store, emissions.csv in LET_HOME or output_dir"

    def __init__(self, directory: Path) -> None:
        self.store = Store(directory)

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        return Availability.yes()

    @classmethod
    def from_settings(cls, settings: Settings) -> CsvReporter:
        return cls(settings.output_dir)

    def report(self, run: Run) -> None:
        # The store writes the run completely or keeps it in its rescue file, and its
        # StoreError says where.
        self.store.append(run.rows(__version__))

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
