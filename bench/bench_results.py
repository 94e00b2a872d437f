"""Result-set scale: load_results + statement over 1,000,000 runs (CSV store, Parquet dataset),
LET 0.1.4's load for comparison, Parquet append cost with 100k runs stored, and peak memory of
`lett results --by project`.

    .venv/bin/python bench/bench_results.py [--runs 1000000] [--let014 /tmp/let014venv/bin/python]

Wall-clock figures on a shared machine are noisy: each is the best of a few repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from let_core.schema import NUMERIC_COLUMNS, STORE_COLUMNS

sys.path.insert(0, str(Path(__file__).parent))
import let014  # noqa: E402  (LET 0.1.4's venv: one definition, bench/let014.py)


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    """n single-backend runs in the store's columns (LET 1.x rows, CodeCarbon-compatible)."""
    rng = np.random.default_rng(seed)
    projects = np.array([f"project-{i}" for i in range(20)])
    hosts = np.array([f"node{i:02d}" for i in range(50)])
    start = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s")
    energy = rng.uniform(1e-4, 1e-1, n)
    duration = rng.uniform(1, 3600, n)
    project = projects[rng.integers(0, len(projects), n)]
    host = hosts[rng.integers(0, len(hosts), n)]
    frame = pd.DataFrame({c: (np.full(n, np.nan) if c in NUMERIC_COLUMNS else np.full(n, "", dtype=object))
                          for c in STORE_COLUMNS})
    stamp = start.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    frame["timestamp"] = stamp
    frame["start_time"] = stamp
    frame["project_name"] = project
    frame["user"] = "alice"
    frame["hostname"] = host
    frame["experiment_id"] = pd.Series(project, dtype=object) + "___alice___" + pd.Series(host, dtype=object)
    frame["run_id"] = [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**63, n)]
    frame["duration"] = duration
    frame["energy_consumed"] = energy
    frame["emissions"] = energy * 0.380
    frame["carbon_intensity"] = 380.0
    frame["cpu_energy"] = energy * 0.7
    frame["ram_energy"] = energy * 0.3
    frame["country_name"] = "Germany"
    frame["country_iso_code"] = "DEU"
    frame["backend"] = "codecarbon"
    frame["methodology"] = "CodeCarbon 3.3.2"
    frame["kind"] = "estimate"
    frame["scope"] = "cpu+gpu+ram"
    frame["hardware"] = "Intel(R) Xeon(R) Gold 6248"
    frame["cpu_model"] = "Intel(R) Xeon(R) Gold 6248 @ 2.50GHz"
    frame["codecarbon_version"] = "3.3.2"
    frame["tracking_mode"] = "machine"
    frame["status"] = "ok"
    frame["let_version"] = "1.0.0"
    return frame


def write_csv_store(frame: pd.DataFrame, directory: Path) -> Path:
    """The store's CSV (minimal quoting, as csv.writer) through pyarrow for speed."""
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame[list(STORE_COLUMNS)], preserve_index=False)
    path = directory / "emissions.csv"
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))
    return path


def best(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


# Linux keeps the pre-exec high-water mark of a spawned child's address space, which is this
# (large) benchmark process's: the command is run from a small interpreter instead, which
# reports its child's peak.
_PEAK_WRAPPER = ("import resource, subprocess, sys; "
                 "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
                 "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def child_peak_rss(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process running ``command``."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, *command], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"{' '.join(command)} failed with exit code {out[0]}")
    return time.perf_counter() - t0, int(out[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--let014", default=str(let014.python()))
    args = parser.parse_args()
    from let_core import keys
    from let_core.dataset import compact, locate, write_frame, write_run
    from let_core.results import TOTALS_COLUMNS, frame_totals, load_results
    from let_core.statement import paper_statement, statement_from_totals

    work = Path(tempfile.mkdtemp(prefix="let-bench-results-"))
    os.environ.pop("LET_DATASET", None)
    try:
        t0 = time.perf_counter()
        frame = synthetic(args.runs)
        csv_dir = work / "csv"
        csv_path = write_csv_store(frame, csv_dir)
        ds_dir = work / "pq"
        ds_dir.mkdir()
        write_frame(locate(ds_dir / "runs"), frame)
        print(f"generated {args.runs:,} runs in {time.perf_counter() - t0:.1f} s: CSV "
              f"{csv_path.stat().st_size / 2**20:.0f} MiB, Parquet "
              f"{sum(p.stat().st_size for p in (ds_dir / 'runs').rglob('*.parquet')) / 2**20:.0f} MiB "
              f"in {len(list((ds_dir / 'runs').rglob('*.parquet')))} files")

        def load_and_state(source: Path, columns: object, **kwargs: object) -> tuple[int, str]:
            loaded = load_results(source, columns=columns, **kwargs)
            return len(loaded), statement_from_totals(frame_totals(loaded))

        none = str(work / "none")
        t_csv, loaded = best(lambda: load_results(csv_dir, dataset=none))
        assert len(loaded) == args.runs
        del loaded
        t_csv_proj, _ = best(lambda: load_results(csv_dir, dataset=none, columns=TOTALS_COLUMNS))
        t_csv_both, (rows, text_csv) = best(lambda: load_and_state(csv_dir, TOTALS_COLUMNS, dataset=none))
        t_stmt_cold, _ = best(lambda: paper_statement(csv_dir), repeats=1)
        t_stmt_warm, text = best(lambda: paper_statement(csv_dir))
        assert text_csv.split("kWh")[0] == text.split("kWh")[0], (text, text_csv)
        t_pq, loaded_pq = best(lambda: load_results(ds_dir))
        assert len(loaded_pq) == args.runs
        del loaded_pq
        t_pq_proj, projected = best(lambda: load_results(ds_dir, columns=TOTALS_COLUMNS))
        keys._last = None  # the statement alone, without the run-id codes load_results just made
        t_pq_stmt, text_pq = best(lambda: statement_from_totals(frame_totals(projected)), repeats=1)  # noqa: F821 - run before the del below
        del projected
        t_pq_both, (rows, text_pq) = best(lambda: load_and_state(ds_dir, TOTALS_COLUMNS), repeats=5)
        assert rows == args.runs and text_pq.split("kWh")[0] == text.split("kWh")[0], (text, text_pq)
        t_proj, one = best(lambda: load_results(ds_dir, project_name="project-3", columns=TOTALS_COLUMNS))
        # With the parquet reporter on, the CSV store and the dataset hold the same runs.
        t_both_sources, (rows, _) = best(lambda: load_and_state(csv_dir, TOTALS_COLUMNS,
                                                               dataset=str(ds_dir / "runs")))
        assert rows == args.runs
        print(f"\nCSV store, {args.runs:,} rows (pyarrow's CSV parse is most of it):")
        print(f"  load_results, all columns:                       {t_csv:6.3f} s")
        print(f"  load_results, the statement's columns:           {t_csv_proj:6.3f} s")
        print(f"  load_results(columns=TOTALS_COLUMNS) + statement: {t_csv_both:6.3f} s  (target < 1 s)")
        print(f"  paper_statement (totals cache cold / warm):      {t_stmt_cold:6.3f} s / {t_stmt_warm:.4f} s")
        print(f"Parquet dataset, {args.runs:,} rows:")
        print(f"  load_results, all columns:                       {t_pq:6.3f} s")
        print(f"  load_results, the statement's columns:           {t_pq_proj:6.3f} s")
        print(f"  statement from that frame (frame_totals), alone: {t_pq_stmt:6.3f} s")
        print(f"  load_results(columns=TOTALS_COLUMNS) + statement: {t_pq_both:6.3f} s  (target < 0.3 s)")
        print(f"  one project ({len(one):,} rows, partition pruning):  {t_proj:6.3f} s")
        print(f"CSV store + dataset holding the same {args.runs:,} runs (2x the rows, deduplicated):")
        print(f"  load_results(columns=TOTALS_COLUMNS) + statement: {t_both_sources:6.3f} s")
        del one

        if Path(args.let014).exists():
            legacy_dir = work / "let014"
            legacy_dir.mkdir()
            legacy = frame[[c for c in STORE_COLUMNS[:34]]].copy()
            legacy["project_name"] = "codecarbon"
            pacsv.write_csv(pa.Table.from_pandas(legacy, preserve_index=False), legacy_dir / "emissions.csv",
                            write_options=pacsv.WriteOptions(quoting_style="needed"))
            code = ("import time,sys; from lamarr_energy_tracker.print_paper_statement import load_results;"
                    "ts=[]\nfor _ in range(3):\n t=time.perf_counter(); r=load_results(sys.argv[1]);"
                    " ts.append(time.perf_counter()-t)\nprint(min(ts), len(r))")
            # cwd elsewhere: from this checkout, `-c` would import our own lamarr_energy_tracker.
            out = subprocess.run([args.let014, "-c", code, str(legacy_dir)], capture_output=True, text=True,
                                 check=True, cwd=work).stdout.split()
            t014 = float(out[0])
            t_ours_legacy, _ = best(lambda: load_results(legacy_dir, dataset=str(work / "none")))
            print(f"\nLET 0.1.4 load_results, {int(out[1]):,} CodeCarbon rows:   {t014:6.3f} s")
            print(f"LET 1.x   load_results, same 0.1.x file:          {t_ours_legacy:6.3f} s "
                  f"({t014 / t_ours_legacy:.1f}x faster)")
            print(f"LET 1.x   load_results, its own CSV store:        {t_csv:6.3f} s ({t014 / t_csv:.1f}x faster), "
                  f"Parquet {t_pq:.3f} s ({t014 / t_pq:.1f}x faster)")
            print(f"LET 1.x   load + statement, CSV / Parquet:        {t_csv_both:6.3f} s / {t_pq_both:.3f} s "
                  f"({t014 / t_csv_both:.1f}x / {t014 / t_pq_both:.1f}x faster than 0.1.4's load alone)")

        # Parquet append with 100k runs stored: 100k runs compacted + 2,000 one-run files.
        append_dir = work / "append"
        location = locate(append_dir)
        stored = min(100_000, args.runs)
        write_frame(location, frame.iloc[:stored])
        rows = frame.iloc[:2000].to_dict(orient="records")
        rows = [{**r, "run_id": str(uuid.uuid4()), "project_name": "project-1",
                 "start_time": "2026-06-01T00:00:00+00:00"} for r in rows]
        timings = []
        for _i, row in enumerate(rows):
            t = time.perf_counter()
            write_run(location, [row])
            timings.append(time.perf_counter() - t)
        first, last = timings[:200], timings[-200:]
        print(f"\nParquet append, {stored:,} runs stored: median {statistics.median(first) * 1000:.1f} ms for the "
              f"first 200 appends, {statistics.median(last) * 1000:.1f} ms for appends 1,800-2,000 "
              f"(p95 {np.percentile(last, 95) * 1000:.1f} ms); target < 20 ms, constant")
        t_compact, report = best(lambda: compact(location), repeats=1)
        print(f"lett compact: {report.files_before} files -> {report.files_after} in {t_compact:.2f} s")

        env = {**os.environ, "LET_LOAD_PLUGINS": "", "LET_HOME": str(work / "home")}
        size = csv_path.stat().st_size / 2**20
        pq_size = sum(p.stat().st_size for p in (ds_dir / "runs").rglob("*.parquet")) / 2**20
        print(f"\n`lett results --by project`, {args.runs:,} runs, peak RSS of a fresh process:")
        (work / "empty").mkdir()
        _, baseline = child_peak_rss([sys.executable, "-m", "let_core.cli", "results", "--by", "project",
                                      "--output-dir", str(work / "empty"), "--dataset", str(work / "none")], env)
        print(f"  (an empty store: {baseline:.0f} MiB, the interpreter with pandas and pyarrow)")
        for label, source, dataset, data in (("CSV store", csv_dir, work / "none", size),
                                             ("Parquet dataset", work / "none", ds_dir / "runs", pq_size)):
            wall, peak = child_peak_rss([sys.executable, "-m", "let_core.cli", "results", "--by", "project",
                                         "--output-dir", str(source), "--dataset", str(dataset)], env)
            print(f"  {label:16s} ({data:4.0f} MiB): {peak:5.0f} MiB = {peak / size:.1f}x the CSV's size"
                  f"{'' if source == csv_dir else f', {peak / data:.1f}x the Parquet files'}; "
                  f"{wall:.1f} s wall incl. interpreter start (target <= 3x the data)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
