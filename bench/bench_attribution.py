"""Attribution's cost, like for like: tracker start and the CPU LET uses while a run goes on,
attribution on vs off.

python -m bench.bench_attribution   (manual backend, 0.1 s sampling; start: median of 15
start/stop pairs; CPU: median of 5 runs of 3 s; both interleaved on vs off)
"""

from __future__ import annotations

import statistics
import tempfile
import time

from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker

MODES = ("none", "process")


def tracker(attribution: str) -> EnergyTracker:
    return EnergyTracker(project_name="bench", attribution=attribution, reporters=[],
                         output_dir=tempfile.mkdtemp(), measure_power_secs=0.1,
                         backends=[ManualBackend(power_watts=10)])


def start_s(attribution: str) -> float:
    tracked = tracker(attribution)
    t0 = time.perf_counter()
    tracked.start()
    elapsed = time.perf_counter() - t0
    tracked.stop()
    return elapsed


def running_cpu_s(attribution: str, seconds: float = 3.0) -> float:
    """The process's CPU time while the main thread sleeps in a run: what LET's threads cost
    (the attribution sampler when on, the live publisher either way)."""
    tracked = tracker(attribution)
    tracked.start()
    cpu0 = time.process_time()
    time.sleep(seconds)
    cpu = time.process_time() - cpu0
    tracked.stop()
    return cpu / seconds


def main() -> None:
    for mode in MODES:  # imports and first-time set-up out of the way
        start_s(mode)
    starts: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(15):
        for mode in MODES:
            starts[mode].append(start_s(mode))
    for _ in range(5):
        for mode in MODES:
            cpus[mode].append(running_cpu_s(mode))
    for mode in MODES:
        print(f"attribution={mode:8s} tracker start {statistics.median(starts[mode]) * 1000:6.2f} ms   "
              f"CPU while running {statistics.median(cpus[mode]) * 100:5.2f} % of one core")


if __name__ == "__main__":
    main()
