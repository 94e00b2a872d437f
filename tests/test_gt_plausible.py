"""The client checks a stop answer before calling it metered (issue 20): a real HTTP server on
loopback that speaks the ground-truth API and answers what a broken or hostile server might,
1000 kWh for a 1 s session. The run goes on; the tasmota measurement is failed with the reason."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from let_backends.tasmota.client import GroundTruthError, GroundTruthTracker
from let_core.tracker import EnergyTracker

SESSION = "ab" * 16


class RogueServer:
    """Answers every session's stop with ``stop_kwh`` (set by the test)."""

    def __init__(self) -> None:
        self.stop_kwh: Any = 1000.0
        rogue = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/list":
                    self._answer(200, ["box"])
                elif self.path == "/hosts/box":
                    self._answer(200, {"host": "box", "online": True})
                elif self.path == "/box/start":  # LET 0.1.x's start (GroundTruthTracker): a 1.x server opens a session
                    self._answer(200, {"session_id": SESSION, "host": "box", "energy_consumed": 0.0, "duration": 0.0,
                                       "start_time": "2026-01-01T00:00:00", "timestamp": "2026-01-01T00:00:00"})
                elif self.path == f"/sessions/{SESSION}":
                    self._answer(200, {"session_id": SESSION, "energy_consumed": 0.0, "duration": 0.5,
                                       "running": True, "quality": {"coverage": 1.0}})
                else:
                    self._answer(404, {"error": "no route", "hosts": ["box"]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/hosts/box/sessions":
                    self._answer(201, {"session_id": SESSION, "host": "box", "power_w": 150.0, "hardware": "box"})
                elif self.path == f"/sessions/{SESSION}/stop":
                    self._answer(200, {"session_id": SESSION, "host": "box", "energy_consumed": rogue.stop_kwh,
                                       "duration": 1.0, "running": False, "power_w": 150.0,
                                       "quality": {"complete": True, "coverage": 1.0}})
                else:
                    self._answer(404, {"error": "no route", "hosts": ["box"]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def rogue(monkeypatch: pytest.MonkeyPatch) -> Iterator[RogueServer]:
    server = RogueServer()
    monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
    monkeypatch.setenv("LET_GT_PORT", str(server.port))
    monkeypatch.setenv("LET_GT_HOSTNAME", "box")
    try:
        yield server
    finally:
        server.close()


def test_a_1000_kwh_answer_for_a_1_s_session_is_not_metered(rogue: RogueServer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with EnergyTracker(project_name="rogue", backends=["tasmota", "manual"], reporters=[],
                           options={"manual": {"energy_kwh": 0.001}}) as tracker:
            time.sleep(1.0)
    m = tracker.last_result["measurements"]["tasmota"]  # type: ignore[index]
    assert m["error"] and "1000" in m["error"] and "3680" in m["error"] and "not recorded as metered" in m["error"]
    assert m["energy_consumed"] != m["energy_consumed"]  # NaN: never counted
    assert any("tasmota" in str(w.message) for w in caught)
    assert tracker.last_result["measurements"]["manual"]["energy_consumed"] == pytest.approx(0.001)  # type: ignore[index]


def test_the_rated_power_can_be_configured_and_a_plausible_answer_passes(rogue: RogueServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rogue.stop_kwh = 0.0005  # 1800 W for ~1 s: plausible for a 16 A socket
    with EnergyTracker(project_name="fine", backends=["tasmota"], reporters=[]) as tracker:
        time.sleep(1.0)
    assert tracker.last_result["measurements"]["tasmota"]["energy_consumed"] == pytest.approx(0.0005)  # type: ignore[index]

    monkeypatch.setenv("LET_GT_RATED_MAX_W", "230")  # a 1 A socket cannot meter 1800 W
    gt = GroundTruthTracker(verbose=False)
    gt.start()
    time.sleep(0.5)
    with pytest.raises(GroundTruthError, match="rated 230 W"):
        gt.stop()


@pytest.mark.parametrize("answer", [float("nan"), -1.0, "lots", None], ids=["nan", "negative", "text", "missing"])
def test_answers_that_are_no_number_are_refused(rogue: RogueServer, answer: Any) -> None:
    rogue.stop_kwh = answer
    gt = GroundTruthTracker(verbose=False)
    gt.start()
    with pytest.raises(GroundTruthError, match="not recorded as metered"):
        gt.stop()
