"""Calibration benchmark: does a wall-socket calibration fitted on one workload correct another?

    .venv/bin/python bench/bench_calibration.py [--seeds 5] [--fit-runs 120] [--held-out-runs 120]

Paired data from a model of a workstation with one GPU (not the calibration's own form):
the parts draw P_parts; CodeCarbon-like estimates see 0.93-0.99 of it depending on load (TDP
heuristics miss boosts and idle cores), the wall sees (P_parts + 30 W board, fans and idle
devices) / PSU efficiency that rises with load (0.85-0.91), a 1.5% meter scatter and Tasmota's
0.01 Wh counter. Estimates end up 20-32% below the wall.

Workload A (GPU training, 200-450 W, 10-120 min) is stored measured both ways and fitted with
``lett calibration``'s code (store -> load_results -> paired_runs -> fit); workload B (CPU-heavy
preprocessing and inference, 150-320 W, 2-60 min) is held out: its estimates are corrected with
``calibrate_frame`` and compared with its wall figures. Prints a Markdown table over all seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from let_core._version import __version__  # noqa: E402
from let_core.records import Measurement, Run  # noqa: E402

WORKLOADS = {  # parts power (W), duration (s), GPU share of the parts' power
    "A: GPU training": ((200.0, 450.0), (600.0, 7200.0), (0.55, 0.75)),
    "B: CPU preprocessing/inference": ((150.0, 320.0), (120.0, 3600.0), (0.05, 0.35)),
}
BASE_W = 30.0


def workload_runs(name: str, n: int, rng: np.random.Generator, metered: bool) -> tuple[list[Run], np.ndarray]:
    (p_low, p_high), (d_low, d_high), (g_low, g_high) = WORKLOADS[name]
    runs, walls = [], []
    start = datetime(2026, 4, 1, tzinfo=timezone.utc)
    for i in range(n):
        duration = float(np.exp(rng.uniform(np.log(d_low), np.log(d_high))))
        parts_w = float(rng.uniform(p_low, p_high))
        load = (parts_w - 100.0) / 350.0
        seen = 0.93 + 0.06 * load + rng.normal(0, 0.01)  # TDP heuristics see more of a busy machine
        efficiency = 0.85 + 0.06 * load
        wall_w = (parts_w + BASE_W) / efficiency
        wall = wall_w * duration / 3.6e6 * (1 + rng.normal(0, 0.015))
        wall = round(wall * 1e5) / 1e5  # Tasmota's 0.01 Wh counter
        estimate = parts_w * seen * duration / 3.6e6
        gpu = float(rng.uniform(g_low, g_high))
        ram = float(rng.uniform(0.05, 0.12))
        measurements = [Measurement(
            backend="codecarbon", methodology="CodeCarbon 3.3.2", kind="estimate", energy_kwh=estimate,
            duration_s=duration, scope="cpu+gpu+ram", cpu_kwh=estimate * (1 - gpu - ram), gpu_kwh=estimate * gpu,
            ram_kwh=estimate * ram, hardware="Intel i9-13900K and NVIDIA RTX 4090",
            extras={"cpu_model": "Intel(R) Core(TM) i9-13900K", "gpu_model": "1 x NVIDIA GeForce RTX 4090"})]
        if metered:
            measurements.append(Measurement(backend="tasmota", methodology="Tasmota smart socket", kind="metered",
                                            energy_kwh=wall, duration_s=duration, scope="system",
                                            hardware="ws28", coverage=1.0))
        begin = start + timedelta(hours=2 * i)
        runs.append(Run(run_id=str(uuid.UUID(bytes=rng.bytes(16), version=4)), project_name=name[:1],
                        user="bench", hostname="ws28", start_time=begin,
                        end_time=begin + timedelta(seconds=duration), status="ok", measurements=tuple(measurements),
                        country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0))
        walls.append(wall)
    return runs, np.array(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fit-runs", type=int, default=120)
    parser.add_argument("--held-out-runs", type=int, default=120)
    args = parser.parse_args()
    os.environ["LET_LOAD_PLUGINS"] = ""
    from let_core.results import load_results
    from let_core.results.calibration import calibrate_frame, fit, paired_runs
    from let_core.store import Store

    raw_err, ratio_err, cal_err, inside, outside, under, cv = [], [], [], [], [], [], []
    description = ""
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        with tempfile.TemporaryDirectory() as home:
            os.environ["LET_HOME"] = home
            fit_runs, _ = workload_runs("A: GPU training", args.fit_runs, rng, metered=True)
            Store(home).append([row for run in fit_runs for row in run.rows(__version__)])
            frame = load_results()
            paired = paired_runs(frame, "ws28")
            calibration = fit(paired)
            description = calibration.describe()
            cv.append(calibration.cv_error)
            ratio = float(paired.frame["wall"].sum() / paired.frame["estimate"].sum())
            held, walls = workload_runs("B: CPU preprocessing/inference", args.held_out_runs, rng, metered=False)
            Store(home).append([row for run in held for row in run.rows(__version__)])
            corrected = calibrate_frame(load_results(project_name="B"), {"ws28": calibration})
        order = {run.run_id: i for i, run in enumerate(held)}
        corrected = corrected.assign(order=corrected["run_id"].map(order)).sort_values("order")
        estimate = corrected["energy_consumed"].to_numpy(float)
        value = corrected["calibrated_kwh"].to_numpy(float)
        low, high = corrected["calibrated_low_kwh"].to_numpy(float), corrected["calibrated_high_kwh"].to_numpy(float)
        raw_err.extend(np.abs(estimate - walls) / walls)
        ratio_err.extend(np.abs(estimate * ratio - walls) / walls)
        cal_err.extend(np.abs(value - walls) / walls)
        inside.extend((walls >= low) & (walls <= high))
        outside.extend(corrected["calibrated_outside_range"].to_numpy(bool))
        under.extend(1 - estimate / walls)
    inside_a, outside_a = np.array(inside), np.array(outside)
    print(f"last fit (seed {args.seeds - 1}): {description}\n")
    print(f"{args.seeds} seeds x {args.fit_runs} fitted runs of workload A, {args.held_out_runs} held-out runs of "
          f"workload B each; estimate below the wall by {np.percentile(under, 5) * 100:.0f}-"
          f"{np.percentile(under, 95) * 100:.0f}% (5th-95th percentile), median {np.median(under) * 100:.0f}%\n")
    print("| held-out workload B | median abs error | 90th percentile | 90% interval coverage |")
    print("|---|---|---|---|")
    print(f"| raw CodeCarbon-like estimate | {np.median(raw_err) * 100:.1f}% | {np.percentile(raw_err, 90) * 100:.1f}% | - |")
    print(f"| plain ratio fitted on A | {np.median(ratio_err) * 100:.1f}% | {np.percentile(ratio_err, 90) * 100:.1f}% | - |")
    print(f"| calibrated (a x estimate + P_base x duration) | {np.median(cal_err) * 100:.1f}% | "
          f"{np.percentile(cal_err, 90) * 100:.1f}% | {inside_a.mean() * 100:.0f}% |")
    for label, mask in (("inside A's fitted range", ~outside_a), ("outside it (widened)", outside_a)):
        if mask.any():
            print(f"| - of which {label}: {int(mask.sum())} runs | {np.median(np.array(cal_err)[mask]) * 100:.1f}% | "
                  f"{np.percentile(np.array(cal_err)[mask], 90) * 100:.1f}% | {inside_a[mask].mean() * 100:.0f}% |")
    print(f"\ncross-validated error on A itself (median over seeds): {np.median(cv) * 100:.1f}%")


if __name__ == "__main__":
    main()
