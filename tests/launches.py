"""Ranks of one launch run at the same time; tests track them one after another, so this gives
a job's stored runs the one interval of a launch (sequential runs of one allocation would each
count, as they should)."""

from __future__ import annotations

import csv
from pathlib import Path


def launched_together(store_path: Path, job: str) -> None:
    with open(store_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["job_id"] == job:
            row["start_time"], row["timestamp"] = "2026-01-01T10:00:00+00:00", "2026-01-01T10:05:00+00:00"
    with open(store_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
