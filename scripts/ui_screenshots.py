"""Screenshots of every `lett ui` page, in headless Chromium over a real `lett ui` process.

    python scripts/ui_screenshots.py OUT_DIR [--lab RUNS [--calibrate HOST]] [--store DIR] [--name PREFIX]

Without options: a new user's store (one day, two projects; tests/ui_store.py). ``--lab N``: a
lab's Parquet dataset of N runs over a year (bench/_lab_fixture.py builds it once per N and
keeps it under /tmp). ``--store DIR`` shows an existing store. Writes OUT_DIR/<name>-<page>.png
and prints what each page says in its count, hint and error boxes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PAGES = (("overview", "/"), ("runs", "/runs"), ("project", "/project"), ("statement", "/statement"),
         ("calibration", "/calibration"), ("statement-unknown", "/statement?project=thesis-basline"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--lab", type=int, default=0)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--name", help="prefix of the PNG names (default: new-user, lab-N or store)")
    parser.add_argument("--calibrate", metavar="HOST", help="fit HOST's wall-socket calibration first "
                        "(`lett calibration fit`), so that the pages show calibrated runs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix="let-shots-") as tmp:
        command = [sys.executable, "-m", "let_core", "ui"]
        if args.lab:
            from _lab_fixture import lab_dataset

            dataset = lab_dataset(args.lab)
            store, name = Path(tmp) / "store", f"lab-{args.lab}"
            store.mkdir()
            command += ["--output-dir", str(store), "--dataset", str(dataset)]
        elif args.store:
            store, name = args.store, "store"
            store.mkdir(parents=True, exist_ok=True)
            command += ["--output-dir", str(store)]
        else:
            from tests.ui_store import build_new_user_store

            store, name = Path(tmp) / "store", "new-user"
            build_new_user_store(store)
            command += ["--output-dir", str(store)]
        name = args.name or name
        from tests.loopback import free_port

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(REPO), "LET_HOME": str(Path(tmp) / "home")}
        if args.calibrate:
            fit = [sys.executable, "-m", "let_core", "calibration", "fit", "--hostname", args.calibrate,
                   *command[command.index("ui") + 1:]]
            subprocess.run(fit, env=env, cwd=REPO, check=True)
        proc = subprocess.Popen([*command, "--port", str(port)], env=env, cwd=REPO)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--disable-gpu", "--no-proxy-server"):
            options.add_argument(argument)
        driver = None
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    if requests.get(url + "/api/choices", timeout=300).status_code in (200, 503):
                        break
                except requests.ConnectionError:
                    time.sleep(0.5)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            driver.set_page_load_timeout(600)
            driver.set_script_timeout(600)
            for page, path in PAGES:
                driver.set_window_size(1280, 1000)
                t0 = time.perf_counter()
                driver.get(url + path)
                WebDriverWait(driver, 600).until(
                    lambda d: d.execute_script("return document.body.dataset.loading") == "no"
                    and int(d.execute_script("return document.body.dataset.loaded || 0")) >= 1)
                if page == "calibration":
                    WebDriverWait(driver, 600).until(
                        lambda d: d.execute_script("return document.body.dataset.calibration") == "drawn")
                shown = time.perf_counter() - t0
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1280, max(700, min(int(height) + 200, 4000)))
                target = args.out / f"{name}-{page}.png"
                driver.save_screenshot(str(target))
                said = driver.execute_script(
                    "return ['count','hint','error'].map(id => document.getElementById(id))"
                    ".filter(e => e && !e.hidden && e.textContent).map(e => e.id + ': ' + e.textContent)")
                print(f"{target} ({shown:.1f} s): {' | '.join(said)}")
        finally:
            if driver is not None:
                driver.quit()
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


if __name__ == "__main__":
    main()
