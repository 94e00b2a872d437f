"""The ground-truth server's /ui page: a real server over emulated sockets, its JSON, and the
page in headless Chromium (when installed)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("fastapi", reason="fastapi is not installed: pip install '.[server]' (in the test extra)")

from let_groundtruth.config import SocketConfig  # noqa: E402
from let_groundtruth.emulator import EmulatedSocket  # noqa: E402
from let_groundtruth.server import RunningServer  # noqa: E402
from tests.loopback import free_port, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, EmulatedSocket]]]:
    sockets = {"alpha": EmulatedSocket(lambda t: 150.0 + 100.0 * (int(t * 2) % 2)).start(),
               "beta": EmulatedSocket(800.0, start_total_kwh=3.0).start()}
    configs = {name: SocketConfig(host=name, address=s.address, hardware=f"{name} workstation")
               for name, s in sockets.items()}
    running = RunningServer(configs, port=free_port(), poll_interval=0.25, token="").start()
    try:
        yield running.url, sockets
    finally:
        running.stop()
        for s in sockets.values():
            s.close()


def data(url: str) -> dict[str, Any]:
    response = requests.get(url + "/ui/data", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_ui_data_has_every_sockets_history_sessions_and_resets(server: tuple[str, dict[str, EmulatedSocket]]) -> None:
    url, sockets = server
    started = requests.post(url + "/hosts/beta/sessions", json={"label": "paper-run"}, timeout=30).json()
    wait_until(lambda: all(len(h["history"]) >= 4 for h in data(url)["hosts"]))
    sockets["beta"].reset_counter()
    body = wait_until(lambda: (d := data(url)) and d["hosts"][1]["resets"] >= 1 and d)
    alpha, beta = body["hosts"]
    assert (alpha["host"], beta["host"]) == ("alpha", "beta")
    assert beta["hardware"] == "beta workstation" and beta["online"]
    powers = [w for _, w in alpha["history"] if w is not None]
    assert min(powers) >= 140 and max(powers) <= 260  # the profile's two levels, as the socket reports them
    assert all(-body["window_s"] <= t <= 0 for t, _ in beta["history"])
    assert [w for _, w in beta["history"] if w is not None][-1] == pytest.approx(800.0, rel=0.05)
    assert body["sessions"] == [{"host": "beta", "label": "paper-run", "start_time_iso": body["sessions"][0]["start_time_iso"],
                                 "legacy": False}]
    assert started["session_id"] not in str(body)  # ids are capabilities: never on the page
    requests.post(url + f"/sessions/{started['session_id']}/stop", timeout=30)
    assert data(url)["sessions"] == []


def test_ui_page_in_a_browser(server: tuple[str, dict[str, EmulatedSocket]], tmp_path: Path) -> None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    url, _ = server
    requests.post(url + "/hosts/alpha/sessions", json={"label": "epoch sweep"}, timeout=30)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,700"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(url + "/ui")
        # The page redraws its cards every few seconds, so an element found in one WebDriver
        # call can be gone by the next: each look is one script, atomic inside the page.
        def points() -> list[int]:
            return [int(p or 0) for p in driver.execute_script(
                "return [...document.querySelectorAll('.card svg')].map(s => s.getAttribute('data-points'))")]

        wait_until(lambda: len(points()) == 2 and all(n >= 12 for n in points()))
        cards = dict(driver.execute_script(
            "return [...document.querySelectorAll('.card')].map(c => [c.dataset.host, c.innerText])"))
        assert set(cards) == {"alpha", "beta"} and "online" in cards["beta"] and " W" in cards["beta"]
        assert "epoch sweep" in driver.execute_script("return document.getElementById('sessions').innerText")
        path = tmp_path / "gt-ui.png"
        assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
        print(f"screenshot: {path}")
    finally:
        driver.quit()


def test_tracker_live_reads_the_wall_sockets_running_session(
        server: tuple[str, dict[str, EmulatedSocket]]) -> None:
    from let_backends.tasmota.backend import TasmotaBackend
    from let_backends.tasmota.config import ServerLocation
    from let_core.tracker import EnergyTracker

    url, _ = server
    host, port = url.rsplit(":", 1)
    backend = TasmotaBackend(ServerLocation(host.split("//")[1], int(port), "test"), "beta")
    tracker = EnergyTracker(backends=[backend], reporters=["csv"])
    with tracker:
        time.sleep(1.5)
        reading = tracker.live().of("tasmota")
        assert reading.kind == "metered" and not reading.error
        assert reading.power_w == pytest.approx(800.0, rel=0.05)
        assert reading.energy_kwh > 0
    stored = tracker.last_result["measurements"]["tasmota"]["energy_consumed"]  # type: ignore[index]
    assert stored >= reading.energy_kwh
