"""A real ground-truth server process (uvicorn on 127.0.0.1) in front of emulated sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from let_groundtruth.emulator import EmulatedSocket
from tests.loopback import WAIT_S, free_port, wait_until

TOKEN = "test-token-123"
ADMIN = "admin-token-456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Env:
    def __init__(self, url: str, sockets: dict[str, EmulatedSocket]) -> None:
        self.url = url
        self.sockets = sockets

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, headers=kw.pop("headers", AUTH), timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, headers=kw.pop("headers", AUTH), timeout=30, **kw)

    def start(self, host: str, label: str = "") -> dict[str, Any]:
        r = self.post(f"/hosts/{host}/sessions", json={"label": label})
        assert r.status_code == 201, r.text
        return r.json()

    def stop(self, session_id: str) -> dict[str, Any]:
        r = self.post(f"/sessions/{session_id}/stop")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def gt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("gt")
    sockets = {
        # High powers so a few seconds are many 0.01 Wh counter steps.
        "alpha": EmulatedSocket(2000.0, start_total_kwh=12.5),
        "beta": EmulatedSocket(lambda t: 1500.0 + 500.0 * ((int(t) % 2) * 2 - 1)),
        "resetme": EmulatedSocket(2400.0, start_total_kwh=3.0),
        "rebootme": EmulatedSocket(2400.0, start_total_kwh=7.0, save_period_s=0.5),
        "hangme": EmulatedSocket(300.0, host="127.0.0.2"),
    }
    for s in sockets.values():
        s.start()
    config = tmp / "gt.json"
    lines = ",\n".join(f'  "{name}": "{s.address}"' for name, s in sockets.items())
    config.write_text("{\n" + lines + ",\n  // more hosts here\n}\n")  # the README's comment style
    port = free_port()
    env = {**os.environ, "LET_HOME": str(tmp / "let"), "LET_GT_TOKEN": TOKEN, "LET_GT_ADMIN_TOKEN": ADMIN,
           "LET_LOAD_PLUGINS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "lamarr_energy_tracker.ground_truth_tracking",
                             "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                             "--poll-interval", "0.25"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            return requests.get(url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(up, what="the ground-truth server")
        yield Env(url, sockets)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        for s in sockets.values():
            s.close()


def watts(result: dict[str, Any]) -> float:
    return result["energy_consumed"] * 3.6e6 / result["duration"]


def test_old_routes_list_start_stop(gt: Env) -> None:
    assert gt.get("/list").json() == ["alpha", "beta", "resetme", "rebootme", "hangme"]
    first = gt.get("/alpha/start").json()
    # LET 0.1.x's client parses these with "%Y-%m-%dT%H:%M:%S"
    time.strptime(first["start_time"], "%Y-%m-%dT%H:%M:%S")
    time.strptime(first["timestamp"], "%Y-%m-%dT%H:%M:%S")
    assert {"energy_consumed", "duration", "session_id"} <= set(first)
    time.sleep(2.0)
    stopped = gt.get("/alpha/stop").json()
    assert watts(stopped) == pytest.approx(2000.0, rel=0.05)
    again = gt.get("/alpha/start").json()  # reports what the previous one metered, as 0.1.x did
    assert again["energy_consumed"] >= stopped["energy_consumed"]
    assert gt.get("/alpha/launch").status_code == 404


def test_overlapping_sessions_on_one_host_both_right(gt: Env) -> None:
    outer = gt.start("alpha", "outer")
    time.sleep(1.5)
    inner = gt.start("alpha", "inner")
    time.sleep(2.0)
    inner_result = gt.stop(inner["session_id"])
    time.sleep(1.0)
    outer_result = gt.stop(outer["session_id"])
    for result in (inner_result, outer_result):
        assert watts(result) == pytest.approx(2000.0, rel=0.05)
        assert result["quality"]["complete"] is True
    assert outer_result["energy_consumed"] > inner_result["energy_consumed"]
    assert gt.post(f"/sessions/{outer['session_id']}/stop").status_code == 404  # already stopped


def test_varying_profile_integrated(gt: Env) -> None:
    session = gt.start("beta")
    time.sleep(4.0)
    result = gt.stop(session["session_id"])
    assert watts(result) == pytest.approx(1500.0, rel=0.1)  # alternates 1000/2000 W each second


def test_counter_reset_mid_session(gt: Env) -> None:
    emu = gt.sockets["resetme"]
    session = gt.start("resetme")
    time.sleep(1.5)
    emu.reset_counter()  # what LET 0.1.x did to every other user of the socket
    time.sleep(1.5)
    result = gt.stop(session["session_id"])
    assert watts(result) == pytest.approx(2400.0, rel=0.05)
    q = result["quality"]
    assert q["resets"] == 1 and q["reboots"] == 0 and q["complete"] is False
    assert 0 < q["estimated_kwh"] < result["energy_consumed"] / 2


def test_socket_reboot_mid_session(gt: Env) -> None:
    emu = gt.sockets["rebootme"]
    session = gt.start("rebootme")
    time.sleep(1.5)
    emu.reboot(downtime_s=1.0)  # back to the last flash save, silent for a second
    time.sleep(2.5)
    result = gt.stop(session["session_id"])
    assert watts(result) == pytest.approx(2400.0, rel=0.06)
    q = result["quality"]
    assert q["reboots"] == 1 and q["gaps"] >= 1 and q["complete"] is False


def test_silent_socket_gap_marked_others_served(gt: Env) -> None:
    emu = gt.sockets["hangme"]
    session = gt.start("hangme")
    emu.hang()
    try:
        other = gt.start("alpha")
        time.sleep(1.0)
        assert gt.get("/health").status_code == 200
        other_result = gt.stop(other["session_id"])
        assert other_result["quality"]["complete"] is True
        wait_until(lambda: gt.get("/hosts/hangme").json()["online"] is False, what="the gap")
        result = gt.stop(session["session_id"])  # still returns, with the gap marked
        q = result["quality"]
        assert q["gaps"] >= 1 and q["socket_online"] is False and q["complete"] is False
        assert result["energy_consumed"] > 0
        power = gt.get("/hosts/hangme/power")
        assert power.status_code == 200 and power.json()["online"] is False
    finally:
        emu.resume()
    wait_until(lambda: gt.get("/hosts/hangme").json()["online"] is True, what="the socket to return")


def test_auth_401_without_token(gt: Env) -> None:
    for path in ("/list", "/hosts", "/alpha/start"):
        r = requests.get(gt.url + path, timeout=30)
        assert r.status_code == 401 and "LET_GT_TOKEN" in r.json()["error"]
        assert r.json()["token"] == "missing"
    wrong = requests.get(gt.url + "/list", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["token"] == "wrong"
    # the docs and the schema tell what the server offers: behind the token too
    assert requests.get(gt.url + "/docs", timeout=30).status_code == 401
    assert requests.get(gt.url + "/openapi.json", timeout=30).status_code == 401
    assert gt.get("/docs").status_code == 200
    assert "/hosts/{host}/sessions" in gt.get("/openapi.json").json()["paths"]
    assert requests.get(gt.url + "/health", timeout=30).status_code == 200


def test_unknown_host_and_session_404_json(gt: Env) -> None:
    for r in (gt.get("/nosuchhost/start"), gt.post("/hosts/nosuchhost/sessions"),
              gt.get("/hosts/nosuchhost/power"), gt.post("/sessions/" + "0" * 32 + "/stop")):
        assert r.status_code == 404
        assert "error" in r.json()
    assert "alpha" in gt.get("/nosuchhost/stop").json()["hosts"]


@pytest.mark.parametrize("method, path, body", [
    ("post", "/hosts/alpha/sessions", "{not json"),
    ("post", "/hosts/alpha/sessions", json.dumps({"label": "x" * 1000})),
    ("post", "/hosts/alpha/sessions", json.dumps([1, 2])),
    ("post", "/sessions/not-a-session-id/stop", ""),
    ("get", "/sessions/%00%ff", None),
    ("get", "/sessions?host=nosuchhost", None),
    ("put", "/list", None),
])
def test_malformed_requests_get_4xx_json(gt: Env, method: str, path: str, body: str | None) -> None:
    r = requests.request(method, gt.url + path, data=body, timeout=30,
                         headers={**AUTH, "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "error" in r.json()


def test_status_power_peek_and_concurrency(gt: Env) -> None:
    statuses = {s["host"]: s for s in gt.get("/hosts").json()}
    assert statuses["alpha"]["online"] and statuses["alpha"]["power_w"] == 2000.0
    assert gt.get("/hosts/beta/power").json()["power_w"] in (1000.0, 2000.0)
    session = gt.start("alpha", "peek")
    assert gt.get(f"/sessions/{session['session_id']}").json()["running"] is True
    # an id is the capability to stop a session: listed for the admin only
    listed = gt.get("/sessions?host=alpha").json()
    assert listed and all("session_id" not in s for s in listed)
    admin = gt.get("/sessions?host=alpha", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert any(s["session_id"] == session["session_id"] for s in admin)
    assert gt.post(f"/sessions/{session['session_id']}/stop").status_code == 200

    errors, hung = run_clients(gt, 10, 5)
    assert hung == 0, "a client thread hung"
    assert errors == []


def run_clients(env: Env, threads: int, rounds: int) -> tuple[list[str], int]:
    """Start/stop sessions from many threads: (what any thread raised, how many never ended)."""
    errors: list[str] = []

    def client() -> None:
        for _ in range(rounds):
            try:
                s = env.start("alpha")
                env.stop(s["session_id"])
            except BaseException as exc:  # anything a thread raises fails the test, not just asserts
                errors.append(f"{type(exc).__name__}: {exc}")

    started = [threading.Thread(target=client) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join(timeout=WAIT_S * 2)
    return errors, sum(t.is_alive() for t in started)


def test_client_thread_errors_are_seen() -> None:
    """The harness above must fail on a ConnectionError in a thread (it once stayed green)."""
    dead = Env(f"http://127.0.0.1:{free_port()}", {})
    errors, hung = run_clients(dead, 3, 1)
    assert hung == 0 and len(errors) == 3 and all(e.startswith("ConnectionError") for e in errors)
