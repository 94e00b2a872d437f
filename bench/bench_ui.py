"""`lett ui` over a large store: a real `lett ui` process, timed over HTTP and in headless Chromium.

Run: .venv/bin/python bench/bench_ui.py [--rows 1000000] [--repeats 5] [--no-browser]

Figures (medians of --repeats; nothing is asserted, goals: first page < 1 s, filter change < 300 ms):
- start: process start until the store is loaded and the server answers (paid once);
- runs page (HTTP): the runs page's requests (HTML, app.js, uPlot, /api/choices, /api/runs);
- overview (HTTP): the landing page's aggregate, unfiltered (computed in the background at
  start, as the unfiltered project view) and for a project not asked before;
- filter change (HTTP): /api/runs with another project each time (never served from a cache);
- project view / statement (HTTP): /api/summary and /api/statement of a project not asked before;
  the unfiltered project view (computed in the background at start) and one over every run
  through a filter never asked before (the cold cost of aggregating all runs);
- runs page / filter change (browser): navigation until the table is drawn, and choosing another
  project in the filter until the table is redrawn, in headless Chromium (if installed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).parent))

from _store_fixture import build_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def ok(response: requests.Response) -> requests.Response:
    response.raise_for_status()
    return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    projects = max(args.repeats * 3, 10)

    with tempfile.TemporaryDirectory(prefix="let-bench-ui-") as tmp:
        store = Path(tmp) / "store"
        t = timed(lambda: build_store(store, args.rows, projects=projects))
        size = (store / "emissions.csv").stat().st_size / 1e6
        print(f"store: {args.rows:,} rows, {projects} projects, {size:.0f} MB (built in {t:.1f} s)")
        port = _port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "let_core", "ui", "--output-dir", str(store),
                                 "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if requests.get(url + "/api/choices", timeout=120).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.05)
                if proc.poll() is not None:
                    raise SystemExit(f"lett ui exited with {proc.returncode}")
            start_s = time.perf_counter() - t0
            print(f"start (load {args.rows:,} rows, index, first answer): {start_s:.2f} s")

            session = requests.Session()

            def first_page() -> None:
                for path in ("/runs", "/static/app.js", "/static/vendor/uPlot.iife.min.js", "/api/choices"):
                    ok(session.get(url + path))
                ok(session.get(url + "/api/runs"))

            report("runs page (HTTP)", [timed(first_page) for _ in range(args.repeats)], 1.0)
            report("overview, no filter (HTTP)",  # the landing page, computed in the background at start
                   [timed(lambda: ok(session.get(url + "/api/overview"))) for _ in range(args.repeats)], None)
            names = [f"project-{i}" for i in range(projects)]
            report("filter change (HTTP)", [timed(lambda p=p: ok(session.get(url + "/api/runs", params={"project": p})))
                                            for p in names[: args.repeats]], 0.3)
            report("sort change (HTTP)", [timed(lambda s=s: ok(session.get(url + "/api/runs", params={"sort": s})))
                                          for s in ("energy_consumed", "duration", "hostname", "emissions",
                                                    "project_name")[: args.repeats]], 0.3)
            report("overview, new filter (HTTP)",
                   [timed(lambda p=p: ok(session.get(url + "/api/overview", params={"project": p})))
                    for p in names[: args.repeats]], None)
            report("project view, new filter (HTTP)",
                   [timed(lambda p=p: ok(session.get(url + "/api/summary", params={"project": p})))
                    for p in names[args.repeats: 2 * args.repeats]], None)
            report("project view, no filter (HTTP)",  # computed in the background at start
                   [timed(lambda: ok(session.get(url + "/api/summary"))) for _ in range(args.repeats)], None)
            report("project view, every run, cold (HTTP)",
                   [timed(lambda: ok(session.get(url + "/api/summary", params={"user": "alice"})))], None)
            report("statement, new filter (HTTP)",
                   [timed(lambda p=p: ok(session.get(url + "/api/statement", params={"project": p})))
                    for p in names[2 * args.repeats: 3 * args.repeats]], None)
            if not args.no_browser:
                browser(url, names, args.repeats)
        finally:
            proc.terminate()
            proc.wait(30)


def report(name: str, seconds: list[float], goal: float | None) -> None:
    median = statistics.median(seconds)
    verdict = "" if goal is None else (f"  (goal < {goal * 1000:.0f} ms: {'met' if median < goal else 'NOT met'})")
    print(f"{name:<36} median {median * 1000:8.1f} ms of {len(seconds)} "
          f"[{', '.join(f'{s * 1000:.0f}' for s in seconds)}]{verdict}")


def browser(url: str, names: list[str], repeats: int) -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        print("browser: skipped (needs Debian's chromium and chromium-driver)")
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)

    def drawn(count: int) -> None:
        WebDriverWait(driver, 120, poll_frequency=0.005).until(
            lambda d: d.execute_script("return document.body.dataset.loading === 'no' && "
                                       f"Number(document.body.dataset.loaded || 0) >= {count}"))

    try:
        def load() -> None:
            driver.get(url + "/runs")
            drawn(1)

        report("runs page (browser)", [timed(load) for _ in range(repeats)], 1.0)
        changes = []
        for name in names[:repeats]:
            load()
            t0 = time.perf_counter()
            Select(driver.find_element("name", "project")).select_by_visible_text(name)
            drawn(2)
            changes.append(time.perf_counter() - t0)
        report("filter change (browser)", changes, 0.3)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
