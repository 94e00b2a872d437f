"""The dashboard's calibration view in headless Chromium over a real `lett ui` process: paired runs,
the fitted line and band, the held-out error and the runs it corrected, as the API serves them.
The screenshot's path is printed (`pytest -s`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from paired_runs import rows, synthetic_runs

from let_core.results import load_results
from let_core.results.calibration import fit, paired_runs, save
from let_core.store import Store
from tests.test_ui_browser import browser, loaded, screenshot, start_ui  # noqa: F401 (browser: a fixture)

By = pytest.importorskip("selenium.webdriver.common.by", reason="selenium is in the test extra").By


def drawn(driver: Any, at_least: int = 1) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.calibration") == "drawn"
        and int(d.execute_script("return document.body.dataset.calibrationDrawn || 0")) >= at_least)


def test_calibration_view_shows_fit_band_and_corrected_runs(let_home: Path, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    Store(let_home).append(rows(synthetic_runs(80, seed=21, power_w=(100, 350)))
                           + rows(synthetic_runs(6, seed=22, metered=False, power_w=(120, 500)))
                           + rows(synthetic_runs(5, seed=23, metered=False, host="ws29")))
    calibration = fit(paired_runs(load_results(let_home), "ws28"))
    save(calibration)
    proc, url = start_ui(let_home, tmp_path / "ui.log")
    try:
        browser.get(url + "/calibration")
        loaded(browser)
        drawn(browser)
        api = requests.get(url + "/api/calibration", timeout=30).json()
        assert [h["host"] for h in api["hosts"]] == ["ws28"]
        section = browser.find_element(By.CSS_SELECTOR, "section.calibration[data-host=ws28]")
        assert section.find_element(By.CSS_SELECTOR, "p.description").text == calibration.describe()
        assert "cross-validated error" in calibration.describe()
        data = browser.execute_script("return window.letPlots['calibration-ws28'].data")
        paired = [(x, y) for x, y in zip(data[0], data[1]) if y is not None]
        assert len(paired) == 80
        assert sorted(y for _, y in paired) == pytest.approx(sorted(api["hosts"][0]["paired"]["wall_w"]))
        band = [(lo, mid, hi) for mid, lo, hi in zip(data[2], data[3], data[4]) if mid is not None]
        assert len(band) == 60 and all(lo <= mid <= hi for lo, mid, hi in band)
        assert sum(y is not None for y in data[5]) == 6  # the corrected estimate-only runs
        corrected = section.find_elements(By.CSS_SELECTOR, "table.corrected tbody tr")
        assert len(corrected) == 6
        assert any("outside the fitted range" in row.text for row in corrected)  # 500 W > fitted 350 W
        assert section.find_elements(By.CSS_SELECTOR, "canvas")
        screenshot(browser, tmp_path, "calibration")

        browser.get(url + "/calibration?host=ws29")
        loaded(browser)
        drawn(browser)
        assert "No calibration of ws29" in browser.find_element(By.ID, "calibration-notes").text
    finally:
        proc.terminate()
        proc.wait(10)
