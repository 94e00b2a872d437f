"""The central store reporter: every run's rows appended to ``emissions.csv`` (the system of record)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from let_core._version import __version__
from let_core.errors import StoreError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import STORE_COLUMNS, Run
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
        rows = run.rows(__version__)
        try:
            self.store.append(rows)
        except (StoreError, OSError) as exc:
            rescue = _rescue(rows)
            raise StoreError(f"{exc} The run was saved to {rescue} instead; add it to a store later "
                             f"with `let merge {rescue} --into DIR`.") from exc

    def export(self, results: pd.DataFrame, destination: str) -> None:
        """Write a result set as an emissions.csv-shaped file."""
        results.to_csv(destination, index=False)


def _rescue(rows: list[dict[str, Any]]) -> str:
    """Keep a run whose store is unwritable: the user's measurement is never just dropped."""
    import tempfile

    handle, path = tempfile.mkstemp(prefix="let-unsaved-run-", suffix=".csv")
    with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(STORE_COLUMNS), extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@hookimpl
def let_register_reporters(register: Callable[[Any], None]) -> None:
    register(CsvReporter)
