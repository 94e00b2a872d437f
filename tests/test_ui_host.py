"""`lett ui` answers only to its own names (DNS rebinding) and serves nothing from a CDN.

A real `lett ui` process on 127.0.0.1, asked with raw HTTP requests whose ``Host:`` header we
choose, and a real headless Chromium told that ``rebind.example`` resolves to 127.0.0.1: the
DNS-rebinding attack itself, from the browser's side.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from let_core.ui.app import allowed_hosts, host_name
from tests.loopback import free_port, wait_until
from tests.ui_store import build_store

pytest.importorskip("fastapi", reason="`lett ui` needs the server extra")
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    """GET with exactly this Host header (None: none at all)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def start_ui(store: Path, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "let_core", "ui", "--output-dir", str(store), "--port", str(port),
                             *extra], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"lett ui exited with {proc.returncode}: {log.read_text()}")
        try:
            return get(port, "/api/choices", f"127.0.0.1:{port}")[0] in (200, 503)
        except OSError:
            return False

    try:
        wait_until(up, what="lett ui to answer")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("ui-host")
    build_store(root / "store")
    proc, port = start_ui(root / "store", root / "ui.log", "--allow-host", "proxy.example")
    try:
        yield port
    finally:
        stop(proc)


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "LOCALHOST", "proxy.example"])
def test_own_names_are_served(ui: int, name: str) -> None:
    for host in (name, f"{name}:{ui}"):
        status, body = get(ui, "/api/choices", host)
        assert status == 200, (host, body[:300])
    assert get(ui, "/", f"{name}:{ui}")[0] == 200
    assert get(ui, "/api/choices", f"[::1]:{ui}")[0] == 200


@pytest.mark.parametrize("host", ["rebind.example", "rebind.example:{port}", "127.0.0.1.rebind.example",
                                  "localhost.rebind.example:{port}", "[::2]:{port}", "evil@localhost", ""])
def test_a_foreign_host_gets_421_with_what_to_do(ui: int, host: str) -> None:
    for path in ("/", "/api/runs", "/api/statement", "/static/app.js", "/api/openapi.json"):
        status, body = get(ui, path, host.format(port=ui))
        assert status == 421, (host, path, status)
        detail = json.loads(body)["detail"]
        assert "localhost" in detail and "--allow-host" in detail, detail
        assert "alice" not in body.decode()  # no result leaks in the refusal


def test_docs_are_not_loaded_from_a_cdn(ui: int) -> None:
    for path in ("/api/docs", "/docs", "/redoc"):
        assert get(ui, path, "localhost")[0] == 404, path
    status, body = get(ui, "/api/openapi.json", "localhost")
    assert status == 200 and "/api/runs" in json.loads(body)["paths"]
    # nothing any page loads comes from elsewhere
    for path in ("/", "/runs", "/project", "/statement", "/calibration"):
        page = get(ui, path, "localhost")[1].decode()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), path


def test_a_wildcard_bind_answers_to_this_machines_addresses_only(tmp_path: Path) -> None:
    """`--host 0.0.0.0`: a co-worker types this machine's address; another address is refused
    (the app in process: tests listen on loopback only, and 127.0.0.0/8 is all this machine's)."""
    from fastapi.testclient import TestClient

    from let_core.ui.app import create_app
    from let_core.ui.data import Dashboard

    build_store(tmp_path / "store")
    app = create_app(Dashboard(tmp_path / "store"), allowed_hosts("0.0.0.0"), local_addresses=True)
    for host, status in (("127.0.0.2:8765", 200), ("[::1]:8765", 200), ("192.0.2.1:8765", 421),
                         ("rebind.example", 421)):
        assert TestClient(app, base_url=f"http://{host}").get("/api/choices").status_code == status, host
    assert get_raw_host(app, "999.1.1.1") == 421  # not an address at all
    strict = create_app(Dashboard(tmp_path / "store"), allowed_hosts("127.0.0.1"))
    assert TestClient(strict, base_url="http://127.0.0.2").get("/api/choices").status_code == 421


def get_raw_host(app: Any, host: str) -> int:
    """The status of GET /api/choices with this exact Host header, straight through ASGI."""
    import asyncio

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/api/choices", "raw_path": b"/api/choices", "query_string": b"", "root_path": "",
             "headers": [(b"host", host.encode())], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8765)}
    asyncio.run(app(scope, receive, send))
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


def test_allowed_names_of_a_bind() -> None:
    assert allowed_hosts("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert "10.1.2.3" in allowed_hosts("10.1.2.3") and "rebind.example" not in allowed_hosts("10.1.2.3")
    import socket

    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0")
    assert allowed_hosts("::1", ["[fe80::1]", " Proxy.Example "]) >= {"fe80::1", "proxy.example"}
    assert [host_name(h) for h in ("a:1", "[::1]:80", "[::1]", "A", "a:b:c")] == ["a", "::1", "::1", "a", "a:b:c"]


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
def test_a_rebinding_page_in_a_real_browser_reads_nothing(ui: int, tmp_path: Path) -> None:
    """Chromium resolves rebind.example to 127.0.0.1, as a rebinding DNS server would make it."""
    pytest.importorskip("selenium", reason="selenium is in the test extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,700",
                     "--disable-gpu", "--no-proxy-server",
                     "--host-resolver-rules=MAP rebind.example 127.0.0.1"):
        options.add_argument(argument)
    driver: Any = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"http://rebind.example:{ui}/api/runs")
        text = driver.find_element("tag name", "body").text
        shot = tmp_path / "rebind.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        assert "answers to" in text and "alice" not in text and "gpu-1" not in text
        driver.get(f"http://localhost:{ui}/runs")  # the runs table (the landing page is the overview)
        # the same browser, the dashboard's own name: the rows are there
        wait_until(lambda: "alice" in " ".join(r.text for r in driver.find_elements("css selector", "tbody tr")),
                   what="the runs table")
        driver.save_screenshot(str(tmp_path / "localhost.png"))
    finally:
        driver.quit()

