"""`lett ui` in a real browser: a real `lett ui` process over a real store, headless Chromium
(Debian's `chromium` + `chromium-driver`) driven by Selenium. Screenshots of every page are
saved in the test's tmp dir (their paths are printed; `pytest -s` shows them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.ui_store import METERED_RATIO, build_store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]

selenium = pytest.importorskip("selenium", reason="selenium is in the test extra")
if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):  # .ci/run installs both
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.loopback import free_port  # noqa: E402


def start_ui(store: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "let_core", "ui", "--output-dir", str(store),
                             "--port", str(port)], env=env, cwd=REPO,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lett ui exited with {proc.returncode}: {log.read_text()}")
        try:
            if requests.get(url + "/api/choices", timeout=2).status_code in (200, 503):
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"lett ui did not answer within 60 s: {log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("ui")
    build_store(root / "store")
    proc, url = start_ui(root / "store", root / "ui.log")
    yield url, root / "store"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--disable-gpu", "--no-proxy-server"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def loaded(driver: Any, at_least: int = 1) -> None:
    """Wait until the page has drawn ``at_least`` times since it was opened."""
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.loading") == "no"
        and int(d.execute_script("return document.body.dataset.loaded || 0")) >= at_least)


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(700, min(int(height) + 40, 2400)))
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a real rendering, not a blank page
    print(f"screenshot: {path}")
    return path


def kwh(text: str) -> float:
    """A shown energy ("12.500 mWh") in kWh."""
    value, unit = text.split()
    return float(value) * {"mWh": 1e-6, "Wh": 1e-3, "kWh": 1.0, "MWh": 1e3}[unit]


#: Each row's cells as {data-col: the text a person sees}, in one round trip to the browser (a
#: WebDriver call per cell cost the runs page test 20 s); whitespace as WebDriver's element text.
TABLE_SCRIPT = """
return Array.from(document.querySelectorAll(arguments[0])).map(row => Object.fromEntries(
    Array.from(row.querySelectorAll('td')).map(td => [td.dataset.col, td.innerText.replace(/\\s+/g, ' ').trim()])));
"""


def table(driver: Any, selector: str = "#runs tbody tr") -> list[dict[str, str]]:
    return list(driver.execute_script(TABLE_SCRIPT, selector))


def test_runs_page_filters_sorts_and_pages(server: tuple[str, Path], browser: Any, tmp_path: Path) -> None:
    url, _ = server
    browser.get(url + "/runs")
    loaded(browser)
    assert browser.find_element(By.ID, "count").text.startswith("24 runs, 3 of them failed (all stored runs). 36 rows")
    rows = table(browser)
    assert len(rows) == 36
    assert rows[0]["start_time"] >= rows[-1]["start_time"]  # newest first
    screenshot(browser, tmp_path, "runs")

    Select(browser.find_element(By.NAME, "project")).select_by_visible_text("nlp")
    loaded(browser, 2)
    rows = table(browser)
    assert len(rows) == 6 and {r["project_name"] for r in rows} == {"nlp"}
    assert "project=nlp" in browser.current_url
    assert browser.find_element(By.ID, "count").text == "6 runs, 1 of them failed (project nlp). Showing rows 1–6."

    browser.find_element(By.CSS_SELECTOR, "th[data-sort=energy_consumed]").click()
    loaded(browser, 3)
    energies = [kwh(r["energy_consumed"]) for r in table(browser)]
    assert energies == sorted(energies, reverse=True) and energies[0] > energies[-1]
    browser.find_element(By.CSS_SELECTOR, "th[data-sort=energy_consumed]").click()
    loaded(browser, 4)
    assert [kwh(r["energy_consumed"]) for r in table(browser)] == sorted(energies)
    screenshot(browser, tmp_path, "runs-filtered")

    browser.get(url + "/runs?per_page=5")  # paging is the server's: the browser gets one page
    loaded(browser)
    Select(browser.find_element(By.NAME, "host")).select_by_visible_text("gpu-1")
    loaded(browser, 2)
    first = table(browser)
    assert len(first) == 5  # of 18: vision on gpu-1 is 6 runs x 2 rows, nlp 6 runs
    assert browser.find_element(By.ID, "pageinfo").text == "page 1 of 4"
    seen = [r["run_id"] + r["backend"] for r in first]
    for page in (2, 3, 4):
        browser.find_element(By.ID, "next").click()
        loaded(browser, page + 1)
        seen += [r["run_id"] + r["backend"] for r in table(browser)]
    assert browser.find_element(By.ID, "pageinfo").text == "page 4 of 4"
    assert len(seen) == len(set(seen)) == 18
    assert not browser.find_element(By.ID, "next").is_enabled()


def test_project_view_charts_hold_the_servers_figures(server: tuple[str, Path], browser: Any,
                                                       tmp_path: Path) -> None:
    url, _ = server
    browser.get(url + "/project?project=vision")
    loaded(browser)
    # The URL's project has runs: the filter shows it once, as itself (it read "vision (no runs)"
    # when the form was filled before the choices had come).
    options = browser.execute_script("return [...document.querySelectorAll('select[name=project] option')]"
                                     ".map(o => [o.textContent, o.selected])")
    assert [text for text, selected in options if selected] == ["vision"], options
    assert not any("(no runs)" in text for text, _ in options), options
    energy = browser.execute_script("return window.letPlots.energy.data")
    summary = requests.get(url + "/api/summary", params={"project": "vision"}, timeout=30).json()
    assert len(energy[0]) == 6  # one point per day
    assert energy[1] == pytest.approx(summary["series"]["kwh"])
    assert energy[3] == pytest.approx(summary["series"]["kg"])
    scatter = browser.execute_script("return window.letPlots.scatter.data")
    assert len(scatter[0]) == 12  # every vision run was measured both ways
    failed = 0
    for estimate, metered_ok, metered_failed, diagonal in zip(*scatter):
        assert (metered_ok is None) != (metered_failed is None)  # a point is a run that failed or not
        failed += metered_failed is not None
        assert (metered_ok or metered_failed) == pytest.approx(estimate * METERED_RATIO)
        assert diagonal == estimate  # the y = x line
    assert failed == sum(summary["scatter"]["failed"]) == 2
    assert "metered / estimate = 1.30" in browser.find_element(By.ID, "ratio").text
    host_names = [row.find_elements(By.TAG_NAME, "td")[0].text
                  for row in browser.find_elements(By.CSS_SELECTOR, "#totals-host tbody tr")]
    assert host_names == ["gpu-1", "gpu-2"]
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-energy canvas")  # uPlot drew it
    screenshot(browser, tmp_path, "project")

    Select(browser.find_element(By.NAME, "project")).select_by_visible_text("speech")
    loaded(browser, 2)
    assert "scatter" not in browser.execute_script("return Object.keys(window.letPlots)")
    assert not browser.find_element(By.ID, "chart-scatter").is_displayed()
    assert "No run of this filter was measured both ways" in browser.find_element(By.ID, "ratio").text


def test_statement_page_shows_the_filters_statement_and_bibtex(server: tuple[str, Path], browser: Any,
                                                                tmp_path: Path) -> None:
    url, store = server
    browser.get(url + "/statement?project=vision")
    loaded(browser)
    text = browser.find_element(By.ID, "statement-text").text
    assert text.startswith("Using ") and "CodeCarbon 3.3.2" in text and "Tasmota smart socket" in text
    assert "1.30x the estimate" in text  # the 12 runs measured both ways
    expected = requests.get(url + "/api/statement", params={"project": "vision"}, timeout=30).json()
    assert text == expected["statement"].strip()
    bib = browser.find_element(By.ID, "bibtex").text
    assert "@" in bib and "codecarbon" in bib
    button = browser.find_element(By.CSS_SELECTOR, "button[data-copy=statement-text]")
    button.click()
    WebDriverWait(browser, 10).until(lambda d: button.get_attribute("data-copied") == "yes")
    screenshot(browser, tmp_path, "statement")

    Select(browser.find_element(By.NAME, "project")).select_by_visible_text("nlp")
    loaded(browser, 2)
    nlp = browser.find_element(By.ID, "statement-text").text
    assert "1.30x" not in nlp and re.search(r"estimated to [0-9.]+ (k?Wh)", nlp)


def test_a_corrupt_store_is_shown_on_the_page_and_the_server_keeps_serving(
        tmp_path: Path, browser: Any) -> None:
    store = tmp_path / "store"
    build_store(store)
    csv = store / "emissions.csv"
    good = csv.read_bytes()
    csv.unlink()
    csv.mkdir()  # what a broken sync tool leaves: the store file is a folder
    proc, url = start_ui(store, tmp_path / "ui.log")
    try:
        browser.get(url + "/runs")
        loaded(browser)
        error = browser.find_element(By.ID, "error")
        assert error.is_displayed() and "cannot read the LET store" in error.text
        screenshot(browser, tmp_path, "store-error")
        csv.rmdir()
        csv.write_bytes(good)  # repaired: the same server reads it on the next request
        browser.refresh()
        loaded(browser)
        assert not browser.find_element(By.ID, "error").is_displayed()
        assert len(table(browser)) == 36
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
