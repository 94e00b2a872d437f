"""`lett ui` as a person sees it, in headless Chromium over a real `lett ui` process: a new user's
day of runs (two projects) and an empty store. The assertions read what the page drew: uPlot's
tick labels as drawn on its axes, the shown ranges, the visible badges, hints and errors.
Screenshots of each page are saved in the test's tmp dir (paths printed; `pytest -s`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.test_ui_browser import browser, loaded, screenshot, start_ui  # noqa: F401 (browser: a fixture)
from tests.ui_store import build_new_user_store

By = pytest.importorskip("selenium.webdriver.common.by", reason="selenium is in the test extra").By

FIRST = datetime(2026, 12, 2, 9, tzinfo=timezone.utc).timestamp()
LAST = datetime(2026, 12, 2, 16, 49, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def new_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ui-new-user")
    build_new_user_store(root / "store")
    proc, url = start_ui(root / "store", root / "ui.log")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.poll() is not None


def drawn_axes(driver: Any, plot: str) -> list[dict[str, Any]]:
    """Each axis of a uPlot chart as drawn: its scale's shown range, tick positions and labels."""
    return driver.execute_script("""
        const u = window.letPlots[arguments[0]];
        return u.axes.map(a => ({scale: a.scale, min: u.scales[a.scale].min, max: u.scales[a.scale].max,
                                 ticks: a._splits, labels: a._values, title: a.label}));""", plot)


def visible_text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_overview_of_a_new_users_day(new_user: str, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    browser.get(new_user + "/")
    loaded(browser)
    cards = {card.get_attribute("id"): card.text for card in browser.find_elements(By.CSS_SELECTOR, ".card")}
    assert "6.280 Wh" in cards["card-energy"] and "all estimated" in cards["card-energy"]
    assert "2.386 g" in cards["card-emissions"]
    assert cards["card-runs"].split("\n")[1] == "8"
    assert cards["card-failed"].split("\n")[1] == "1" and "1.250 Wh" in cards["card-failed"]
    assert browser.find_element(By.ID, "trend-title").text == "Trend per hour"
    x, kwh, kg = drawn_axes(browser, "trend")
    # Hours of that day, not years: the shown range is the runs' hours plus a margin.
    assert FIRST - 2 * 3600 <= x["min"] <= FIRST and LAST <= x["max"] <= LAST + 2 * 3600
    assert len(x["labels"]) >= 3 and len(set(x["labels"])) == len(x["labels"])
    assert all(label.endswith(":00") for label in x["labels"]) and x["title"] == "2 Dec 2026 (UTC)"
    for axis, unit in ((kwh, " Wh"), (kg, " g")):
        assert len(set(axis["labels"])) == len(axis["labels"]) >= 3
        assert all(label.endswith(unit) for label in axis["labels"]), axis["labels"]
    failed_bars = browser.execute_script("return window.letPlots.trend.data[2].filter(v => v != null)")
    assert failed_bars == [pytest.approx(0.00125)]  # the failed run's hour is drawn red
    # Hovering the red bar: the legend (uPlot's tooltip) names the hour, the energy in Wh, the failed run.
    from selenium.webdriver.common.action_chains import ActionChains

    over = browser.find_element(By.CSS_SELECTOR, "#chart-trend .u-over")
    left = browser.execute_script("""const u = window.letPlots.trend, i = u.data[2].findIndex(v => v != null);
                                     return u.valToPos(u.data[0][i], 'x');""")
    ActionChains(browser).move_to_element_with_offset(over, int(left - over.size["width"] / 2), 0).perform()
    legend = browser.find_element(By.CSS_SELECTOR, "#chart-trend .u-legend").text
    assert "2 Dec 2026, 14:00-15:00 UTC" in legend and "1.250 Wh" in legend and "1 failed run(s)" in legend
    assert "0.475 g" in legend, legend
    failed_rows = browser.find_elements(By.CSS_SELECTOR, "#failed-runs tbody tr.failed")
    assert len(failed_rows) == 1 and "CUDA out of memory" in failed_rows[0].text
    projects = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#top-projects tbody tr")]
    assert projects == ["thesis-baseline", "first-try"]
    text = visible_text(browser)
    assert "0.000 Wh" not in text and "0.000 kWh" not in text and "0.00 h" not in text
    screenshot(browser, tmp_path, "new-user-overview")


def test_runs_page_marks_failed_runs_and_nests_tasks(new_user: str, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    browser.get(new_user + "/runs")
    loaded(browser)
    assert browser.find_element(By.ID, "count").text == (
        "8 runs, 1 of them failed (all stored runs). 10 rows: 2 task rows under their run. Showing rows 1–10.")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    failed = [r for r in rows if "failed" in (r.get_attribute("class") or "")]
    assert len(failed) == 1
    badge = failed[0].find_element(By.CSS_SELECTOR, ".failed-badge")
    assert badge.is_displayed() and badge.text == "✗ failed"
    assert badge.value_of_css_property("color") == "rgba(180, 35, 24, 1)"  # the page's red
    tasks = [i for i, r in enumerate(rows) if "task" in (r.get_attribute("class") or "").split()]
    assert len(tasks) == 2 and tasks[1] == tasks[0] + 1
    parent = rows[tasks[0] - 1]
    assert parent.get_attribute("data-run") == rows[tasks[0]].get_attribute("data-run")
    assert [rows[i].find_element(By.CSS_SELECTOR, "td[data-col=task]").text for i in tasks] == ["↳ load data", "↳ train"]
    energies = [r.find_element(By.CSS_SELECTOR, "td[data-col=energy_consumed]").text for r in rows]
    assert all(e.endswith(" Wh") and not e.startswith("0.000") for e in energies), energies
    durations = [r.find_element(By.CSS_SELECTOR, "td[data-col=duration]").text for r in rows]
    assert all(d.endswith(" min") for d in durations), durations
    screenshot(browser, tmp_path, "new-user-runs")


def test_project_view_of_a_day_reads_in_hours_and_watt_hours(new_user: str, browser: Any,  # noqa: F811
                                                              tmp_path: Path) -> None:
    browser.get(new_user + "/project?project=first-try")
    loaded(browser)
    x, kwh, kg = drawn_axes(browser, "energy")
    assert x["min"] <= FIRST <= x["max"] and x["max"] - x["min"] < 86400
    assert len(set(x["labels"])) == len(x["labels"]) >= 3
    assert all(label.endswith(" Wh") for label in kwh["labels"]) and len(set(kwh["labels"])) == len(kwh["labels"])
    assert all(label.endswith(" g") for label in kg["labels"])
    # The data lie within the drawn y range (ticks cover the largest bar).
    assert max(browser.execute_script("return window.letPlots.energy.data[1]")) <= kwh["max"]
    hosts = browser.find_element(By.ID, "totals-host").text
    assert "2.920 Wh" in hosts and "min" in hosts and "0.00" not in hosts
    assert not browser.find_element(By.ID, "chart-scatter").is_displayed()
    assert "No run of this filter was measured both ways" in browser.find_element(By.ID, "ratio").text
    screenshot(browser, tmp_path, "new-user-project")


def test_statement_of_an_unknown_project_says_so_outside_the_statement(new_user: str, browser: Any,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    browser.get(new_user + "/statement?project=thesis-basline")
    loaded(browser)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert "No stored run has project 'thesis-basline'; did you mean 'thesis-baseline'?" in error.text
    assert not browser.find_element(By.ID, "statement-text").is_displayed()
    assert not browser.find_element(By.ID, "statement-section").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "select[name=project] option:checked").text == "thesis-basline (no runs)"
    screenshot(browser, tmp_path, "new-user-statement-unknown")

    browser.get(new_user + "/statement?project=thesis-baseline")
    loaded(browser)
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "statement-text").text.startswith("Using CodeCarbon 3.3.2")
    screenshot(browser, tmp_path, "new-user-statement")


def test_an_empty_store_says_how_to_record_a_first_run(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    proc, url = start_ui(tmp_path / "empty", tmp_path / "ui.log")
    try:
        for page in ("/", "/runs", "/project", "/statement"):
            browser.get(url + page)
            loaded(browser)
            hint = browser.find_element(By.ID, "hint")
            assert hint.is_displayed(), page
            assert f"LET_HOME={tmp_path / 'empty'} lett demo --keep" in hint.text
            assert "EnergyTracker(project_name=" in hint.text
            screenshot(browser, tmp_path, "empty" + page.replace("/", "-"))
        assert not browser.find_element(By.ID, "statement-section").is_displayed()
        assert not browser.find_element(By.ID, "error").is_displayed()  # the hint says it once
        assert not browser.find_element(By.TAG_NAME, "main").is_displayed()  # no empty frames below it
    finally:
        proc.terminate()
        proc.wait(10)


def test_calibration_table_shows_fifty_runs_and_how_many_more(let_home: Path, browser: Any,  # noqa: F811
                                                               tmp_path: Path) -> None:
    from paired_runs import rows, synthetic_runs
    from selenium.webdriver.support.ui import WebDriverWait

    from let_core.results import load_results
    from let_core.results.calibration import fit, paired_runs, save
    from let_core.store import Store

    Store(let_home).append(rows(synthetic_runs(40, seed=21, power_w=(100, 350)))
                           + rows(synthetic_runs(70, seed=22, metered=False, power_w=(120, 300))))
    save(fit(paired_runs(load_results(let_home), "ws28")))
    proc, url = start_ui(let_home, tmp_path / "ui.log")
    try:
        browser.get(url + "/calibration")
        WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.body.dataset.calibration") == "drawn")
        lines = browser.find_elements(By.CSS_SELECTOR, "table.corrected tbody tr")
        assert len(lines) == 51 and lines[-1].text.startswith("… and 20 more")
        assert "Estimate-only runs it corrected (70)" in visible_text(browser)
        # The chart still holds every corrected run.
        assert browser.execute_script("return window.letPlots['calibration-ws28'].data[5].filter(v => v != null).length") == 70
    finally:
        proc.terminate()
        proc.wait(10)
