"""The exporter's costs, like for like.

python -m bench.bench_exporter [--rows 100000]

- tracker start and stop with live publishing on (LET_LIVE_INTERVAL=5) vs off (0), manual
  backend, no reporters, interleaved medians of 50;
- one scrape of a store of ``--rows`` runs (bench/_store_fixture.py): the first (reads and
  counts the store), then one of the unchanged store (served from what the last read gave),
  medians of 5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench._store_fixture import build_store
from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker


def tracker_cycle(interval: str, folder: str) -> tuple[float, float]:
    os.environ["LET_LIVE_INTERVAL"] = interval
    tracker = EnergyTracker(project_name="bench", reporters=[], output_dir=folder,
                            backends=[ManualBackend(power_watts=10)])
    t0 = time.perf_counter()
    tracker.start()
    started = time.perf_counter() - t0
    t1 = time.perf_counter()
    tracker.stop()
    return started, time.perf_counter() - t1


def scrape_costs(rows: int) -> tuple[float, float]:
    from prometheus_client import generate_latest

    from let_core.exporter import LetCollector, registry_for

    folder = Path(tempfile.mkdtemp())
    build_store(folder, rows)
    firsts, again = [], []
    for _ in range(5):
        registry = registry_for(LetCollector(str(folder), log=lambda _: None))
        t0 = time.perf_counter()
        generate_latest(registry)
        firsts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        generate_latest(registry)
        again.append(time.perf_counter() - t0)
    return statistics.median(firsts), statistics.median(again)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    os.environ["LET_RUNTIME_DIR"] = tempfile.mkdtemp()
    folder = tempfile.mkdtemp()
    results: dict[str, list[tuple[float, float]]] = {"0": [], "5": []}
    for _ in range(50):
        for interval in results:
            results[interval].append(tracker_cycle(interval, folder))
    for interval, values in results.items():
        start = statistics.median(v[0] for v in values) * 1000
        stop = statistics.median(v[1] for v in values) * 1000
        mode = "off" if interval == "0" else "on "
        print(f"live publishing {mode}: tracker start {start:6.2f} ms   stop {stop:6.2f} ms")
    first, again = scrape_costs(args.rows)
    print(f"scrape of a {args.rows}-run store: first {first * 1000:.0f} ms, unchanged store {again * 1000:.1f} ms")


if __name__ == "__main__":
    main()
