"""`lett report` at a lab's scale: N runs (default 1,000,000) over a year, 20 projects, 40 users,
50 hosts, a tenth also metered by a wall socket, 3% failed; as a Parquet dataset and as a CSV
store. Each report is one fresh `lett report` process: its wall time and peak RSS.

    .venv/bin/python -m bench.bench_report [--runs 1000000] [--keep DIR] [--shot PNG]

--shot renders the Parquet report in headless Chromium and saves a full-page screenshot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.bench_results import child_peak_rss, synthetic, write_csv_store


def lab_frame(n: int, seed: int = 1) -> pd.DataFrame:
    """``synthetic``'s runs spread over 40 users and a year, with metered twins and failures."""
    rng = np.random.default_rng(seed)
    frame = synthetic(n, seed)
    users = np.array([f"user{i:02d}" for i in range(40)])
    frame["user"] = users[rng.integers(0, len(users), n)]
    start = pd.Timestamp("2025-07-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s")
    stamp = start.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    frame["start_time"] = stamp
    frame["timestamp"] = stamp
    frame["experiment_id"] = frame["project_name"] + "___" + frame["user"] + "___" + frame["hostname"]
    frame.loc[rng.random(n) < 0.03, "run_status"] = "failed"
    frame.loc[frame["run_status"] == "", "run_status"] = "ok"
    twins = frame[rng.random(n) < 0.10].copy()
    twins["backend"], twins["kind"], twins["scope"] = "tasmota", "metered", "system"
    twins["methodology"], twins["hardware"] = "Tasmota smart socket", twins["hostname"]
    twins["energy_consumed"] = twins["energy_consumed"] * 1.3
    twins["emissions"] = twins["energy_consumed"] * 0.380
    twins["coverage"] = 1.0
    return pd.concat([frame, twins], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--keep", default=None, help="Folder to keep the data and reports in.")
    parser.add_argument("--shot", default=None, help="PNG path for a screenshot of the Parquet report.")
    args = parser.parse_args()
    from let_core.dataset import locate, write_frame

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="let-bench-report-"))
    if work.exists() and any(work.iterdir()):
        # The dataset writer adds files: a second run into the same folder would double the runs.
        raise SystemExit(f"{work} is not empty; --keep needs a new or empty folder")
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LET_HOME": str(work / "home"), "LET_LOAD_PLUGINS": ""}
    env.pop("LET_DATASET", None)
    try:
        t0 = time.perf_counter()
        frame = lab_frame(args.runs)
        write_csv_store(frame, work / "csv")
        write_frame(locate(work / "pq" / "runs"), frame)
        rows = len(frame)
        del frame
        print(f"generated {args.runs:,} runs ({rows:,} rows) in {time.perf_counter() - t0:.1f} s")
        lett = [sys.executable, "-m", "let_core", "report"]
        cases = {
            "Parquet dataset": [*lett, "-o", str(work / "empty"), "--dataset", str(work / "pq" / "runs")],
            "CSV store": [*lett, "-o", str(work / "csv"), "--dataset", str(work / "none")],
        }
        for name, command in cases.items():
            page = work / f"report-{name.split()[0].lower()}.html"
            wall, peak = child_peak_rss([*command, "--html", str(page)], env)
            print(f"{name:16s} lett report: {wall:6.1f} s wall, peak RSS {peak:,.0f} MiB, "
                  f"HTML {page.stat().st_size / 1024:,.0f} KiB")
        if args.shot:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1280,7000", f"--screenshot={args.shot}",
                            (work / "report-parquet.html").as_uri()], check=True, capture_output=True, timeout=120)
            print(f"screenshot: {args.shot}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
