"""The Parquet dataset reporter: each run as one new file in a Hive-partitioned dataset.

On when ``output_dir`` is a dataset URI (``s3://bucket/let``) or ``LET_DATASET`` names a
dataset (a folder such as ``~/.let/runs`` or a URI).
The central CSV store stays the system of record: this reporter runs after it, so a run whose
upload fails is still recorded locally, and the warning says where.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from let_core import config
from let_core._version import __version__
from let_core.errors import StoreError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Run

if TYPE_CHECKING:
    import pandas as pd


class ParquetReporter:
    name: ClassVar[str] = "parquet"
    auto: ClassVar[bool] = True
    order: ClassVar[int] = 50
    description: ClassVar[str] = ("one Parquet file per run in a Hive-partitioned dataset "
                                  "($LET_HOME/runs, LET_DATASET or an s3:// output_dir)")

    def __init__(self, root: str, store_dir: str = "") -> None:
        self.root = root
        self.store_dir = store_dir
        self._location: Any = None

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        if importlib.util.find_spec("pyarrow") is None:
            return Availability.no("needs pyarrow: pip install pyarrow")
        if settings.output_uri or config.dataset_env():
            return Availability.yes()
        # Off by default: on one machine the CSV store is enough, and this saves every run the
        # pyarrow import. The reason says how to turn it on.
        return Availability.no("off until a dataset is named: output_dir='s3://bucket/let' (any "
                               "pyarrow URI) or LET_DATASET=~/.let/runs")

    @classmethod
    def from_settings(cls, settings: Settings) -> ParquetReporter:
        from let_core.config import default_dataset_root

        root = settings.output_uri or default_dataset_root(settings.output_dir)
        return cls(root, str(settings.output_dir))

    @property
    def location(self) -> Any:
        from let_core.dataset import locate

        if self._location is None:
            self._location = locate(self.root)
        return self._location

    def report(self, run: Run) -> None:
        from let_core.dataset import write_run

        try:
            write_run(self.location, run.rows(__version__))
        except (OSError, StoreError, ValueError) as exc:
            where = os.path.join(self.store_dir, "emissions.csv") if self.store_dir else "the local store"
            raise StoreError(
                f"run {run.run_id} was not written to the dataset {self.location.display}: {exc}. "
                f"Nothing is lost: the central store {where} has it (csv reporter); copy the "
                f"project there later with `lett export parquet --project {run.project_name} URI` "
                f"(URI: the output_dir you gave, {self.location.display}).") from exc

    def export(self, results: pd.DataFrame, destination: str) -> None:
        from let_core.dataset import locate, write_frame

        write_frame(locate(destination), results)


@hookimpl
def let_register_reporters(register: Callable[[Any], None]) -> None:
    register(ParquetReporter)
