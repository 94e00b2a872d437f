"""`lett statement` over a large store with no totals cache, and Parquet load + statement.

    PYTHONPATH=. python bench/bench_statement.py --runs 1000000

Run it with another checkout first on PYTHONPATH to compare (before/after). Medians of 5:
the cold statement is a fresh `python -m let_core statement` process each time, every totals
cache removed before it; the Parquet figure is `load_results(dataset, columns=TOTALS_COLUMNS)`
plus the statement from that frame, in one process.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _store_fixture import build_store  # noqa: E402


def _clear_caches(store: Path, home: Path) -> None:
    for path in [store / ".emissions.totals.json", *home.glob("cache/totals-*")]:
        path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="let-bench-statement-"))
    home = work / "home"
    os.environ["LET_HOME"] = str(home)
    os.environ["LET_LOAD_PLUGINS"] = ""
    try:
        store = work / "store"
        t0 = time.perf_counter()
        build_store(store, args.runs)
        print(f"built {args.runs:,} runs ({(store / 'emissions.csv').stat().st_size / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - t0:.1f} s")
        env = dict(os.environ)  # the checkout under test comes first on PYTHONPATH
        cold = []
        text = ""
        for _ in range(args.repeat):
            _clear_caches(store, home)
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "let_core", "statement", "--output-dir", str(store)],
                                  env=env, capture_output=True, text=True)
            cold.append(time.perf_counter() - t0)
            if done.returncode:
                raise SystemExit(done.stderr)
            text = done.stdout
        print(f"lett statement, {args.runs:,} runs, no totals cache: median {statistics.median(cold):.3f} s "
              f"(of {args.repeat}: {', '.join(f'{t:.2f}' for t in cold)})")
        print("  " + text.split(". ")[0][:160])

        import pandas as pd  # noqa: F401  (imported before timing, as in a notebook)

        from let_core.dataset import locate, write_frame
        from let_core.results.counting import TOTALS_COLUMNS, frame_totals
        from let_core.statement import statement_from_totals

        try:
            from let_core.results import load_results
        except ImportError:  # before the read side moved
            from let_core import load_results  # type: ignore[no-redef]
        frame = load_results(store, dataset=str(work / "none"))
        dataset = work / "dataset"
        write_frame(locate(dataset), frame)
        del frame
        parquet = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            loaded = load_results(str(work / "empty"), dataset=str(dataset), columns=TOTALS_COLUMNS)
            parquet_text = statement_from_totals(frame_totals(loaded))
            parquet.append(time.perf_counter() - t0)
            del loaded
        print(f"Parquet load_results(columns=TOTALS_COLUMNS) + statement, {args.runs:,} runs: "
              f"median {statistics.median(parquet):.3f} s (of {args.repeat}: "
              f"{', '.join(f'{t:.2f}' for t in parquet)})")
        print("  " + parquet_text.split(". ")[0][:160])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
