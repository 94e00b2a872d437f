"""Native backends: start/stop cost, sampler CPU cost, exact recovery across wraparounds.

    .venv/bin/python bench/bench_native.py [--seconds 60]

RAPL runs on a fake powercap tree of real files (tests/fakes/powercap.py) and NVML on the fake
pynvml (tests/fakes/pynvml.py), so the figures are LET's own overhead: real sysfs reads cost
about the same as these file reads, a real NVML call a few microseconds more.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from let_backends.nvml import NvmlBackend  # noqa: E402
from let_backends.rapl import RaplBackend, discover, select  # noqa: E402
from let_core.interfaces import Settings  # noqa: E402
from tests.fakes import pynvml as fake_pynvml  # noqa: E402
from tests.fakes.powercap import FakePowercap, server_tree  # noqa: E402


def settings(root: Path, measure_power_secs: float = 1.0) -> Settings:
    return Settings(project_name="bench", output_dir=root, user="u", hostname="h",
                    country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0,
                    measure_power_secs=measure_power_secs, options={"rapl": {"root": str(root / "powercap")}})


def start_stop_us(backend, repeat: int = 300) -> tuple[float, float]:
    for _ in range(20):  # warm up
        backend.start()
        backend.stop()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        backend.start()
        backend.stop()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6, sorted(times)[int(0.95 * len(times))] * 1e6


def codecarbon_start_stop_ms(repeat: int = 3) -> float:
    import logging

    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    times = []
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeat):
            t0 = time.perf_counter()
            tracker = OfflineEmissionsTracker(country_iso_code="DEU", save_to_file=False,
                                              output_dir=out, log_level="error")
            tracker.start()
            tracker.stop()
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def exact_wraps() -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        max_range = 1_000_000
        tree = FakePowercap(Path(tmp) / "powercap")
        tree.add_zone("intel-rapl:0", "package-0", max_range, start_uj=600_000)
        now = [0.0]
        backend = RaplBackend(select(discover(tree.root)), sample_secs=3600, max_power_w=1.0,
                              clock=lambda: now[0], hardware="bench")
        steps = [300_000, 350_000, 400_000, 123_457, 999_000, 5, 100_000]
        backend.start()
        for uj in steps:
            tree.add("intel-rapl:0", uj)
            now[0] += 1.0
            backend.meter.poll()
        backend.stop()
        wraps = tree.absolute["intel-rapl:0"] // (max_range + 1)
        return sum(steps), int(backend.meter.channels["package-0"].total), wraps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sampler-cost run")
    parser.add_argument("--skip-codecarbon", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server_tree(root / "powercap")
        fake_pynvml.reset([fake_pynvml.FakeGpu(), fake_pynvml.FakeGpu(uuid="GPU-1", has_energy_counter=False)])
        sys.modules["pynvml"] = fake_pynvml  # type: ignore[assignment]
        rapl = RaplBackend.from_settings(settings(root))
        nvml = NvmlBackend.from_settings(settings(root))
        rapl_med, rapl_p95 = start_stop_us(rapl)
        nvml_med, nvml_p95 = start_stop_us(nvml)
        print("start+stop, warm process (median / p95 of 300):")
        print(f"  RAPL (fake tree, 4 zones)        {rapl_med:8.0f} µs / {rapl_p95:6.0f} µs  (goal < 1000 µs)")
        print(f"  NVML (fake, 2 GPUs)              {nvml_med:8.0f} µs / {nvml_p95:6.0f} µs  (goal < 1000 µs)")
        if not args.skip_codecarbon:
            cc_ms = codecarbon_start_stop_ms()
            print(f"  CodeCarbon OfflineEmissionsTracker {cc_ms:8.1f} ms (median of 3, construct+start+stop)")
            print(f"  ratio CodeCarbon / RAPL: {cc_ms * 1e3 / rapl_med:,.0f}x, / NVML: {cc_ms * 1e3 / nvml_med:,.0f}x")

        # Sampler cost: both backends sampling at the default measure_power_secs=1 for a whole run.
        cpu0 = rapl.sampler.cpu_s + nvml.sampler.cpu_s
        polls0 = rapl.meter.polls + nvml.meter.polls
        rapl.start()
        nvml.start()
        wall0 = time.monotonic()
        time.sleep(args.seconds)
        rapl.stop()
        nvml.stop()
        wall = time.monotonic() - wall0
        cpu = rapl.sampler.cpu_s + nvml.sampler.cpu_s - cpu0
        polls = rapl.meter.polls + nvml.meter.polls - polls0
        print(f"sampler CPU over a {wall:.0f} s run (RAPL + NVML, 1 s interval): {cpu * 1e3:.2f} ms "
              f"= {100 * cpu / wall:.4f}% of one core, {polls} polls (goal < 0.2%)")
    expected, got, wraps = exact_wraps()
    print(f"known trajectory with {wraps} wraparounds: expected {expected} µJ, recovered {got} µJ, "
          f"{'exact' if expected == got else 'MISMATCH'}")
    print("(shared 2-core machine: timings are noisy)")


if __name__ == "__main__":
    main()
