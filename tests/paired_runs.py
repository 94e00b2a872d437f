"""Synthetic runs of one host measured both ways: a CodeCarbon-like estimate (with CPU, GPU and
RAM parts) and a Tasmota-like wall figure that follows ``wall = a * estimate + P_base * duration``
exactly, plus relative noise and the socket's 0.01 Wh rounding. Known truth, fixed seeds."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from let_core._version import __version__
from let_core.records import Measurement, Run

CPU_MODEL = "Intel(R) Core(TM) i9-13900K"
GPU_MODEL = "1 x NVIDIA GeForce RTX 4090"


def true_wall(estimate_kwh: Any, duration_s: Any, a: float, base_w: float) -> Any:
    return a * np.asarray(estimate_kwh) + base_w / 1000 * np.asarray(duration_s) / 3600


def synthetic_runs(n: int, *, a: float = 1.21, base_w: float = 41.0, noise: float = 0.03, seed: int = 0,
                   host: str = "ws28", power_w: tuple[float, float] = (80.0, 450.0),
                   duration_s: tuple[float, float] = (300.0, 7200.0), coverage: float = 1.0,
                   metered_scale: float = 1.0, status: str = "ok", cpu_model: str = CPU_MODEL,
                   gpu_model: str = GPU_MODEL, metered: bool = True,
                   start: datetime = datetime(2026, 5, 1, tzinfo=timezone.utc)) -> list[Run]:
    """``n`` runs; with ``metered=False`` only their estimates (runs to be corrected)."""
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(n):
        duration = float(np.exp(rng.uniform(*np.log(duration_s))))
        power = float(rng.uniform(*power_w))
        estimate = power * duration / 3.6e6
        gpu_share = float(rng.uniform(0.3, 0.7))
        ram_share = float(rng.uniform(0.05, 0.2))
        parts = {"cpu_kwh": estimate * (1 - gpu_share - ram_share), "gpu_kwh": estimate * gpu_share,
                 "ram_kwh": estimate * ram_share}
        wall = float(true_wall(estimate, duration, a, base_w)) * (1 + noise * rng.standard_normal())
        wall = round(wall * metered_scale * 1e5) / 1e5  # Tasmota counts 0.01 Wh
        begin = start + timedelta(hours=3 * i)
        measurements = [Measurement(backend="codecarbon", methodology="CodeCarbon 3.3.2", kind="estimate",
                                    energy_kwh=estimate, duration_s=duration, scope="cpu+gpu+ram",
                                    hardware=f"{cpu_model} and {gpu_model}", **parts,
                                    extras={"cpu_model": cpu_model, "gpu_model": gpu_model})]
        if metered:
            measurements.append(Measurement(backend="tasmota", methodology="Tasmota smart socket",
                                            kind="metered", energy_kwh=wall, duration_s=duration,
                                            scope="system", hardware=host, coverage=coverage))
        runs.append(Run(run_id=str(uuid.UUID(bytes=rng.bytes(16), version=4)), project_name="paper",
                        user="alice", hostname=host, start_time=begin,
                        end_time=begin + timedelta(seconds=duration), status=status,  # type: ignore[arg-type]
                        measurements=tuple(measurements), country_iso_code="DEU", country_name="Germany",
                        carbon_intensity=380.0))
    return runs


def rows(runs: list[Run]) -> list[dict[str, Any]]:
    return [row for run in runs for row in run.rows(__version__)]
