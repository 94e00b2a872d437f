"""A store for the dashboard tests: runs of three projects on three hosts over six days;
"vision" runs are measured both ways (CodeCarbon's estimate and a wall socket at 1.3x),
"nlp" runs belong to one job per day, every seventh run failed."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from let_core._version import __version__
from let_core.records import Measurement, Run
from let_core.store import Store

SPECS = (("vision", "alice", "gpu-1"), ("vision", "alice", "gpu-2"), ("nlp", "bob", "gpu-1"),
         ("speech", "carol", "cpu-box"))
DAYS = 6
METERED_RATIO = 1.3


def estimate_kwh(n: int, project: str) -> float:
    return 0.010 * (1 + n % 5) * (2 if project == "nlp" else 1)


def build_store(directory: Path) -> list[Run]:
    runs = []
    base = datetime(2026, 3, 1, tzinfo=timezone.utc)
    n = 0
    for day in range(DAYS):
        for project, user, host in SPECS:
            n += 1
            start = base + timedelta(days=day, hours=n % 5)
            est = estimate_kwh(n, project)
            measurements = [Measurement(backend="codecarbon", methodology="CodeCarbon 3.3.2", kind="estimate",
                                        energy_kwh=est, duration_s=600.0, scope="cpu+gpu+ram",
                                        hardware="AMD EPYC CPU")]
            if project == "vision":
                measurements.append(Measurement(
                    backend="tasmota", methodology="Tasmota smart socket", kind="metered",
                    energy_kwh=est * METERED_RATIO, duration_s=600.0, scope="system", hardware=host,
                    coverage=1.0))
            runs.append(Run(run_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"let-ui-test-run-{n}")), project_name=project, user=user, hostname=host,
                            start_time=start, end_time=start + timedelta(minutes=10),
                            status="ok" if n % 7 else "failed", measurements=tuple(measurements),
                            country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0,
                            environment={"job_id": f"job-{day}"} if project == "nlp" else {}))
    Store(directory).append([row for run in runs for row in run.rows(__version__)])
    return runs


def build_new_user_store(directory: Path, day: datetime | None = None) -> list[Run]:
    """What a new user has after a first day: two projects, small CPU runs (mWh to Wh) measured by
    CodeCarbon from 09:00 to 17:00 UTC, one failed run, one run split into two tasks."""
    day = day or datetime(2026, 12, 2, tzinfo=timezone.utc)
    runs: list[Run] = []
    for n in range(8):
        project = "thesis-baseline" if n % 2 else "first-try"
        start = day + timedelta(hours=9 + n, minutes=7 * n)
        kwh = 0.0004 * (1 + n % 3) + 0.00001 * n  # 0.4 to 1.3 Wh
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"let-new-user-run-{n}"))
        runs.append(Run(run_id=run_id, project_name=project, user="dana", hostname="laptop-dana",
                        start_time=start, end_time=start + timedelta(minutes=3 + n),
                        status="failed" if n == 5 else "ok", error="RuntimeError: CUDA out of memory" if n == 5 else "",
                        measurements=(Measurement(backend="codecarbon", methodology="CodeCarbon 3.3.2", kind="estimate",
                                                  energy_kwh=kwh, duration_s=60.0 * (3 + n), scope="cpu+ram",
                                                  hardware="Intel(R) Core(TM) i7-10610U CPU"),),
                        country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0))
        if n == 3:  # two tasks inside this run: their own rows, under it
            for k, name in enumerate(("load data", "train")):
                t0 = start + timedelta(minutes=k * 3)
                runs.append(Run(run_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"let-new-user-task-{k}")),
                                project_name=project, user="dana", hostname="laptop-dana", start_time=t0,
                                end_time=t0 + timedelta(minutes=3), status="ok", task=name, parent_run_id=run_id,
                                measurements=(Measurement(backend="codecarbon", methodology="CodeCarbon 3.3.2",
                                                          kind="estimate", energy_kwh=kwh / 2, duration_s=180.0,
                                                          scope="cpu+ram", hardware="Intel(R) Core(TM) i7-10610U CPU"),),
                                country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0))
    Store(directory).append([row for run in runs for row in run.rows(__version__)])
    return runs
