"""Attribution's cost, like for like: tracker start and the sampler's CPU, attribution on vs off.

python -m bench.bench_attribution   (manual backend, 0.1 s sampling, 3 s runs, interleaved)
"""

from __future__ import annotations

import statistics
import tempfile
import time

from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker


def one(attribution: str, seconds: float = 3.0) -> tuple[float, float]:
    tracker = EnergyTracker(project_name="bench", attribution=attribution, reporters=[],
                            output_dir=tempfile.mkdtemp(), measure_power_secs=0.1,
                            backends=[ManualBackend(power_watts=10)])
    t0 = time.perf_counter()
    tracker.start()
    start_s = time.perf_counter() - t0
    share = tracker._share  # the attribution sampler, None when off
    time.sleep(seconds)
    tracker.stop()
    return start_s, (share.sampler.cpu_s if share is not None else 0.0)


def main() -> None:
    results: dict[str, list[tuple[float, float]]] = {"none": [], "process": []}
    for _ in range(5):
        for mode in results:
            results[mode].append(one(mode))
    for mode, values in results.items():
        start = statistics.median(v[0] for v in values) * 1000
        cpu = statistics.median(v[1] for v in values) / 3.0 * 100
        print(f"attribution={mode:8s} tracker start {start:6.2f} ms   sampler CPU {cpu:5.2f} % of one core")


if __name__ == "__main__":
    main()
