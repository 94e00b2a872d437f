"""CodeCarbon backend figures: start cost against LET 0.1.4, in-process reuse, added error.

    .venv/bin/python bench/bench_codecarbon.py [--reps 5] [--reporters default|none]

(1) whole-process wall time of a tracked empty experiment, LET (CodeCarbon backend only) against
    LET 0.1.4 (/tmp/let014venv), interleaved, median of --reps, ratio;
(2) a second tracker in the same process: start + stop cost (CodeCarbon's hardware probe reused);
(3) energy of one CPU-bound workload measured by LET's backend and by a plain
    OfflineEmissionsTracker: (a) both running over the same workload at once (pure added error),
    (b) one after the other, alternating (includes run-to-run noise of TDP x load mode).
Numbers on a shared 2-core machine are noisy; run it twice before trusting a ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LET014 = Path(os.environ.get("LET014_PYTHON", "/tmp/let014venv/bin/python"))

NEW = textwrap.dedent("""
    import sys
    from let_core.tracker import EnergyTracker
    reporters = None if sys.argv[2] == "default" else []
    with EnergyTracker(project_name="bench", output_dir=sys.argv[1], backends=["codecarbon"],
                       reporters=reporters):
        pass
""")
OLD = textwrap.dedent("""
    import sys
    from lamarr_energy_tracker import EnergyTracker
    with EnergyTracker(project_name="bench", output_dir=sys.argv[1]):
        pass
""")


def whole_process(python: Path | str, code: str, *args: str) -> float:
    # Bytecode caching on for both sides, as after any pip install (see bench_core.py).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([str(python), "-c", code, out, *args], check=True, cwd=out,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**env, "LET_LOAD_PLUGINS": ""})
        return time.perf_counter() - t0


def bench_start(reps: int, reporters: str) -> None:
    new, old = [], []
    for _ in range(reps):  # interleaved so that load from others hits both alike
        new.append(whole_process(sys.executable, NEW, reporters))
        if LET014.exists():
            old.append(whole_process(LET014, OLD))
    n = statistics.median(new)
    print(f"(1) tracked empty experiment, whole process, median of {reps} (reporters={reporters}):")
    print(f"    LET (codecarbon backend): {n:.3f} s   runs: {', '.join(f'{x:.2f}' for x in new)}")
    if old:
        o = statistics.median(old)
        print(f"    LET 0.1.4:                {o:.3f} s   runs: {', '.join(f'{x:.2f}' for x in old)}")
        print(f"    ratio new/old: {n / o:.2f}  ({(o - n) * 1000:+.0f} ms saved per process)")
    else:
        print(f"    LET 0.1.4 not found at {LET014}; set LET014_PYTHON")


def bench_second_tracker(reps: int) -> None:
    from let_core.tracker import EnergyTracker

    costs = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        tracker = EnergyTracker(project_name="bench", backends=["codecarbon"], reporters=[])
        tracker.start()
        tracker.stop()
        costs.append(time.perf_counter() - t0)
    first, rest = costs[0], costs[1:]
    print("(2) trackers in one process (construct + start + stop, reporters=[]):")
    print(f"    first: {first * 1000:.0f} ms; next {len(rest)}: median {statistics.median(rest) * 1000:.1f} ms"
          f" (max {max(rest) * 1000:.1f} ms)")


def workload(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        total += sum(i * i for i in range(5_000))


def plain_tracker():  # type: ignore[no-untyped-def]
    from codecarbon import OfflineEmissionsTracker
    from codecarbon.external.logger import set_logger_level

    set_logger_level("error")
    return OfflineEmissionsTracker(country_iso_code="DEU", measure_power_secs=1, output_methods=[],
                                   log_level="error", allow_multiple_runs=True)


def bench_energy(seconds: float, reps: int) -> None:
    from let_core.tracker import EnergyTracker

    print(f"(3) energy of a {seconds:.0f} s CPU-bound workload, LET's backend vs CodeCarbon alone:")
    # (a) both at once over the very same seconds.
    diffs = []
    for _ in range(reps):
        plain = plain_tracker()
        plain.start()
        with EnergyTracker(project_name="bench", backends=["codecarbon"], reporters=[]) as tracker:
            workload(seconds)
        plain.stop()
        let_kwh = tracker.last_result["energy_consumed"]
        cc_kwh = plain.final_emissions_data.energy_consumed
        diffs.append((let_kwh - cc_kwh) / cc_kwh)
    print(f"    (a) simultaneous: relative difference median {statistics.median(diffs) * 100:+.2f} %"
          f" (runs: {', '.join(f'{d * 100:+.2f}' for d in diffs)}) — LET's window is nested "
          "inside CodeCarbon's, so LET is slightly lower by construction")
    # (b) one after the other, alternating which goes first.
    lets, ccs = [], []
    for i in range(reps):
        order = ("let", "cc") if i % 2 == 0 else ("cc", "let")
        for who in order:
            if who == "let":
                with EnergyTracker(project_name="bench", backends=["codecarbon"], reporters=[]) as tracker:
                    workload(seconds)
                lets.append(tracker.last_result["energy_consumed"])
            else:
                plain = plain_tracker()
                plain.start()
                workload(seconds)
                plain.stop()
                ccs.append(plain.final_emissions_data.energy_consumed)
    let_m, cc_m = statistics.median(lets), statistics.median(ccs)
    print(f"    (b) alternating: LET {let_m * 3.6e6:.1f} J, CodeCarbon {cc_m * 3.6e6:.1f} J, "
          f"relative difference {(let_m - cc_m) / cc_m * 100:+.2f} % (medians of {reps})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reporters", choices=("default", "none"), default="default")
    args = parser.parse_args()
    os.environ.setdefault("LET_LOAD_PLUGINS", "")
    with tempfile.TemporaryDirectory() as home:
        os.environ["LET_HOME"] = home
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared: noisy)")
        bench_start(args.reps, args.reporters)
        bench_second_tracker(args.reps)
        bench_energy(args.seconds, max(3, args.reps // 2 + 1))


if __name__ == "__main__":
    main()
