"""Every speed figure of LET in one run and one Markdown table: ``python -m bench``.

    python -m bench [--reps 7] [--work-seconds 20] [--let014 /tmp/let014venv/bin/python]

Like for like first (LET's default backends against LET 0.1.4's default, and LET's CodeCarbon
backend against CodeCarbon alone), then the framework alone (manual backend) as its own rows.
Every figure is the median of interleaved runs (so load from other processes hits both sides
alike), in fresh processes where the figure is about a process; bytecode caching is on for both
sides and the environment is the default one (no LET_LOAD_PLUGINS override). LET 0.1.4 runs with
its own default ``stop()``, which prints its summary; where it fails, the table says so.
Sized to finish in about five minutes on a 2-core machine (``--work-seconds 5`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import let014 as let014_setup

# The LET tree under test: this checkout, or LET_BENCH_ROOT (to measure another checkout, e.g. main).
ROOT = Path(os.environ.get("LET_BENCH_ROOT") or Path(__file__).resolve().parents[1])

LET_DEFAULT = """
from let_core.tracker import EnergyTracker
with EnergyTracker(project_name="bench"):
    pass
"""
LET_MANUAL = """
from let_core.tracker import EnergyTracker
from let_backends.manual import ManualBackend
with EnergyTracker(project_name="bench", backends=[ManualBackend(power_watts=100)]):
    pass
"""
LET014_DEFAULT = """
from lamarr_energy_tracker import EnergyTracker
tracker = EnergyTracker(project_name="bench")
tracker.start()
tracker.stop()
"""
CODECARBON_ALONE = """
from codecarbon import OfflineEmissionsTracker
tracker = OfflineEmissionsTracker(country_iso_code="DEU", log_level="error", allow_multiple_runs=True)
tracker.start()
tracker.stop()
"""
PEAK_RSS = "\nimport resource\nprint('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"

# A CPU-bound workload of a fixed number of iterations, run untracked, under LET's default
# backends, or under CodeCarbon alone; the sampler's CPU is the process's CPU time minus the
# main thread's, between start and just before stop.
WORKLOAD = textwrap.dedent("""
    import contextlib, io, json, resource, sys, time
    mode, iterations, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    def work(n):
        total = 0
        for i in range(n):
            total += i * i % 7
        return total

    trackers = []
    if mode in ("let", "both"):
        from let_core.tracker import EnergyTracker
        backends = None if mode == "let" else ["codecarbon"]
        trackers.append(("let", EnergyTracker(project_name="bench", measure_power_secs=interval,
                                             backends=backends)))
    if mode in ("codecarbon", "both"):
        from codecarbon import OfflineEmissionsTracker
        trackers.append(("codecarbon", OfflineEmissionsTracker(
            country_iso_code="DEU", measure_power_secs=interval, log_level="error",
            allow_multiple_runs=True)))
    for _, tracker in trackers:
        tracker.start()
    cpu0, main0 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    t0 = time.perf_counter()
    work(iterations)
    wall = time.perf_counter() - t0
    cpu1, main1 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
    energy = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for name, tracker in trackers:
            result = tracker.stop()
            energy[name] = (result["measurements"]["codecarbon"]["energy_consumed"] if name == "let"
                            else tracker.final_emissions_data.energy_consumed)
    process = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print("RESULT", json.dumps({"wall": wall, "sampler_cpu": process - (main1 - main0), "energy": energy}))
""")

# Restarting one tracker, and a second tracker in one process: in-process timings.
IN_PROCESS = textwrap.dedent("""
    import contextlib, io, json, statistics, sys, time
    what, reps = sys.argv[1], int(sys.argv[2])

    def timed(fn):
        fn()  # the first one pays the hardware probe: not this figure
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    with contextlib.redirect_stdout(io.StringIO()):
        if what == "let-restart":
            from let_core.tracker import EnergyTracker
            tracker = EnergyTracker(project_name="bench", backends=["codecarbon"], reporters=[])
            ms = timed(lambda: (tracker.start(), tracker.stop()))
        elif what == "codecarbon-restart":
            from codecarbon import OfflineEmissionsTracker
            tracker = OfflineEmissionsTracker(country_iso_code="DEU", log_level="error",
                                              allow_multiple_runs=True, save_to_file=False)
            ms = timed(lambda: (tracker.start(), tracker.stop()))
        elif what == "codecarbon-new":
            from codecarbon import OfflineEmissionsTracker

            def run():
                tracker = OfflineEmissionsTracker(country_iso_code="DEU", log_level="error",
                                                  allow_multiple_runs=True, save_to_file=False)
                tracker.start()
                tracker.stop()
            ms = timed(run)
        elif what == "let-second":
            from let_core.tracker import EnergyTracker

            def run():
                with EnergyTracker(project_name="bench"):
                    pass
            ms = timed(run)
    print("RESULT", json.dumps(ms))
""")


SCRATCH_HOME = tempfile.mkdtemp(prefix="let-bench-home-")


# The counter backends on a fake powercap tree and the fake pynvml (LET's own overhead; see
# bench/bench_native.py): start+stop in a warm process, and the sampler's CPU at 1 s.
NATIVE = textwrap.dedent("""
    import json, sys, tempfile, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from bench.bench_native import settings, start_stop_us
    from tests.fakes import pynvml as fake_pynvml
    from tests.fakes.powercap import server_tree
    seconds = float(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server_tree(root / "powercap")
        fake_pynvml.reset([fake_pynvml.FakeGpu(), fake_pynvml.FakeGpu(uuid="GPU-1", has_energy_counter=False)])
        sys.modules["pynvml"] = fake_pynvml
        from let_backends.nvml import NvmlBackend
        from let_backends.rapl import RaplBackend
        rapl, nvml = RaplBackend.from_settings(settings(root)), NvmlBackend.from_settings(settings(root))
        rapl_us, _ = start_stop_us(rapl)
        nvml_us, _ = start_stop_us(nvml)
        cpu0 = rapl.sampler.cpu_s + nvml.sampler.cpu_s
        rapl.start(); nvml.start()
        t0 = time.monotonic()
        time.sleep(seconds)
        rapl.stop(); nvml.stop()
        wall = time.monotonic() - t0
        cpu = rapl.sampler.cpu_s + nvml.sampler.cpu_s - cpu0
    print("RESULT", json.dumps({"rapl_us": rapl_us, "nvml_us": nvml_us, "sampler_share": cpu / wall}))
""")


def _env(let_home: str | None = None, tree: bool = True) -> dict[str, str]:
    """The default environment (bytecode caching on, no LET_* overrides), with the LET tree under
    test first on the path (``tree=False`` for LET 0.1.4, which must import its own package)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "LET_LOAD_PLUGINS", "LET_BACKENDS", "LET_REPORTERS",
                        "PYTHONPATH")}
    env["HOME"] = SCRATCH_HOME  # LET 0.1.4 writes ~/.let/emissions.csv: never the user's
    if tree:
        env["PYTHONPATH"] = str(ROOT)
    if let_home is not None:
        env["LET_HOME"] = let_home
    return env


class Failed(Exception):
    pass


def run_process(python: str, code: str, *args: str, env: dict[str, str], cwd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([python, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Failed(f"exit {done.returncode}: {last}")
    return elapsed, done.stdout


def result_of(stdout: str, tag: str = "RESULT") -> Any:
    for line in stdout.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line.split(" ", 1)[1])
    raise Failed(f"no {tag} line in the output")


Row = tuple[str, str, str, str, int]  # figure, LET, baseline, ratio, runs


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def median_or(values: list[float], failures: list[str]) -> float | None:
    return statistics.median(values) if values else None


def statement_rows(python: str, runs: int, notes: list[str]) -> list[Row]:
    """bench_statement.py's two medians (its own process, so its 1M-run store and imports do
    not weigh on the rows above) as rows of this table, against the goals of issue 9."""
    import re

    script = Path(__file__).with_name("bench_statement.py")
    done = subprocess.run([python, str(script), "--runs", str(runs), "--repeat", "5"],
                          env=_env(), capture_output=True, text=True)
    if done.returncode:
        notes.append(f"bench_statement.py failed: {done.stderr.strip().splitlines()[-1:]}")
        return []
    found = dict(re.findall(r"^(lett statement|Parquet load_results)[^\n]*?median ([0-9.]+) s",
                            done.stdout, flags=re.M))
    rows: list[Row] = []
    if "lett statement" in found:
        rows.append((f"`lett statement` over {runs:,} stored runs, no totals cache, whole process",
                     f"{float(found['lett statement']):.2f} s", "goal < 1 s", "-", 5))
    if "Parquet load_results" in found:
        rows.append((f"Parquet dataset: load_results(columns=TOTALS_COLUMNS) + statement, {runs:,} runs, "
                     "in process", f"{float(found['Parquet load_results']):.2f} s", "goal < 0.3 s", "-", 5))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="runs per side for process figures")
    parser.add_argument("--work-seconds", type=float, default=20.0, help="length of the CPU workload")
    parser.add_argument("--work-reps", type=int, default=3, help="runs per side of the CPU workload")
    parser.add_argument("--let014", default=str(let014_setup.python()))
    parser.add_argument("--statement-runs", type=int, default=1_000_000,
                        help="stored runs for the read-side rows (bench_statement.py); 0 skips them")
    args = parser.parse_args(argv)
    python = sys.executable
    let014 = Path(args.let014)
    problem = let014_setup.ensure(let014)
    rows: list[Row] = []
    notes: list[str] = []
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as scratch:
        warm_home = os.path.join(scratch, "warm-home")
        cwd = os.path.join(scratch, "cwd")
        os.makedirs(cwd)
        # Warm the plan and entry-point caches once, as any earlier run on this machine would.
        run_process(python, LET_DEFAULT, env=_env(warm_home), cwd=cwd)

        # --- whole-process runs, interleaved: LET warm, LET cold, LET manual, LET 0.1.4 --------
        warm, cold, manual, old, let_rss, cc_rss = [], [], [], [], [], []  # noqa: F841
        old_failures: list[str] = []
        for i in range(args.reps):
            warm.append(run_process(python, LET_DEFAULT, env=_env(warm_home), cwd=cwd)[0])
            cold_home = os.path.join(scratch, f"cold-{i}")
            cold.append(run_process(python, LET_DEFAULT, env=_env(cold_home), cwd=cwd)[0])
            manual.append(run_process(python, LET_MANUAL, env=_env(warm_home), cwd=cwd)[0])
            if let014.exists():
                try:
                    old.append(run_process(str(let014), LET014_DEFAULT, env=_env(None, tree=False), cwd=cwd)[0])
                except Failed as exc:
                    old_failures.append(str(exc))
            if i < 5:
                let_rss.append(result_of(run_process(python, LET_DEFAULT + PEAK_RSS, env=_env(warm_home),
                                                     cwd=cwd)[1], "PEAK_RSS_KIB") / 1024)
                cc_rss.append(result_of(run_process(python, CODECARBON_ALONE + PEAK_RSS, env=_env(warm_home),
                                                    cwd=cwd)[1], "PEAK_RSS_KIB") / 1024)
        o = statistics.median(old) if old else None
        base = fmt_ms(o) if o else ("LET 0.1.4 failed: " + old_failures[0] if old_failures
                                    else f"LET 0.1.4 missing: {problem or let014}")
        for label, values in (
                ("tracked empty run, whole process, default backends, 2nd+ process (plan cached) "
                 "vs LET 0.1.4 default", warm),
                ("same, first process on a machine (cold plan) vs LET 0.1.4 default", cold)):
            m = statistics.median(values)
            rows.append((label, fmt_ms(m), base, f"{o / m:.2f}x faster" if o else "-", len(values)))
        if old_failures:
            notes.append(f"LET 0.1.4 failed in {len(old_failures)} of {args.reps} runs: {old_failures[0]}")
        l_rss, c_rss = statistics.median(let_rss), statistics.median(cc_rss)
        rows.append(("peak RSS, tracked empty run, default backends vs CodeCarbon alone "
                     "(OfflineEmissionsTracker, its defaults)", f"{l_rss:.0f} MiB", f"{c_rss:.0f} MiB",
                     f"{l_rss - c_rss:+.0f} MiB", len(let_rss)))

        # --- in-process figures ------------------------------------------------------------
        def in_process(what: str, reps: int = 30) -> float:
            return result_of(run_process(python, IN_PROCESS, what, str(reps), env=_env(warm_home), cwd=cwd)[1])

        restart, cc_restart, cc_new, second = [], [], [], []
        for _ in range(3):
            restart.append(in_process("let-restart"))
            cc_restart.append(in_process("codecarbon-restart"))
            cc_new.append(in_process("codecarbon-new"))
            second.append(in_process("let-second", 20))
        r, cr, cn = statistics.median(restart), statistics.median(cc_restart), statistics.median(cc_new)
        rows.append(("restart one tracker, CodeCarbon backend (start+stop again) vs CodeCarbon "
                     "restarting its own tracker", f"{r:.2f} ms", f"{cr:.2f} ms", f"{cr / r:.2f}x", 3))
        rows.append(("same vs a new CodeCarbon tracker per run", f"{r:.2f} ms", f"{cn:.2f} ms",
                     f"{cn / r:.2f}x", 3))
        notes.append("CodeCarbon 3.3's own restart (start() after stop()) runs no sampler and keeps "
                     "adding to the previous run's totals; a new tracker per run is its correct way.")
        s = statistics.median(second)
        rows.append(("second tracker in one process, default backends (start+stop, store, statement) "
                     "vs a new CodeCarbon tracker", f"{s:.2f} ms", f"{cn:.2f} ms", f"{cn / s:.2f}x", 3))

        # --- CPU-bound workload: slowdown, sampler CPU, energy -------------------------------
        t0 = time.perf_counter()
        subprocess.run([python, "-c", WORKLOAD, "none", "2000000", "1"], env=_env(warm_home), cwd=cwd,
                       capture_output=True, check=True)
        per_iter = (time.perf_counter() - t0 - 0.05) / 2_000_000
        iterations = str(max(100_000, int(args.work_seconds / max(per_iter, 1e-9))))
        results: dict[str, list[dict[str, Any]]] = {"none": [], "let": [], "codecarbon": [], "both": []}
        for _ in range(args.work_reps):
            for mode in ("none", "let", "codecarbon", "both"):
                out = run_process(python, WORKLOAD, mode, iterations, "1", env=_env(warm_home), cwd=cwd)[1]
                results[mode].append(result_of(out))
        wall = {m: statistics.median(r["wall"] for r in v) for m, v in results.items()}
        cpu = {m: statistics.median(r["sampler_cpu"] for r in v) for m, v in results.items()}
        ratio = statistics.median(r["energy"]["let"] / r["energy"]["codecarbon"] for r in results["both"])
        n = args.work_reps
        rows.append((f"workload slowdown under tracking, {wall['none']:.0f} s CPU loop, vs untracked",
                     f"{(wall['let'] / wall['none'] - 1) * 100:+.2f} %", "0 %", "-", n))
        rows.append(("same, LET default backends vs CodeCarbon alone",
                     f"{(wall['let'] / wall['none'] - 1) * 100:+.2f} %",
                     f"{(wall['codecarbon'] / wall['none'] - 1) * 100:+.2f} %", "-", n))
        rows.append(("tracker-thread CPU over that loop, 1 s interval, vs CodeCarbon alone",
                     f"{cpu['let'] * 1000:.0f} ms", f"{cpu['codecarbon'] * 1000:.0f} ms",
                     f"{cpu['codecarbon'] / cpu['let']:.2f}x" if cpu["let"] > 0 else "-", n))
        rows.append(("energy of one workload, LET's CodeCarbon backend / CodeCarbon alone, same run",
                     f"{ratio:.4f}", "1", f"{(ratio - 1) * 100:+.2f} %", n))

        # --- counter backends (metered), LET's own overhead -----------------------------------
        native = [result_of(run_process(python, NATIVE, str(ROOT), "10", env=_env(warm_home), cwd=cwd)[1])
                  for _ in range(3)]
        for key, label in (("rapl_us", "RAPL (fake powercap tree, 4 zones)"),
                           ("nvml_us", "NVML (fake pynvml, 2 GPUs)")):
            us = statistics.median(n[key] for n in native)
            rows.append((f"start+stop of the {label} backend, warm process, median of 300 "
                         "vs a new CodeCarbon tracker", f"{us:.0f} µs", f"{cn:.2f} ms",
                         f"{cn * 1000 / us:.0f}x", 3))
        share = statistics.median(n["sampler_share"] for n in native)
        rows.append(("sampler CPU of RAPL + NVML together, 1 s interval, 10 s run, share of one core",
                     f"{share * 100:.3f} %", "-", "-", 3))

        # --- the framework alone ------------------------------------------------------------
        m = statistics.median(manual)
        rows.append(("framework alone: tracked empty run, whole process, manual backend, "
                     "entry-point plugins on (default) vs LET 0.1.4 default",
                     fmt_ms(m), base, f"{o / m:.2f}x faster" if o else "-", len(manual)))
        floor = statistics.median(run_process(python, "pass", env=_env(warm_home), cwd=cwd)[0] for _ in range(5))
        notes.append(f"the interpreter alone (python -c pass) takes {fmt_ms(floor)} here.")

        # --- the read side: the statement over a large store ---------------------------------
        if args.statement_runs:
            rows.extend(statement_rows(python, args.statement_runs, notes))

    shutil.rmtree(SCRATCH_HOME, ignore_errors=True)
    print(f"LET speed figures, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}: "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; medians of interleaved runs; took "
          f"{time.perf_counter() - started:.0f} s.\n")
    print("| figure | LET | baseline | ratio | runs | statistic |")
    print("|---|---|---|---|---|---|")
    for figure, ours, theirs, rel, runs in rows:
        print(f"| {figure} | {ours} | {theirs} | {rel} | {runs} | median |")
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
