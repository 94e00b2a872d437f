"""A lab's year as a Parquet dataset: N runs of 24 projects, 12 users, 10 hosts over 2026, most
estimated by CodeCarbon, a fifth also metered at the wall (a second row, 1.1-1.5x), 3% failed.
Each row starts as a real ``Run.rows()`` row (one template per project and host) and is varied
column-wise, so a million runs take a minute, not an hour. Kept under /tmp per N (reused)."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from let_core._version import __version__
from let_core.records import Measurement, Run

PROJECTS = [f"{name}-{k}" for name in ("vision", "nlp", "speech", "rl", "graph", "tabular") for k in range(4)]
USERS = [f"user{k:02d}" for k in range(12)]
HOSTS = [f"gpu-{k:02d}" for k in range(8)] + ["cpu-a", "cpu-b"]


def _template(project: str, host: str, kind: str) -> dict[str, object]:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    measurement = (Measurement(backend="codecarbon", methodology="CodeCarbon 3.3.2", kind="estimate", energy_kwh=0.1,
                               duration_s=3600.0, scope="cpu+gpu+ram", hardware="NVIDIA A100 GPU")
                   if kind == "estimate" else
                   Measurement(backend="tasmota", methodology="Tasmota smart socket", kind="metered", energy_kwh=0.1,
                               duration_s=3600.0, scope="system", hardware=host, coverage=1.0))
    run = Run(run_id="x", project_name=project, user="u", hostname=host, start_time=start,
              end_time=start + timedelta(hours=1), status="ok", measurements=(measurement,),
              country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0)
    return run.rows(__version__)[0]


def lab_frame(runs: int, seed: int = 7) -> object:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    project = rng.integers(0, len(PROJECTS), runs)
    host = (project * 3 + rng.integers(0, 3, runs)) % len(HOSTS)  # a project runs on a few hosts
    user = (project // 2 + rng.integers(0, 2, runs)) % len(USERS)
    year = 365 * 86400
    # More runs towards the deadlines of spring and autumn: a year that has a shape.
    offset = (rng.beta(2, 2, runs) * 0.5 + rng.integers(0, 2, runs) * 0.5) * year
    start = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.sort(offset).astype(np.int64), unit="s")
    duration = rng.lognormal(np.log(1800), 1.0, runs).clip(5, 3 * 86400)
    power_kw = np.where(np.asarray(HOSTS, dtype=object)[host] == "cpu-a", 0.08, 0.35) * rng.uniform(0.6, 1.2, runs)
    energy = power_kw * duration / 3600
    failed = rng.random(runs) < 0.03
    metered = rng.random(runs) < 0.2
    templates = {(p, h, k): _template(PROJECTS[p], HOSTS[h], k) for p in range(len(PROJECTS))
                 for h in range(len(HOSTS)) for k in ("estimate", "metered")}
    frames = []
    for kind, rows in (("estimate", np.arange(runs)), ("metered", np.flatnonzero(metered))):
        first = templates[(0, 0, kind)]
        part = pd.DataFrame({c: [v] * len(rows) for c, v in first.items() if c not in ("project_name", "hostname")})
        part["project_name"] = np.asarray(PROJECTS, dtype=object)[project[rows]]
        part["hostname"] = np.asarray(HOSTS, dtype=object)[host[rows]]
        part["user"] = np.asarray(USERS, dtype=object)[user[rows]]
        part["experiment_id"] = part["project_name"] + "___" + part["user"] + "___" + part["hostname"]
        part["run_id"] = [f"{i:08d}-0000-4000-8000-{i:012d}" for i in rows]
        part["start_time"] = start[rows].strftime("%Y-%m-%dT%H:%M:%S+00:00")
        part["timestamp"] = (start[rows] + pd.to_timedelta(duration[rows], unit="s")).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        kwh = energy[rows] * (rng.uniform(1.1, 1.5, len(rows)) if kind == "metered" else 1.0)
        part["energy_consumed"] = kwh
        part["emissions"] = kwh * 0.38
        part["duration"] = duration[rows]
        part["run_status"] = np.where(failed[rows], "failed", "ok")
        part["error"] = np.where(failed[rows], "RuntimeError: CUDA out of memory", "")
        if kind == "metered":
            part["hardware"] = part["hostname"]
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def lab_dataset(runs: int, root: Path | None = None) -> Path:
    """The dataset's folder, built once per ``runs`` (a marker file says it is complete)."""
    from let_core.dataset import locate, write_frame

    root = root or Path(tempfile.gettempdir()) / f"let-lab-{runs}"
    if (root / ".complete").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    write_frame(locate(str(root)), lab_frame(runs))  # type: ignore[arg-type]
    (root / ".complete").write_text("ok\n")
    return root


if __name__ == "__main__":
    import sys

    print(lab_dataset(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
