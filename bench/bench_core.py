"""Issue 2 figures: tracking overhead vs LET 0.1.4, store append / load / statement at 1M rows.

Run: .venv/bin/python bench/bench_core.py [--rows 1000000] [--let014 /tmp/let014venv/bin/python]
LET 0.1.4 runs in its own venv (`python -m bench.let014` creates it). Prints medians; nothing here
is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import let014  # noqa: E402  (LET 0.1.4's venv: one definition, bench/let014.py)
from _store_fixture import build_store, sample_run  # noqa: E402

LET_RUN = """
import lamarr_energy_tracker
from let_backends.manual import ManualBackend
tracker = lamarr_energy_tracker.EnergyTracker(project_name="bench", output_dir={out!r},
                                              backends=[ManualBackend(power_watts=100)])
tracker.start()
tracker.stop()
"""

# LET 0.1.4's default stop() prints its statement, which raises KeyError('gpu_model') on machines
# without a GPU (like this one), so it runs with print_summary=False: its cheapest complete run.
LET014_RUN = """
from lamarr_energy_tracker import EnergyTracker
tracker = EnergyTracker(project_name="bench", output_dir={out!r})
tracker.start()
tracker.stop(print_summary=False)
"""


def whole_process(python: str, code: str, repeat: int) -> float:
    """Median wall time of a fresh process, after one untimed warm-up run.

    Bytecode caching is on for both sides (as after any pip install): with
    PYTHONDONTWRITEBYTECODE set, an editable install would recompile every module each run.
    """
    times = []
    for attempt in range(repeat + 1):
        with tempfile.TemporaryDirectory() as out:
            env = {**os.environ, "LET_HOME": out, "LET_LOAD_PLUGINS": ""}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            t0 = time.perf_counter()
            done = subprocess.run([python, "-c", code.format(out=out)], env=env, cwd=out,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            elapsed = time.perf_counter() - t0
            if done.returncode != 0:
                # CodeCarbon 3.x refuses to start while another process holds its lock file.
                print(f"  (a run failed and is not counted: {done.stderr.strip().splitlines()[-1:]})")
                continue
            if attempt:
                times.append(elapsed)
    return statistics.median(times)


def median_ms(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--let014", default=str(let014.python()))
    args = parser.parse_args()

    ours = whole_process(sys.executable, LET_RUN, args.repeat)
    print("tracking overhead, whole process (import + tracker + start + stop + store append + statement):")
    print(f"  LET 1.x manual backend        {ours * 1000:8.1f} ms")
    if Path(args.let014).exists():
        theirs = whole_process(args.let014, LET014_RUN, args.repeat)
        print(f"  LET 0.1.4 default (CodeCarbon) {theirs * 1000:8.1f} ms   ratio {theirs / ours:5.1f}x less wall time")

    import io

    from let_core import Store, load_results
    from let_core._version import __version__
    from let_core.statement import paper_statement
    from let_core.tracker import EnergyTracker
    from let_reporters.statement import StatementReporter

    with tempfile.TemporaryDirectory() as tmp:
        for rows in sorted({1_000, 100_000, args.rows}):
            folder = Path(tmp) / f"store{rows}"
            build_store(folder, rows)
            store = Store(folder)
            append = median_ms(lambda: store.append(sample_run().rows(__version__)), 50)  # noqa: B023 - called at once
            print(f"append one run with {rows:>9,} rows stored: {append:6.2f} ms (median of 50, incl. fsync)")
        folder = Path(tmp) / f"store{args.rows}"
        size_mb = (folder / "emissions.csv").stat().st_size / 1e6
        t0 = time.perf_counter()
        load_results(Path(tmp) / "store1000")
        print(f"first load_results in a process (imports pandas + pyarrow), 1,000 rows: "
              f"{time.perf_counter() - t0:6.2f} s")
        from let_core.results.counting import TOTALS_COLUMNS

        for label, columns in (("all columns", None), ("the statement's columns", TOTALS_COLUMNS)):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                frame = load_results(folder, columns=columns)
                times.append(time.perf_counter() - t0)
                rows = len(frame)
                del frame
            print(f"load_results over {rows:,} rows ({size_mb:.0f} MB), {label}: "
                  f"{statistics.median(times):6.2f} s (median of 3)")
        t0 = time.perf_counter()
        paper_statement(folder, project_name="project-1")
        print(f"first statement (builds the totals cache once): {time.perf_counter() - t0:6.2f} s")
        tracker = EnergyTracker(project_name="project-1", output_dir=folder, backends=[
            __import__("let_backends.manual", fromlist=["ManualBackend"]).ManualBackend(power_watts=100)])
        tracker.reporters = [r if r.name != "statement" else StatementReporter(tracker.settings, io.StringIO())
                             for r in tracker.reporters]

        def tracked_run() -> None:
            tracker.start()
            tracker.stop()

        stop_ms = median_ms(tracked_run, 20)
        print(f"start+stop with csv + statement reporters, {args.rows:,} rows stored: {stop_ms:6.2f} ms (median of 20)")


if __name__ == "__main__":
    main()
