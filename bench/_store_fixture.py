"""Builds a central store with N realistic rows quickly (shared by the store benchmarks)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from let_core._version import __version__
from let_core.csvfile import encode
from let_core.records import Measurement, Run
from let_core.schema import STORE_COLUMNS
from let_core.store import STORE_FILE


def sample_run(index: int = 0, project: str = "bench") -> Run:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=index)
    measurement = Measurement(backend="manual", methodology="the Machine Learning CO2 Impact Calculator",
                              kind="estimate", energy_kwh=0.0123456789, duration_s=60.123456,
                              hardware="Intel(R) Xeon(R) Gold 6230 CPU")
    return Run(run_id=str(uuid.uuid4()), project_name=project, user="alice", hostname="gpu-box",
               start_time=start, end_time=start + timedelta(seconds=60), status="ok",
               measurements=(measurement,), country_iso_code="DEU", country_name="Germany",
               carbon_intensity=380.95)


def build_store(directory: Path, rows: int, projects: int = 10) -> Path:
    """``rows`` rows over ``projects`` projects; each row a real Run's row with its own run id."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STORE_FILE
    template = [sample_run(i, f"project-{i % projects}").rows(__version__)[0] for i in range(projects)]
    with open(path, "wb") as out:
        out.write(encode([], STORE_COLUMNS, header=True))
        batch = []
        for i in range(rows):
            row = dict(template[i % projects])
            row["run_id"] = f"{i:08d}-0000-4000-8000-{i:012d}"
            batch.append(row)
            if len(batch) == 50_000:
                out.write(encode(batch, STORE_COLUMNS, header=False))
                batch = []
        out.write(encode(batch, STORE_COLUMNS, header=False))
    return path
